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

import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from evorl_core import modes
from evorl_core.agents import pbt, sharding
from evorl_core.agents.build import make_ppo
from evorl_core.agents.checkpoints import load_checkpoint, save_checkpoint
from evorl_core.agents.ppo import METRIC_NAMES, PPO, Hyper, Runner
from evorl_core.config import ConfigError, TrainConfig
from evorl_core.data import Market
from evorl_core.data.arrays import MarketData
from evorl_core.store.rundir import RunDir
from evorl_core.store.tensorboard import EventWriter, training_started_at
from evorl_core.system import distributed
from evorl_core.system.provenance import device_memory_mb, host_rss_mb
from evorl_core.training.phases import COMPILING, TRAINING, PhaseClock
from evorl_core.training.sizing import check_fits, choose_updates_per_chunk, mesh_shards, pbt_chunk_size

CHECKPOINT_EVERY_S = 60.0
# Losses that must stay finite; a NaN/inf in one of them (or in the parameters) ends the run.
DIVERGENCE_METRICS = ("policy_loss", "value_loss", "entropy", "approx_kl")


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


def init_runner(ppo: PPO, config: TrainConfig, data: MarketData) -> Runner:
    """The runner of a run: one agent seeded with `seed`, or `members` agents with seeds
    seed, seed+1, ... stacked on a leading axis (member k starts exactly as a solo run of seed+k)."""
    if config.members == 1:
        return ppo.init(jax.random.PRNGKey(config.seed), data)
    keys = jnp.stack([jax.random.PRNGKey(config.seed + k) for k in range(config.members)])
    return jax.vmap(ppo.init, in_axes=(0, None))(keys, data)


def init_state(ppo: PPO, config: TrainConfig, data: MarketData) -> Runner | pbt.Population:
    """What the loop carries: a runner (one agent or independent seeds) or a PBT population."""
    runner = init_runner(ppo, config, data)
    return pbt.init_population(runner, config) if config.evolving else runner


def chunk_program(ppo: PPO, config: TrainConfig, num_updates: int, with_round: bool = False,
                  spmd_axis_name: str | None = None):
    """The pure function one compiled chunk runs: (state, data) -> (state, metrics, PBT report or None).
    `num_updates` updates of one runner, of every seed (vmapped, market data shared), or of every
    member of a population followed by one PBT round (`with_round`)."""
    if config.evolving:
        return pbt.chunk_program(ppo, config, num_updates, with_round, fitness_program(ppo, config), spmd_axis_name)

    def chunk(runner: Runner, data: MarketData):
        return ppo.run_updates(runner, data, num_updates)

    program = chunk if config.members == 1 else pbt.over_members(
        chunk, pbt.member_group(config), config.members, spmd_axis_name)

    def with_no_report(runner: Runner, data: MarketData):
        runner, metrics = program(runner, data)
        return runner, metrics, None

    return with_no_report


def fitness_program(ppo: PPO, config: TrainConfig) -> pbt.Fitness:
    """fitness(params, data): one member's validation fitness under the run's trading mode."""
    mode = modes.get(config)

    def fitness(params: Any, data: MarketData):
        return mode.validation_fitness(ppo.action_probabilities, params, data, config.val_days, ppo.env)

    return fitness


