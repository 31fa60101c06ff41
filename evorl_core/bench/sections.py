"""The measurements of the engine: env throughput, end-to-end training (a worker), the peak matmul
rate behind FLOP utilisation, and steps/s over num_envs (a worker). Workers run in a fresh process
(harness.run_worker) and return JSON-serialisable dicts; the others run in the bench's process."""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from evorl_core import modes
from evorl_core.agents import pbt
from evorl_core.agents.build import make_ppo, observation_size
from evorl_core.bench.plan import BENCH_PRESETS, bench_config, bench_market, stat
from evorl_core.costs import cost_model
from evorl_core.modes.single.reference import ReferenceTradingEnv
from evorl_core.system.provenance import device_memory_mb as provenance_device_mb
from evorl_core.training import loop, pipeline, sizing
from evorl_core.training.sizing import update_flops


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB, as the OS accounts it."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def reference_envs(market, config, n: int) -> list[ReferenceTradingEnv]:
    """`n` NumPy reference envs over the market's arrays."""
    d = {k: np.asarray(v) for k, v in market.data._asdict().items()}
    costs = cost_model(config)
    return [ReferenceTradingEnv(d["open"], d["close"], d["features"], d["length"], d["first_index"],
                                d["train_end"], config.positions, costs.c_buy, costs.c_sell, config.execution,
                                config.window, config.episode_len, sell_day_charge=costs.sell_day_charge_rupees,
                                initial_capital=config.initial_capital) for _ in range(n)]


def random_reset(ref, market, rng) -> np.ndarray:
    """The JAX env's start distribution: uniform symbol, uniform day in [first_index, train_end - 2]."""
    s = int(rng.integers(len(ref.length)))
    t = int(rng.integers(ref.first_index[s], ref.train_end[s] - 1))
    return ref.reset_to(s, t)


# ------------------------------------------------------------------------------------------
# env section
# ------------------------------------------------------------------------------------------
SCAN_INCLUDES = ("one jitted scan of vectorised env steps with auto-reset (a fresh random start drawn for "
                 "every env at every step) and the observation each step returns, all consumed; the random "
                 "actions and step keys are drawn before the timed call, so the policy's sampling is not in it")


def scan_timer(env, data, num_envs: int, steps: int, inputs: bool = False) -> tuple[Callable[[], float], float]:
    """(sample, compile_s): `sample()` runs `steps` vectorised steps of `num_envs` envs in one jitted
    scan and returns env steps/s; the compile time is excluded from every sample. Actions are uniform over a discrete env's
    choices, standard normal scores for a simplex env; they and the per-step keys are drawn once before
    timing (a portfolio step's N + 1 normals would otherwise cost more than the step itself).
    `inputs`: also build what the network reads from each observation (`env.network_input`: the
    portfolio env's feature windows; the single-asset env's observation already holds its window)."""
    params = env.params
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None, None))
    gather = jax.vmap(env.network_input, in_axes=(0, None)) if inputs and env.network_input else None

    def run(state, data, actions, keys):
        def body(state, x):
            action, env_keys = x
            obs, state, reward, done, _ = step_envs(env_keys, state, action, params, data)
            # consume the whole observation and reward so that nothing is dead code
            check = obs.sum() + reward.sum() + done.sum()
            if gather is not None:
                check = check + sum(part.sum() for part in gather(obs, data))
            return state, check

        state, checks = jax.lax.scan(body, state, (actions, keys))
        return state, checks.sum()

    key = jax.random.PRNGKey(0)
    k_reset, k_act, k_env = jax.random.split(key, 3)
    if env.action_kind == "simplex":
        actions = jax.random.normal(k_act, (steps, num_envs, env.num_actions))
    else:
        actions = jax.random.randint(k_act, (steps, num_envs), 0, env.num_actions)
    keys = jax.random.split(k_env, (steps, num_envs))
    _, state = jax.vmap(env.reset, in_axes=(0, None, None))(jax.random.split(k_reset, num_envs), params, data)
    t0 = time.perf_counter()
    fn = jax.jit(run, donate_argnums=0).lower(state, data, actions, keys).compile()
    compile_s = time.perf_counter() - t0
    box = list(jax.block_until_ready(fn(state, data, actions, keys)))  # first call: allocations

    def sample() -> float:
        t0 = time.perf_counter()
        box[:] = jax.block_until_ready(fn(box[0], data, actions, keys))
        return num_envs * steps / (time.perf_counter() - t0)

    return sample, compile_s


