"""Action distributions of the policies PPO trains, chosen by the env's `action_kind`.

- `Categorical` (discrete actions: single-asset mode): the network's output is logits [.., A].
  Sampling is argmax(logits + Gumbel noise), exactly `jax.random.categorical`.
- `LogisticNormal` (target weights on a simplex: portfolio mode): the network's output is
  (mean scores [.., N + 1], log standard deviation [.., N + 1], valid [.., N + 1]); an action is a
  score vector z = mean + std * eps with eps ~ Normal(0, 1), and the env's target weights are the
  softmax of z over the valid components (the tradable assets and cash), i.e. a logistic-normal
  draw on the simplex. The log-probability PPO uses is that of z: the sum over valid components of
  the Normal log-density (invalid components get weight 0 whatever their score, so they carry no
  probability); the entropy is the Normal entropy per valid component (its mean, so that the
  entropy coefficient means the same at any N). The greedy allocation is softmax(mean).

Every function takes the network output as it comes and works on any leading batch shape.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


class Categorical:
    kind = "discrete"

    @staticmethod
    def noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.gumbel(key, shape)

    @staticmethod
    def sample(out: Any, noise: jax.Array) -> jax.Array:
        return jnp.argmax(out + noise, axis=-1)

    @staticmethod
    def log_prob(out: Any, action: jax.Array) -> jax.Array:
        return jnp.take_along_axis(jax.nn.log_softmax(out), action[..., None], axis=-1)[..., 0]

    @staticmethod
    def entropy(out: Any) -> jax.Array:
        log_probs = jax.nn.log_softmax(out)
        return -(jnp.exp(log_probs) * log_probs).sum(-1)

    @staticmethod
    def greedy(out: Any) -> jax.Array:
        """Action probabilities (signals, ensembles average them)."""
        return jax.nn.softmax(out)


class LogisticNormal:
    kind = "simplex"

    @staticmethod
    def noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.normal(key, shape)

    @staticmethod
    def sample(out: Any, noise: jax.Array) -> jax.Array:
        mean, log_std, _ = out
        return mean + jnp.exp(log_std) * noise

    @staticmethod
    def log_prob(out: Any, action: jax.Array) -> jax.Array:
        mean, log_std, valid = out
        z = (action - mean) * jnp.exp(-log_std)
        density = -0.5 * jnp.square(z) - log_std - 0.5 * _LOG_2PI
        return jnp.where(valid, density, 0.0).sum(-1)

    @staticmethod
    def entropy(out: Any) -> jax.Array:
        _, log_std, valid = out
        per = 0.5 * (_LOG_2PI + 1.0) + log_std
        return jnp.where(valid, per, 0.0).sum(-1) / jnp.maximum(valid.sum(-1), 1)

    @staticmethod
    def greedy(out: Any) -> jax.Array:
        """Target weights of the mean scores (softmax over the valid components)."""
        mean, _, valid = out
        return jax.nn.softmax(jnp.where(valid, mean, -1e30), axis=-1)


DISTRIBUTIONS = {Categorical.kind: Categorical, LogisticNormal.kind: LogisticNormal}


def for_kind(kind: str):
    return DISTRIBUTIONS[kind]
