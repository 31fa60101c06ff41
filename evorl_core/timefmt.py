"""Durations as people read them; the one formatter the CLI and the dashboard share."""

from __future__ import annotations

import math


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
