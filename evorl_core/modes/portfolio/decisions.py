"""What portfolio mode computes around a policy: greedy allocations on held-out days, validation
fitness, the allocation on one bar. Pure JAX. The policy enters as
`policy(params, obs [B, N + 2], data=...) -> [B, N + 1]` greedy target weights (PPO's
`action_probabilities` for a simplex env; an ensemble averages its members' weights)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from evorl_core.data.arrays import PanelData
from evorl_core.modes.base import Env, Probabilities
from evorl_core.modes.portfolio.env import observe, rebalance


def _path(policy: Probabilities, params: Any, data: PanelData, start, num_days: int, env: Env):
    """Greedy targets [num_days, N + 1] and the log growth of each of the num_days - 1 transitions,
    from all cash at the close of day `start`; the held weights the policy sees drift as in the env."""
    p = env.params
    n = p.num_assets
    weights0 = jnp.zeros((n + 1,), jnp.float32).at[-1].set(1.0)
    start = jnp.asarray(start, jnp.int32).reshape(())

    def day(carry, i):
        weights, equity = carry
        t = start + i
        target = policy(params, observe(t, weights)[None], data=data)[0]
        growth, after, _, _ = rebalance(weights, target, data.tradable[:, t], data.open[:, t + 1], data.close[:, t],
                                        data.close[:, t + 1], p, equity)
        return (after, equity * jnp.exp(growth)), (target, growth)

    _, (targets, growth) = jax.lax.scan(day, (weights0, jnp.float32(1.0)), jnp.arange(num_days))
    return targets, growth[:-1]


def greedy_positions(policy: Probabilities, params: Any, data: PanelData, start, num_days: int, env: Env):
    """[num_days, N + 1] greedy target weights decided at the closes of days start .. start + num_days - 1."""
    return _path(policy, params, data, start, num_days, env)[0]


def validation_fitness(policy: Probabilities, params: Any, data: PanelData, num_days: int, env: Env):
    """Net log return of the greedy account over the validation days (float32, from all cash)."""
    return _path(policy, params, data, data.val_start, num_days, env)[1].sum()


def decision(policy: Probabilities, params: Any, data: PanelData, t, held, env: Env):
    """[N + 1] target weights at the close of bar t, holding weights `held` ([N + 1])."""
    return policy(params, observe(jnp.asarray(t, jnp.int32), jnp.asarray(held, jnp.float32))[None], data=data)[0]
