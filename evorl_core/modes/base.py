"""The Mode interface: everything shared code may ask of a trading mode.

A trading mode (one symbol per env, or one account over a universe) is a value of `Mode`, chosen
by `modes.get(config)`. Agents, training, evaluation and deploy never import an env module: they
ask the mode for an `Env` (pure functions plus their parameters) and for the few mode-specific
computations around a policy (greedy decisions on held-out days, validation fitness, the decision
on one bar). Each mode is one folder under `modes/` (env, accounting, baselines, NumPy reference)
and modes never import each other (an import-linter contract).

A policy enters as `probabilities(params, obs[B, O]) -> [B, A]`: the agent's action probabilities
(an ensemble passes its averaged probabilities), so a mode needs no network and no algorithm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jax

from evorl_core.config import TrainConfig
from evorl_core.data.arrays import MarketData

Probabilities = Callable[[Any, jax.Array], jax.Array]


@dataclass(frozen=True)
class Env:
    """A trading env as a value (gymnax-style pure functions; market data is always an argument).
    A plain object, not a pytree: jitted code closes over it and never takes it as an argument.

    `reset(key, params, data) -> (obs, state)`;
    `step(key, state, action, params, data) -> (obs, state, reward, done, info)` with auto-reset.
    `info` holds at least `episode_return`, `returned_episode`, `equity`, `position` (the exposure
    held after the step) and `turnover` (exposure traded at the step): the scalars PPO reports.

    `action_kind`: "discrete" (an action is one of `num_actions` choices, a categorical policy) or
    "simplex" (an action is a vector of `num_actions` real scores that the env turns into target
    weights with a masked softmax; a logistic-normal policy, docs/portfolio.md).
    `network_input(obs, data)`: what the network reads for one observation, when the observation
    the env returns (and PPO stores) is compact (portfolio mode stores the day and the weights, and
    the feature windows of every asset are gathered from `data` when the network runs). None: the
    observation itself. `example_input()`: a batch of one network input of the right shapes
    without any market data (to initialise parameters, or a template to restore them into); None:
    a zero observation.
    """

    params: Any
    reset: Callable[..., Any]
    step: Callable[..., Any]
    observation_size: int
    num_actions: int
    action_kind: str = "discrete"
    network_input: Callable[..., Any] | None = None
    example_input: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Mode:
    """One trading mode. Every field is a function or module of that mode alone."""

    name: str
    # TrainConfig -> Env
    make_env: Callable[[TrainConfig], Env]
    # TrainConfig -> length of one observation (the form, sizing and the network ask this)
    observation_size: Callable[[TrainConfig], int]
    # (probabilities, params, data, start [S], num_days, env) -> [S, num_days] target positions,
    # greedy from flat, decided at the close of days start .. start + num_days - 1
    greedy_positions: Callable[[Probabilities, Any, MarketData, jax.Array, int, Env], jax.Array]
    # (probabilities, params, data, num_days, env) -> scalar fitness on the validation days
    # (net-of-cost log return under the mode's accounting; never reads a test day)
    validation_fitness: Callable[[Probabilities, Any, MarketData, int, Env], jax.Array]
    # (probabilities, params, data, t, held, env) -> [A] action probabilities at the close of bar t of
    # a one-symbol market (signals and the paper ledger)
    decision: Callable[[Probabilities, Any, MarketData, jax.Array, jax.Array, Env], jax.Array]
    accounting: ModuleType  # exact NumPy equity, benchmark and cost figures (docs/accounting.md)
    baselines: ModuleType  # strategies in the same accounting (docs/evaluation.md)
