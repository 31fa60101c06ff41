"""`evorl bench`: throughput, memory, FLOP utilisation and a peer baseline, in one run.

Sections (`--only` picks some):

- env       env steps/s with random actions: the JAX env at 256 and 4096 envs (one jitted scan,
            the whole observation consumed so nothing is dead code), and the NumPy reference env
            (evorl_core/reference_env.py) as one env and as a Python loop over 256 envs.
- train     end-to-end `loop.train` of the `quick` and `production` presets on synthetic data, each
            in a fresh subprocess: env steps/s and updates/s per compiled chunk (compile excluded),
            compile time, peak host RSS of the process, device memory where the backend reports it.
- flops     model FLOP utilisation: analytic FLOPs of one update (ppo.update_flops) / measured update
            time, over the peak rate measured in this run with matmuls of the network's own layer
            shapes (forward, input-gradient and weight-gradient products at the minibatch size).
- peer      Stable-Baselines3 PPO (PyTorch, CPU) on a gymnasium wrapper of the NumPy reference env
            with the same observation, network, rollout, minibatch sizes and epochs; ratio evorl/SB3.
            Needs the optional [bench] extra; reported as not installed otherwise.
- scaling   steps/s of the quick preset over num_envs 64 ... 4096 (8 minibatches per epoch).

Every figure is the median of repeats (min and max are kept in the JSON). The JSON records the
machine, backend, devices, versions and the load average before and after: on a shared machine,
other processes slow every figure down, the peer's as much as ours.

    evorl bench [--quick] [--only env train flops peer scaling] [--repeats N] [--out PATH]
    python -m evorl_core.bench ...          (same, plus --backend auto|cpu|gpu|metal)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SECTIONS = ("env", "train", "flops", "peer", "scaling")
PRESETS = ("quick", "production")
SCALING_ENVS = (64, 128, 256, 512, 1024, 2048, 4096)
RESULT_MARK = "EVORL_BENCH_RESULT "
SCHEMA = 1

# Targets for a 2-core CPU (docs/benchmarks.md). Reported, never asserted.
TARGETS = {
    "production_vs_sb3": 2.0,
    "production_flop_fraction": 0.85,
    "quick_vs_sb3": 5.0,
    "env_steps_per_s_4096": 10e6,
    "production_peak_rss_mb": 4096.0,
    "compile_s": 20.0,
}


# ------------------------------------------------------------------------------------------
# sizes of a run: full vs --quick, and the tiny one the tests use
# ------------------------------------------------------------------------------------------
def plan(quick: bool, repeats: int | None, tiny: bool = False) -> dict[str, Any]:
    if tiny:  # tests: seconds, every code path
        return {
            "repeats": repeats or 2, "env_sizes": (8, 16), "env_steps": 10, "ref_steps": 200,
            "ref_loop_envs": 16, "ref_loop_steps": 5,
            "train": {p: {"preset": p, "total_timesteps": None, "overrides": _TINY} for p in PRESETS},
            "peer": {p: {"updates": 1, "warmup": 0, "overrides": _TINY} for p in PRESETS},
            "scaling_envs": (8, 16), "scaling_overrides": {**_TINY, "num_envs": None}, "scaling_updates": 1,
            "flops_overrides": _TINY,
        }
    r = repeats or (3 if quick else 5)
    return {
        "repeats": r,
        "env_sizes": (256, 4096),
        "env_steps": 200 if quick else 1000,
        "ref_steps": 20_000 if quick else 100_000,
        "ref_loop_envs": 256,
        "ref_loop_steps": 40 if quick else 200,
        "train": {
            # quick: the preset's own full run (25 updates); production: a few updates (each ~10-40 s
            # on a 2-core CPU), one compiled chunk per update, so each update is one timing sample.
            "quick": {"preset": "quick", "total_timesteps": None, "overrides": {}},
            "production": {"preset": "production", "total_timesteps": (3 if quick else 5) * 256 * 512,
                           "overrides": {"updates_per_chunk": 1}},
        },
        "peer": {
            "quick": {"updates": r + 1 if quick else 2 * r, "warmup": 1, "overrides": {}},
            # one SB3 production update is ~30-60 s here; --quick times a single one without warm-up
            "production": {"updates": 1 if quick else 2, "warmup": 0 if quick else 1, "overrides": {}},
        },
        "scaling_envs": SCALING_ENVS,
        "scaling_overrides": {},
        "scaling_updates": 2 if quick else 3,
        "flops_overrides": {},
    }


_TINY = {"num_envs": 8, "num_steps": 16, "minibatch_size": 32, "epochs": 1, "hidden": (16,), "window": 8,
         "test_days": 20, "total_timesteps": 8 * 16 * 3, "updates_per_chunk": 1, "symbols": ("AAA", "BBB")}


def stat(samples: list[float]) -> dict[str, Any]:
    """Median (the reported figure), min, max and the samples themselves."""
    xs = [float(x) for x in samples]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0, "samples": []}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "samples": xs}


def _config(preset: str, overrides: dict[str, Any]):
    from .config import make_config

    values = {k: v for k, v in overrides.items() if v is not None}
    return make_config(preset, data="synthetic", **values)


def _market(config):
    """The synthetic market of `--data synthetic` (deterministic); tiny configs get short histories."""
    from .data import build_market, synthetic_ohlcv

    n_days = 300 if config.window <= 8 else None
    frames = {s: synthetic_ohlcv(s, n_days=n_days, seed=config.seed) for s in config.symbols}
    return build_market(frames, window=config.window, test_days=config.test_days,
                        info={"source": "synthetic", "synthetic": True, "requested": "synthetic"})


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


# ------------------------------------------------------------------------------------------
# env section
# ------------------------------------------------------------------------------------------
def bench_env(p: dict[str, Any], log) -> dict[str, Any]:
    import jax

    from . import env as trading_env
    from .config import make_config

    config = make_config("quick", data="synthetic", **({"window": 8, "test_days": 20, "symbols": ("AAA", "BBB")}
                                                        if p["env_sizes"][0] < 64 else {}))
    market = _market(config)
    data = market.data
    params = trading_env.make_params(config)
    num_actions = len(config.positions)
    steps = p["env_steps"]
    out: dict[str, Any] = {"obs_size": trading_env.observation_size(config.window, data.features.shape[-1]),
                           "symbols": len(config.symbols), "scan_steps": steps}

    step_envs = jax.vmap(trading_env.step, in_axes=(0, 0, 0, None, None))
    for num_envs in p["env_sizes"]:
        def run(key, state, data, num_envs=num_envs):
            k_act, k_env, key = jax.random.split(key, 3)
            # as in the PPO rollout: all randomness drawn up front, one vectorised call each
            actions = jax.random.randint(k_act, (steps, num_envs), 0, num_actions)
            keys = jax.random.split(k_env, (steps, num_envs))

            def body(state, x):
                action, env_keys = x
                obs, state, reward, done, _ = step_envs(env_keys, state, action, params, data)
                # consume the whole observation and reward so that nothing is dead code
                return state, obs.sum() + reward.sum() + done.sum()

            state, checks = jax.lax.scan(body, state, (actions, keys))
            return key, state, checks.sum()

        key = jax.random.PRNGKey(0)
        _, state = jax.vmap(trading_env.reset, in_axes=(0, None, None))(jax.random.split(key, num_envs),
                                                                           params, data)
        t0 = time.perf_counter()
        fn = jax.jit(run, donate_argnums=1).lower(key, state, data).compile()
        compile_s = time.perf_counter() - t0
        key, state, _ = jax.block_until_ready(fn(key, state, data))  # first call: allocations
        rates = []
        for _ in range(p["repeats"]):
            t0 = time.perf_counter()
            key, state, _ = jax.block_until_ready(fn(key, state, data))
            rates.append(num_envs * steps / (time.perf_counter() - t0))
        out[f"jax_{num_envs}"] = {"num_envs": num_envs, "steps_per_s": stat(rates), "compile_s": compile_s}
        log(f"  env jax {num_envs:>5} envs: {statistics.median(rates):>14,.0f} steps/s")

    ref = _reference_envs(market, config, 1)[0]
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(p["repeats"]):
        actions = rng.integers(num_actions, size=p["ref_steps"])
        _random_reset(ref, market, rng)
        t0 = time.perf_counter()
        for a in actions:
            _, _, done = ref.step(a)
            if done:
                _random_reset(ref, market, rng)
        rates.append(p["ref_steps"] / (time.perf_counter() - t0))
    out["numpy_single"] = {"num_envs": 1, "steps_per_s": stat(rates)}
    log(f"  env numpy single env : {statistics.median(rates):>14,.0f} steps/s")

    n_loop = p["ref_loop_envs"]
    refs = _reference_envs(market, config, n_loop)
    rates = []
    for _ in range(p["repeats"]):
        actions = rng.integers(num_actions, size=(p["ref_loop_steps"], n_loop))
        for r in refs:
            _random_reset(r, market, rng)
        t0 = time.perf_counter()
        for row in actions:
            for r, a in zip(refs, row, strict=True):
                _, _, done = r.step(a)
                if done:
                    _random_reset(r, market, rng)
        rates.append(p["ref_loop_steps"] * n_loop / (time.perf_counter() - t0))
    out[f"numpy_loop_{n_loop}"] = {"num_envs": n_loop, "steps_per_s": stat(rates)}
    log(f"  env numpy loop {n_loop:>4}   : {statistics.median(rates):>14,.0f} steps/s")
    return out


def _reference_envs(market, config, n: int):
    from .reference_env import ReferenceTradingEnv

    d = {k: np.asarray(v) for k, v in market.data._asdict().items()}
    return [ReferenceTradingEnv(d["open"], d["close"], d["features"], d["length"], d["first_index"],
                                d["test_start"], config.positions, config.cost, config.execution,
                                config.window, config.episode_len) for _ in range(n)]


def _random_reset(ref, market, rng) -> np.ndarray:
    """The JAX env's start distribution: uniform symbol, uniform day in [first_index, test_start - 2]."""
    s = int(rng.integers(len(ref.length)))
    t = int(rng.integers(ref.first_index[s], ref.test_start[s] - 1))
    return ref.reset_to(s, t)


