"""The training loop: the only impure stage of training.

A Python loop over a jitted chunk of K PPO updates. Between chunks it times (with
`block_until_ready`), samples memory, appends metrics, updates status, checkpoints and checks for a
stop request. Compile time is measured separately and excluded from throughput. What happens
before (loading data, the run record) and after (backtest, deploy) is `pipeline`'s job.

With several processes (`distributed`, docs/scaling.md) every process runs this same loop over
one global mesh; process 0 decides when to stop and to checkpoint (`distributed.agreed`), so
every process takes the same branch before the next collective.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import psutil

from . import distributed, evolution, sharding
from .backends import device_memory
from .checkpoints import load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .data import Market
from .market_data import MarketData
from .ppo import METRIC_NAMES, PPO, Hyper, Runner, update_flops
from .provenance import device_memory_mb, host_rss_mb
from .rundir import RunDir

CHECKPOINT_EVERY_S = 60.0
TARGET_CHUNK_S = 2.0
# Losses that must stay finite; a NaN/inf in one of them (or in the parameters) ends the run.
DIVERGENCE_METRICS = ("policy_loss", "value_loss", "entropy", "approx_kl")
# Rough sustained FLOP rates used only to choose how many updates go in one compiled chunk.
ASSUMED_FLOPS = {"cpu": 4e10, "gpu": 2e13, "cuda": 2e13, "rocm": 1e13, "metal": 3e12, "METAL": 3e12}


def choose_updates_per_chunk(config: TrainConfig, obs_size: int, remaining: int) -> int:
    """Updates per compiled chunk: the configured number, else about TARGET_CHUNK_S of work.

    The automatic choice prefers a divisor of ``remaining`` (down to a quarter of the target), so
    that the last chunk has the size of the others: a smaller tail needs a compile of its own,
    which showed as a stall at 100% on the Live page. ``train`` compiles any tail up front.
    """
    if config.updates_per_chunk > 0:
        return max(1, min(config.updates_per_chunk, remaining))
    flops = update_flops(config, obs_size) * config.members
    rate = ASSUMED_FLOPS.get(jax.default_backend(), 4e10)
    target = max(1, min(int(TARGET_CHUNK_S * rate / max(flops, 1.0)), 64, remaining))
    lowest = max(1, -(-target // 4))
    return next((d for d in range(target, lowest - 1, -1) if remaining % d == 0), target)


class TrainingDiverged(RuntimeError):
    """A loss or a network parameter became NaN or infinite; the message names the update."""


def check_finite(metrics: dict[str, np.ndarray], state: Any, updates_before: int, evolving: bool = False) -> None:
    """Raise TrainingDiverged when a chunk's losses ([members, K] per metric) or the parameters after
    it are not finite, naming the first such update (and member). Called once per chunk, before
    anything of it is saved, so the checkpoint on disk stays the last finite one. A PBT population
    fails only when every member has diverged: its rounds replace a diverged member (non-finite
    fitness ranks last) with a copy of a good one."""
    runner = getattr(state, "runner", state)
    members, k = next(iter(metrics.values())).shape
    finite = np.ones(members, dtype=bool)
    for leaf in jax.tree_util.tree_leaves(runner.params):
        # a collective with several processes (members may live on other hosts): every process checks
        finite &= np.asarray(distributed.gather(jnp.isfinite(leaf).reshape(members, -1).all(axis=1)))
    if evolving and finite.any():
        return
    for i in range(k):
        for name in DIVERGENCE_METRICS:
            value = metrics[name][:, i] if name in metrics else np.zeros(members)
            bad = np.flatnonzero(~np.isfinite(value))
            if bad.size:
                member = f", member {bad[0]}" if members > 1 else ""
                raise TrainingDiverged(f"diverged at update {updates_before + i + 1}{member} "
                                       f"({name} = {value[bad[0]]})")
    if not finite.all():
        member = f", member {np.flatnonzero(~finite)[0]}" if members > 1 else ""
        raise TrainingDiverged(f"diverged by update {updates_before + k}{member} (network parameters are not finite)")


def memory_parts(config: TrainConfig, obs_size: int, data_shards: int = 1) -> tuple[float, float]:
    """Bytes of one member on one device, (held, working): held for the whole run (network
    parameters with their gradients and Adam moments, env states and observations), and working
    only while its update runs (the rollout: observations, actions, log-probs, values, rewards, dones,
    advantages, targets, and its shuffled copy; the activations of one minibatch forward and
    backward pass). With `data_shards` the env batch, rollout and minibatch are split over devices;
    parameters and optimiser state are whole on each."""
    widths = [obs_size, *config.hidden]
    layer_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    head = config.hidden[-1] * (len(config.positions) + 1) + len(config.positions) + 1
    params = 2 * layer_params + head  # actor and critic
    per_sample = obs_size + 8  # rollout row: observation + scalars
    rollout = config.batch_size * per_sample * 2  # the rollout and its shuffled copy
    activations = config.minibatch_size * (2 * sum(config.hidden) + obs_size) * 3
    held = 4 * 4 * params + 4 * config.num_envs * (obs_size + 8) / data_shards
    working = 4 * (rollout + activations) / data_shards
    return float(held), float(working)


def memory_estimate(config: TrainConfig, obs_size: int, population_shards: int = 1, data_shards: int = 1,
                    group: int | None = None) -> float:
    """Bytes a run needs on each device, estimated before compiling (`memory_parts` per member):
    every member's held bytes, plus the working bytes of the members that update side by side
    (all of them, or `group` when members run in groups, `evolution.over_members`). An estimate,
    good to a factor of about two (docs/evolution.md); used to refuse populations that cannot fit.
    On a mesh, members are split over `population_shards` devices (one vmap on each)."""
    held, working = memory_parts(config, obs_size, data_shards)
    members = math.ceil(config.members / population_shards)
    side_by_side = members if group is None else min(group, members)
    return held * members + working * side_by_side


def available_memory_bytes() -> float:
    """What a run may use on each device: this process's first device's free memory where the
    backend reports it (GPU), else the host's available memory (CPU)."""
    memory = device_memory(jax.local_devices()[0]) or {}
    if "limit_mb" in memory:
        return (memory["limit_mb"] - memory.get("in_use_mb", 0.0)) * 2**20
    return float(psutil.virtual_memory().available)


