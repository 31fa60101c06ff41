"""Population-based training (PBT) of PPO agents as one vmapped program (docs/evolution.md).

A population is N runners stacked on a leading axis and trained by one `vmap` of `PPO.update`
with the market data shared. Every `pbt_interval` updates, inside the same compiled chunk:

1. fitness: each member's greedy, net-of-cost log return on the validation days (mean over
   symbols), computed on the device by the trading mode (`fitness_fn`). Test days are never looked at;
2. select: the bottom `pbt_fraction` of members each pick a random donor from the top fraction;
3. exploit: a replaced member copies its donor's network parameters, optimiser state and
   hyperparameters (it keeps its own env state and random key);
4. explore: each evolved hyperparameter of a replaced member is resampled within its range with
   probability `pbt_resample`, else multiplied by 0.8 or 1.25 (in the range's own scale).

`select`, `exploit` and `explore` are small pure functions of (population, fitness, key), tested
on made-up fitness arrays without training; `pbt_round` only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from evorl_core.agents.ppo import PPO, Hyper, Runner
from evorl_core.config import Range, TrainConfig, parse_space
from evorl_core.data.arrays import MarketData

PERTURB_FACTORS = (0.8, 1.25)
# Members computed side by side on CPU: on a 2-core CPU groups of 2-4 vmapped members ran 1.26x
# faster than one vmap of 16 (docs/evolution.md, "Throughput of a population"); accelerators want
# every member in one batch.
CPU_MEMBER_GROUP = 4
SCALE_CODES = {"linear": 0, "log": 1, "discount": 2}
# fitness_fn(params, data) -> scalar: one member's validation fitness, supplied by the trading mode
# (`modes.base.Mode.validation_fitness`), so PBT knows no env.
Fitness = Callable[[Any, MarketData], jax.Array]


class Population(NamedTuple):
    runner: Runner  # every leaf has a leading member axis
    key: jax.Array  # the PBT key (selection and exploration draws)
    round: jax.Array  # int32 rounds done


class RoundReport(NamedTuple):
    """One exploit/explore round, arrays with a leading member axis."""

    fitness: jax.Array  # [M] validation net log return before the round
    donor: jax.Array  # [M] int32, the member copied (itself when kept)
    replaced: jax.Array  # [M] bool
    before: Hyper  # hyperparameters before the round
    after: Hyper  # and after


class SpaceArrays(NamedTuple):
    """The search space as arrays in `Hyper` field order."""

    low: jax.Array
    high: jax.Array
    scale: jax.Array  # int32 SCALE_CODES
    evolve: jax.Array  # bool: evolved by PBT


def space_arrays(space: dict[str, Range], evolve: tuple[str, ...]) -> SpaceArrays:
    names = Hyper._fields
    return SpaceArrays(
        low=jnp.array([space[n].low for n in names], jnp.float32),
        high=jnp.array([space[n].high for n in names], jnp.float32),
        scale=jnp.array([SCALE_CODES[space[n].scale] for n in names], jnp.int32),
        evolve=jnp.array([n in evolve for n in names]),
    )


# -- transforms: perturbation and resampling happen in a space where the range is linear ----------
def _to_search(x: jax.Array, scale: jax.Array) -> jax.Array:
    return jnp.select([scale == 1, scale == 2], [jnp.log(x), -jnp.log1p(-x)], x)


def _from_search(y: jax.Array, scale: jax.Array) -> jax.Array:
    return jnp.select([scale == 1, scale == 2], [jnp.exp(y), -jnp.expm1(-y)], y)


def _as_matrix(hyper: Hyper) -> jax.Array:
    return jnp.stack([jnp.asarray(v, jnp.float32) for v in hyper], axis=-1)  # [M, H]


def _as_hyper(matrix: jax.Array) -> Hyper:
    return Hyper(*(matrix[..., i] for i in range(len(Hyper._fields))))


def sample(key: jax.Array, base: Hyper, space: SpaceArrays, members: int) -> Hyper:
    """A first generation: evolved hyperparameters drawn uniformly in search scale (log-uniform for
    log ranges) from `space`; the others are `base`'s for every member."""
    u = jax.random.uniform(key, (members, len(Hyper._fields)))
    lo, hi = _to_search(space.low, space.scale), _to_search(space.high, space.scale)
    drawn = _from_search(lo + u * (hi - lo), space.scale)
    base_matrix = jnp.broadcast_to(_as_matrix(base), drawn.shape)
    return _as_hyper(jnp.where(space.evolve, drawn, base_matrix))