# ------------------------------------------------------------------------------------------
# train section (worker runs in a fresh process)
# ------------------------------------------------------------------------------------------
def worker_train(args: dict[str, Any]) -> dict[str, Any]:
    import jax

    from . import loop
    from .ppo import PPO, update_flops

    overrides = dict(args["overrides"])
    if args.get("total_timesteps"):
        overrides["total_timesteps"] = args["total_timesteps"]
    config = _config(args["preset"], overrides)
    market = _market(config)
    obs_size = PPO(config, market.data.features.shape[-1]).obs_size
    with tempfile.TemporaryDirectory(prefix="evorl-bench-") as runs:
        t0 = time.perf_counter()
        run = loop.train(config, runs, "bench", market=market)
        wall = time.perf_counter() - t0
        status = run.read_status()
        rows = run.read_metrics()
    # one sample per compiled chunk (the rows of a chunk share its steps/s)
    per_chunk = []
    last = None
    for row in rows:
        key = (row["steps_per_sec"], row["updates_per_sec"])
        if key != last:
            per_chunk.append(row)
            last = key
    device_mem = [r["device_mem_mb"] for r in rows if r.get("device_mem_mb") is not None]
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
        "peak_host_rss_mb": _peak_rss_mb(),
        "loop_peak_host_rss_mb": status.get("peak_host_rss_mb"),
        "device_memory_mb": max(device_mem) if device_mem else None,
        "update_flops": update_flops(config, obs_size),
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


