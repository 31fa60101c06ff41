"""What single-asset mode computes around a policy: greedy paths on held-out days, the fitness of
a policy on validation days, and the decision on one bar. Pure JAX; the policy is a function of
(params, observations) returning action probabilities (`modes.base.Probabilities`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from evorl_core.data.arrays import MarketData
from evorl_core.modes.base import Env, Probabilities
from evorl_core.modes.single.env import observe, step_log_return


def greedy_positions(probabilities: Probabilities, params: Any, data: MarketData, start: jax.Array, num_days: int,
                     env: Env) -> jax.Array:
    """Positions decided at the close of days start[s] .. start[s]+num_days-1 for every symbol.

    Starts flat; the held position fed to the observation is the previous decision, exactly as in
    the env; the decision is the most probable action. Returns [S, num_days] target exposures.
    """
    positions = env.params.positions

    def one_symbol(symbol, t0):
        def day(held, i):
            obs = observe(data, symbol, t0 + i, held, env.params)
            new = positions[jnp.argmax(probabilities(params, obs[None])[0])]
            return new, new

        _, path = jax.lax.scan(day, jnp.float32(0.0), jnp.arange(num_days))
        return path

    symbols = jnp.arange(data.open.shape[0])
    return jax.vmap(one_symbol)(symbols, start)


def validation_fitness(probabilities: Probabilities, params: Any, data: MarketData, num_days: int,
                       env: Env) -> jax.Array:
    """Greedy policy from flat over each symbol's validation days; mean over symbols of the net log
    return, starting with the initial capital (same accounting as the backtest, float32)."""
    positions = greedy_positions(probabilities, params, data, data.val_start, num_days, env)  # [S, n]
    t = data.val_start[:, None] + jnp.arange(num_days - 1)[None, :]
    close_now = jnp.take_along_axis(data.close, t, axis=1)
    open_next = jnp.take_along_axis(data.open, t + 1, axis=1)
    close_next = jnp.take_along_axis(data.close, t + 1, axis=1)
    p_new = positions[:, :-1]
    p_prev = jnp.concatenate([jnp.zeros_like(p_new[:, :1]), p_new[:, :-1]], axis=1)
    p = env.params

    def day(equity, x):  # the flat sell-day charge depends on the equity reached
        growth = step_log_return(*x, p.c_buy, p.c_sell, p.sell_charge, equity, p.execution)
        return equity * jnp.exp(growth), growth

    days = tuple(a.T for a in (p_prev, p_new, open_next, close_now, close_next))  # time-major [n-1, S]
    _, log_growth = jax.lax.scan(day, jnp.ones(positions.shape[0], jnp.float32), days)
    return log_growth.sum(axis=0).mean()


def decision(probabilities: Probabilities, params: Any, data: MarketData, t: jax.Array, held: jax.Array,
             env: Env) -> jax.Array:
    """[A] action probabilities at the close of bar t of the first symbol of `data`, holding `held`."""
    obs = observe(data, 0, t, jnp.asarray(held, jnp.float32), env.params)
    return probabilities(params, obs[None])[0]
