"""The training loop: the only impure stage.

A Python loop over a jitted chunk of K PPO updates. Between chunks it times (with
`block_until_ready`), samples memory, appends metrics, updates status, checkpoints and checks for a
stop request. Compile time is measured separately and excluded from throughput. After training it
backtests the greedy policy on every symbol's test days and (optionally) deploys a bundle.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from flax import serialization

from . import __version__
from .backends import device_memory
from .backtest import backtest_rows, buy_and_hold, compute_metrics, equity_curve
from .config import TrainConfig
from .data import FEATURE_NAMES, Market, load_market
from .ppo import METRIC_NAMES, PPO, Runner, update_flops
from .rundir import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text, new_run_id, read_json
from .stats import sharpe_confidence_interval

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 60.0
TARGET_CHUNK_S = 2.0
# Rough sustained FLOP rates used only to choose how many updates go in one compiled chunk.
_ASSUMED_FLOPS = {"cpu": 4e10, "gpu": 2e13, "cuda": 2e13, "rocm": 1e13, "metal": 3e12, "METAL": 3e12}


class StopTraining(Exception):
    pass


def library_versions() -> dict[str, str]:
    import flax
    import optax
    import pandas

    return {
        "evorl": __version__, "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "numpy": np.__version__, "pandas": pandas.__version__, "python": platform.python_version(),
    }


def backend_info() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_count": len(devices),
        "device_kind": devices[0].device_kind if devices else "",
        "platform": platform.platform(),
    }


def device_memory_mb() -> float | None:
    """MiB in use on the first device, when the backend reports it (GPU does, CPU does not)."""
    return (device_memory(jax.devices()[0]) or {}).get("in_use_mb")


def host_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def choose_updates_per_chunk(config: TrainConfig, obs_size: int, remaining: int) -> int:
    if config.updates_per_chunk > 0:
        return max(1, min(config.updates_per_chunk, remaining))
    flops = update_flops(config, obs_size)
    rate = _ASSUMED_FLOPS.get(jax.default_backend(), 4e10)
    k = int(TARGET_CHUNK_S * rate / max(flops, 1.0))
    return max(1, min(k, 64, remaining))


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoint(run: RunDir, runner: Runner, env_steps: int, updates_done: int) -> None:
    state = jax.device_get(runner)
    atomic_write_bytes(run.checkpoint_dir / "state.msgpack", serialization.to_bytes(state))
    atomic_write_json(run.checkpoint_dir / "meta.json", {
        "env_steps": env_steps, "updates_done": updates_done, "saved_at": time.time(),
    })


def load_checkpoint(run: RunDir, template: Runner) -> tuple[Runner, dict[str, Any]]:
    raw = (run.checkpoint_dir / "state.msgpack").read_bytes()
    runner = serialization.from_bytes(template, raw)
    meta = read_json(run.checkpoint_dir / "meta.json", {})
    return jax.tree_util.tree_map(jnp.asarray, runner), meta


def load_params(run: RunDir, ppo: PPO, market: Market) -> Any:
    template = ppo.init(jax.random.PRNGKey(0), market.data)
    runner, _ = load_checkpoint(run, template)
    return runner.params


# --------------------------------------------------------------------------------------------
# backtest of a trained policy
# --------------------------------------------------------------------------------------------
def backtest_policy(config: TrainConfig, params: Any, market: Market) -> tuple[Any, dict[str, dict]]:
    """Greedy policy on each symbol's last `test_days` days -> (equity frame, metrics per symbol)."""
    ppo = PPO(config, market.data.features.shape[-1])
    n = market.test_days
    start = market.data.test_start
    positions = np.asarray(jax.jit(ppo.greedy_positions, static_argnums=3)(params, market.data, start, n),
                           dtype=np.float64)
    rows, metrics = [], {}
    for s, symbol in enumerate(market.symbols):
        t0 = int(start[s])
        frame = market.frames[symbol]
        open_ = frame["open"].to_numpy(np.float64)[t0:t0 + n]
        close = frame["close"].to_numpy(np.float64)[t0:t0 + n]
        dates = market.dates[s][t0:t0 + n]
        equity = equity_curve(open_, close, positions[s], config.cost, config.execution, config.initial_capital)
        bench = buy_and_hold(open_, close, config.cost, config.execution, config.initial_capital)
        m = {**compute_metrics(equity, positions[s]),
             **sharpe_confidence_interval(equity[1:] / equity[:-1] - 1.0, seed=config.seed)}
        bh = compute_metrics(bench, np.ones(n))
        metrics[symbol] = {**m, **{f"bh_{k}": v for k, v in bh.items()},
                           "test_start": str(dates[0]), "test_end": str(dates[-1]), "days": n}
        rows.append(backtest_rows(dates, symbol, open_, close, positions[s], equity, bench))
    import pandas as pd

    return pd.concat(rows, ignore_index=True), metrics


