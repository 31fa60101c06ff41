"""Sizing a run before it compiles: FLOPs, memory, whether it fits, the mesh, chunk sizes.

Asked by the training loop, by `training.pipeline.preflight` and by the Train form, so every
front end refuses the same runs with the same words.
"""

from __future__ import annotations

import math

import jax
import psutil

from evorl_core.agents import pbt, ppo
from evorl_core.agents.build import observation_size
from evorl_core.config import ConfigError, TrainConfig
from evorl_core.data.features import num_features
from evorl_core.system.backends import device_memory

TARGET_CHUNK_S = 2.0
# Rough sustained FLOP rates used only to choose how many updates go in one compiled chunk.
ASSUMED_FLOPS = {"cpu": 4e10, "gpu": 2e13, "cuda": 2e13, "rocm": 1e13, "metal": 3e12, "METAL": 3e12}


def update_flops(config: TrainConfig) -> float:
    """Analytic network FLOPs of one PPO update of one member (`agents.ppo.update_flops` at the
    observation size of the run's mode)."""
    return ppo.update_flops(config, observation_size(config))


def choose_updates_per_chunk(config: TrainConfig, remaining: int) -> int:
    """Updates per compiled chunk: the configured number, else about TARGET_CHUNK_S of work.

    The automatic choice prefers a divisor of ``remaining`` (down to a quarter of the target), so
    that the last chunk has the size of the others: a smaller tail needs a compile of its own,
    which showed as a stall at 100% on the Live page. ``train`` compiles any tail up front.
    """
    if config.updates_per_chunk > 0:
        return max(1, min(config.updates_per_chunk, remaining))
    flops = update_flops(config) * config.members
    rate = ASSUMED_FLOPS.get(jax.default_backend(), 4e10)
    target = max(1, min(int(TARGET_CHUNK_S * rate / max(flops, 1.0)), 64, remaining))
    lowest = max(1, -(-target // 4))
    return next((d for d in range(target, lowest - 1, -1) if remaining % d == 0), target)


def memory_parts(config: TrainConfig, data_shards: int = 1) -> tuple[float, float]:
    """Bytes of one member on one device, (held, working): held for the whole run (network
    parameters with their gradients and Adam moments, env states and observations), and working
    only while its update runs (the rollout: observations, actions, log-probs, values, rewards, dones,
    advantages, targets, and its shuffled copy; the activations of one minibatch forward and
    backward pass). With `data_shards` the env batch, rollout and minibatch are split over devices;
    parameters and optimiser state are whole on each."""
    obs_size = observation_size(config)
    if config.mode == "portfolio":
        return _portfolio_parts(config, obs_size, data_shards)
    widths = [obs_size, *config.hidden]
    layer_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    head = config.hidden[-1] * (len(config.positions) + 1) + len(config.positions) + 1
    params = 2 * layer_params + head  # actor and critic
    per_sample = obs_size + 8  # rollout row: observation + scalars
    rollout = config.batch_size * per_sample * 2  # the rollout and its shuffled copy
    activations = config.minibatch_size * (2 * sum(config.hidden) + obs_size) * 3
    held = 4 * 4 * params + 4 * config.num_envs * (obs_size + 8) / data_shards
    working = 4 * (rollout + activations) / data_shards
    return float(held), float(working)


def _portfolio_parts(config: TrainConfig, obs_size: int, data_shards: int) -> tuple[float, float]:
    """`memory_parts` of portfolio mode: the shared per-asset network is small, but every sample
    of a minibatch runs it once per asset (activations grow with N), and each rollout row holds
    N + 1 action scores next to the compact observation."""
    n = len(config.symbols)
    asset_input = config.window * num_features(config) + 1
    widths = [asset_input, *config.hidden]
    width = config.hidden[-1]
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True)) + 4 * width * width + 8 * width
    per_sample = obs_size + (n + 1) + 8
    rollout = config.batch_size * per_sample * 2
    per_account = n * (asset_input + 2 * sum(config.hidden) + 2 * width)
    activations = config.minibatch_size * per_account * 3 + config.num_envs * per_account
    held = 4 * 4 * params + 4 * config.num_envs * (obs_size + 8) / data_shards
    working = 4 * (rollout + activations) / data_shards
    return float(held), float(working)


