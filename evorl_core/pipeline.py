"""The pipeline of one run: data -> train -> backtest -> (deploy). What the CLI and the job registry call.

It owns the life cycle of the run directory: the run record (config.json with the data actually
used, its hash, feature normalisation, date ranges, versions and backend), the states around
training (queued before, done / failed / interrupted after), the held-out backtest and the
optional deployment. The training itself (compiling, running, stopping, stopped) is `loop.train`.

With several processes (docs/scaling.md) every process calls `run` with the same arguments;
`distributed.run_dir` gives process 0 the run directory and the others one whose writes are
no-ops, process 0's run id and stored config reach the others, and only process 0 backtests
and deploys after training.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import distributed, loop
from .config import TrainConfig
from .data import FEATURE_NAMES, Market, load_market
from .deploy import deploy_run
from .evaluation import evaluate_run, stored_normalisation
from .provenance import backend_record, describe, library_versions
from .rundir import RunDir, new_run_id


def run_record(config: TrainConfig, market: Market) -> dict[str, Any]:
    """config.json of a run: the config plus the provenance of its data and software."""
    record = config.to_dict()
    record.update({
        "data_info": market.info,
        "data_hash": market.data_hash,
        "feature_names": list(FEATURE_NAMES),
        "normalization": {
            sym: {"mean": market.norm_mean[s].tolist(), "std": market.norm_std[s].tolist()}
            for s, sym in enumerate(market.symbols)
        },
        "date_ranges": {sym: market.split_dates(s) for s, sym in enumerate(market.symbols)},
        "versions": library_versions(),
        "backend_info": backend_record(describe()),
        "batch_size": config.batch_size,
        "num_updates": config.num_updates,
    })
    return record


def run(
    config: TrainConfig,
    runs_dir: str | Path = "runs",
    run_id: str | None = None,
    *,
    stop_event: threading.Event | None = None,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    market: Market | None = None,
    deploy: bool = False,
    model_name: str | None = None,
    models_dir: str | Path = "models",
    cache_dir: str | Path = "data_cache",
) -> RunDir:
    """Train (or resume) a run, backtest it on held-out days, optionally deploy it; blocking.

    Returns its RunDir. Every outcome ends in a final state in status.json.
    """
    rd = distributed.run_dir(runs_dir, distributed.from_writer(run_id or new_run_id()))
    try:
        if resume:
            stored = distributed.from_writer(rd.read_config() if rd.has_checkpoint() else None)
            if stored is None:
                raise FileNotFoundError(f"cannot resume {rd.path}: no config.json or checkpoint")
            config = TrainConfig.from_dict(stored)
        config = config.validated()
        rd.clear_stop()
        rd.write_status("queued", total_steps=config.total_env_steps, error=None,
                        env_steps=(rd.read_status() or {}).get("env_steps", 0) if resume else 0)
        if market is None:
            norm = stored_normalisation(stored, config.symbols) if resume else None
            market = load_market(config, cache_dir=str(cache_dir), norm=norm)
        distributed.check_same({"configuration": json.dumps(config.to_dict(), sort_keys=True, default=str),
                                "market data": market.data_hash})
        if not resume:
            rd.write_config(run_record(config, market))
        finished = loop.train(config, rd, market, stop_event=stop_event, resume=resume, progress=progress)
        if not finished or not distributed.is_writer():
            return rd
        rd.write_status("running", phase="backtest")
        evaluate_run(rd, market)
        if deploy:
            path = deploy_run(rd, name=model_name, models_dir=models_dir)
            rd.write_status("running", deployed_to=str(path))
        rd.write_status("done", finished_at=time.time(), phase="done")
        return rd
    except KeyboardInterrupt:
        rd.write_status("interrupted", finished_at=time.time(), error="interrupted by the user (Ctrl-C)")
        raise
    except BaseException as exc:
        message = distributed.failure_message(exc)  # with several processes: names the one that failed
        try:
            (rd.path / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
        rd.write_status("failed", finished_at=time.time(), error=message)
        raise
