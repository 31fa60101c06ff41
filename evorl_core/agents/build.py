"""PPO paired with the run's trading mode: the one place an agent is built from a config.

The feature count comes from the feature registry and the observation size from the mode, so no
caller passes either by hand.
"""

from __future__ import annotations

from typing import Any

from evorl_core import modes
from evorl_core.agents.ppo import PPO
from evorl_core.config import TrainConfig


def make_ppo(config: TrainConfig, batch_constraint: Any = None, precision: str | None = None) -> PPO:
    """The PPO agent of a run: its mode's env, the network sized by the mode's observation;
    `precision` overrides the config's (evaluation builds an fp32 network: EVALUATION_PRECISION)."""
    return PPO(config, modes.get(config).make_env(config), batch_constraint=batch_constraint, precision=precision)


def observation_size(config: TrainConfig) -> int:
    """The length of one observation of a run (what the network's first layer takes)."""
    return modes.get(config).observation_size(config)