def memory_estimate(config: TrainConfig, population_shards: int = 1, data_shards: int = 1,
                    group: int | None = None) -> float:
    """Bytes a run needs on each device, estimated before compiling (`memory_parts` per member):
    every member's held bytes, plus the working bytes of the members that update side by side
    (all of them, or `group` when members run in groups, `pbt.over_members`). An estimate,
    good to a factor of about two (docs/evolution.md); used to refuse populations that cannot fit.
    On a mesh, members are split over `population_shards` devices (one vmap on each)."""
    held, working = memory_parts(config, data_shards)
    members = math.ceil(config.members / population_shards)
    side_by_side = members if group is None else min(group, members)
    return held * members + working * side_by_side


def available_memory_bytes() -> float:
    """What a run may use on each device: this process's first device's free memory where the
    backend reports it (GPU), else the host's available memory (CPU)."""
    memory = device_memory(jax.local_devices()[0]) or {}
    if "limit_mb" in memory:
        return (memory["limit_mb"] - memory.get("in_use_mb", 0.0)) * 2**20
    return float(psutil.virtual_memory().available)


def mesh_shards(members: int, devices: int) -> tuple[int, int]:
    """(population shards, data shards) of the loop's mesh: members first (a member per device
    needs no communication), the env batch takes the rest. (1, 1) on one device."""
    population_shards = math.gcd(members, devices) if members > 1 else 1
    return population_shards, devices // population_shards


def check_fits(config: TrainConfig, available: float | None = None, population_shards: int = 1,
               data_shards: int = 1) -> None:
    """Refuse, before compiling, a run whose estimated memory per device exceeds what is available,
    naming the number of members (or the network size) that would fit. On one device, members in
    groups (`pbt.member_group`) need working memory for one group only."""
    available = available_memory_bytes() if available is None else available
    group = pbt.member_group(config) if population_shards * data_shards == 1 else None
    need = memory_estimate(config, population_shards, data_shards, group)
    if need <= available:
        return
    held, working = memory_parts(config, data_shards)
    fit = 0  # members per device that fit: held bytes for each, working bytes for those side by side
    while fit + 1 < config.members and \
            held * (fit + 1) + working * min(group or fit + 1, fit + 1) <= available:
        fit += 1
    fit *= population_shards
    gib = 2**30
    what = f"{config.members} members" if config.members > 1 else "one agent"
    where = " per device" if population_shards * data_shards > 1 else ""
    hint = (f"at most {fit} members fit; use --population/--seeds {max(fit, 1)} or a smaller network"
            if fit >= 1 else "a smaller network (--hidden), batch (--num-envs, --num-steps) or minibatch fits")
    field = ("population" if config.evolving else "seeds") if config.members > 1 and fit >= 1 else \
        _largest_setting(config, need, population_shards, data_shards, group)
    if field not in ("population", "seeds", "hidden"):
        hint = f"a smaller --{field.replace('_', '-')} (the setting that takes most of the memory) fits"
    verb = "need" if config.members > 1 else "needs"
    raise ConfigError(f"{field}: {what} {verb} about {need / gib:.1f} GiB{where}, {available / gib:.1f} GiB is "
                      f"available; {hint}")


MEMORY_SETTINGS = ("window", "hidden", "num_envs", "num_steps", "minibatch_size")


def _largest_setting(config: TrainConfig, need: float, population_shards: int, data_shards: int,
                     group: int | None) -> str:
    """The setting whose return to its default saves the most memory: the one to name when a run
    does not fit (a huge --window is a window problem, not a network-size one)."""
    default = TrainConfig()
    saved: dict[str, float] = {}
    for field in MEMORY_SETTINGS:
        if getattr(config, field) == getattr(default, field):
            continue
        try:
            smaller = memory_estimate(config.replace(**{field: getattr(default, field)}), population_shards,
                                      data_shards, group)
        except Exception:  # noqa: BLE001 - a combination the estimate cannot size: not the culprit
            continue
        saved[field] = need - smaller
    best = max(saved, key=saved.get, default=None)
    return best if best is not None and saved[best] > 0 else "hidden"


def pbt_chunk_size(k: int, interval: int) -> int:
    """The largest chunk size <= k that divides the PBT interval, so rounds fall on chunk ends."""
    return max(d for d in range(1, min(k, interval) + 1) if interval % d == 0)
