"""Actor-critic networks: separate actor and critic MLPs (Flax linen).

The original system used plain normal initialisers; `init_scheme="orthogonal"` gives the PureJaxRL
scheme (orthogonal sqrt(2) hidden, 0.01 policy head, 1.0 value head), which learns faster on
small networks and is what the `quick` preset uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _kernel_init(init: str, std: float, scale: float):
    if init == "orthogonal":
        return nn.initializers.orthogonal(scale)
    return nn.initializers.normal(stddev=std)


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int
    activation: str = "tanh"
    init_scheme: str = "normal"
    init_std: float = 0.01
    head_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = nn.tanh if self.activation == "tanh" else nn.relu
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=_kernel_init(self.init_scheme, self.init_std, np.sqrt(2.0)),
                         bias_init=nn.initializers.zeros)(x)
            x = act(x)
        return nn.Dense(self.out, kernel_init=_kernel_init(self.init_scheme, self.init_std, self.head_scale),
                        bias_init=nn.initializers.zeros)(x)


class ActorCritic(nn.Module):
    """Returns (logits [.., A], value [..])."""

    num_actions: int
    hidden: Sequence[int] = (1024, 512, 256)
    activation: str = "tanh"
    init_scheme: str = "normal"
    init_std: float = 0.01

    def setup(self) -> None:
        self.actor = MLP(self.hidden, self.num_actions, self.activation, self.init_scheme, self.init_std, 0.01)
        self.critic = MLP(self.hidden, 1, self.activation, self.init_scheme, self.init_std, 1.0)

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.actor(obs), jnp.squeeze(self.critic(obs), -1)


def make_network(config, num_actions: int) -> ActorCritic:
    return ActorCritic(
        num_actions=num_actions,
        hidden=tuple(config.hidden),
        activation=config.activation,
        init_scheme=config.init_scheme,
        init_std=config.init_std,
    )


def forward_flops_per_sample(obs_size: int, hidden: Sequence[int], num_actions: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of actor + critic for one observation."""
    def mlp(out: int) -> int:
        sizes = [obs_size, *hidden, out]
        return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    return mlp(num_actions) + mlp(1)
