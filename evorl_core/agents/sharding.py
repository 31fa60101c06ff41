"""Multi-device layout: how a run's arrays are split over a device mesh. Pure description.

The mesh has two named axes, `"population"` and `"data"` (the env batch). A single agent uses a
population axis of size 1, so every device works on the env batch; a population of N agents
(leading axis N on every runner leaf) can be split over the population axis, the env batch
over the data axis, or both. This module only *returns* shardings and constraint functions;
it never changes an algorithm object. The training loop passes them on:

- `Layout.runner`: a pytree of NamedShardings like the runner: env-batch leaves (`env_state`,
  `obs`: leading axis = num_envs, after the population axis if any) split over `"data"`,
  everything else (network params, optimiser state, key, hyperparameters, counter) replicated
  over `"data"` (and split over `"population"` when there is a population axis);
- `Layout.data`: the market data, replicated everywhere;
- `Layout.minibatch_constraint`: for `PPO(batch_constraint=...)`, keeps every minibatch split along
  its sample axis so each device computes the loss and gradients of its part and XLA inserts the
  all-reduce of the gradients (data-parallel SGD, semantically identical to one device).

Everything goes through `jax.jit` with explicit in/out shardings; XLA's SPMD partitioner inserts
the collectives. Results equal a one-device run up to the order of float reductions
(tests/test_sharding.py checks 1 vs 4 devices on CPU with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`).

Several processes or hosts: `distributed.initialize` (jax.distributed) joins them first, then
`make_mesh(jax.devices())` spans every process's devices in process order, so a row of the
population axis stays on one process wherever the sizes allow. Each process runs the same program; see docs/scaling.md. No home-made
cluster code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

POPULATION_AXIS = "population"
DATA_AXIS = "data"


class ShardingError(ValueError):
    """The configuration cannot be split over the devices (message says what to change)."""


class Layout(NamedTuple):
    mesh: Mesh
    runner: Any  # pytree of NamedSharding, same structure as the runner
    data: NamedSharding
    minibatch_constraint: Callable[[Any], Any]

    @property
    def jit_kwargs(self) -> dict[str, Any]:
        """`in_shardings`/`out_shardings` for `jax.jit(run_updates)`: (runner, data) -> (runner, metrics)."""
        metrics = NamedSharding(self.mesh, PartitionSpec())
        return {"in_shardings": (self.runner, self.data), "out_shardings": (self.runner, metrics)}


def make_mesh(devices: list | None = None, population_shards: int = 1) -> Mesh:
    """A 2-D mesh (population, data) over `devices` (default: every device of the default backend,
    i.e. the local ones, or all hosts' after `jax.distributed.initialize`)."""
    devices = list(jax.devices() if devices is None else devices)
    if population_shards < 1 or len(devices) % population_shards:
        raise ShardingError(f"population shards: {population_shards} does not divide {len(devices)} devices")
    grid = np.asarray(devices).reshape(population_shards, len(devices) // population_shards)
    return Mesh(grid, (POPULATION_AXIS, DATA_AXIS))


def check_divisible(num_envs: int, minibatch_size: int, mesh: Mesh) -> None:
    n = mesh.shape[DATA_AXIS]
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


def runner_shardings(runner: Any, mesh: Mesh, population: bool = False) -> Any:
    """A pytree like `runner` (a ppo.Runner, optionally with a leading population axis) of
    NamedShardings: env batch split over "data", the rest replicated over "data"."""
    lead = (POPULATION_AXIS,) if population else ()
    whole = NamedSharding(mesh, PartitionSpec(*lead))
    split = NamedSharding(mesh, PartitionSpec(*lead, DATA_AXIS))
    shardings = jax.tree_util.tree_map(lambda _: whole, runner)
    return shardings._replace(
        env_state=jax.tree_util.tree_map(lambda _: split, runner.env_state),
        obs=split,
    )


def minibatch_constraint(mesh: Mesh) -> Callable[[Any], Any]:
    """Keep [num_minibatches, minibatch_size, ...] arrays split along the sample axis, so each
    device takes its share of every gradient step. Under `vmap` over a population the batched
    axis is left to the partitioner."""
    spec = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))

    def constrain(tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)

    return constrain


def layout(runner: Any, config: Any, devices: list | None = None, population: bool = False,
           population_shards: int = 1) -> Layout:
    """The layout of a run over `devices` (default: all); with `population`, runner leaves carry a
    leading population axis, split over `population_shards` rows of the mesh. Raises ShardingError
    when the env batch or the minibatch does not divide over the data axis."""
    mesh = make_mesh(devices, population_shards)
    check_divisible(config.num_envs, config.minibatch_size, mesh)
    return Layout(
        mesh=mesh,
        runner=runner_shardings(runner, mesh, population),
        data=NamedSharding(mesh, PartitionSpec()),
        minibatch_constraint=minibatch_constraint(mesh),
    )