# -- the three operators ----------------------------------------------------------------------
def select(fitness: jax.Array, fraction: float, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Truncation selection: the bottom `fraction` of members (at least one) are replaced, each by a
    uniformly drawn member of the top fraction. Ties are broken by member index. Returns
    (donor [M] int32, replaced [M] bool); a kept member is its own donor."""
    members = fitness.shape[0]
    count = max(1, int(members * fraction))
    order = jnp.argsort(jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf))  # worst first (stable)
    bottom, top = order[:count], order[members - count:]
    picks = top[jax.random.randint(key, (count,), 0, count)]
    donor = jnp.arange(members, dtype=jnp.int32).at[bottom].set(picks.astype(jnp.int32))
    replaced = jnp.zeros(members, bool).at[bottom].set(True)
    return donor, replaced


def exploit(runner: Runner, donor: jax.Array, replaced: jax.Array) -> Runner:
    """Replaced members take their donor's parameters, optimiser state and hyperparameters."""
    def take(tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: x[donor], tree)

    return runner._replace(params=take(runner.params), opt_state=take(runner.opt_state),
                           hyper=take(runner.hyper))


def explore(hyper: Hyper, replaced: jax.Array, key: jax.Array, space: SpaceArrays,
            resample_prob: float) -> Hyper:
    """Perturb (x0.8 / x1.25 in search scale, clipped to the range) or, with `resample_prob`,
    resample every evolved hyperparameter of the replaced members; the others are unchanged."""
    matrix = _as_matrix(hyper)
    k_choice, k_factor, k_uniform = jax.random.split(key, 3)
    shape = matrix.shape
    lo, hi = _to_search(space.low, space.scale), _to_search(space.high, space.scale)
    current = _to_search(matrix, space.scale)
    factor = jnp.where(jax.random.bernoulli(k_factor, 0.5, shape), PERTURB_FACTORS[1], PERTURB_FACTORS[0])
    # a log range perturbs the value itself by the factor: in log space that is adding log(factor)
    perturbed = jnp.where(space.scale == 1, current + jnp.log(factor), current * factor)
    resampled = lo + jax.random.uniform(k_uniform, shape) * (hi - lo)
    new = jnp.where(jax.random.bernoulli(k_choice, resample_prob, shape), resampled, perturbed)
    new = _from_search(jnp.clip(new, lo, hi), space.scale)
    change = replaced[:, None] & space.evolve[None, :]
    return _as_hyper(jnp.where(change, new, matrix))


# -- wiring -----------------------------------------------------------------------------------
def init_population(runner: Runner, config: TrainConfig) -> Population:
    """Population state around stacked runners (seeds seed, seed+1, ...): the first generation's
    evolved hyperparameters are drawn from the init space."""
    members = config.population
    key = jax.random.PRNGKey(config.seed + 7919)  # independent of every member's own key
    key, k_sample = jax.random.split(key)
    search = parse_space(config.search_space, "search_space")
    init_space = space_arrays(parse_space(config.init_space, "init_space", base=search), config.evolve)
    base = jax.tree_util.tree_map(lambda x: x[0], runner.hyper)
    hyper = sample(k_sample, base, init_space, members)
    return Population(runner._replace(hyper=hyper), key, jnp.int32(0))


def pbt_round(fitness_fn: Fitness, config: TrainConfig, population: Population,
              data: MarketData) -> tuple[Population, RoundReport]:
    """Fitness of every member on validation days, then select -> exploit -> explore."""
    space = space_arrays(parse_space(config.search_space, "search_space"), config.evolve)
    fitness = jax.vmap(fitness_fn, in_axes=(0, None))(population.runner.params, data)
    key, k_select, k_explore = jax.random.split(population.key, 3)
    donor, replaced = select(fitness, config.pbt_fraction, k_select)
    runner = exploit(population.runner, donor, replaced)
    hyper = explore(runner.hyper, replaced, k_explore, space, config.pbt_resample)
    report = RoundReport(fitness, donor, replaced, population.runner.hyper, hyper)
    return Population(runner._replace(hyper=hyper), key, population.round + 1), report


def member_group(config: TrainConfig) -> int:
    """How many members the chunk computes side by side: `config.member_group`, or automatically
    CPU_MEMBER_GROUP on CPU and every member on an accelerator (at most the number of members)."""
    if config.member_group > 0:
        return min(config.member_group, config.members)
    return min(CPU_MEMBER_GROUP, config.members) if jax.default_backend() == "cpu" else config.members


def over_members(fn: Callable[[Runner, MarketData], Any], group: int, members: int,
                 spmd_axis_name: str | None = None) -> Callable[[Runner, MarketData], Any]:
    """`fn(runner, data)` of one member -> the same over a leading member axis (data shared).
    One `vmap` when the group holds every member or members are split over a mesh axis, else
    `lax.map` over groups of `group` vmapped members (the last group takes the remainder). Each
    member's arithmetic is the same either way; only how many run side by side changes."""
    if spmd_axis_name is not None or group >= members:
        return jax.vmap(fn, in_axes=(0, None), spmd_axis_name=spmd_axis_name)

    def grouped(runner: Runner, data: MarketData):
        return jax.lax.map(lambda r: fn(r, data), runner, batch_size=group)

    return grouped


def chunk_program(ppo: PPO, config: TrainConfig, num_updates: int, with_round: bool, fitness_fn: Fitness,
                  spmd_axis_name: str | None = None) -> Callable[[Population, MarketData], Any]:
    """`num_updates` vmapped updates of every member, then (with_round) one PBT round: the pure
    function of one compiled chunk. Returns (population, metrics [M, K], report or None).
    `fitness_fn(params, data)`: one member's validation fitness (the trading mode's).
    `spmd_axis_name`: the mesh axis the member axis is split over (sharding constraints inside the
    update then keep it split)."""
    def updates(runner: Runner, data: MarketData):
        return ppo.run_updates(runner, data, num_updates)

    def chunk(population: Population, data: MarketData):
        runner, metrics = over_members(updates, member_group(config), config.members, spmd_axis_name)(
            population.runner, data)
        population = population._replace(runner=runner)
        if not with_round:
            return population, metrics, None
        population, report = pbt_round(fitness_fn, config, population, data)
        return population, metrics, report

    return chunk