def train(config: TrainConfig, run: RunDir, market: Market, *, stop_event: threading.Event | None = None,
          resume: bool = False, progress: Callable[[dict[str, Any]], None] | None = None,
          phases: PhaseClock | None = None, events: EventWriter | None = None) -> bool:
    """Train (or resume from the checkpoint) until the configured number of updates or a stop request.

    Writes status (compiling -> running -> stopping -> stopped, with the `phases` compiling and
    training timed), metrics.jsonl (and the same rows as TensorBoard `events`) and the checkpoint.
    Returns True when every update is done (the final checkpoint is saved), False when stopped.
    """
    phases = phases if phases is not None else PhaseClock()
    data = market.data
    members = config.members
    if config.evolving and market.val_days != config.val_days:
        raise ConfigError(f"val_days: PBT needs the market's validation window ({market.val_days} days) to be "
                          f"the config's ({config.val_days})")
    population_shards, data_shards = mesh_shards(members, jax.device_count())
    ppo = make_ppo(config)
    check_fits(config, population_shards=population_shards,
               data_shards=data_shards)
    total_updates = config.num_updates
    total_steps = config.total_env_steps
    steps_per_update = config.batch_size * members  # env steps of one update of every member

    run.write_status("compiling", started_at=time.time(), **phases.start(COMPILING))
    state = init_state(ppo, config, data)
    updates_done = 0
    if resume:
        state, meta = load_checkpoint(run, state)
        updates_done = int(meta["updates_done"])
        run.truncate_metrics(updates_done * config.batch_size)
        run.truncate_population(updates_done)
        if events is not None:
            events.rewrite(run.read_metrics(), training_started_at(run.read_status() or {}))
    elif config.evolving:
        run.append_population("hyperparams", hyperparam_rows(state.runner.hyper, 0, 0))

    # More than one device (of every process): split the env batch over all of them (data-parallel;
    # sharding.py) and, with members, the population; device_put places host-identical values.
    jit_kwargs: dict[str, Any] = {}
    mesh_shape = None
    spmd_axis_name = None
    if jax.device_count() > 1:
        runner = state.runner if config.evolving else state
        layout = sharding.layout(runner, config, population=members > 1, population_shards=population_shards)
        spmd_axis_name = sharding.POPULATION_AXIS if members > 1 else None
        shardings = layout.runner
        if config.evolving:
            shardings = pbt.Population(layout.runner, layout.data, layout.data)
        state = jax.device_put(state, shardings)
        data = jax.device_put(data, layout.data)
        jit_kwargs = {"in_shardings": (shardings, layout.data), "out_shardings": (shardings, layout.data, layout.data)}
        mesh_shape = dict(layout.mesh.shape)
        # the same agent, keeping each minibatch split over the devices (data-parallel gradients)
        ppo = make_ppo(config, batch_constraint=layout.minibatch_constraint)

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

    k = choose_updates_per_chunk(config, max(total_updates - updates_done, 1))
    if config.evolving:
        k = pbt_chunk_size(k, config.pbt_interval)
    if updates_done < total_updates:
        compiled(k, round_due(k))
        tail = (total_updates - updates_done) % k
        if tail:  # the tail chunk too, so compile time is all up front and 100% never stalls
            compiled(tail, config.evolving and total_updates % config.pbt_interval == 0)
    wall_start = time.time()
    run.write_status("running", compile_seconds=compile_seconds, env_steps=updates_done * steps_per_update,
                     total_steps=total_steps, backend=jax.default_backend(), mesh=mesh_shape, members=members,
                     processes=jax.process_count(), training_started_at=wall_start, **phases.start(TRAINING))

    train_seconds = 0.0
    session_updates = 0
    last_checkpoint = time.monotonic()
    peak_rss = host_rss_mb()
    update_rates: list[float] = []  # env steps/s of each update of this session (its chunk's rate)
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
        update_rates += [steps_per_sec] * k_now
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
        if events is not None:
            events.write_rows(rows)
        if report is not None:
            write_round(run, jax.device_get(report), updates_done + k_now, int(state.round))
        updates_done += k_now
        session_updates += k_now
        env_steps = updates_done * steps_per_update
        eta = (total_updates - updates_done) * train_seconds / session_updates
        status = run.write_status(
            "running", env_steps=env_steps, total_steps=total_steps, updates_done=updates_done,
            steps_per_sec=steps_per_sec, median_steps_per_sec=float(np.median(update_rates)),
            train_seconds=train_seconds, eta_seconds=eta,
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
        run.write_status("stopped", env_steps=env_steps, finished_at=time.time(), **phases.finish())
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
