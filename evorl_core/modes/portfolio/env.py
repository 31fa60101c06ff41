"""The portfolio environment as pure JAX functions (gymnax style): one env holds one account.

The account holds N assets and cash. At the close of day t the agent sees, for every asset, its
last `window` days of causal features and its current weight, plus the cash weight, and returns
N + 1 real scores; the target weights are the softmax of the scores over the assets it may hold
(`PanelData.tradable`) and cash, so they are non-negative, sum to 1 and are exactly 0 on an asset
without the bars a trade needs. The step moves to day t+1 and pays the log growth of the account
net of costs (`rebalance`, docs/portfolio.md):

  E_open = E_t * (w_cash + sum_i w_i * open_i[t+1] / close_i[t])          (weights drift overnight)
  w'_i   = w_i * (open_i[t+1] / close_i[t]) * E_t / E_open
  trades d_i = w*_i - w'_i, except |d_i| <= rebalance_band (not traded: the weight drifts on);
         an asset that may not be held is always sold; buys are scaled down when cash runs short
  E_fill = E_open * (1 - c_buy * sum(d+) - c_sell * sum(d-) - n_sold * sell_charge / E_open)
  E_{t+1} = E_fill * (w*_cash + sum_i w*_i * close_i[t+1] / open_i[t+1]), then weights drift to the close.

With `close` execution the fill is at the close of t (E_open = E_t, no overnight drift) and the
holding earns close_i[t+1] / close_i[t].

The observation PPO stores is compact: [t, w_1 .. w_N, w_cash] (N + 2 floats); `network_input`
gathers the feature windows from the market data when the network runs, so a rollout buffer of a
500-asset universe holds 502 floats per step instead of 500 x window x features.
Pure functions of pytrees: market data is an argument, no host callbacks, no while_loops, float32.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from evorl_core.config import EXECUTION_MODES, MIN_GROWTH, TrainConfig
from evorl_core.costs import cost_model
from evorl_core.data.arrays import PanelData
from evorl_core.data.features import num_features
from evorl_core.modes.base import Env

_LOG_MIN_GROWTH = math.log(MIN_GROWTH)
_TINY_EQUITY = 1e-30
_MASKED_SCORE = -1e30  # a score that softmax turns into an exact 0 weight


@struct.dataclass
class PortfolioParams:
    c_buy: jax.Array  # scalar float32: cost per unit of equity bought
    c_sell: jax.Array  # scalar float32: cost per unit of equity sold
    sell_charge: jax.Array  # scalar float32: flat charge per scrip sold on a day / initial capital
    band: jax.Array  # scalar float32: trades of at most this fraction of equity are not made
    execution: str = struct.field(pytree_node=False, default="next_open")
    window: int = struct.field(pytree_node=False, default=32)
    episode_len: int = struct.field(pytree_node=False, default=256)
    num_assets: int = struct.field(pytree_node=False, default=1)


class PortfolioState(NamedTuple):
    t: jax.Array  # int32: the current day (decision at its close)
    weights: jax.Array  # [N + 1] float32: weights at the close of t (cash last), after drift
    equity: jax.Array  # float32: equity relative to the episode start
    steps: jax.Array  # int32
    episode_return: jax.Array  # float32


def make_params(config: TrainConfig, num_assets: int | None = None) -> PortfolioParams:
    if config.execution not in EXECUTION_MODES:
        raise ValueError(f"execution: must be one of {', '.join(EXECUTION_MODES)} (got {config.execution!r})")
    costs = cost_model(config)
    return PortfolioParams(
        c_buy=jnp.float32(costs.c_buy), c_sell=jnp.float32(costs.c_sell),
        sell_charge=jnp.float32(costs.sell_day_charge_rupees / config.initial_capital),
        band=jnp.float32(config.rebalance_band), execution=config.execution, window=int(config.window),
        episode_len=int(config.episode_len),
        num_assets=int(num_assets if num_assets is not None else len(config.symbols)),
    )


def observation_size(num_assets: int) -> int:
    """Compact observation: the day, N asset weights and the cash weight."""
    return num_assets + 2


def observation_size_of(config: TrainConfig) -> int:
    return observation_size(len(config.symbols))


def make_env(config: TrainConfig) -> Env:
    """The portfolio env of a run over its (resolved) universe `config.symbols`."""
    params = make_params(config)
    return Env(params=params, reset=reset, step=step, observation_size=observation_size(params.num_assets),
               num_actions=params.num_assets + 1, action_kind="simplex",
               network_input=partial(network_input, window=params.window),
               example_input=partial(example_input, params.num_assets, params.window, config.features))


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """[.., N + 1] weights: softmax of the scores over the assets in `mask` ([.., N]) and cash."""
    valid = jnp.concatenate([mask, jnp.ones(mask.shape[:-1] + (1,), bool)], axis=-1)
    return jax.nn.softmax(jnp.where(valid, scores, _MASKED_SCORE), axis=-1)


def _log_factor(x: jax.Array) -> jax.Array:
    return jnp.where(1.0 + x > MIN_GROWTH, jnp.log1p(jnp.maximum(x, MIN_GROWTH - 1.0)), _LOG_MIN_GROWTH)


def rebalance(weights, target, mask, open_next, close_now, close_next, params: PortfolioParams, equity):
    """One day of the account: (log growth E_{t+1}/E_t, weights at the close of t+1, turnover,
    invested fraction after the fill). `weights`: [N + 1] at the close of t; `target`: [N + 1]
    chosen at the close of t; `mask`: [N] assets that may be held into t+1; prices [N] of the
    days involved (any finite positive value where an asset has no bar: it then has no weight).
    """
    assets, cash = weights[:-1], weights[-1]
    if params.execution == "next_open":
        g_open = jnp.where(assets > 0, open_next / close_now, 1.0)
        g_day = close_next / open_next
    else:
        g_open = jnp.ones_like(assets)
        g_day = close_next / close_now
    grown = assets * g_open
    a = cash + grown.sum()
    drifted = grown / a
    drifted_cash = cash / a
    d = target[:-1] - drifted
    trade = (jnp.abs(d) > params.band) | (~mask & (drifted > 0))
    d = jnp.where(trade, d, 0.0)
    sold = jnp.maximum(-d, 0.0).sum()
    bought = jnp.maximum(d, 0.0).sum()
    available = drifted_cash + sold
    scale = jnp.where(bought > available, available / jnp.maximum(bought, 1e-30), 1.0)
    d = jnp.where(d > 0, d * scale, d)
    bought = bought * scale
    new_assets = jnp.maximum(drifted + d, 0.0)
    new_cash = jnp.maximum(drifted_cash + sold - bought, 0.0)
    e_open = equity * a
    n_sold = (d < 0).sum().astype(jnp.float32)
    flat = n_sold * params.sell_charge / jnp.maximum(e_open, _TINY_EQUITY)
    fill = _log_factor(-(params.c_buy * bought + params.c_sell * sold + flat))
    held = new_assets * jnp.where(new_assets > 0, g_day, 1.0)
    b = new_cash + held.sum()
    growth = jnp.log(a) + fill + jnp.log(b)
    after = jnp.concatenate([held / b, (new_cash / b)[None]])
    return growth, after, sold + bought, 1.0 - new_cash


def _day(data: PanelData, t):
    """(tradable [N] of day t, open [N] of t+1, close [N] of t, close [N] of t+1) as one contiguous
    read of `data.by_day` (t + 1 <= T - 1 in every transition)."""
    block = jax.lax.dynamic_slice(data.by_day, (t, jnp.int32(0), jnp.int32(0)), (2,) + data.by_day.shape[1:])
    return block[0, 2] > 0.5, block[1, 0], block[0, 1], block[1, 1]


def observe(t, weights) -> jax.Array:
    """Compact observation [t, w_1 .. w_N, w_cash] float32."""
    return jnp.concatenate([jnp.asarray(t, jnp.float32)[None], weights.astype(jnp.float32)])


def network_input(obs: jax.Array, data: PanelData, window: int):
    """What the network reads for one compact observation: (features [N, window * F] of days
    t-window+1 .. t, weights [N + 1], tradable mask [N] of day t)."""
    t = obs[0].astype(jnp.int32)
    n, _, f = data.features.shape
    block = jax.lax.dynamic_slice(data.features, (jnp.int32(0), t - (window - 1), jnp.int32(0)), (n, window, f))
    mask = jax.lax.dynamic_slice(data.tradable, (jnp.int32(0), t), (n, 1))[:, 0]
    return block.reshape(n, window * f), obs[1:], mask


def example_input(num_assets: int, window: int, features: str = "default"):
    """A batch of one `network_input` of the right shapes, without market data."""
    return (jnp.zeros((1, num_assets, window * num_features(features)), jnp.float32),
            jnp.zeros((1, num_assets + 1), jnp.float32).at[:, -1].set(1.0), jnp.ones((1, num_assets), bool))


def _random_start(key, data: PanelData):
    bits = jax.random.bits(key, (), jnp.uint32)
    span = jnp.maximum(data.train_end - 2 - data.first_index + 1, 1).astype(jnp.uint32)
    return data.first_index + (bits % span).astype(jnp.int32)


def _fresh_state(t, num_assets: int) -> PortfolioState:
    weights = jnp.zeros((num_assets + 1,), jnp.float32).at[-1].set(1.0)
    return PortfolioState(t=t, weights=weights, equity=jnp.float32(1.0), steps=jnp.int32(0),
                          episode_return=jnp.float32(0.0))


def reset(key, params: PortfolioParams, data: PanelData):
    state = _fresh_state(_random_start(key, data), params.num_assets)
    return observe(state.t, state.weights), state


def transition(state: PortfolioState, action, params: PortfolioParams, data: PanelData):
    """t -> t+1 without auto-reset: (next_state, reward, done, info). `action`: [N + 1] scores."""
    t = state.t
    mask, *prices = _day(data, t)
    target = masked_softmax(action.astype(jnp.float32), mask)
    growth, after, turnover, invested = rebalance(state.weights, target, mask, *prices, params, state.equity)
    reward = growth.astype(jnp.float32)
    steps = state.steps + 1
    next_state = PortfolioState(t=t + 1, weights=after, equity=state.equity * jnp.exp(reward), steps=steps,
                                episode_return=state.episode_return + reward)
    done = (steps >= params.episode_len) | (t + 1 >= data.train_end - 1)
    info = {"episode_return": next_state.episode_return, "returned_episode": done, "equity": next_state.equity,
            "position": invested, "turnover": turnover}
    return next_state, reward, done, info


def step(key, state: PortfolioState, action, params: PortfolioParams, data: PanelData):
    """One transition with auto-reset (see single-asset `env.step`)."""
    next_state, reward, done, info = transition(state, action, params, data)
    fresh = _fresh_state(_random_start(key, data), params.num_assets)
    next_state = jax.tree.map(lambda new, cont: jnp.where(done, new, cont), fresh, next_state)
    return observe(next_state.t, next_state.weights), next_state, reward, done, info
