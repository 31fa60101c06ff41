"""The pipeline of one run: data -> train -> backtest -> (deploy). What the CLI and the job registry call.

It owns the life cycle of the run directory: the checks before anything starts (`preflight`),
ownership (the run's LOCK, held for the whole run), the run record (config.json with the data
actually used, its hash, feature normalisation, date ranges, versions and backend), the states
around training (queued before, done / failed / interrupted after), the held-out backtest and the
optional deployment. The training itself (compiling, running, stopping, stopped) is `loop.train`.
What each fault leads to: docs/reliability.md.

With several processes (docs/scaling.md) every process calls `run` with the same arguments;
process 0 makes the checks and owns the run directory; `distributed.run_dir` gives the others one
whose writes are no-ops; process 0's run id and stored config reach the others, and only process 0
backtests and deploys after training.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evorl_core import guards
from evorl_core.agents import precision
from evorl_core.agents.checkpoints import check_checkpoint
from evorl_core.config import ALL_SYMBOLS, ConfigError, TrainConfig
from evorl_core.data import Market, feature_names, load_market
from evorl_core.data.panel import list_symbols
from evorl_core.deploy.bundle import check_replace, deploy_run, validate_model_name
from evorl_core.evaluation.evaluate import evaluate_run, stored_normalisation
from evorl_core.store.atomic import RunDirError, read_json, storage_error
from evorl_core.store.catalogue import check_runs_dir
from evorl_core.store.rundir import (
    ACTIVE_STATES,
    RESUMABLE_STATES,
    RunDir,
    RunInUse,
    RunLock,
    new_run_id,
    owner_text,
)
from evorl_core.store.tensorboard import EventWriter, write_final
from evorl_core.system import compile_cache, distributed
from evorl_core.system.provenance import backend_record, describe, library_versions
from evorl_core.training import loop, sizing
from evorl_core.training.phases import BACKTEST, DEPLOY, FEATURES, LOADING, PhaseClock


class StopSignal(threading.Event):
    """A stop event that can say why. ``set()`` (a user's Stop) ends the run ``stopped``;
    ``interrupt(reason)`` (a signal, a server shutting down) ends it ``interrupted``. Either way
    the loop saves a checkpoint first, so the run can be resumed."""

    reason: str | None = None

    def interrupt(self, reason: str) -> None:
        self.reason = reason
        self.set()


def describe_error(exc: BaseException) -> str:
    """One line for status.json and the CLI: the error's type and message, or what it means. The
    lines of a message of several (a DataError lists one problem a line) are joined by '; '."""
    text = "; ".join(" ".join(line.split()) for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:
        return ("out of memory: the network or batch does not fit the device; use smaller --hidden, "
                f"--num-envs or --minibatch-size ({text[:200] or type(exc).__name__})")
    if isinstance(exc, (RunDirError, loop.TrainingDiverged)):
        return text
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) and exc.filename:
        return str(storage_error(exc.filename, exc))  # a write outside rundir's write path
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_free(run_dir: RunDir) -> None:
    """A new run needs an unused run id: an existing run is never overwritten."""
    if any(p.exists() for p in (run_dir.status_path, run_dir.config_path, run_dir.metrics_path, run_dir.checkpoint_dir)):
        state = (run_dir.read_status() or {}).get("state", "unknown")
        raise RunDirError(f"run id {run_dir.run_id!r} already exists in {run_dir.path.parent} (state {state}); "
                          "choose another run id, or resume it")


def preflight(config: TrainConfig, runs_dir: str | Path, run_id: str | None, *, resume: bool = False,
              deploy: bool = False, model_name: str | None = None,
              models_dir: str | Path = "models", replace: bool = False) -> tuple[TrainConfig, RunDir]:
    """Every check that can fail before a run starts; changes nothing on disk but the runs directory.

    Returns the config to train (a resumed run's stored one) and the RunDir (not created yet for a
    new run). Raises ConfigError, RunDirError (RunInUse) or DeployError with a one-line message.
    """
    check_runs_dir(runs_dir)
    if resume:
        if not run_id:
            raise RunDirError("resume: give the run to resume")
        run_dir = RunDir.open(runs_dir, run_id)
        stored = run_dir.load_config()
        try:
            config = TrainConfig.from_dict(stored)
        except (ConfigError, TypeError) as exc:
            raise RunDirError(f"{run_dir.config_path}: {exc}") from None
        status = run_dir.read_status() or {}
        state = status.get("state")
        if state in ACTIVE_STATES:
            raise RunInUse(f"run {run_dir.run_id!r} is {state} ({owner_text(run_dir.owner())}); stop it first")
        if state not in RESUMABLE_STATES:
            detail = f" ({status.get('error')})" if state == "damaged" else ""
            raise RunDirError(f"run {run_dir.run_id!r} is {state}{detail}; nothing to resume (only "
                              f"{', '.join(RESUMABLE_STATES)} runs resume)")
        check_checkpoint(run_dir)
    else:
        config = config.validated()
        guards.check_symbols(config.symbols, config.data)  # one file or cache entry per symbol
        run_dir = RunDir.open(runs_dir, run_id or new_run_id())
        _check_free(run_dir)
    if deploy:
        validate_model_name(model_name or run_dir.run_id)
        models = Path(models_dir)
        if models.exists() and not models.is_dir():
            raise RunDirError(f"models directory {models}: exists and is not a directory")
        check_replace(models, model_name or run_dir.run_id, replace)  # a forward ledger is never lost
    # The loop checks this again before it compiles; here a run too big for the device is refused
    # before anything is created.
    sizing.check_fits(universe_estimate(config))
    return config, run_dir


def checked_market(config: TrainConfig, runs_dir: str | Path, run_id: str | None, *, cache_dir: str | Path,
                   phases: PhaseClock | None = None, **checks: Any) -> Market | None:
    """Every check of a new run (`preflight`) and its data, loaded and validated, before anything is
    created or announced: a refused start leaves no run directory. Pass the market (and `phases`,
    which times the loading here) to `run`. On process 0 only (None on the others, which load
    their data inside `run`)."""
    if not distributed.is_writer():
        return None
    config, _ = preflight(config, runs_dir, run_id, **checks)
    clock = phases if phases is not None else PhaseClock()
    clock.start(LOADING)
    return load_market(config, cache_dir=str(cache_dir), on_features=lambda: clock.start(FEATURES))


def acquire(run_dir: RunDir, *, resume: bool) -> RunLock:
    """Create the run directory and take its lock; a new run re-checks under the lock that its id is
    still free (two processes may have passed preflight together)."""
    run_dir = RunDir.create(run_dir.path.parent, run_dir.run_id)
    lock = RunLock.acquire(run_dir)
    try:
        if not resume:
            _check_free(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def universe_estimate(config: TrainConfig) -> TrainConfig:
    """The config with `--symbols all` replaced by every symbol the source lists (a portfolio run's
    size before its data is loaded; files that fail validation are left out later)."""
    if config.mode != "portfolio" or tuple(config.symbols) != (ALL_SYMBOLS,):
        return config
    return dataclasses.replace(config, symbols=tuple(list_symbols(config.data, config.universe_size)))


def resolved_universe(config: TrainConfig, market: Market) -> TrainConfig:
    """A portfolio run trains on the universe its data resolved to (`--symbols all`: every symbol
    that passed validation); what was asked for stays in the data info's `universe` record."""
    if config.mode != "portfolio" or tuple(config.symbols) == tuple(market.symbols):
        return config
    return dataclasses.replace(config, symbols=tuple(market.symbols)).validated()


def run_record(config: TrainConfig, market: Market) -> dict[str, Any]:
    """config.json of a run: the config plus the provenance of its data and software."""
    record = config.to_dict()
    record.update({
        "data_info": market.info,
        "data_hash": market.data_hash,
        "feature_names": list(feature_names(config)),
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
    lock: RunLock | None = None,
    phases: PhaseClock | None = None,
    tensorboard: bool = False,
    use_compile_cache: bool | None = None,
    replace: bool = False,
) -> RunDir:
    """Train (or resume) a run, backtest it on held-out days, optionally deploy it; blocking.

    Checks everything first (`preflight`; a refusal changes no run), then owns the run directory
    (its LOCK) until it returns. `lock`: the caller already holds the run's lock and created its
    directory (the job registry); it is not released here. Returns the RunDir. Every outcome after
    the checks ends in a final state in status.json (unless the disk cannot take even that).
    `phases` times the run's phases into status.json (pass one with a listener to follow them);
    `tensorboard` also writes the metrics as TensorBoard events (store.tensorboard);
    `use_compile_cache` (None: on unless EVORL_COMPILE_CACHE turns it off) uses JAX's persistent
    compilation cache beside the runs folder (system.compile_cache).
    `replace`: deploy over a model that has a forward ledger (archived, never deleted).
    """
    own_lock = None
    if lock is None:
        run_dir = None
        if distributed.is_writer():  # process 0 checks and owns the run; the others follow its answer
            config, run_dir = preflight(config, runs_dir, run_id, resume=resume, deploy=deploy,
                                   model_name=model_name, models_dir=models_dir, replace=replace)
            if market is None and not resume:  # a data error is refused before the run directory exists
                if phases is None:
                    phases = PhaseClock()
                phases.start(LOADING)
                market = load_market(config, cache_dir=str(cache_dir), on_features=lambda: phases.start(FEATURES))
            own_lock = acquire(run_dir, resume=resume)
        run_id = distributed.from_writer(run_dir.run_id if run_dir is not None else None)
        if resume:
            config = TrainConfig.from_dict(distributed.from_writer(run_dir.load_config() if run_dir is not None else None))
        run_dir = distributed.run_dir(runs_dir, run_id)
    else:
        run_dir = lock.run
        if resume:
            config = TrainConfig.from_dict(run_dir.load_config())
        config = config.validated()
    try:
        return _run_owned(config, run_dir, stop_event=stop_event, resume=resume, progress=progress, market=market,
                          deploy=deploy, model_name=model_name, models_dir=models_dir, cache_dir=cache_dir,
                          phases=phases if phases is not None else PhaseClock(), tensorboard=tensorboard,
                          use_compile_cache=use_compile_cache, replace=replace)
    finally:
        if own_lock is not None:
            own_lock.release()


def _run_owned(config: TrainConfig, run_dir: RunDir, *, stop_event, resume, progress, market, deploy, model_name,
               models_dir, cache_dir, phases: PhaseClock, tensorboard: bool, use_compile_cache: bool | None,
               replace: bool = False) -> RunDir:
    events = EventWriter(run_dir, config.members) if tensorboard and distributed.is_writer() else None
    config = precision.resolved(config)  # config.json records fp32 or bf16, never `auto`
    try:
        run_dir.clear_stop()
        prior = (run_dir.read_status() or {}) if resume else {}
        run_dir.write_status("queued", total_steps=config.total_env_steps, error=None,
                        finished_at=None, env_steps=prior.get("env_steps", 0) if resume else 0)
        if not resume:  # provisional: readers see symbols and preset while the data loads
            run_dir.write_config({**config.to_dict(), "data_info": None})
        if market is None:
            run_dir.write_status("queued", **phases.start(LOADING))
            stored = distributed.from_writer(run_dir.load_config() if distributed.is_writer() else None) if resume else None
            norm = stored_normalisation(stored, config.symbols) if resume else None
            market = load_market(config, cache_dir=str(cache_dir), norm=norm,
                                 on_features=lambda: run_dir.write_status("queued", **phases.start(FEATURES)))
        config = resolved_universe(config, market)
        distributed.check_same({"configuration": json.dumps(config.to_dict(), sort_keys=True, default=str),
                                "market data": market.data_hash})
        if not resume:
            run_dir.write_config(run_record(config, market))
        # process 0 only: the others' run directory is a stand-in, and they create nothing anywhere
        cache = compile_cache.enable(run_dir.path.parent, use_compile_cache) if distributed.is_writer() else None
        run_dir.write_status("queued", compile_cache=None if cache is None else str(cache))
        finished = loop.train(config, run_dir, market, stop_event=stop_event, resume=resume, progress=progress,
                              phases=phases, events=events)
        if not finished:
            reason = getattr(stop_event, "reason", None)
            if reason:  # a signal or a server shutdown, not a user's Stop: the run was interrupted
                run_dir.write_status("interrupted", error=f"{reason}; checkpoint saved, resume to continue",
                                finished_at=time.time())
            return run_dir
        if not distributed.is_writer():
            return run_dir
        run_dir.write_status("running", **phases.start(BACKTEST))
        evaluate_run(run_dir, market)
        if events is not None:
            write_final(events, run_dir)
        if deploy:
            run_dir.write_status("running", **phases.start(DEPLOY))
            path = deploy_run(run_dir, name=model_name, models_dir=models_dir, replace=replace)
            run_dir.write_status("running", deployed_to=str(path),
                                 deploy_evidence=(read_json(path / "bundle.json", {}, kind=dict) or {}).get("evidence"))
        run_dir.write_status("done", finished_at=time.time(), **{**phases.finish(), "phase": "done"})
        return run_dir
    except KeyboardInterrupt:
        _record_end(run_dir, "interrupted", "interrupted by the user (Ctrl-C); resume from the last checkpoint",
                    phases)
        raise
    except BaseException as exc:
        try:
            run_dir.error_log_path.write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
        # with several processes: name the process that failed
        message = distributed.failure_message(exc) if distributed.process_count() > 1 else describe_error(exc)
        _record_end(run_dir, "failed", message, phases)
        raise
    finally:
        if events is not None:
            events.close()


def _record_end(run_dir: RunDir, state: str, message: str, phases: PhaseClock | None = None) -> None:
    """Write a final state (the phase under way ends there); if even that fails (a full disk) the
    caller's error is what counts."""
    try:
        run_dir.write_status(state, finished_at=time.time(), error=message, **(phases.finish() if phases else {}))
    except (RunDirError, OSError):
        pass
