"""Env-only throughput: env steps per second of the pure-JAX trading env with random actions.

A jitted `lax.scan` of the vmapped `env.step` over 256 and 4096 envs, on synthetic random data
(3 symbols x 2500 days, 6 features, window 32). Compile time is excluded and printed separately;
the figure is the median of 5 timed repeats.

    python benchmarks/env_throughput.py [--steps 1000] [--envs 256 4096]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from evorl_core.data.arrays import MarketData  # noqa: E402
from evorl_core.modes.single import env  # noqa: E402


def synthetic_data(num_symbols=3, num_days=2500, num_features=6, window=32, test_days=60, seed=0) -> MarketData:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (num_symbols, num_days)), axis=1))
    open_ = close * np.exp(rng.normal(0.0, 0.01, (num_symbols, num_days)))
    features = rng.normal(size=(num_symbols, num_days, num_features))
    return MarketData(
        open=jnp.asarray(open_, jnp.float32),
        close=jnp.asarray(close, jnp.float32),
        features=jnp.asarray(features, jnp.float32),
        length=jnp.full((num_symbols,), num_days, jnp.int32),
        first_index=jnp.full((num_symbols,), window, jnp.int32),
        train_end=jnp.full((num_symbols,), num_days - test_days, jnp.int32),
        val_start=jnp.full((num_symbols,), num_days - test_days, jnp.int32),
        test_start=jnp.full((num_symbols,), num_days - test_days, jnp.int32),
    )


def make_runner(num_envs: int, num_steps: int):
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None, None))

    @jax.jit
    def run(key, state, params, data):
        def body(carry, _):
            key, state = carry
            key, k_act, k_step = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (num_envs,), 0, params.positions.shape[0])
            obs, state, reward, done, info = step(jax.random.split(k_step, num_envs), state, actions, params, data)
            # the whole observation is consumed: with only obs[:, -1] XLA drops the window gather
            return (key, state), reward.sum() + obs.sum()

        (key, state), checks = jax.lax.scan(body, (key, state), None, length=num_steps)
        return key, state, checks.sum()

    return run


def measure(num_envs: int, num_steps: int, repeats: int, data: MarketData, params: env.EnvParams) -> dict:
    key = jax.random.PRNGKey(0)
    key, reset_key = jax.random.split(key)
    _, state = jax.vmap(env.reset, in_axes=(0, None, None))(jax.random.split(reset_key, num_envs), params, data)
    run = make_runner(num_envs, num_steps)
    start = time.perf_counter()
    key, state, check = jax.block_until_ready(run(key, state, params, data))
    compile_and_first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        key, state, check = jax.block_until_ready(run(key, state, params, data))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "num_envs": num_envs,
        "num_steps": num_steps,
        "compile_s": compile_and_first - median,
        "median_s": median,
        "steps_per_s": num_envs * num_steps / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--steps", type=int, default=1000, help="scan length (env steps per env per call)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    window, num_features = 32, 6
    data = synthetic_data(num_features=num_features, window=window)
    # The default cost model (nse-delivery) with its sell-day charge, as training uses it.
    params = env.EnvParams(positions=jnp.asarray([0.0, 0.5, 1.0], jnp.float32), c_buy=jnp.float32(0.0017),
                           c_sell=jnp.float32(0.0015), sell_charge=jnp.float32(1.6e-5),
                           execution="next_open", window=window, episode_len=256)
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}")
    print(f"data: 3 symbols x 2500 days, F={num_features}, window={window}, obs size "
          f"{env.observation_size(window, num_features)}")
    for num_envs in args.envs:
        r = measure(num_envs, args.steps, args.repeats, data, params)
        print(f"{r['num_envs']:>6} envs x {r['num_steps']} steps: {r['steps_per_s']:>14,.0f} env steps/s "
              f"(median {r['median_s']:.3f} s of {args.repeats}, compile ~{r['compile_s']:.2f} s)")


if __name__ == "__main__":
    main()
