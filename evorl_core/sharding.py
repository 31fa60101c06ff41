"""Multi-device data parallelism: the env batch sharded over a 1-D device mesh.

With more than one device, the training loop lays the runner out like this (see `shard_runner`):

- env-batch leaves (`runner.env_state`, `runner.obs`: leading axis = num_envs) are split over the
  mesh axis `"data"`, so each device steps its own slice of the envs and runs the rollout for it;
- everything else (network params, optimiser state, PRNG key, hyperparameters, update counter) and
  the market data are replicated;
- inside the update, `PPO.batch_constraint` keeps every minibatch split along its sample axis,
  so each device computes the loss and gradients of its part of the minibatch and XLA inserts the
  all-reduce of the gradients (data-parallel SGD, semantically identical to one device).

Everything goes through `jax.jit` with explicit in/out shardings; XLA's SPMD partitioner inserts
the collectives. Results equal a one-device run up to the order of float reductions
(tests/test_sharding.py checks 1 vs 4 devices on CPU with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`).

Multi-host (several machines, each with its devices): call `jax.distributed.initialize()` at the
start of every process (coordinator address, process count and id come from the cluster
environment or arguments), then `data_mesh(jax.devices())` spans all hosts' devices. Each process
runs the same program; see docs/benchmarks.md. No home-made cluster code.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


class ShardingError(ValueError):
    """The configuration cannot be split over the devices (message says what to change)."""


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: every device of the default backend, i.e. the
    local ones, or all hosts' after `jax.distributed.initialize`)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_divisible(num_envs: int, minibatch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if num_envs % n:
        raise ShardingError(
            f"num_envs: {num_envs} envs cannot be split evenly over {n} devices; "
            f"use a multiple of {n} (e.g. {max(n, num_envs // n * n)}) or fewer devices "
            "(JAX_PLATFORMS / CUDA_VISIBLE_DEVICES)"
        )
    if minibatch_size % n:
        raise ShardingError(
            f"minibatch_size: {minibatch_size} cannot be split evenly over {n} devices; use a multiple of {n}"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def env_batch(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the devices, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def runner_shardings(runner: Any, mesh: Mesh) -> Any:
    """A pytree like `runner` (a ppo.Runner) of NamedShardings: env batch split, the rest replicated."""
    rep, split = replicated(mesh), env_batch(mesh)
    shardings = jax.tree_util.tree_map(lambda _: rep, runner)
    return shardings._replace(
        env_state=jax.tree_util.tree_map(lambda _: split, runner.env_state),
        obs=split,
    )


def shard_runner(runner: Any, mesh: Mesh) -> Any:
    """Place a runner on the mesh (env batch split over "data", everything else replicated)."""
    return jax.device_put(runner, runner_shardings(runner, mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree (e.g. the market data) whole on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def minibatch_constraint(mesh: Mesh):
    """For `PPO.batch_constraint`: keep [num_minibatches, minibatch_size, ...] arrays split along
    the sample axis, so each device takes its share of every gradient step."""
    spec = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))

    def constrain(tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)

    return constrain


def setup(ppo: Any, runner: Any, data: Any, config: Any, devices: list | None = None):
    """Shard a run over `devices` (default: all devices).

    Returns (runner, data, jit_kwargs): the placed runner and market data, and the
    `in_shardings`/`out_shardings` to give `jax.jit(ppo.run_updates, ...)` so that compiled chunks
    keep the layout from one call to the next. Sets `ppo.batch_constraint`.
    """
    mesh = data_mesh(devices)
    check_divisible(config.num_envs, config.minibatch_size, mesh)
    ppo.batch_constraint = minibatch_constraint(mesh)
    runner_sh = runner_shardings(runner, mesh)
    rep = replicated(mesh)
    runner = jax.device_put(runner, runner_sh)
    data = jax.device_put(data, rep)
    jit_kwargs = {"in_shardings": (runner_sh, rep), "out_shardings": (runner_sh, rep)}
    return runner, data, jit_kwargs
