"""Durations as people read them (and the phases of a run); the one formatter the CLI and the
dashboard share."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any


def format_duration(seconds: float | None, clock: bool = False) -> str:
    """`1h 02m`, `3m 05s`, `42s` (default) or `1:02:03` / `03:05` with `clock=True`.

    None or a non-finite value reads `--:--` (clock) or an em dash.
    """
    if seconds is None or not math.isfinite(seconds):
        return "--:--" if clock else "—"
    seconds = int(round(max(seconds, 0.0))) if not clock else int(max(seconds, 0.0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if clock:
        return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def format_phases(phases: Sequence[Mapping[str, Any]] | None, now: float | None = None) -> str:
    """'loading data 1.2 s · features 0.3 s · compiling 11.0 s · training 3.4 s so far': one line
    for the CLI and the Live page ('' without phases)."""
    if not phases:
        return ""
    now = time.time() if now is None else now
    parts = []
    for p in phases:
        seconds = p.get("seconds")
        if seconds is None:
            started = p.get("started_at")
            elapsed = f"{max(0.0, now - started):.1f} s so far" if isinstance(started, (int, float)) else "under way"
            parts.append(f"{p.get('name')} {elapsed}")
        else:
            parts.append(f"{p.get('name')} {float(seconds):.1f} s")
    return " · ".join(parts)
