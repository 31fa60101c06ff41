"""The training loop: the only impure stage of training.

A Python loop over a jitted chunk of K PPO updates. Between chunks it times (with
`block_until_ready`), samples memory, appends metrics, updates status, checkpoints and checks for a
stop request. Compile time is measured separately and excluded from throughput. What happens
before (loading data, the run record) and after (backtest, deploy) is `pipeline`'s job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from . import sharding
from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import Market
from .ppo import METRIC_NAMES, PPO, update_flops
from .provenance import device_memory_mb, host_rss_mb
from .rundir import RunDir

CHECKPOINT_EVERY_S = 60.0
TARGET_CHUNK_S = 2.0
# Rough sustained FLOP rates used only to choose how many updates go in one compiled chunk.
_ASSUMED_FLOPS = {"cpu": 4e10, "gpu": 2e13, "cuda": 2e13, "rocm": 1e13, "metal": 3e12, "METAL": 3e12}


def choose_updates_per_chunk(config: TrainConfig, obs_size: int, remaining: int) -> int:
    """Updates per compiled chunk: the configured number, else about TARGET_CHUNK_S of work.

    The automatic choice prefers a divisor of ``remaining`` (down to a quarter of the target), so
    that the last chunk has the size of the others: a smaller tail needs a compile of its own,
    which showed as a stall at 100% on the Live page. ``train`` compiles any tail up front.
    """
    if config.updates_per_chunk > 0:
        return max(1, min(config.updates_per_chunk, remaining))
    flops = update_flops(config, obs_size)
    rate = _ASSUMED_FLOPS.get(jax.default_backend(), 4e10)
    target = max(1, min(int(TARGET_CHUNK_S * rate / max(flops, 1.0)), 64, remaining))
    lowest = max(1, -(-target // 4))
    return next((d for d in range(target, lowest - 1, -1) if remaining % d == 0), target)


def train(config: TrainConfig, run: RunDir, market: Market, *, stop_event: threading.Event | None = None,
          resume: bool = False, progress: Callable[[dict[str, Any]], None] | None = None) -> bool:
    """Train (or resume from the checkpoint) until the configured number of updates or a stop request.

    Writes status (compiling -> running -> stopping -> stopped), metrics.jsonl and the checkpoint.
    Returns True when every update is done (the final checkpoint is saved), False when stopped.
    """
    data = market.data
    total_updates = config.num_updates
    total_steps = total_updates * config.batch_size

    run.write_status("compiling", started_at=time.time())
    runner = PPO(config, data.features.shape[-1]).init(jax.random.PRNGKey(config.seed), data)
    updates_done = 0
    if resume:
        runner, meta = load_checkpoint(run, runner)
        updates_done = int(meta.get("updates_done", int(runner.update_step)))
        run.truncate_metrics(updates_done * config.batch_size)

    # More than one device: split the env batch over all of them (data-parallel; sharding.py).
    jit_kwargs: dict[str, Any] = {}
    batch_constraint = None
    mesh_shape = None
    if jax.device_count() > 1:
        layout = sharding.layout(runner, config)
        runner = jax.device_put(runner, layout.runner)
        data = jax.device_put(data, layout.data)
        jit_kwargs, batch_constraint = layout.jit_kwargs, layout.minibatch_constraint
        mesh_shape = dict(layout.mesh.shape)
    ppo = PPO(config, data.features.shape[-1], batch_constraint=batch_constraint)

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
        if (total_updates - updates_done) % k:  # the tail chunk too, so compile time is all up front
            compiled((total_updates - updates_done) % k)
    run.write_status("running", compile_seconds=compile_seconds, env_steps=updates_done * config.batch_size,
                     total_steps=total_steps, backend=jax.default_backend(), mesh=mesh_shape)

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
        run.clear_stop()
        return False
    save_checkpoint(run, runner, env_steps, updates_done)
    return True