def mesh_shards(members: int, devices: int) -> tuple[int, int]:
    """(population shards, data shards) of the loop's mesh: members first (a member per device
    needs no communication), the env batch takes the rest. (1, 1) on one device."""
    population_shards = math.gcd(members, devices) if members > 1 else 1
    return population_shards, devices // population_shards


def check_fits(config: TrainConfig, obs_size: int, available: float | None = None, population_shards: int = 1,
               data_shards: int = 1) -> None:
    """Refuse, before compiling, a run whose estimated memory per device exceeds what is available,
    naming the number of members (or the network size) that would fit. On one device, members in
    groups (`evolution.member_group`) need working memory for one group only."""
    available = available_memory_bytes() if available is None else available
    group = evolution.member_group(config) if population_shards * data_shards == 1 else None
    need = memory_estimate(config, obs_size, population_shards, data_shards, group)
    if need <= available:
        return
    held, working = memory_parts(config, obs_size, data_shards)
    fit = 0  # members per device that fit: held bytes for each, working bytes for those side by side
    while fit + 1 < config.members and \
            held * (fit + 1) + working * min(group or fit + 1, fit + 1) <= available:
        fit += 1
    fit *= population_shards
    gib = 2**30
    what = f"{config.members} members" if config.members > 1 else "one agent"
    where = " per device" if population_shards * data_shards > 1 else ""
    hint = (f"at most {fit} members fit; use --population/--seeds {max(fit, 1)} or a smaller network"
            if fit >= 1 else "a smaller network (--hidden), batch (--num-envs, --num-steps) or minibatch fits")
    field = "population" if config.evolving else ("seeds" if config.members > 1 else "hidden")
    verb = "need" if config.members > 1 else "needs"
    raise ConfigError(f"{field}: {what} {verb} about {need / gib:.1f} GiB{where}, {available / gib:.1f} GiB is "
                      f"available; {hint}")


def init_runner(ppo: PPO, config: TrainConfig, data: MarketData) -> Runner:
    """The runner of a run: one agent seeded with `seed`, or `members` agents with seeds
    seed, seed+1, ... stacked on a leading axis (member k starts exactly as a solo run of seed+k)."""
    if config.members == 1:
        return ppo.init(jax.random.PRNGKey(config.seed), data)
    keys = jnp.stack([jax.random.PRNGKey(config.seed + k) for k in range(config.members)])
    return jax.vmap(ppo.init, in_axes=(0, None))(keys, data)


def init_state(ppo: PPO, config: TrainConfig, data: MarketData) -> Runner | evolution.Population:
    """What the loop carries: a runner (one agent or independent seeds) or a PBT population."""
    runner = init_runner(ppo, config, data)
    return evolution.init_population(runner, config) if config.evolving else runner


