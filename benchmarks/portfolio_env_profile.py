"""Where the time of one portfolio env step goes: jitted scans of its pieces, each timed alone at the
bench's shapes (64 envs, window 32, synthetic universe), next to the single-asset env step and the
first dense layer of the portfolio network on the same inputs (what training does with them).

Pieces (each a `lax.scan` of `--steps` steps over `--envs` envs, its output consumed):
  step              env.step with auto-reset (the bench's `asset_steps_per_s`)
  step + inputs     env.step, then network_input (feature windows [N, window x F], weights, mask)
  transition        the account alone (prices, masked softmax, rebalance), no auto-reset or observation
  prices + mask     the day's prices and tradable mask (one [2, 3, N] block of `by_day`)
  masked softmax    N + 1 scores -> weights
  inputs            network_input alone (the feature-window gather)
  first layer       the network's first dense layer on the gathered inputs [envs, N, window x F + 1]
  single step       the single-asset env step (its observation holds its own window)
Figures are the minimum over repeats (on a shared machine the minimum is the least disturbed sample)
and the median.

    python benchmarks/portfolio_env_profile.py --assets 50 --out docs/bench/portfolio-env-profile.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evorl_core import modes  # noqa: E402
from evorl_core.bench.plan import bench_config, bench_market  # noqa: E402
from evorl_core.data import load_market  # noqa: E402
from evorl_core.modes.portfolio import env as penv  # noqa: E402
from evorl_core.training import pipeline  # noqa: E402


def timed(body, carry, xs, data, repeats: int) -> list[float]:
    """Seconds of one jitted scan of `body(carry, x, data) -> (carry, check)` over xs, per repeat."""
    def run(carry, data, xs):
        carry, checks = jax.lax.scan(lambda c, x: body(c, x, data), carry, xs)
        return carry, checks.sum()

    fn = jax.jit(run).lower(carry, data, xs).compile()
    jax.block_until_ready(fn(carry, data, xs))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(carry, data, xs))
        out.append(time.perf_counter() - t0)
    return out


def profile(num_assets: int, num_envs: int, steps: int, repeats: int, window: int = 32) -> dict:
    config = bench_config("quick", {"mode": "portfolio", "symbols": ("all",), "universe_size": num_assets,
                                    "window": window})
    panel = load_market(config)
    config = pipeline.resolved_universe(config, panel)
    env = modes.get(config).make_env(config)
    data, params, n = panel.data, env.params, num_assets
    key = jax.random.PRNGKey(0)
    _, state = jax.vmap(env.reset, in_axes=(0, None, None))(jax.random.split(key, num_envs), params, data)
    scores = jax.random.normal(key, (steps, num_envs, n + 1))
    keys = jax.random.split(key, (steps, num_envs))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None, None))
    inputs = jax.vmap(env.network_input, in_axes=(0, None))
    feature_size = window * data.features.shape[-1]
    kernel = jax.random.normal(key, (feature_size + 1, config.hidden[0])) * 0.05

    def advance(s):  # the next day, wrapping inside the training range, as a step would
        t = s.t + 1
        return s._replace(t=jnp.where(t >= data.train_end - 2, data.first_index, t))

    def full(s, x, data):
        obs, s, r, d, _ = step(x[1], s, x[0], params, data)
        return s, obs.sum() + r.sum() + d.sum()

    def full_inputs(s, x, data):
        obs, s, r, d, _ = step(x[1], s, x[0], params, data)
        return s, obs.sum() + r.sum() + d.sum() + sum(p.sum() for p in inputs(obs, data))

    def transition(s, x, data):
        s2, r, d, _ = jax.vmap(penv.transition, in_axes=(0, 0, None, None))(s, x[0], params, data)
        return advance(s)._replace(weights=s2.weights, equity=s2.equity), r.sum() + d.sum()

    def prices(s, x, data):
        mask, o, c, cn = jax.vmap(penv._day, in_axes=(None, 0))(data, s.t)
        return advance(s), o.sum() + c.sum() + cn.sum() + mask.sum()

    def softmax(s, x, data):
        w = penv.masked_softmax(x[0], data.tradable[:, s.t].T)
        return advance(s)._replace(weights=w), w.sum()

    def gather(s, x, data):
        obs = jax.vmap(penv.observe)(s.t, s.weights)
        return advance(s), sum(p.sum() for p in inputs(obs, data))

    def first_layer(s, x, data):
        obs = jax.vmap(penv.observe)(s.t, s.weights)
        features, weights, _ = inputs(obs, data)
        h = jnp.concatenate([features, weights[..., :-1, None]], axis=-1) @ kernel
        return advance(s), jax.nn.relu(h).sum()

    pieces = {"step": full, "step + inputs": full_inputs, "transition": transition, "prices + mask": prices,
              "masked softmax": softmax, "inputs": gather, "first layer (after inputs)": first_layer}
    out = {"assets": n, "num_envs": num_envs, "scan_steps": steps, "window": window,
           "features": int(data.features.shape[-1]), "hidden0": config.hidden[0], "pieces": {}}
    for name, body in pieces.items():
        secs = timed(body, state, (scores, keys), data, repeats)
        per_step = [s / steps * 1e6 for s in secs]
        out["pieces"][name] = {"us_per_step_min": min(per_step), "us_per_step_median": statistics.median(per_step),
                               "asset_steps_per_s_best": num_envs * steps * n / min(secs)}
    single = bench_config("quick", {"window": window, "symbols": ("AAA", "BBB", "CCC")})
    market = bench_market(single)
    senv = modes.get(single).make_env(single)
    _, sstate = jax.vmap(senv.reset, in_axes=(0, None, None))(jax.random.split(key, num_envs), senv.params,
                                                              market.data)
    actions = jax.random.randint(key, (steps, num_envs), 0, senv.num_actions)
    sstep = jax.vmap(senv.step, in_axes=(0, 0, 0, None, None))

    def single_step(s, x, data):
        obs, s, r, d, _ = sstep(x[1], s, x[0], senv.params, data)
        return s, obs.sum() + r.sum() + d.sum()

    secs = timed(single_step, sstate, (actions, keys), market.data, repeats)
    out["single_env_step"] = {"us_per_step_min": min(secs) / steps * 1e6,
                              "steps_per_s_best": num_envs * steps / min(secs)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, nargs="+", default=[50])
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out")
    args = parser.parse_args()
    results = []
    for n in args.assets:
        r = profile(n, args.envs, args.steps, args.repeats)
        results.append(r)
        print(f"N = {n}, {args.envs} envs (us per step of all envs, min / median over {args.repeats} repeats)")
        for name, p in r["pieces"].items():
            print(f"  {name:28s} {p['us_per_step_min']:9.1f} / {p['us_per_step_median']:9.1f} us")
        print(f"  {'single-asset env step':28s} {r['single_env_step']['us_per_step_min']:9.1f} us")
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "results": results,
                                              "load_avg": list(os.getloadavg())}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
