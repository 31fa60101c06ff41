"""Actor-critic networks: separate actor and critic MLPs (Flax linen).

The original system used plain normal initialisers; `init_scheme="orthogonal"` gives the PureJaxRL
scheme (orthogonal sqrt(2) hidden, 0.01 policy head, 1.0 value head), which learns faster on
small networks and is what the `quick` preset uses.

`dtype` is the dtype of the matmuls and activations (`precision.py`: float32, or bfloat16 for
`bf16`) and `matmul_precision` that of their products (TensorFloat-32 for `tf32`); parameters are
always float32 (`param_dtype`), and every output is float32 at the network's boundary, so nothing
downstream of the network sees a bfloat16 value.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from evorl_core.agents.precision import compute_dtype, matmul_precision, to_float32


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
    dtype: Any = jnp.float32
    matmul_precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = nn.tanh if self.activation == "tanh" else nn.relu
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=_kernel_init(self.init_scheme, self.init_std, np.sqrt(2.0)),
                         bias_init=nn.initializers.zeros, dtype=self.dtype, param_dtype=jnp.float32,
                         precision=self.matmul_precision)(x)
            x = act(x)
        return nn.Dense(self.out, kernel_init=_kernel_init(self.init_scheme, self.init_std, self.head_scale),
                        bias_init=nn.initializers.zeros, dtype=self.dtype, param_dtype=jnp.float32,
                        precision=self.matmul_precision)(x)


class ActorCritic(nn.Module):
    """Returns (logits [.., A], value [..])."""

    num_actions: int
    hidden: Sequence[int] = (1024, 512, 256)
    activation: str = "tanh"
    init_scheme: str = "normal"
    init_std: float = 0.01
    dtype: Any = jnp.float32
    matmul_precision: Any = None

    def setup(self) -> None:
        self.actor = MLP(self.hidden, self.num_actions, self.activation, self.init_scheme, self.init_std, 0.01,
                         self.dtype, self.matmul_precision)
        self.critic = MLP(self.hidden, 1, self.activation, self.init_scheme, self.init_std, 1.0, self.dtype,
                          self.matmul_precision)

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return to_float32((self.actor(obs), jnp.squeeze(self.critic(obs), -1)))


class PortfolioActorCritic(nn.Module):
    """The portfolio policy: one shared per-asset network, so parameters do not grow with N.

    Input (features [B, N, D], weights [B, N + 1], mask [B, N]). Each asset's feature window and
    its current weight go through the same encoder (`hidden` widths) to an embedding h_i; the
    context is the mean of h_i over the tradable assets; asset i's score is a small head over
    (h_i, context), the cash score and the value come from (context, cash weight). A learned,
    state-independent log standard deviation makes the logistic-normal policy (`distributions`).
    Returns ((mean scores [B, N + 1], log std [B, N + 1], valid [B, N + 1]), value [B]).
    """

    hidden: Sequence[int] = (128, 64)
    activation: str = "tanh"
    init_scheme: str = "orthogonal"
    init_std: float = 0.01
    init_log_std: float = -0.5
    dtype: Any = jnp.float32
    matmul_precision: Any = None

    @nn.compact
    def __call__(self, inputs) -> tuple[tuple[jax.Array, jax.Array, jax.Array], jax.Array]:
        features, weights, mask = inputs
        act = nn.tanh if self.activation == "tanh" else nn.relu
        hidden_init = _kernel_init(self.init_scheme, self.init_std, np.sqrt(2.0))
        Dense = partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32,  # noqa: N806 - a layer class
                        precision=self.matmul_precision)
        x = jnp.concatenate([features, weights[..., :-1, None]], axis=-1)
        for width in self.hidden:
            x = act(Dense(width, kernel_init=hidden_init, bias_init=nn.initializers.zeros)(x))
        # the mean over up to 2000 assets is summed in float32 (bfloat16 keeps 8 bits of mantissa)
        m = mask[..., None].astype(jnp.float32)
        context = ((x.astype(jnp.float32) * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)).astype(x.dtype)
        width = self.hidden[-1]
        pair = jnp.concatenate([x, jnp.broadcast_to(context[..., None, :], x.shape)], axis=-1)
        pair = act(Dense(width, kernel_init=hidden_init, bias_init=nn.initializers.zeros, name="score_hidden")(pair))
        head_init = _kernel_init(self.init_scheme, self.init_std, 0.01)
        asset_scores = Dense(1, kernel_init=head_init, bias_init=nn.initializers.zeros, name="score")(pair)[..., 0]
        state = jnp.concatenate([context, weights[..., -1:].astype(x.dtype)], axis=-1)
        cash_score = Dense(1, kernel_init=head_init, bias_init=nn.initializers.zeros, name="cash_score")(state)
        mean = jnp.concatenate([asset_scores, cash_score], axis=-1).astype(jnp.float32)
        v = act(Dense(width, kernel_init=hidden_init, bias_init=nn.initializers.zeros, name="value_hidden")(state))
        value = Dense(1, kernel_init=_kernel_init(self.init_scheme, self.init_std, 1.0),
                      bias_init=nn.initializers.zeros, name="value")(v)[..., 0].astype(jnp.float32)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (), jnp.float32)
        valid = jnp.concatenate([mask, jnp.ones(mask.shape[:-1] + (1,), bool)], axis=-1)
        return (mean, jnp.broadcast_to(log_std, mean.shape), valid), value


def make_network(config, num_actions: int, action_kind: str = "discrete", precision: str | None = None) -> nn.Module:
    """The network of a config; `precision` (default: the config's) sets its compute dtype and the
    precision of its products."""
    chosen = precision or config.precision
    dtype, products = compute_dtype(chosen), matmul_precision(chosen)
    if action_kind == "simplex":
        return PortfolioActorCritic(hidden=tuple(config.hidden), activation=config.activation,
                                    init_scheme=config.init_scheme, init_std=config.init_std, dtype=dtype,
                                    matmul_precision=products)
    return ActorCritic(
        num_actions=num_actions,
        hidden=tuple(config.hidden),
        activation=config.activation,
        init_scheme=config.init_scheme,
        init_std=config.init_std,
        dtype=dtype,
        matmul_precision=products,
    )


def forward_flops_per_sample(obs_size: int, hidden: Sequence[int], num_actions: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of actor + critic for one observation."""
    def mlp(out: int) -> int:
        sizes = [obs_size, *hidden, out]
        return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    return mlp(num_actions) + mlp(1)


def portfolio_forward_flops_per_sample(num_assets: int, asset_input: int, hidden: Sequence[int]) -> int:
    """FLOPs (2 per MAC) of one forward pass of `PortfolioActorCritic` for one account: the shared
    encoder and score head run once per asset; cash score and value once."""
    sizes = [asset_input + 1, *hidden]
    encoder = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    width = hidden[-1]
    per_asset = encoder + 2 * (2 * width) * width + 2 * width
    once = 2 * (width + 1) + 2 * (width + 1) * width + 2 * width
    return num_assets * per_asset + once