def scan_rate(env, data, num_envs: int, steps: int, repeats: int, inputs: bool = False) -> tuple[list[float], float]:
    """`repeats` samples of `scan_timer` in a row, and the compile time."""
    sample, compile_s = scan_timer(env, data, num_envs, steps, inputs)
    return [sample() for _ in range(repeats)], compile_s


def chunk_samples(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One metrics row per compiled chunk: the rows of a chunk share its steps/s and updates/s."""
    per_chunk, last = [], None
    for row in rows:
        key = (row["steps_per_sec"], row["updates_per_sec"])
        if key != last:
            per_chunk.append(row)
            last = key
    return per_chunk


def bench_env(p: dict[str, Any], log) -> dict[str, Any]:
    config = bench_config("quick", {"window": 8, "test_days": 20, "symbols": ("AAA", "BBB")}
                          if p["env_sizes"][0] < 64 else {})
    market = bench_market(config)
    data = market.data
    env = modes.get(config).make_env(config)
    num_actions = env.num_actions
    steps = p["env_steps"]
    out: dict[str, Any] = {"obs_size": env.observation_size, "symbols": len(config.symbols), "scan_steps": steps,
                           "jax_includes": SCAN_INCLUDES}

    for num_envs in p["env_sizes"]:
        rates, compile_s = scan_rate(env, data, num_envs, steps, p["repeats"])
        out[f"jax_{num_envs}"] = {"num_envs": num_envs, "steps_per_s": stat(rates), "compile_s": compile_s}
        log(f"  env jax {num_envs:>5} envs: {statistics.median(rates):>14,.0f} steps/s")

    ref = reference_envs(market, config, 1)[0]
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(p["repeats"]):
        actions = rng.integers(num_actions, size=p["ref_steps"])
        random_reset(ref, market, rng)
        t0 = time.perf_counter()
        for a in actions:
            _, _, done = ref.step(a)
            if done:
                random_reset(ref, market, rng)
        rates.append(p["ref_steps"] / (time.perf_counter() - t0))
    out["numpy_single"] = {"num_envs": 1, "steps_per_s": stat(rates)}
    log(f"  env numpy single env : {statistics.median(rates):>14,.0f} steps/s")

    n_loop = p["ref_loop_envs"]
    refs = reference_envs(market, config, n_loop)
    rates = []
    for _ in range(p["repeats"]):
        actions = rng.integers(num_actions, size=(p["ref_loop_steps"], n_loop))
        for r in refs:
            random_reset(r, market, rng)
        t0 = time.perf_counter()
        for row in actions:
            for r, a in zip(refs, row, strict=True):
                _, _, done = r.step(a)
                if done:
                    random_reset(r, market, rng)
        rates.append(p["ref_loop_steps"] * n_loop / (time.perf_counter() - t0))
    out[f"numpy_loop_{n_loop}"] = {"num_envs": n_loop, "steps_per_s": stat(rates)}
    log(f"  env numpy loop {n_loop:>4}   : {statistics.median(rates):>14,.0f} steps/s")
    return out


# ------------------------------------------------------------------------------------------
# train section (worker: runs in a fresh process)
# ------------------------------------------------------------------------------------------
def worker_train(args: dict[str, Any]) -> dict[str, Any]:
    overrides = dict(args["overrides"])
    if args.get("total_timesteps"):
        overrides["total_timesteps"] = args["total_timesteps"]
    config = bench_config(args["preset"], overrides)
    market = bench_market(config)
    obs_size = make_ppo(config).obs_size
    with tempfile.TemporaryDirectory(prefix="evorl-bench-") as runs:
        t0 = time.perf_counter()
        run = pipeline.run(config, runs, "bench", market=market)
        wall = time.perf_counter() - t0
        status = run.read_status()
        rows = run.read_metrics()
    per_chunk = chunk_samples(rows)
    device_mem = [r["device_mem_mb"] for r in rows if r.get("device_mem_mb") is not None]
    device_peak = [r["device_peak_mb"] for r in rows if r.get("device_peak_mb") is not None]
    return {
        "preset": config.preset,
        "config": {k: config.to_dict()[k] for k in ("num_envs", "num_steps", "minibatch_size", "epochs",
                                                     "hidden", "window", "total_timesteps")},
        "batch_size": config.batch_size,
        "updates": config.num_updates,
        "chunks": len(per_chunk),
        "steps_per_s": stat([r["steps_per_sec"] for r in per_chunk]),
        "updates_per_s": stat([r["updates_per_sec"] for r in per_chunk]),
        "update_s": stat([1.0 / r["updates_per_sec"] for r in per_chunk]),
        "compile_s": status.get("compile_seconds"),
        "train_s": status.get("train_seconds"),
        "wall_s": wall,
        "peak_host_rss_mb": peak_rss_mb(),
        "loop_peak_host_rss_mb": status.get("peak_host_rss_mb"),
        "device_memory_mb": max(device_mem) if device_mem else None,
        "device_peak_mb": max(device_peak) if device_peak else None,
        "update_flops": update_flops(config),
        "obs_size": obs_size,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
    }


# ------------------------------------------------------------------------------------------
# flops section: peak matmul rate with the network's own layer shapes
# ------------------------------------------------------------------------------------------
def layer_shapes(obs_size: int, hidden, num_actions: int) -> list[tuple[int, int]]:
    """(in, out) of every dense layer of actor and critic."""
    shapes = []
    for out in (num_actions, 1):
        sizes = [obs_size, *hidden, out]
        shapes += list(zip(sizes[:-1], sizes[1:], strict=True))
    return shapes


def peak_matmul_rate(obs_size: int, hidden, num_actions: int, batch: int, repeats: int,
                     dtype: Any = jnp.float32, matmul_precision: str | None = None) -> dict[str, Any]:
    """FLOP/s of the products one gradient step does, timed in one jitted call: per layer, the
    forward X.W, the input gradient dY.W^T (not for the first layer) and the weight gradient X^T.dY,
    at `batch` rows, with operands of `dtype` (float32, or bfloat16 as a bf16 network multiplies)
    and the products' `matmul_precision` (TensorFloat-32 for tf32).
    This is the FLOP-bound rate of the update on this device."""
    shapes = layer_shapes(obs_size, hidden, num_actions)
    first = {0, len(hidden) + 1}  # index of the input layer of actor and critic
    key = jax.random.PRNGKey(0)
    xs, ws, dys = [], [], []
    for a, b in shapes:
        k1, k2, k3, key = jax.random.split(key, 4)
        xs.append(jax.random.normal(k1, (batch, a), jnp.float32).astype(dtype))
        ws.append((jax.random.normal(k2, (a, b), jnp.float32) * 0.05).astype(dtype))
        dys.append(jax.random.normal(k3, (batch, b), jnp.float32).astype(dtype))
    flops = 0
    for i, (a, b) in enumerate(shapes):
        flops += 2 * batch * a * b * (2 if i in first else 3)

    # The products run `iters` times in one scan (a gradient step runs inside the update's scans
    # too, so one dispatch per step would understate the rate of small layers). Each iteration
    # adds the previous iteration's result to the inputs, so XLA cannot hoist the loop-invariant
    # products out of the loop; the add and max cost < 2% of the matmuls for these shapes.
    iters = int(min(64, max(1, 3e10 // flops)))
    mm = jnp.matmul

    def products(xs, ws, dys):
        def body(c, _):
            total = jnp.float32(0.0)
            step = c.astype(dtype)
            for i, (x, w, dy) in enumerate(zip(xs, ws, dys, strict=True)):
                x = x + step
                total += (jnp.max(mm(x, w, precision=matmul_precision)).astype(jnp.float32)
                          + jnp.max(mm(x.T, dy, precision=matmul_precision)).astype(jnp.float32))
                if i not in first:
                    total += jnp.max(mm(dy + step, w.T, precision=matmul_precision)).astype(jnp.float32)
            return c + 1e-30 * total, None

        return jax.lax.scan(body, jnp.float32(0.0), None, length=iters)[0]

    fn = jax.jit(products).lower(xs, ws, dys).compile()
    jax.block_until_ready(fn(xs, ws, dys))
    times = []
    for _ in range(max(repeats, 3)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(xs, ws, dys))
        times.append((time.perf_counter() - t0) / iters)
    rates = [flops / t for t in times]
    return {"batch": batch, "flops_per_step": flops, "steps_per_call": iters, "flops_per_s": stat(rates),
            "layers": shapes, "dtype": np.dtype(dtype).name, "matmul_precision": matmul_precision}


def bench_flops(p: dict[str, Any], log) -> dict[str, Any]:
    out = {}
    for preset in BENCH_PRESETS:
        config = bench_config(preset, p["flops_overrides"])
        obs_size = observation_size(config)
        peak = peak_matmul_rate(obs_size, config.hidden, len(config.positions), config.minibatch_size,
                                p["repeats"])
        out[preset] = peak
        log(f"  peak matmul {preset:<10}: {peak['flops_per_s']['median'] / 1e9:8.1f} GFLOP/s "
            f"(layer shapes of the network, batch {config.minibatch_size})")
    return out


# ------------------------------------------------------------------------------------------
# scaling: quick preset over num_envs (worker: one process, one compile per size)
# ------------------------------------------------------------------------------------------
def worker_scaling(args: dict[str, Any]) -> dict[str, Any]:
    points = []
    for num_envs in args["envs"]:
        base = bench_config("quick", {**args["overrides"], "num_envs": num_envs})
        minibatches = base.batch_size // base.minibatch_size if args["overrides"] else 8
        config = bench_config("quick", {**args["overrides"], "num_envs": num_envs,
                                        "minibatch_size": base.batch_size // minibatches})
        market = bench_market(config)
        ppo = make_ppo(config)
        runner = ppo.init(jax.random.PRNGKey(config.seed), market.data)
        k = args["updates"]
        t0 = time.perf_counter()
        fn = jax.jit(ppo.run_updates, static_argnums=2, donate_argnums=0).lower(runner, market.data, k).compile()
        compile_s = time.perf_counter() - t0
        runner, metrics = fn(runner, market.data)
        jax.block_until_ready(metrics)
        rates = []
        for _ in range(args["repeats"]):
            t0 = time.perf_counter()
            runner, metrics = fn(runner, market.data)
            jax.block_until_ready(metrics)
            rates.append(k * config.batch_size / (time.perf_counter() - t0))
        points.append({"num_envs": num_envs, "batch_size": config.batch_size,
                       "minibatch_size": config.minibatch_size, "steps_per_s": stat(rates), "compile_s": compile_s})
    return {"points": points}


# -- population: aggregate steps/s of N agents in one vmapped program (PBT rounds included) ---------
def worker_population(args: dict[str, Any]) -> dict[str, Any]:
    """One population size in a fresh process: compile, warm up, then time chunks of `pbt_interval`
    updates of every member followed by one PBT round (fitness on validation days, exploit,
    explore). Size 1 is a plain single agent (no PBT), the baseline of N separate runs."""
    size = args["size"]
    overrides = {**args["overrides"], "population": size}
    config = bench_config(args["preset"], overrides)
    market = bench_market(config)
    ppo = make_ppo(config)
    state = loop.init_state(ppo, config, market.data)
    group = pbt.member_group(config)
    k = config.pbt_interval if config.evolving else args["updates"]
    t0 = time.perf_counter()
    fn = jax.jit(loop.chunk_program(ppo, config, k, with_round=config.evolving),
                 donate_argnums=0).lower(state, market.data).compile()
    compile_s = time.perf_counter() - t0
    state, metrics, _ = fn(state, market.data)
    jax.block_until_ready(metrics)
    rates, dts = [], []
    for _ in range(args["repeats"]):
        t0 = time.perf_counter()
        state, metrics, _ = fn(state, market.data)
        jax.block_until_ready(metrics)
        dt = time.perf_counter() - t0
        dts.append(dt)
        rates.append(size * k * config.batch_size / dt)
    return {"size": size, "preset": args["preset"], "updates_per_chunk": k, "batch_size": config.batch_size,
            "steps_per_s": stat(rates), "chunk_s": stat(dts), "compile_s": compile_s,
            "update_flops": update_flops(config),
            "peak_host_rss_mb": peak_rss_mb(), "device_memory_mb": provenance_device_mb(),
            "device_peak_mb": provenance_device_mb("peak_mb"),
            "member_group": group,
            "estimated_memory_mb": sizing.memory_estimate(config, group=group) / 2**20}
