"""Tiny runs with several agents for the dashboard's tests, trained once per test process (the
AppTests and the browser test share them): a population (4 members, a PBT round every 2 updates)
and a walk-forward of 2 folds whose runs have 2 seeds each. Not a test module."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

from evorl_core.config import make_config
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.training import pipeline, walkforward

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,), window=8, test_days=20,
            val_days=30, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic")
INFO = {"source": "synthetic", "synthetic": True}
PBT_RUN = "tiny-pbt"
WALKFORWARD = "tiny-wf"


def frames() -> dict:
    return {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in TINY["symbols"]}


@functools.cache
def runs_dir() -> Path:
    """The runs directory holding tiny-pbt and the walk-forward tiny-wf (folds tiny-wf-fold1, -fold2).
    EVORL_TEST_POPULATION_RUNS=<folder> reuses runs built there before (kept; a developer's speed-up)."""
    kept = os.environ.get("EVORL_TEST_POPULATION_RUNS")
    if kept and (Path(kept) / "runs" / "walkforward" / WALKFORWARD / "summary.json").exists():
        return Path(kept) / "runs"
    root = Path(kept) if kept else Path(tempfile.mkdtemp(prefix="evorl-population-"))
    if not kept:
        atexit.register(shutil.rmtree, root, True)
    shutil.rmtree(root / "runs", ignore_errors=True)
    runs, cache = root / "runs", root / "cache"
    market = build_market(frames(), window=8, test_days=20, val_days=30, embargo_days=8, info=INFO)
    config = make_config("quick", **TINY, total_timesteps=8 * 16 * 6, population=4, pbt_interval=2, seed=1)
    assert pipeline.run(config, runs, PBT_RUN, market=market, cache_dir=cache).read_status()["state"] == "done"
    folds = make_config("quick", **TINY, total_timesteps=8 * 16 * 2, seeds=2)
    walkforward.run_walkforward(folds, 2, runs, WALKFORWARD, cache_dir=cache, frames=frames(), info=INFO)
    return runs


def copy_into(target: Path) -> Path:
    """The tiny runs copied into ``target`` (a test may change them); returns ``target``."""
    shutil.copytree(runs_dir(), target, dirs_exist_ok=True)
    return target
