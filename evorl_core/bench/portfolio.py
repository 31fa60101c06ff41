"""The portfolio section of the bench: env asset-steps/s at several universe sizes next to the
single-asset env's steps/s in the same run, and training throughput, compile time and peak RSS of
the production portfolio preset at N = 50 and 500 (each in a fresh process).

One asset for one day is one asset-step: a portfolio env step over N assets is N asset-steps.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import jax

from evorl_core import modes
from evorl_core.bench.plan import bench_config, bench_market, stat
from evorl_core.bench.sections import peak_rss_mb
from evorl_core.data import load_market
from evorl_core.training import pipeline
from evorl_core.training.sizing import memory_estimate, update_flops


def _scan_rate(env, data, num_envs: int, steps: int, repeats: int, simplex: bool,
               inputs: bool = False) -> tuple[list[float], float]:
    """Env steps/s of `steps` vectorised steps of `num_envs` envs with random actions (a jitted scan).
    `inputs`: also gather what the network reads from each compact observation (the portfolio
    env's feature windows), which the single-asset env's observation already holds."""
    params = env.params
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None, None))
    gather = jax.vmap(env.network_input, in_axes=(0, None)) if inputs else None

    def run(key, state, data):
        k_act, k_env, key = jax.random.split(key, 3)
        if simplex:
            actions = jax.random.normal(k_act, (steps, num_envs, env.num_actions))
        else:
            actions = jax.random.randint(k_act, (steps, num_envs), 0, env.num_actions)
        keys = jax.random.split(k_env, (steps, num_envs))

        def body(state, x):
            action, env_keys = x
            obs, state, reward, done, _ = step_envs(env_keys, state, action, params, data)
            check = obs.sum() + reward.sum() + done.sum()
            if gather is not None:
                features, weights, mask = gather(obs, data)
                check = check + features.sum() + weights.sum() + mask.sum()
            return state, check

        state, checks = jax.lax.scan(body, state, (actions, keys))
        return key, state, checks.sum()

    key = jax.random.PRNGKey(0)
    _, state = jax.vmap(env.reset, in_axes=(0, None, None))(jax.random.split(key, num_envs), params, data)
    t0 = time.perf_counter()
    fn = jax.jit(run, donate_argnums=1).lower(key, state, data).compile()
    compile_s = time.perf_counter() - t0
    key, state, _ = jax.block_until_ready(fn(key, state, data))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        key, state, _ = jax.block_until_ready(fn(key, state, data))
        rates.append(num_envs * steps / (time.perf_counter() - t0))
    return rates, compile_s


def bench_portfolio_env(p: dict[str, Any], log) -> dict[str, Any]:
    spec = p["portfolio"]
    num_envs, steps, repeats = spec["num_envs"], spec["env_steps"], p["repeats"]
    single = bench_config("quick", {"window": spec["window"], "symbols": ("AAA", "BBB", "CCC")})
    market = bench_market(single)
    rates, compile_s = _scan_rate(modes.get(single).make_env(single), market.data, num_envs, steps, repeats, False)
    out: dict[str, Any] = {"num_envs": num_envs, "scan_steps": steps, "window": spec["window"],
                           "single_env": {"steps_per_s": stat(rates), "compile_s": compile_s}}
    single_rate = statistics.median(rates)
    log(f"  single-asset env: {single_rate:>12,.0f} steps/s ({num_envs} envs)")
    out["sizes"] = []
    for n in spec["sizes"]:
        config = bench_config("quick", {"mode": "portfolio", "symbols": ("all",), "universe_size": n,
                                        "window": spec["window"]})
        panel = load_market(config)
        config = pipeline.resolved_universe(config, panel)
        env = modes.get(config).make_env(config)
        rates, compile_s = _scan_rate(env, panel.data, num_envs, steps, repeats, True)
        with_inputs, _ = _scan_rate(env, panel.data, num_envs, steps, repeats, True, inputs=True)
        asset_rates = [r * n for r in rates]
        full_rates = [r * n for r in with_inputs]
        med, full = statistics.median(asset_rates), statistics.median(full_rates)
        out["sizes"].append({"assets": n, "env_steps_per_s": stat(rates), "asset_steps_per_s": stat(asset_rates),
                             "asset_steps_per_s_with_inputs": stat(full_rates), "compile_s": compile_s,
                             "per_asset_step_vs_single": single_rate / med,
                             "per_asset_step_vs_single_with_inputs": single_rate / full})
        log(f"  portfolio env N={n:>4}: {statistics.median(rates):>10,.0f} env steps/s = {med:>13,.0f} "
            f"asset-steps/s; with the network's inputs gathered {full:>13,.0f} asset-steps/s "
            f"({single_rate / full:.2f}x the single-asset env's time per asset-step)")
    return out


def worker_portfolio_train(args: dict[str, Any]) -> dict[str, Any]:
    """One portfolio training run in a fresh process (its own peak RSS)."""
    overrides = {**args["overrides"], "mode": "portfolio", "symbols": ("all",), "universe_size": args["assets"]}
    if args.get("total_timesteps"):
        overrides["total_timesteps"] = args["total_timesteps"]
    config = bench_config(args["preset"], overrides)
    market = load_market(config)
    config = pipeline.resolved_universe(config, market)
    with tempfile.TemporaryDirectory(prefix="evorl-bench-") as runs:
        t0 = time.perf_counter()
        run = pipeline.run(config, runs, "bench", market=market)
        wall = time.perf_counter() - t0
        status = run.read_status()
        rows = run.read_metrics()
    per_chunk, last = [], None
    for row in rows:
        key = (row["steps_per_sec"], row["updates_per_sec"])
        if key != last:
            per_chunk.append(row)
            last = key
    steps = stat([r["steps_per_sec"] for r in per_chunk])
    flops = update_flops(config)
    update_s = stat([1.0 / r["updates_per_sec"] for r in per_chunk])
    return {
        "assets": len(config.symbols), "preset": config.preset,
        "config": {k: config.to_dict()[k] for k in ("num_envs", "num_steps", "minibatch_size", "epochs", "hidden",
                                                     "window", "total_timesteps")},
        "updates": config.num_updates, "chunks": len(per_chunk),
        "steps_per_s": steps,
        "asset_steps_per_s": stat([r["steps_per_sec"] * len(config.symbols) for r in per_chunk]),
        "update_s": update_s, "update_flops": flops,
        "achieved_flops": flops / update_s["median"] if update_s["median"] else None,
        "compile_s": status.get("compile_seconds"), "train_s": status.get("train_seconds"), "wall_s": wall,
        "peak_host_rss_mb": peak_rss_mb(), "estimated_memory_mb": memory_estimate(config) / 2**20,
        "backend": jax.default_backend(), "state": status.get("state"),
        "device_peak_mb": max([r["device_peak_mb"] for r in rows if r.get("device_peak_mb")] or [0]) or None,
    }
