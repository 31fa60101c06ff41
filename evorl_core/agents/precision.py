"""Network arithmetic precision: which dtype the policy's matmuls and activations run in.

- `fp32`: everything float32 (the reference), matmuls at JAX's default float32 precision.
- `tf32`: float32 everywhere, the dense layers' products asked for TensorFloat-32
  (`precision="tensorfloat32"`: inputs rounded to 10 mantissa bits, float32 accumulation) on NVIDIA
  tensor cores. XLA on CPU ignores the setting, so on CPU tf32 is exactly fp32 (tested).
- `bf16`: the network's dense layers compute in bfloat16 (flax `dtype=bfloat16`) from float32
  parameters (`param_dtype=float32`); the network's outputs are cast back to float32 at its
  boundary, so log-probabilities, entropy, GAE, advantage normalisation, value targets, losses,
  gradients and Adam's moments are float32 (docs/internals.md says which and why).
- `auto`: the choice measured faster on the backend with the learning test passing. That is
  fp32 everywhere today: XLA on CPU gives no bf16 speed-up at our shapes, and no GPU figures yet
  show bf16 faster (docs/benchmarks.md; benchmarks/gpu_precision.sh measures them).

A run records the resolved choice (`resolved`), never `auto`; checkpoints and bundles hold float32
parameters whatever the precision, and evaluation (backtests, signals, the paper ledger) builds an
fp32 network unless told otherwise (`EVALUATION_PRECISION`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from evorl_core.config import TrainConfig
from evorl_core.system.backends import EVORL_NAME

# backend -> the precision `auto` means there (measured; docs/benchmarks.md)
AUTO = {"cpu": "fp32", "gpu": "fp32", "metal": "fp32", "tpu": "fp32"}
EVALUATION_PRECISION = "fp32"
COMPUTE_DTYPES = {"fp32": jnp.float32, "tf32": jnp.float32, "bf16": jnp.bfloat16}
# the `precision` of the network's dot products (None: JAX's default for the operands' dtype)
MATMUL_PRECISION = {"fp32": None, "tf32": "tensorfloat32", "bf16": None}


def resolve(precision: str, backend: str | None = None) -> str:
    """A concrete precision (fp32 | tf32 | bf16): `auto` becomes the backend's measured choice."""
    if precision != "auto":
        return precision
    name = backend or EVORL_NAME.get(jax.default_backend(), jax.default_backend())
    return AUTO.get(name, "fp32")


def resolved(config: TrainConfig, backend: str | None = None) -> TrainConfig:
    """The config with its precision resolved (what a run records)."""
    concrete = resolve(config.precision, backend)
    return config if concrete == config.precision else config.replace(precision=concrete)


def compute_dtype(precision: str):
    """The dtype of the network's matmuls and activations."""
    return COMPUTE_DTYPES[resolve(precision)]


def matmul_precision(precision: str) -> str | None:
    """The dot-product precision of the network's dense layers."""
    return MATMUL_PRECISION[resolve(precision)]


def to_float32(tree):
    """Cast every floating leaf to float32 (the network boundary); other leaves (masks) unchanged."""
    return jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
