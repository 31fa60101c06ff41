"""Shared display helpers of the presenters: downsampling, series (drawdown, trade markers,
metric columns) and metric values as text (labels, units, number and step texts, headline means).

Every other presenters module imports from here; this module imports no other one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.metrics import format_value, label

# downsampling ---------------------------------------------------------------------
MAX_POINTS = 2000


def downsample_indices(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Evenly spaced indices into a series of length n, always keeping the first and last."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def minmax_downsample_indices(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices keeping each bucket's minimum and maximum (so peaks and drawdowns survive).

    At most ``max_points`` indices, sorted, always including the first and last point; NaNs are
    ignored when choosing extremes.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    if max_points < 4:
        return downsample_indices(n, max_points)
    buckets = (max_points - 2) // 2
    edges = np.linspace(1, n - 1, buckets + 1).astype(np.int64)
    keep = [0, n - 1]
    filled = np.where(np.isnan(y), np.nan, y)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        seg = filled[lo:hi]
        if np.all(np.isnan(seg)):
            keep.append(lo)
            continue
        keep.append(lo + int(np.nanargmin(seg)))
        keep.append(lo + int(np.nanargmax(seg)))
    return np.unique(np.asarray(keep, dtype=np.int64))


def ohlc_downsample(df: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Aggregate consecutive OHLCV rows into at most max_points bars.

    Each bar covers a contiguous run of rows: first open, highest high, lowest low, last close,
    summed volume, dated by its first row.
    """
    n = len(df)
    if n <= max_points:
        return df
    group = (np.arange(n) * max_points) // n
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    ends = np.append(starts[1:], n) - 1
    data = {
        "open": df["open"].to_numpy(dtype=np.float64)[starts],
        "high": np.maximum.reduceat(df["high"].to_numpy(dtype=np.float64), starts),
        "low": np.minimum.reduceat(df["low"].to_numpy(dtype=np.float64), starts),
        "close": df["close"].to_numpy(dtype=np.float64)[ends],
    }
    if "volume" in df:
        data["volume"] = np.add.reduceat(df["volume"].to_numpy(dtype=np.float64), starts)
    return pd.DataFrame(data, index=df.index[starts])


# series ---------------------------------------------------------------------------
def drawdown(equity: np.ndarray) -> np.ndarray:
    """Underwater series: equity / running peak - 1 (0 at new highs, negative below)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size == 0:
        return equity
    peak = np.maximum.accumulate(np.where(np.isnan(equity), -np.inf, equity))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = equity / peak - 1.0
    return np.where(np.isfinite(dd), dd, np.nan)


def trade_markers(positions: np.ndarray, initial: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows where the target position rises (buys) and falls (sells), starting from ``initial``.

    The row for day t holds the position decided at its close, so a change at row t is against
    row t-1 (or ``initial`` for the first row, since a backtest starts flat).
    """
    p = np.asarray(positions, dtype=np.float64)
    if p.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    prev = np.concatenate([[initial], p[:-1]])
    change = p - prev
    return np.flatnonzero(change > 1e-12), np.flatnonzero(change < -1e-12)


def marker_points(frame: pd.DataFrame, execution: str) -> dict[str, dict[str, np.ndarray]]:
    """Dates and prices of entry (buy) and exit (sell) fills for one symbol's equity rows.

    ``next_open``: a decision at the close of t fills at the open of t+1 (a decision on the last
    test day has no fill inside the test range and is dropped); ``close``: it fills at the close
    of t.
    """
    dates = pd.to_datetime(frame["date"]).to_numpy()
    opens = frame["open"].to_numpy(dtype=np.float64)
    closes = frame["close"].to_numpy(dtype=np.float64)
    buys, sells = trade_markers(frame["position"].to_numpy(dtype=np.float64))
    out = {}
    for name, idx in (("entry", buys), ("exit", sells)):
        if execution == "next_open":
            idx = idx[idx + 1 < len(frame)] + 1
            out[name] = {"date": dates[idx], "price": opens[idx]}
        else:
            out[name] = {"date": dates[idx], "price": closes[idx]}
    return out


def metric_arrays(rows: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, np.ndarray]:
    """Columns of metrics.jsonl rows as float arrays (missing/None -> NaN)."""
    out = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        out[k] = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
    return out


def has_values(a: np.ndarray) -> bool:
    return bool(np.size(a)) and bool(np.any(np.isfinite(a)))


def last_finite(a: np.ndarray) -> float | None:
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    return float(finite[-1]) if finite.size else None


# metrics and numbers as text ------------------------------------------------------


# Metric labels, units and formats come from the engine's one registry (evorl_core.metrics.METRICS),
# so a figure reads the same on the pages, in the report and in the CLI.
pretty = label
format_metric = format_value


def number_text(value: Any, fmt: str = "{:,.2f}") -> str:
    """A number for a table cell, '—' for None/NaN (never the word None)."""
    if value is None or isinstance(value, bool):
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return fmt.format(v) if math.isfinite(v) else "—"


def steps_text(steps: Any) -> str:
    """200000 -> '200k', 1234567 -> '1.23M' (env steps in labels)."""
    if not isinstance(steps, (int, float)) or not math.isfinite(steps):
        return "?"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(steps) >= div:
            return f"{steps / div:.3g}{unit}"
    return f"{int(steps)}"


def headline(backtest: Mapping[str, Mapping[str, Any]] | None) -> dict[str, float | None]:
    """Mean total return and Sharpe over symbols, for run lists."""
    if not backtest:
        return {"total_return": None, "sharpe": None}
    out = {}
    for key in ("total_return", "sharpe"):
        vals = [m.get(key) for m in backtest.values() if isinstance(m, Mapping)]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        out[key] = float(np.mean(vals)) if vals else None
    return out


# What Markdown and Streamlit's extensions act on inside one line of text: brackets (links,
# images, `:color[...]` directives), `<` (HTML, autolinks), backticks, `*`, `~`, `$` (LaTeX),
# a backslash; an underscore at a word's edge (emphasis; `dp_charge` is left alone); a colon
# that opens `:emoji:`, `:material/icon:` or an `http://` autolink; and at the start,
# a heading, list, quote or rule marker. Everything else (file names, ": ", parentheses) is inert.
_MARKDOWN_ACTIVE = re.compile(r"([\\`*\[\]<~$|{}])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=//|[\w+-]+:|material/)")
_BLOCK_START = re.compile(r"^(\s*(?:\d+(?=[.)]))?)([#>+=-]|(?<=\d)[.)])")


def plain(text: Any) -> str:
    """Text that did not come from our code (error texts quoting input, symbols, file and run names,
    notes, ledger fields) made safe to pass to any Markdown-rendering element (st.error, st.caption,
    st.subheader, an expander's or a button's label): every construct Markdown or Streamlit could
    act on is backslash-escaped (see _MARKDOWN_ACTIVE), so the text shows literally and nothing in
    it can make the browser fetch a URL. Line breaks become spaces (one paragraph)."""
    line = _MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), " ".join(str(text).split()))
    return _BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), line)


def message_markdown(text: Any) -> str:
    """A message of several lines (a DataError lists one problem a line) as Markdown that shows each
    line literally (`plain`) on its own line (Markdown joins plain line breaks into one paragraph)."""
    return "  \n".join(plain(line) for line in str(text).splitlines())
