"""Dates against the exchange's trading calendar (docs/reliability.md, round 3, case 5).

Real data is checked against the Bombay Stock Exchange calendar (`exchange_calendars`' XBOM; NSE
trades the same sessions), computed locally from the package's rules, with no network. Without the
package, Monday to Friday stands in (and a note says so). Synthetic data is made on business days.

- Missing sessions are reported by range ("2024-03-01 .. 2024-06-20: 80 sessions missing").
- A hole longer than MAX_GAP_SESSIONS sessions is an error: the env would step across it as one
  day; trim the file to one side of it.
- Zero-volume rows on days the exchange was closed (holiday rows some downloads carry) are
  reported; a traded row on a holiday is a special session (Muhurat trading) and is kept.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.data.validate import DataError

EXCHANGE = "XBOM"
MAX_GAP_SESSIONS = 20  # a hole longer than a month of sessions is refused
SHOWN = 5


@functools.lru_cache(maxsize=4)
def _calendar(exchange: str) -> Any:
    try:
        import exchange_calendars
    except ImportError:  # optional at runtime: business days stand in
        return None
    return exchange_calendars.get_calendar(exchange, start="1998-01-01")


def sessions(start: Any, end: Any, exchange: str = EXCHANGE) -> tuple[pd.DatetimeIndex, str]:
    """The exchange's sessions from `start` to `end` (dates), and what calendar gave them."""
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    calendar = _calendar(exchange)
    if calendar is None:
        return pd.bdate_range(start, end), "Monday-Friday (exchange_calendars is not installed)"
    first, last = calendar.first_session.tz_localize(None), calendar.last_session.tz_localize(None)
    lo, hi = max(start, first), min(end, last)
    if lo > hi:
        return pd.bdate_range(start, end), "Monday-Friday (outside the exchange calendar's range)"
    days = calendar.sessions_in_range(lo, hi)
    return pd.DatetimeIndex(days).tz_localize(None).normalize(), f"the {exchange} exchange calendar"


def _ranges(days: pd.DatetimeIndex, expected: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """Runs of consecutive expected sessions in `days` (first, last, count)."""
    if not len(days):
        return []
    pos = expected.get_indexer(days)
    out, begin = [], 0
    for i in range(1, len(pos) + 1):
        if i == len(pos) or pos[i] != pos[i - 1] + 1:
            out.append((days[begin], days[i - 1], i - begin))
            begin = i
    return out


def calendar_problems(frame: pd.DataFrame, name: str, exchange: str = EXCHANGE,
                      max_gap: int = MAX_GAP_SESSIONS) -> list[str]:
    """Warnings for missing sessions (by range) and rows on closed days; DataError naming the
    longest hole when one is longer than `max_gap` sessions."""
    index = pd.DatetimeIndex(frame.index).normalize()
    if len(index) < 2:
        return []
    expected, which = sessions(index[0], index[-1], exchange)
    missing = expected.difference(index)
    closed = index.difference(expected)
    out = []
    holes = sorted(_ranges(missing, expected), key=lambda r: -r[2])
    if holes and holes[0][2] > max_gap:
        first, last, count = holes[0]
        raise DataError(f"{name}: {count} sessions missing from {first.date()} to {last.date()} (by {which}); "
                        f"the agent would step across the hole as one day: keep the rows on one side of it "
                        f"(holes longer than {max_gap} sessions are refused)")
    if holes:
        shown = ", ".join(f"{a.date()}" + (f" .. {b.date()}" if n > 1 else "") + f" ({n})"
                          for a, b, n in sorted(holes, key=lambda r: r[0])[:SHOWN])
        more = f" and {len(holes) - SHOWN} more" if len(holes) > SHOWN else ""
        out.append(f"{name}: {len(missing)} session(s) missing by {which}: {shown}{more}; the agent steps "
                   "across each gap as one day")
    volume = frame["volume"].to_numpy() if "volume" in frame else np.ones(len(index))
    phantom = index[np.isin(index, closed) & (volume == 0)]
    if len(phantom):  # a traded row on a holiday is a special session (Muhurat trading): kept
        dates = ", ".join(str(d.date()) for d in phantom[:SHOWN]) + (f" and {len(phantom) - SHOWN} more"
                                                                      if len(phantom) > SHOWN else "")
        out.append(f"{name}: {len(phantom)} zero-volume row(s) on days the exchange was closed ({dates}); "
                   "the agent would see them as trading days: remove them")
    return out
