"""The phases of a run and how long each took: what the wait before the first update was spent on.

A run goes through loading and validating data, building features, compiling, training, the
backtest and (optionally) deploying. `PhaseClock` times them; status.json carries the current
`phase` and `phases`, a list of {name, started_at, seconds} (seconds is null for the phase under
way), written with every status update; `timefmt.format_phases` is how the CLI and the Live page
show them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

LOADING, FEATURES, COMPILING, TRAINING, BACKTEST, DEPLOY = (
    "loading data", "features", "compiling", "training", "backtest", "deploy")
PHASES = (LOADING, FEATURES, COMPILING, TRAINING, BACKTEST, DEPLOY)


class PhaseClock:
    """Times the phases of one session of a run. `start(name)` ends the phase under way and starts
    `name`; it returns the status fields to write (`phase`, `phases`) and tells `listener`."""

    def __init__(self, listener: Callable[[str, list[dict[str, Any]]], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.listener = listener
        self.clock = clock
        self.phases: list[dict[str, Any]] = []

    @property
    def current(self) -> str | None:
        return self.phases[-1]["name"] if self.phases and self.phases[-1]["seconds"] is None else None

    def _close(self, now: float) -> None:
        if self.current is not None:
            self.phases[-1]["seconds"] = round(now - self.phases[-1]["started_at"], 3)

    def start(self, name: str) -> dict[str, Any]:
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {', '.join(PHASES)}")
        now = self.clock()
        self._close(now)
        self.phases.append({"name": name, "started_at": now, "seconds": None})
        if self.listener is not None:
            self.listener(name, self.snapshot())
        return self.fields()

    def finish(self) -> dict[str, Any]:
        """End the phase under way (the run is over); the fields to write."""
        self._close(self.clock())
        return self.fields()

    def snapshot(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self.phases]

    def fields(self) -> dict[str, Any]:
        return {"phase": self.current, "phases": self.snapshot()}

    def seconds(self, name: str) -> float:
        """Total seconds spent in `name` so far (0 when it never ran; the phase under way counts to now)."""
        now = self.clock()
        return sum((p["seconds"] if p["seconds"] is not None else now - p["started_at"])
                   for p in self.phases if p["name"] == name)