def chunk_program(ppo: PPO, config: TrainConfig, num_updates: int, with_round: bool = False,
                  spmd_axis_name: str | None = None):
    """The pure function one compiled chunk runs: (state, data) -> (state, metrics, PBT report or None).
    `num_updates` updates of one runner, of every seed (vmapped, market data shared), or of every
    member of a population followed by one PBT round (`with_round`)."""
    if config.evolving:
        return evolution.chunk_program(ppo, config, num_updates, with_round, spmd_axis_name)

    def chunk(runner: Runner, data: MarketData):
        return ppo.run_updates(runner, data, num_updates)

    program = chunk if config.members == 1 else evolution.over_members(
        chunk, evolution.member_group(config), config.members, spmd_axis_name)

    def with_no_report(runner: Runner, data: MarketData):
        runner, metrics = program(runner, data)
        return runner, metrics, None

    return with_no_report


def pbt_chunk_size(k: int, interval: int) -> int:
    """The largest chunk size <= k that divides the PBT interval, so rounds fall on chunk ends."""
    return max(d for d in range(1, min(k, interval) + 1) if interval % d == 0)


def train(config: TrainConfig, run: RunDir, market: Market, *, stop_event: threading.Event | None = None,
          resume: bool = False, progress: Callable[[dict[str, Any]], None] | None = None) -> bool:
    """Train (or resume from the checkpoint) until the configured number of updates or a stop request.

    Writes status (compiling -> running -> stopping -> stopped), metrics.jsonl and the checkpoint.
    Returns True when every update is done (the final checkpoint is saved), False when stopped.
    """
    data = market.data
    members = config.members
    if config.evolving and market.val_days != config.val_days:
        raise ConfigError(f"val_days: PBT needs the market's validation window ({market.val_days} days) to be "
                          f"the config's ({config.val_days})")
    population_shards, data_shards = mesh_shards(members, jax.device_count())
    check_fits(config, PPO(config, data.features.shape[-1]).obs_size, population_shards=population_shards,
               data_shards=data_shards)
    total_updates = config.num_updates
    total_steps = config.total_env_steps
    steps_per_update = config.batch_size * members  # env steps of one update of every member

    run.write_status("compiling", started_at=time.time())
    state = init_state(PPO(config, data.features.shape[-1]), config, data)
    updates_done = 0
    if resume:
        state, meta = load_checkpoint(run, state)
        updates_done = int(meta["updates_done"])
        run.truncate_metrics(updates_done * config.batch_size)
        run.truncate_population(updates_done)
    elif config.evolving:
        run.append_population("hyperparams", hyperparam_rows(state.runner.hyper, 0, 0))

    # More than one device (of every process): split the env batch over all of them (data-parallel;
    # sharding.py) and, with members, the population; device_put places host-identical values.
    jit_kwargs: dict[str, Any] = {}
    batch_constraint = None
    mesh_shape = None
    spmd_axis_name = None
    if jax.device_count() > 1:
        runner = state.runner if config.evolving else state
        layout = sharding.layout(runner, config, population=members > 1, population_shards=population_shards)
        spmd_axis_name = sharding.POPULATION_AXIS if members > 1 else None
        shardings = layout.runner
        if config.evolving:
            shardings = evolution.Population(layout.runner, layout.data, layout.data)
        state = jax.device_put(state, shardings)
        data = jax.device_put(data, layout.data)
        jit_kwargs = {"in_shardings": (shardings, layout.data), "out_shardings": (shardings, layout.data, layout.data)}
        batch_constraint = layout.minibatch_constraint
        mesh_shape = dict(layout.mesh.shape)
    ppo = PPO(config, data.features.shape[-1], batch_constraint=batch_constraint)

    chunk_fns: dict[tuple[int, bool], Any] = {}
    compile_seconds = 0.0

    def compiled(k: int, with_round: bool):
        nonlocal compile_seconds
        if (k, with_round) not in chunk_fns:
            t0 = time.perf_counter()
            fn = jax.jit(chunk_program(ppo, config, k, with_round, spmd_axis_name), donate_argnums=0, **jit_kwargs)
            chunk_fns[k, with_round] = fn.lower(state, data).compile()
            compile_seconds += time.perf_counter() - t0
        return chunk_fns[k, with_round]

    def round_due(k_now: int) -> bool:
        return config.evolving and (updates_done + k_now) % config.pbt_interval == 0

    def should_stop() -> bool:
        return (stop_event is not None and stop_event.is_set()) or run.stop_requested()

    k = choose_updates_per_chunk(config, ppo.obs_size, max(total_updates - updates_done, 1))
    if config.evolving:
        k = pbt_chunk_size(k, config.pbt_interval)
    if updates_done < total_updates:
        compiled(k, round_due(k))
        tail = (total_updates - updates_done) % k
        if tail:  # the tail chunk too, so compile time is all up front and 100% never stalls
            compiled(tail, config.evolving and total_updates % config.pbt_interval == 0)
    run.write_status("running", compile_seconds=compile_seconds, env_steps=updates_done * steps_per_update,
                     total_steps=total_steps, backend=jax.default_backend(), mesh=mesh_shape, members=members,
                     processes=jax.process_count())

    train_seconds = 0.0
    session_updates = 0
    last_checkpoint = time.monotonic()
    wall_start = time.time()
    peak_rss = host_rss_mb()
    while updates_done < total_updates:
        if distributed.agreed(should_stop()):
            break
        k_now = min(k, total_updates - updates_done)
        fn = compiled(k_now, round_due(k_now))
        t0 = time.perf_counter()
        state, metrics, report = fn(state, data)
        metrics = jax.block_until_ready(metrics)
        dt = time.perf_counter() - t0
        train_seconds += dt
        # [K] per metric for one agent, [members, K] for several
        metrics = {name: np.asarray(metrics[name], dtype=np.float64).reshape(members, k_now)
                   for name in METRIC_NAMES}
        check_finite(metrics, state, updates_done, config.evolving)
        rss = host_rss_mb()
        peak_rss = max(peak_rss, rss)
        dev_mem, dev_peak = device_memory_mb(), device_memory_mb("peak_mb")
        steps_per_sec = k_now * steps_per_update / dt
        rows = []
        for i in range(k_now):
            u = updates_done + i + 1
            timing = {"update": u, "env_steps": u * config.batch_size,
                      "wall_time": time.time() - wall_start - dt * (k_now - 1 - i) / k_now,
                      "train_seconds": train_seconds - dt * (k_now - 1 - i) / k_now,
                      "steps_per_sec": steps_per_sec, "updates_per_sec": k_now / dt,
                      "host_rss_mb": rss, "device_mem_mb": dev_mem,
                      "device_peak_mb": dev_peak}
            for m in range(members):
                row = dict(timing, member=m) if members > 1 else dict(timing)
                row.update({name: float(metrics[name][m, i]) for name in METRIC_NAMES})
                rows.append(row)
        run.append_metrics(rows)
        if report is not None:
            write_round(run, jax.device_get(report), updates_done + k_now, int(state.round))
        updates_done += k_now
        session_updates += k_now
        env_steps = updates_done * steps_per_update
        eta = (total_updates - updates_done) * train_seconds / session_updates
        status = run.write_status(
            "running", env_steps=env_steps, total_steps=total_steps, updates_done=updates_done,
            steps_per_sec=steps_per_sec, train_seconds=train_seconds, eta_seconds=eta,
            peak_host_rss_mb=peak_rss, compile_seconds=compile_seconds,
        )
        if progress is not None:
            progress({**status, **rows[-1]})
        if distributed.agreed(time.monotonic() - last_checkpoint > CHECKPOINT_EVERY_S):
            save_checkpoint(run, state, env_steps, updates_done)
            last_checkpoint = time.monotonic()

    env_steps = updates_done * steps_per_update
    if updates_done < total_updates:  # stop requested
        run.write_status("stopping", env_steps=env_steps)
        save_checkpoint(run, state, env_steps, updates_done)
        run.write_status("stopped", env_steps=env_steps, finished_at=time.time())
        run.clear_stop()
        return False
    save_checkpoint(run, state, env_steps, updates_done)
    return True