def peak_matmul_rate(obs_size: int, hidden, num_actions: int, batch: int, repeats: int) -> dict[str, Any]:
    """FLOP/s of the products one gradient step does, timed in one jitted call: per layer, the
    forward X.W, the input gradient dY.W^T (not for the first layer) and the weight gradient X^T.dY,
    at `batch` rows. This is the FLOP-bound rate of the update on this device."""
    import jax
    import jax.numpy as jnp

    shapes = layer_shapes(obs_size, hidden, num_actions)
    first = {0, len(hidden) + 1}  # index of the input layer of actor and critic
    key = jax.random.PRNGKey(0)
    xs, ws, dys = [], [], []
    for a, b in shapes:
        k1, k2, k3, key = jax.random.split(key, 4)
        xs.append(jax.random.normal(k1, (batch, a), jnp.float32))
        ws.append(jax.random.normal(k2, (a, b), jnp.float32) * 0.05)
        dys.append(jax.random.normal(k3, (batch, b), jnp.float32))
    flops = 0
    for i, (a, b) in enumerate(shapes):
        flops += 2 * batch * a * b * (2 if i in first else 3)

    # The products run `iters` times in one scan (a gradient step runs inside the update's scans
    # too, so one dispatch per step would understate the rate of small layers). Each iteration
    # adds the previous iteration's result to the inputs, so XLA cannot hoist the loop-invariant
    # products out of the loop; the add and max cost < 2% of the matmuls for these shapes.
    iters = int(min(64, max(1, 3e10 // flops)))

    def products(xs, ws, dys):
        def body(c, _):
            total = jnp.float32(0.0)
            for i, (x, w, dy) in enumerate(zip(xs, ws, dys, strict=True)):
                x = x + c
                total += jnp.max(x @ w) + jnp.max(x.T @ dy)
                if i not in first:
                    total += jnp.max((dy + c) @ w.T)
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
            "layers": shapes}


def bench_flops(p: dict[str, Any], log) -> dict[str, Any]:
    from . import env as trading_env
    from .data import NUM_FEATURES

    out = {}
    for preset in PRESETS:
        config = _config(preset, p["flops_overrides"])
        obs_size = trading_env.observation_size(config.window, NUM_FEATURES)
        peak = peak_matmul_rate(obs_size, config.hidden, len(config.positions), config.minibatch_size,
                                p["repeats"])
        out[preset] = peak
        log(f"  peak matmul {preset:<10}: {peak['flops_per_s']['median'] / 1e9:8.1f} GFLOP/s "
            f"(layer shapes of the network, batch {config.minibatch_size})")
    return out


# ------------------------------------------------------------------------------------------
# peer: Stable-Baselines3 on a gymnasium wrapper of the NumPy reference env
# ------------------------------------------------------------------------------------------
def peer_available() -> tuple[bool, str]:
    import importlib.util

    missing = [m for m in ("stable_baselines3", "gymnasium", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        return False, (f"not installed ({', '.join(missing)} missing): pip install -e \".[bench]\" "
                       "(CPU torch: see docs/benchmarks.md)")
    return True, ""


def make_gym_env(market, config, seed: int):
    """A gymnasium.Env around reference_env.ReferenceTradingEnv: the same float32 observation
    (window x features + held position), the same discrete actions, rewards and episode ends,
    and the JAX env's random starts on reset."""
    import gymnasium as gym

    class ReferenceGymEnv(gym.Env):
        metadata: dict = {"render_modes": []}

        def __init__(self) -> None:
            self.ref = _reference_envs(market, config, 1)[0]
            n = config.window * self.ref.features.shape[-1] + 1
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
            self.action_space = gym.spaces.Discrete(len(config.positions))
            self.rng = np.random.default_rng(seed)

        def reset(self, *, seed=None, options=None):
            if seed is not None:
                self.rng = np.random.default_rng(seed)
            return _random_reset(self.ref, market, self.rng).astype(np.float32), {}

        def step(self, action):
            obs, reward, done = self.ref.step(int(action))
            # an episode end is a termination, as in the JAX env (GAE cuts the bootstrap there)
            return obs.astype(np.float32), float(reward), bool(done), False, {}

    return ReferenceGymEnv()


def worker_peer(args: dict[str, Any]) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    config = _config(args["preset"], args["overrides"])
    market = _market(config)
    venv = DummyVecEnv([lambda i=i: make_gym_env(market, config, config.seed + i) for i in range(config.num_envs)])
    model = SB3PPO(
        "MlpPolicy", venv, n_steps=config.num_steps, batch_size=config.minibatch_size, n_epochs=config.epochs,
        learning_rate=config.lr, gamma=config.gamma, gae_lambda=config.gae_lambda, clip_range=config.clip_eps,
        clip_range_vf=config.clip_eps, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm, normalize_advantage=True, seed=config.seed, device="cpu", verbose=0,
        policy_kwargs={"net_arch": {"pi": list(config.hidden), "vf": list(config.hidden)},
                       "activation_fn": torch.nn.Tanh if config.activation == "tanh" else torch.nn.ReLU,
                       "ortho_init": config.init == "orthogonal"},
    )

    class Marks(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[str, float]] = []

        def _on_rollout_start(self) -> None:
            self.marks.append(("start", time.perf_counter()))

        def _on_rollout_end(self) -> None:
            self.marks.append(("end", time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    marks = Marks()
    total = (args["warmup"] + args["updates"]) * config.batch_size
    t0 = time.perf_counter()
    model.learn(total_timesteps=total, callback=marks)
    t_end = time.perf_counter()
    starts = [t for kind, t in marks.marks if kind == "start"] + [t_end]
    ends = [t for kind, t in marks.marks if kind == "end"]
    rollout = [e - s for s, e in zip(starts, ends, strict=False)]
    update = [starts[i + 1] - starts[i] for i in range(len(ends))]
    training = [u - r for u, r in zip(update, rollout, strict=True)]
    skip = args["warmup"]
    update, rollout, training = update[skip:], rollout[skip:], training[skip:]
    return {
        "preset": config.preset,
        "available": True,
        "batch_size": config.batch_size,
        "updates_timed": len(update),
        "warmup_updates": skip,
        "steps_per_s": stat([config.batch_size / u for u in update]),
        "updates_per_s": stat([1.0 / u for u in update]),
        "update_s": stat(update),
        "rollout_s": stat(rollout),
        "train_s": stat(training),
        "setup_and_learn_wall_s": t_end - t0,
        "peak_host_rss_mb": _peak_rss_mb(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sb3": __import__("stable_baselines3").__version__,
    }


# ------------------------------------------------------------------------------------------
# scaling: quick preset over num_envs (worker: one process, one compile per size)
# ------------------------------------------------------------------------------------------
def worker_scaling(args: dict[str, Any]) -> dict[str, Any]:
    import jax

    from .ppo import PPO

    points = []
    for num_envs in args["envs"]:
        base = _config("quick", {**args["overrides"], "num_envs": num_envs})
        minibatches = base.batch_size // base.minibatch_size if args["overrides"] else 8
        config = _config("quick", {**args["overrides"], "num_envs": num_envs,
                                   "minibatch_size": base.batch_size // minibatches})
        market = _market(config)
        ppo = PPO(config, market.data.features.shape[-1])
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


# ------------------------------------------------------------------------------------------
# running workers, the whole suite, the table
# ------------------------------------------------------------------------------------------
WORKERS = {"train": worker_train, "peer": worker_peer, "scaling": worker_scaling}


def run_worker(kind: str, args: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run a worker in a fresh Python process (its own compile caches, peak RSS and threads)."""
    cmd = [sys.executable, "-m", "evorl_core.bench", "--worker", kind, "--worker-args", json.dumps(args)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout)[-3000:]
    raise RuntimeError(f"bench worker {kind} failed (exit {proc.returncode}):\n{tail}")


def machine_info() -> dict[str, Any]:
    import psutil

    from .provenance import cpu_model

    return {
        "hostname_hash": abs(hash(platform.node())) % 10**8,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
    }


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_suite(*, quick: bool = False, only: list[str] | None = None, repeats: int | None = None,
              tiny: bool = False, command: str = "", log=print) -> dict[str, Any]:
    import jax

    from . import provenance
    from .provenance import library_versions

    sections = list(only or SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    p = plan(quick, repeats, tiny)
    info = provenance.describe()
    result: dict[str, Any] = {
        "schema": SCHEMA, "command": command, "quick": quick, "tiny": tiny, "sections": sections,
        "repeats": p["repeats"], "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(), "backend": info["backend"], "device": info["device_kind"],
        "device_count": info["device_count"], "backend_info": info, "jax_version": jax.__version__,
        "versions": library_versions(), "load_avg_start": _load(), "notes": [],
    }
    log(f"evorl bench{' --quick' if quick else ''}: {provenance.summary(info)}; median of {p['repeats']} repeats")
    if "env" in sections:
        log("env ...")
        result["env"] = bench_env(p, log)
    if "flops" in sections:
        log("flops ...")
        result["flops"] = bench_flops(p, log)
    if "train" in sections:
        result["train"] = {}
        for preset in PRESETS:
            log(f"train {preset} ...")
            result["train"][preset] = run_worker("train", p["train"][preset])
            t = result["train"][preset]
            log(f"  {t['steps_per_s']['median']:,.0f} steps/s, compile {t['compile_s']:.1f} s, "
                f"peak RSS {t['peak_host_rss_mb']:.0f} MB")
    if "peer" in sections:
        ok, why = peer_available()
        result["peer"] = {}
        if not ok:
            log(f"peer: Stable-Baselines3 {why}")
            result["peer"] = {p_: {"available": False, "reason": why} for p_ in PRESETS}
        else:
            for preset in PRESETS:
                log(f"peer sb3 {preset} ...")
                args = {"preset": preset, **p["peer"][preset]}
                try:
                    result["peer"][preset] = run_worker("peer", args)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    result["peer"][preset] = {"available": True, "error": str(exc)[-2000:]}
                    log(f"  failed: {str(exc).splitlines()[0]}")
                    continue
                r = result["peer"][preset]
                log(f"  {r['steps_per_s']['median']:,.0f} steps/s over {r['updates_timed']} update(s)"
                    f" ({r['warmup_updates']} warm-up)")
            if quick:
                result["notes"].append("--quick: SB3 production is one update without warm-up")
    if "scaling" in sections:
        log("scaling ...")
        result["scaling"] = run_worker("scaling", {"envs": list(p["scaling_envs"]), "updates": p["scaling_updates"],
                                                   "repeats": p["repeats"], "overrides": p["scaling_overrides"]})
    result["derived"] = derive(result)
    if tiny:
        result["derived"]["targets"] = []
        result["notes"].append("tiny configuration (tests): the figures are not the presets' and targets are not judged")
    result["load_avg_end"] = _load()
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result


def _median(d: dict | None, *path: str) -> float | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    if isinstance(d, dict):
        return d.get("median")
    return d


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """Ratios, FLOP utilisation and the targets, from whatever sections ran."""
    out: dict[str, Any] = {"presets": {}, "targets": []}
    for preset in PRESETS:
        train = (result.get("train") or {}).get(preset)
        peer = (result.get("peer") or {}).get(preset) or {}
        peak = (result.get("flops") or {}).get(preset)
        d: dict[str, Any] = {}
        if train:
            d["steps_per_s"] = _median(train, "steps_per_s")
            update_s = _median(train, "update_s")
            d["achieved_flops_per_s"] = train["update_flops"] / update_s if update_s else None
        if peer.get("available") and "steps_per_s" in peer and train:
            d["sb3_steps_per_s"] = _median(peer, "steps_per_s")
            d["vs_sb3"] = d["steps_per_s"] / d["sb3_steps_per_s"]
        if train and peak and d.get("achieved_flops_per_s"):
            rate = _median(peak, "flops_per_s")
            d["peak_flops_per_s"] = rate
            d["flop_fraction"] = d["achieved_flops_per_s"] / rate
            d["flop_bound_update_s"] = train["update_flops"] / rate
        out["presets"][preset] = d

    def target(name: str, value: float | None, goal: float, higher_is_better: bool = True) -> None:
        met = None if value is None else (value >= goal if higher_is_better else value < goal)
        out["targets"].append({"name": name, "value": value, "target": goal,
                               "direction": ">=" if higher_is_better else "<", "met": met})

    q, prod = out["presets"].get("quick", {}), out["presets"].get("production", {})
    target("production steps/s vs SB3", prod.get("vs_sb3"), TARGETS["production_vs_sb3"])
    target("production fraction of FLOP-bound limit", prod.get("flop_fraction"), TARGETS["production_flop_fraction"])
    target("quick steps/s vs SB3", q.get("vs_sb3"), TARGETS["quick_vs_sb3"])
    env4096 = _median(result.get("env"), "jax_4096", "steps_per_s")
    target("env steps/s at 4096 envs", env4096, TARGETS["env_steps_per_s_4096"])
    rss = ((result.get("train") or {}).get("production") or {}).get("peak_host_rss_mb")
    target("production peak host RSS (MB)", rss, TARGETS["production_peak_rss_mb"], higher_is_better=False)
    compiles = [t.get("compile_s") for t in (result.get("train") or {}).values() if t.get("compile_s") is not None]
    target("compile time (s), worst preset", max(compiles) if compiles else None, TARGETS["compile_s"],
           higher_is_better=False)
    return out


def _n(x: float | None, fmt: str = ",.0f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def table(rows: list[list[str]]) -> str:
    """Aligned text table: first column left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    lines = [f"backend {result['backend']} ({result['device_count']} x {result['device']}), "
             f"jax {result['jax_version']}, {result['machine']['cpu']} x{result['machine']['cpu_count']}, "
             f"load avg {result.get('load_avg_start')} -> {result.get('load_avg_end')}"]
    env = result.get("env")
    if env:
        rows = [["env (random actions)", "envs", "env steps/s (median)", "min", "max"]]
        for key in [k for k in env if isinstance(env[k], dict) and "steps_per_s" in env[k]]:
            s = env[key]["steps_per_s"]
            name = {"numpy_single": "NumPy reference, 1 env"}.get(key, key)
            if key.startswith("numpy_loop"):
                name = f"NumPy reference, Python loop over {env[key]['num_envs']}"
            elif key.startswith("jax_"):
                name = "JAX env (jit scan, vmap)"
            rows.append([name, str(env[key]["num_envs"]), _n(s["median"]), _n(s["min"]), _n(s["max"])])
        lines += ["", table(rows)]
    train, peer, derived = result.get("train") or {}, result.get("peer") or {}, result.get("derived") or {}
    if train or peer:
        rows = [["training (end to end)", "steps/s", "updates/s", "compile s", "peak RSS MB", "device MB",
                 "SB3 steps/s", "evorl/SB3", "FLOP util."]]
        for preset in PRESETS:
            t, pr, d = train.get(preset) or {}, peer.get(preset) or {}, derived.get("presets", {}).get(preset, {})
            sb3 = _median(pr, "steps_per_s") if pr.get("available") else None
            rows.append([
                preset, _n(_median(t, "steps_per_s")), _n(_median(t, "updates_per_s"), ".3f"),
                _n(t.get("compile_s"), ".1f"), _n(t.get("peak_host_rss_mb")), _n(t.get("device_memory_mb")),
                _n(sb3) if pr.get("available", True) else "not installed",
                _n(d.get("vs_sb3"), ".2f") + ("x" if d.get("vs_sb3") else ""),
                _n(100 * d["flop_fraction"], ".0f") + "%" if d.get("flop_fraction") else "n/a",
            ])
        lines += ["", table(rows)]
        for preset in PRESETS:
            d = derived.get("presets", {}).get(preset, {})
            if d.get("peak_flops_per_s"):
                lines.append(f"  {preset}: {d['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s achieved, peak matmul "
                             f"{d['peak_flops_per_s'] / 1e9:.1f} GFLOP/s -> FLOP-bound update "
                             f"{d['flop_bound_update_s']:.3f} s vs measured {_median(train[preset], 'update_s'):.3f} s")
    if result.get("flops") and not train:
        for preset, peak in result["flops"].items():
            lines.append(f"  peak matmul {preset}: {peak['flops_per_s']['median'] / 1e9:.1f} GFLOP/s "
                         f"(its layer shapes at batch {peak['batch']})")
    for preset in PRESETS:
        pr = peer.get(preset) or {}
        if pr.get("available") and "rollout_s" in pr:
            lines.append(f"  SB3 {preset}: rollout {_median(pr, 'rollout_s'):.2f} s + training "
                         f"{_median(pr, 'train_s'):.2f} s per update, {pr['updates_timed']} update(s) timed, "
                         f"torch {pr['torch']} ({pr['torch_threads']} threads)")
        elif pr and not pr.get("available", True):
            lines.append(f"  SB3 {preset}: {pr['reason']}")
        elif pr.get("error"):
            lines.append(f"  SB3 {preset}: failed ({pr['error'].splitlines()[0]})")
    scaling = result.get("scaling")
    if scaling:
        rows = [["scaling (quick preset)", *[str(pt["num_envs"]) for pt in scaling["points"]]],
                ["steps/s", *[_n(pt["steps_per_s"]["median"]) for pt in scaling["points"]]]]
        lines += ["", table(rows)]
    if any(tg["value"] is not None for tg in derived.get("targets", [])):
        rows = [["target (2-core CPU)", "measured", "target", "met"]]
        for tg in derived["targets"]:
            if tg["value"] is None:
                continue
            fmt = ",.0f" if tg["value"] > 100 else ".2f"
            rows.append([tg["name"], _n(tg["value"], fmt), f"{tg['direction']} {_n(tg['target'], fmt)}",
                         "yes" if tg["met"] else "NO"])
        lines += ["", table(rows)]
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def main(quick: bool = False, out: str | None = "bench-results/bench.json", only: list[str] | None = None,
         repeats: int | None = None, backend: str | None = None, tiny: bool = False) -> int:
    """Entry point of `evorl bench`. Prints the table, writes the JSON; returns the exit code."""
    from . import backends

    backends.select(backend)
    if backend not in (None, "auto"):
        backends.check_available(backend)
    command = "evorl bench" + (" --quick" if quick else "") + (f" --only {' '.join(only)}" if only else "") + \
        (f" --repeats {repeats}" if repeats else "") + (f" --backend {backend}" if backend else "")
    result = run_suite(quick=quick, only=only, repeats=repeats, tiny=tiny, command=command,
                       log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(result))
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
        tmp.replace(path)
        print(f"\nwrote {path}")
    return 0


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evorl_core.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench-results/bench.json")
    parser.add_argument("--only", nargs="+", choices=SECTIONS)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--backend", choices=["auto", "cpu", "gpu", "metal"])
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.worker_args))
        print(RESULT_MARK + json.dumps(result, default=float), flush=True)
        return 0
    return main(quick=args.quick, out=args.out, only=args.only, repeats=args.repeats, backend=args.backend,
                tiny=args.tiny)


if __name__ == "__main__":
    sys.exit(_cli())
