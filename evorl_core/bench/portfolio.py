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
from evorl_core.bench.sections import SCAN_INCLUDES, chunk_samples, peak_rss_mb, scan_rate, scan_timer
from evorl_core.data import load_market
from evorl_core.training import pipeline
from evorl_core.training.sizing import memory_estimate, update_flops

INCLUDES = {
    "single_env": SCAN_INCLUDES + ". The single-asset observation is the feature window [window x F] and the "
                  "position, so gathering the window from the market data is part of every single-asset step.",
    "asset_steps_per_s": "the portfolio env alone (same scan): the account of N assets, the masked softmax of "
                         "N + 1 random scores and the compact observation [t, weights]; no feature window is "
                         "gathered. Asset-steps/s = env steps/s x N.",
    "asset_steps_per_s_with_inputs": "as asset_steps_per_s plus, after every step, what the network reads "
                                     "(network_input: feature windows [N, window x F], weights, tradable mask) "
                                     "built and consumed for every env: the same data per asset as a "
                                     "single-asset observation. The like-for-like figure.",
    "single_env_matched": "the single-asset env at num_envs x N envs (as many asset-steps per scan step as the "
                          "portfolio env at N), in case a bigger batch alone changes its rate",
    "sizes[].single_env": "the single-asset env at num_envs envs, timed in turns with this size's portfolio "
                          "measurements (one sample of each per repeat); the vs_single ratios divide by it",
    "vs_single": "asset-steps/s of the portfolio env over steps/s of the single-asset env in the same run: "
                 "higher is better, 1 = the same time per asset-step; the target is >= 0.5 at N = 50 with "
                 "inputs (within 2x per asset-step)",
}


def bench_portfolio_env(p: dict[str, Any], log) -> dict[str, Any]:
    spec = p["portfolio"]
    num_envs, steps, repeats = spec["num_envs"], spec["env_steps"], p["repeats"]
    single = bench_config("quick", {"window": spec["window"], "symbols": ("AAA", "BBB", "CCC")})
    market = bench_market(single)
    single_env = modes.get(single).make_env(single)
    rates, compile_s = scan_rate(single_env, market.data, num_envs, steps, repeats)
    out: dict[str, Any] = {"num_envs": num_envs, "scan_steps": steps, "window": spec["window"],
                           "includes": INCLUDES,
                           "single_env": {"num_envs": num_envs, "steps_per_s": stat(rates), "compile_s": compile_s}}
    single_rate = statistics.median(rates)
    log(f"  single-asset env: {single_rate:>12,.0f} steps/s ({num_envs} envs)")
    out["sizes"] = []
    for n in spec["sizes"]:
        config = bench_config("quick", {"mode": "portfolio", "symbols": ("all",), "universe_size": n,
                                        "window": spec["window"]})
        panel = load_market(config)
        config = pipeline.resolved_universe(config, panel)
        env = modes.get(config).make_env(config)
        # the four measurements of a size take turns, one sample each per repeat, so that the load of
        # a shared machine falls on all of them alike and the ratios compare like with like
        timers = {"alone": scan_timer(env, panel.data, num_envs, steps),
                  "inputs": scan_timer(env, panel.data, num_envs, steps, inputs=True),
                  "single": scan_timer(single_env, market.data, num_envs, steps),
                  "matched": scan_timer(single_env, market.data, num_envs * n, steps)}
        samples: dict[str, list[float]] = {name: [] for name in timers}
        for _ in range(repeats):
            for name, (sample, _) in timers.items():
                samples[name].append(sample())
        asset_rates = [r * n for r in samples["alone"]]
        full_rates = [r * n for r in samples["inputs"]]
        med, full, here, same = (statistics.median(x) for x in (asset_rates, full_rates, samples["single"],
                                                                 samples["matched"]))
        out["sizes"].append({
            "assets": n, "env_steps_per_s": stat(samples["alone"]), "asset_steps_per_s": stat(asset_rates),
            "asset_steps_per_s_with_inputs": stat(full_rates), "compile_s": timers["alone"][1],
            "compile_s_with_inputs": timers["inputs"][1],
            "single_env": {"num_envs": num_envs, "steps_per_s": stat(samples["single"])},
            "single_env_matched": {"num_envs": num_envs * n, "steps_per_s": stat(samples["matched"])},
            "vs_single": med / here, "vs_single_with_inputs": full / here,
            "vs_single_matched_with_inputs": full / same,
        })
        log(f"  portfolio env N={n:>4}: {med:>13,.0f} asset-steps/s alone, {full:>13,.0f} with the network's "
            f"inputs = {full / here:.2f}x the single-asset env's steps/s ({full / same:.2f}x at "
            f"{num_envs * n} single-asset envs)")
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
    per_chunk = chunk_samples(rows)
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