def hyperparam_rows(hyper: Hyper, update: int, pbt_round: int, report: Any = None) -> list[dict[str, Any]]:
    """population/hyperparams.jsonl: each member's hyperparameters (and fitness) after a round."""
    values = {name: np.asarray(getattr(hyper, name), np.float64) for name in Hyper._fields}
    rows = []
    for m in range(len(values["lr"])):
        row = {"update": update, "round": pbt_round, "member": m, **{n: float(v[m]) for n, v in values.items()}}
        if report is not None:
            row.update(fitness=float(report.fitness[m]), replaced=bool(report.replaced[m]),
                       donor=int(report.donor[m]))
        rows.append(row)
    return rows


def write_round(run: RunDir, report: Any, update: int, pbt_round: int) -> None:
    """One PBT round: every member's hyperparameters and fitness, and an exploit/explore event per
    replaced member (who copied whom, old -> new hyperparameters) in population/lineage.jsonl."""
    run.append_population("hyperparams", hyperparam_rows(report.after, update, pbt_round, report))
    events = []
    for m in np.flatnonzero(report.replaced):
        donor = int(report.donor[m])
        events.append({
            "update": update, "round": pbt_round, "member": int(m), "donor": donor,
            "fitness": float(report.fitness[m]), "donor_fitness": float(report.fitness[donor]),
            "old": {n: float(getattr(report.before, n)[m]) for n in Hyper._fields},
            "donor_hyper": {n: float(getattr(report.before, n)[donor]) for n in Hyper._fields},
            "new": {n: float(getattr(report.after, n)[m]) for n in Hyper._fields},
        })
    run.append_population("lineage", events)