def write_backtest(out_dir: Path, frame, metrics: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.15g")
    atomic_write_text(out_dir / "equity.csv", text)
    atomic_write_json(out_dir / "metrics.json", metrics)


def run_backtest(run: RunDir | str | Path, market: Market | None = None, out_dir: Path | None = None,
                 data: str | None = None, test_days: int | None = None,
                 cache_dir: str = "data_cache") -> dict[str, dict]:
    """Re-run the backtest of a trained run (optionally on another data source / test length).

    Feature normalisation always uses the statistics stored with the run (its training range).
    """
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    stored = run.read_config()
    if stored is None:
        raise FileNotFoundError(f"{run.path}: no config.json; is this a run directory?")
    if not run.has_checkpoint():
        raise FileNotFoundError(f"{run.path}: no checkpoint/state.msgpack; the run has no trained state")
    config = TrainConfig.from_dict(stored)
    changes = {}
    if data is not None:
        changes["data"] = data
    if test_days is not None:
        changes["test_days"] = test_days
    config = config.replace(**changes).validated()
    if market is None:
        market = load_market(config, cache_dir=cache_dir, norm=stored_normalisation(stored, config.symbols))
    ppo = PPO(config, market.data.features.shape[-1])
    params = load_params(run, ppo, market)
    frame, metrics = backtest_policy(config, params, market)
    write_backtest(out_dir or run.backtest_dir, frame, metrics)
    return metrics


def stored_normalisation(stored: dict, symbols) -> tuple[np.ndarray, np.ndarray]:
    norm = stored["normalization"]
    missing = [s for s in symbols if s not in norm]
    if missing:
        raise ValueError(f"the run was not trained on {', '.join(missing)}; it knows {', '.join(norm)}")
    mean = np.array([norm[s]["mean"] for s in symbols], dtype=np.float64)
    std = np.array([norm[s]["std"] for s in symbols], dtype=np.float64)
    return mean, std


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _run_config_record(config: TrainConfig, market: Market) -> dict[str, Any]:
    record = config.to_dict()
    record.update({
        "data_info": market.info,
        "data_hash": market.data_hash,
        "feature_names": list(FEATURE_NAMES),
        "normalization": {
            sym: {"mean": market.norm_mean[s].tolist(), "std": market.norm_std[s].tolist()}
            for s, sym in enumerate(market.symbols)
        },
        "date_ranges": {
            sym: {
                "first": str(market.dates[s][0]),
                "train_end": str(market.dates[s][int(market.data.test_start[s]) - 1]),
                "test_start": str(market.dates[s][int(market.data.test_start[s])]),
                "last": str(market.dates[s][-1]),
                "rows": int(market.data.length[s]),
            }
            for s, sym in enumerate(market.symbols)
        },
        "versions": library_versions(),
        "backend_info": backend_info(),
        "batch_size": config.batch_size,
        "num_updates": config.num_updates,
    })
    return record


def train(
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
    """Train (or resume) a run; blocking. Returns its RunDir. Writes the run directory contract."""
    run_id = run_id or new_run_id()
    run = RunDir.create(runs_dir, run_id)
    try:
        if resume:
            stored = run.read_config()
            if stored is None or not run.has_checkpoint():
                raise FileNotFoundError(f"cannot resume {run.path}: no config.json or checkpoint")
            config = TrainConfig.from_dict(stored)
        config = config.validated()
        if run.stop_path.exists():
            run.stop_path.unlink()
        run.write_status("queued", total_steps=config.num_updates * config.batch_size, error=None,
                         env_steps=(run.read_status() or {}).get("env_steps", 0) if resume else 0)
        if market is None:
            norm = stored_normalisation(run.read_config(), config.symbols) if resume else None
            market = load_market(config, cache_dir=str(cache_dir), norm=norm)
        if not resume:
            run.write_config(_run_config_record(config, market))
        _train_loop(config, run, market, stop_event, resume, progress)
        if run.read_status()["state"] == "stopped":
            return run
        run.write_status("running", phase="backtest")
        ppo = PPO(config, market.data.features.shape[-1])
        frame, metrics = backtest_policy(config, load_params(run, ppo, market), market)
        write_backtest(run.backtest_dir, frame, metrics)
        if deploy:
            from .deploy import deploy_run

            path = deploy_run(run, name=model_name, models_dir=models_dir)
            run.write_status("running", deployed_to=str(path))
        run.write_status("done", finished_at=time.time(), phase="done")
        return run
    except KeyboardInterrupt:
        run.write_status("interrupted", finished_at=time.time(), error="interrupted by the user (Ctrl-C)")
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        try:
            (run.path / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
        run.write_status("failed", finished_at=time.time(), error=message)
        raise


def _train_loop(config: TrainConfig, run: RunDir, market: Market, stop_event: threading.Event | None,
                resume: bool, progress: Callable[[dict[str, Any]], None] | None) -> None:
    data = market.data
    ppo = PPO(config, data.features.shape[-1])
    total_updates = config.num_updates
    total_steps = total_updates * config.batch_size

    run.write_status("compiling", started_at=time.time())
    runner = ppo.init(jax.random.PRNGKey(config.seed), data)
    updates_done = 0
    if resume:
        runner, meta = load_checkpoint(run, runner)
        updates_done = int(meta.get("updates_done", int(runner.update_step)))
        run.truncate_metrics(updates_done * config.batch_size)

    # More than one device: split the env batch over all of them (data-parallel; evorl_core/sharding.py).
    jit_kwargs: dict[str, Any] = {}
    if jax.device_count() > 1:
        from .sharding import setup as shard_setup

        runner, data, jit_kwargs = shard_setup(ppo, runner, data, config)

    chunk_fns: dict[int, Any] = {}
    compile_seconds = 0.0

    def compiled(k: int):
        nonlocal compile_seconds
        if k not in chunk_fns:
            t0 = time.perf_counter()
            fn = jax.jit(ppo.run_updates, static_argnums=2, donate_argnums=0, **jit_kwargs)
            chunk_fns[k] = fn.lower(runner, data, k).compile()
            compile_seconds += time.perf_counter() - t0
        return chunk_fns[k]

    def should_stop() -> bool:
        return (stop_event is not None and stop_event.is_set()) or run.stop_requested()

    k = choose_updates_per_chunk(config, ppo.obs_size, max(total_updates - updates_done, 1))
    if updates_done < total_updates:
        compiled(k)
    run.write_status("running", compile_seconds=compile_seconds, env_steps=updates_done * config.batch_size,
                     total_steps=total_steps, backend=jax.default_backend())

    train_seconds = 0.0
    session_updates = 0
    last_checkpoint = time.monotonic()
    wall_start = time.time()
    peak_rss = host_rss_mb()
    while updates_done < total_updates:
        if should_stop():
            break
        k_now = min(k, total_updates - updates_done)
        fn = compiled(k_now)
        t0 = time.perf_counter()
        runner, metrics = fn(runner, data)
        metrics = jax.block_until_ready(metrics)
        dt = time.perf_counter() - t0
        train_seconds += dt
        metrics = {name: np.asarray(metrics[name], dtype=np.float64) for name in METRIC_NAMES}
        rss = host_rss_mb()
        peak_rss = max(peak_rss, rss)
        dev_mem = device_memory_mb()
        steps_per_sec = k_now * config.batch_size / dt
        rows = []
        for i in range(k_now):
            u = updates_done + i + 1
            row = {"update": u, "env_steps": u * config.batch_size,
                   "wall_time": time.time() - wall_start - dt * (k_now - 1 - i) / k_now,
                   "train_seconds": train_seconds - dt * (k_now - 1 - i) / k_now,
                   "steps_per_sec": steps_per_sec, "updates_per_sec": k_now / dt,
                   "host_rss_mb": rss, "device_mem_mb": dev_mem}
            row.update({name: float(metrics[name][i]) for name in METRIC_NAMES})
            rows.append(row)
        run.append_metrics(rows)
        updates_done += k_now
        session_updates += k_now
        env_steps = updates_done * config.batch_size
        eta = (total_updates - updates_done) * train_seconds / session_updates
        status = run.write_status(
            "running", env_steps=env_steps, total_steps=total_steps, updates_done=updates_done,
            steps_per_sec=steps_per_sec, train_seconds=train_seconds, eta_seconds=eta,
            peak_host_rss_mb=peak_rss, compile_seconds=compile_seconds,
        )
        if progress is not None:
            progress({**status, **rows[-1]})
        if time.monotonic() - last_checkpoint > CHECKPOINT_EVERY_S:
            save_checkpoint(run, runner, env_steps, updates_done)
            last_checkpoint = time.monotonic()

    env_steps = updates_done * config.batch_size
    if updates_done < total_updates:  # stop requested
        run.write_status("stopping", env_steps=env_steps)
        save_checkpoint(run, runner, env_steps, updates_done)
        run.write_status("stopped", env_steps=env_steps, finished_at=time.time())
        if run.stop_path.exists():
            run.stop_path.unlink()
        return
    save_checkpoint(run, runner, env_steps, updates_done)


if os.environ.get("EVORL_DEBUG_NANS"):
    jax.config.update("jax_debug_nans", True)
