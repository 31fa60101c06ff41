"""Trading modes behind one interface (`modes.base.Mode`), chosen by `get(config)`.

- `single`: one env trades one symbol at a time from a discrete set of target exposures; a run
  over several symbols is one shared policy trading each of them with its own capital.
"""

from __future__ import annotations

from evorl_core.config import TrainConfig
from evorl_core.modes import portfolio, single
from evorl_core.modes.base import Env, Mode

MODES: dict[str, Mode] = {single.MODE.name: single.MODE, portfolio.MODE.name: portfolio.MODE}

__all__ = ["MODES", "Env", "Mode", "get"]


def get(config: TrainConfig) -> Mode:
    """The trading mode of a run."""
    return MODES[getattr(config, "mode", "single")]
