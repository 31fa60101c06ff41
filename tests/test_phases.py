"""Time to first step: the phases of a run (loading data, features, compiling, training, backtest)
timed into status.json, and JAX's persistent compilation cache beside the runs folder, so the
second run of the same shapes loads its programs instead of compiling them."""

from __future__ import annotations

import json
import logging

import jax
import numpy as np
import pytest

from evorl_core.config import make_config
from evorl_core.system import compile_cache
from evorl_core.timefmt import format_phases
from evorl_core.training import pipeline
from evorl_core.training.phases import PHASES, PhaseClock

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=1, hidden=(16,), window=8, test_days=20,
            val_days=0, updates_per_chunk=2, symbols=("AAA",), data="synthetic", total_timesteps=8 * 16 * 2)


@pytest.fixture(autouse=True)
def no_cache_left_on():
    yield
    compile_cache.disable()


def test_the_clock_closes_each_phase_when_the_next_starts():
    now = [100.0]
    heard = []
    clock = PhaseClock(listener=lambda name, phases: heard.append((name, len(phases))), clock=lambda: now[0])
    assert clock.start("loading data")["phase"] == "loading data"
    now[0] = 101.5
    fields = clock.start("features")
    assert fields["phases"][0] == {"name": "loading data", "started_at": 100.0, "seconds": 1.5}
    assert fields["phases"][1]["seconds"] is None and clock.current == "features"
    now[0] = 102.0
    assert clock.seconds("features") == pytest.approx(0.5)
    assert clock.finish()["phase"] is None and clock.phases[-1]["seconds"] == pytest.approx(0.5)
    assert heard == [("loading data", 1), ("features", 2)]
    with pytest.raises(ValueError, match="unknown phase"):
        clock.start("napping")
    assert format_phases(clock.phases) == "loading data 1.5 s · features 0.5 s"
    assert format_phases([{"name": "compiling", "started_at": 10.0, "seconds": None}], now=13.0) == \
        "compiling 3.0 s so far"


def test_a_run_records_every_phase_with_its_duration(tmp_path):
    heard = []
    run = pipeline.run(make_config("quick", **TINY), tmp_path / "runs", "r", cache_dir=tmp_path / "cache",
                       phases=PhaseClock(listener=lambda name, phases: heard.append(name)), use_compile_cache=False)
    status = run.read_status()
    assert status["state"] == "done" and status["phase"] == "done"
    names = [p["name"] for p in status["phases"]]
    assert names == ["loading data", "features", "compiling", "training", "backtest"] == heard
    assert set(names) <= set(PHASES)
    assert all(p["seconds"] is not None and p["seconds"] >= 0 for p in status["phases"])
    compiling = next(p for p in status["phases"] if p["name"] == "compiling")
    assert compiling["seconds"] >= status["compile_seconds"] > 0  # the phase includes the compile itself
    assert status["compile_cache"] is None and not (tmp_path / compile_cache.CACHE_DIR_NAME).exists()
    # the throughput the Train page's estimate reads: the median over updates, as the Live page shows it
    rates = [r["steps_per_sec"] for r in run.read_metrics()]
    assert status["median_steps_per_sec"] == pytest.approx(float(np.median(rates)))


def test_the_second_run_of_the_same_shapes_loads_its_programs_from_the_cache(tmp_path, caplog):
    runs = tmp_path / "runs"
    first = pipeline.run(make_config("quick", **TINY), runs, "first", cache_dir=tmp_path / "cache")
    folder = compile_cache.cache_dir(runs)
    assert folder.parent == tmp_path / compile_cache.CACHE_DIR_NAME  # beside the runs folder
    assert folder.name == f"jax-{jax.__version__}-cpu"  # one subfolder per JAX version and backend
    assert first.read_status()["compile_cache"] == str(folder)
    assert compile_cache.entries(folder) > 0
    caplog.set_level(logging.DEBUG, logger="jax._src.compiler")
    second = pipeline.run(make_config("quick", **TINY), runs, "second", cache_dir=tmp_path / "cache")
    assert second.read_status()["state"] == "done"
    hits = [r for r in caplog.records if "cache hit" in r.getMessage().lower()]
    assert hits, "no persistent compilation cache hit on the second run"


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    assert compile_cache.enable(tmp_path / "runs", enabled=False) is None
    monkeypatch.setenv(compile_cache.ENV_CACHE, "off")
    assert compile_cache.enable(tmp_path / "runs") is None
    assert not (tmp_path / compile_cache.CACHE_DIR_NAME).exists()
    monkeypatch.setenv(compile_cache.ENV_CACHE, str(tmp_path / "elsewhere"))
    assert compile_cache.enable(tmp_path / "runs") == tmp_path / "elsewhere" / f"jax-{jax.__version__}-cpu"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "elsewhere" / f"jax-{jax.__version__}-cpu")


def test_no_cache_below_jax_0_5(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_cache, "jax_version", lambda: (0, 4))
    assert compile_cache.enable(tmp_path / "runs") is None
    assert not (tmp_path / compile_cache.CACHE_DIR_NAME).exists()


def test_a_failed_run_closes_the_phase_it_failed_in(tmp_path, monkeypatch):
    """A run that fails after it started (here: in training) records the phases it went through,
    the last one closed (no 'so far' on a dead run). A data error creates no run at all (reliability)."""
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline.loop, "train", broken)
    with pytest.raises(RuntimeError):
        pipeline.run(make_config("quick", **TINY), tmp_path / "runs", "r", cache_dir=tmp_path / "cache",
                     use_compile_cache=False)
    status = json.loads((tmp_path / "runs" / "r" / "status.json").read_text())
    assert status["state"] == "failed" and status["phase"] is None
    names = [p["name"] for p in status["phases"]]
    assert names == ["loading data", "features"], names
    assert all(p["seconds"] is not None and p["seconds"] >= 0 for p in status["phases"])
