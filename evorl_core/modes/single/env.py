"""The trading environment as pure JAX functions (gymnax style).

One env = one symbol, walking forward one trading day per step through the training range of
that symbol. At the close of day t the agent sees the last `window` days of causal features (days
t-window+1 .. t) and the position it holds, and picks a target exposure from `params.positions`.
The step moves to day t+1 and pays the log growth of equity under the accounting of docs/accounting.md
(see `step_log_return`). Episodes end after `episode_len` steps or when the next transition would
read a test day; `step` then resets automatically to a fresh random start.

Everything here is a pure function of pytrees: market data is an argument (never a closed-over
constant), there are no host callbacks and no while_loops, and everything is float32, so the same
code runs under jit and vmap on CPU, CUDA and Metal.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from evorl_core.config import EXECUTION_MODES, MIN_GROWTH, TrainConfig
from evorl_core.costs import cost_model
from evorl_core.data.arrays import MarketData
from evorl_core.data.features import num_features
from evorl_core.modes.base import Env

_LOG_MIN_GROWTH = math.log(MIN_GROWTH)
# E_open is floored here before the flat sell-day charge is divided by it: an account wiped out
# many times over can underflow to 0 in float32, and 0/0 would be NaN (the fill is floored anyway).
_TINY_EQUITY = 1e-30


@struct.dataclass
class EnvParams:
    positions: jax.Array  # [A] float32 target exposures, action i -> positions[i]
    c_buy: jax.Array  # scalar float32, cost per unit of exposure bought (fraction of the value traded)
    c_sell: jax.Array  # scalar float32, cost per unit of exposure sold
    # scalar float32: the flat charge of a sell day (rupees) divided by the initial capital. Env
    # equity is relative to the episode start, which holds the initial capital, so the charge as a
    # fraction of the account at the fill is sell_charge / E_open (docs/accounting.md).
    sell_charge: jax.Array
    execution: str = struct.field(pytree_node=False, default="next_open")  # "next_open" | "close"
    window: int = struct.field(pytree_node=False, default=32)
    episode_len: int = struct.field(pytree_node=False, default=256)


class EnvState(NamedTuple):
    symbol: jax.Array  # int32
    t: jax.Array  # int32, the current day (decision at its close)
    position: jax.Array  # float32, exposure held now = target chosen at the previous step (0 at reset)
    equity: jax.Array  # float32, equity relative to the episode start (1.0 at reset)
    steps: jax.Array  # int32, steps taken in this episode
    episode_return: jax.Array  # float32, sum of log rewards in this episode


def make_params(config: TrainConfig) -> EnvParams:
    if config.execution not in EXECUTION_MODES:
        raise ValueError(f"execution: must be one of {', '.join(EXECUTION_MODES)} (got {config.execution!r})")
    costs = cost_model(config)
    return EnvParams(
        positions=jnp.asarray(config.positions, dtype=jnp.float32),
        c_buy=jnp.asarray(costs.c_buy, dtype=jnp.float32),
        c_sell=jnp.asarray(costs.c_sell, dtype=jnp.float32),
        sell_charge=jnp.asarray(costs.sell_day_charge_rupees / config.initial_capital, dtype=jnp.float32),
        execution=config.execution,
        window=int(config.window),
        episode_len=int(config.episode_len),
    )


def observation_size(window: int, num_features: int) -> int:
    return window * num_features + 1


def observation_size_of(config: TrainConfig) -> int:
    """The observation length of a run: its window of features (the registry's count) + the held position."""
    return observation_size(config.window, num_features(config))


def make_env(config: TrainConfig) -> Env:
    """This env as a value for PPO and the bench (`modes.base.Env`)."""
    return Env(params=make_params(config), reset=reset, step=step, observation_size=observation_size_of(config),
               num_actions=len(config.positions))


def check_data(data: MarketData, window: int) -> None:
    """Host-side check that every symbol has at least one training transition and a full window.

    Raises ValueError naming the symbol index. Call it once before training (not under jit).
    """
    first = np.asarray(data.first_index)
    train_end = np.asarray(data.train_end)
    length = np.asarray(data.length)
    for s in range(first.shape[0]):
        if first[s] < window - 1:
            raise ValueError(f"symbol {s}: first_index {first[s]} leaves no full window of {window} days")
        if train_end[s] - 2 < first[s]:
            raise ValueError(
                f"symbol {s}: no training transition (first_index {first[s]}, train_end {train_end[s]}); "
                "give more history or fewer test days"
            )
        if train_end[s] > length[s]:
            raise ValueError(f"symbol {s}: train_end {train_end[s]} is beyond length {length[s]}")


def _log_factor(x: jax.Array) -> jax.Array:
    """log(1 + x) with 1 + x clamped to at least MIN_GROWTH.

    log1p keeps small daily moves accurate in float32; the clamped value is a constant because
    MIN_GROWTH - 1 is not representable closely enough in float32.
    """
    return jnp.where(1.0 + x > MIN_GROWTH, jnp.log1p(jnp.maximum(x, MIN_GROWTH - 1.0)), _LOG_MIN_GROWTH)


def step_log_return(p_prev, p_new, open_next, close_now, close_next, c_buy, c_sell, sell_charge, equity,
                    execution: str) -> jax.Array:
    """log(E_{t+1} / E_t) for moving from exposure p_prev to p_new at the close of day t.

    next_open: hold p_prev overnight to the open of t+1 (E_open), fill at the open paying
    c_buy * max(p_new - p_prev, 0) + c_sell * max(p_prev - p_new, 0) and, on a sell day
    (p_new < p_prev), the flat charge sell_charge / E_open, then hold p_new from the open to the
    close of t+1. close: the fill is at the close of t (E_open = E_t), then p_new is held to the
    close of t+1. `equity` is E_t relative to the episode start (the flat charge depends on it);
    `execution` is static (a Python string). docs/accounting.md states the formulas.
    """
    if execution not in EXECUTION_MODES:
        raise ValueError(f"execution: must be one of {', '.join(EXECUTION_MODES)} (got {execution!r})")
    bought = jnp.maximum(p_new - p_prev, 0.0)
    sold = jnp.maximum(p_prev - p_new, 0.0)
    if execution == "next_open":
        overnight = _log_factor(p_prev * ((open_next - close_now) / close_now))
        e_open = equity * jnp.exp(overnight)
        after_fill = (close_next - open_next) / open_next
    else:
        overnight = jnp.float32(0.0)
        e_open = equity
        after_fill = (close_next - close_now) / close_now
    flat = jnp.where(sold > 0, sell_charge / jnp.maximum(e_open, _TINY_EQUITY), 0.0)
    fill = _log_factor(-(c_buy * bought + c_sell * sold + flat))
    return overnight + fill + _log_factor(p_new * after_fill)


def observe(data: MarketData, symbol, t, position, params: EnvParams) -> jax.Array:
    """[window * F + 1] float32: features of days t-window+1 .. t (row-major, oldest day first),
    then the held position."""
    window = params.window
    num_features = data.features.shape[-1]
    start = (jnp.asarray(symbol, jnp.int32), jnp.asarray(t, jnp.int32) - (window - 1), jnp.int32(0))
    block = jax.lax.dynamic_slice(data.features, start, (1, window, num_features))
    held = jnp.reshape(jnp.asarray(position, jnp.float32), (1,))
    return jnp.concatenate([block.reshape(window * num_features).astype(jnp.float32), held])


def _random_start(key: jax.Array, data: MarketData) -> tuple[jax.Array, jax.Array]:
    """Uniform symbol, then a uniform start day t in [first_index, train_end - 2] of that symbol.

    Both come from one 64-bit draw (a single threefry block) reduced modulo the range: the modulo
    bias is below range / 2**32 (< 1e-6 for any real history), and this draw runs for every env at
    every step (auto-reset under vmap), where split + two randint calls cost ~6 threefry blocks and
    dominated the env step on CPU.
    """
    bits = jax.random.bits(key, (2,), jnp.uint32)
    num_symbols = data.length.shape[0]
    symbol = (bits[0] % jnp.uint32(num_symbols)).astype(jnp.int32)
    lowest = data.first_index[symbol]
    highest = data.train_end[symbol] - 2  # so that t + 1 <= train_end - 1
    span = jnp.maximum(highest - lowest + 1, 1).astype(jnp.uint32)
    t = lowest + (bits[1] % span).astype(jnp.int32)
    return symbol, t


def _fresh_state(symbol: jax.Array, t: jax.Array) -> EnvState:
    return EnvState(
        symbol=symbol,
        t=t,
        position=jnp.float32(0.0),
        equity=jnp.float32(1.0),
        steps=jnp.int32(0),
        episode_return=jnp.float32(0.0),
    )


def reset(key: jax.Array, params: EnvParams, data: MarketData) -> tuple[jax.Array, EnvState]:
    """Uniform symbol, then a uniform start day t in [first_index, train_end - 2] of that symbol."""
    state = _fresh_state(*_random_start(key, data))
    return observe(data, state.symbol, state.t, state.position, params), state


def transition(state: EnvState, action, params: EnvParams, data: MarketData):
    """One transition t -> t+1 without auto-reset and without observing: (next_state, reward, done, info)."""
    symbol, t = state.symbol, state.t
    p_prev = state.position
    p_new = params.positions[action].astype(jnp.float32)
    reward = step_log_return(
        p_prev,
        p_new,
        data.open[symbol, t + 1],
        data.close[symbol, t],
        data.close[symbol, t + 1],
        params.c_buy,
        params.c_sell,
        params.sell_charge,
        state.equity,
        params.execution,
    ).astype(jnp.float32)
    t_next = t + 1
    steps = state.steps + 1
    next_state = EnvState(
        symbol=symbol,
        t=t_next,
        position=p_new,
        equity=state.equity * jnp.exp(reward),
        steps=steps,
        episode_return=state.episode_return + reward,
    )
    # Done when the episode is long enough or no further training transition exists
    # (the next one would need t_next + 1 <= train_end - 1: no training step reads a validation,
    # embargo or test day).
    done = (steps >= params.episode_len) | (t_next >= data.train_end[symbol] - 1)
    info = {
        "episode_return": next_state.episode_return,
        "returned_episode": done,
        "equity": next_state.equity,
        "position": p_new,
        "turnover": jnp.abs(p_new - p_prev),
    }
    return next_state, reward, done, info


def step_env(state: EnvState, action, params: EnvParams, data: MarketData):
    """One transition t -> t+1 without auto-reset: (obs, next_state, reward, done, info)."""
    next_state, reward, done, info = transition(state, action, params, data)
    obs = observe(data, next_state.symbol, next_state.t, next_state.position, params)
    return obs, next_state, reward, done, info


def step(key: jax.Array, state: EnvState, action, params: EnvParams, data: MarketData):
    """One transition with auto-reset: when done, obs/state are those of a fresh random start, while
    reward, done and info describe the finished transition."""
    next_state, reward, done, info = transition(state, action, params, data)
    fresh = _fresh_state(*_random_start(key, data))
    next_state = jax.tree.map(lambda new, cont: jnp.where(done, new, cont), fresh, next_state)
    # Select the state first, then build one observation: the window gather is the costliest part
    # of a step, and observing both candidates and selecting doubled it.
    obs = observe(data, next_state.symbol, next_state.t, next_state.position, params)
    return obs, next_state, reward, done, info
