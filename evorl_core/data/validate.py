"""Validation: the one place that decides whether OHLCV data is usable.

A validated frame has a tz-naive, sorted, unique DatetimeIndex named `date` and float64 columns
`open, high, low, close, volume`. Nothing here fills gaps: a missing or inconsistent value is a
`DataError` naming the file, the column and the row, so a user can fix the data instead of
training on invented prices. The CSV reader and the Yahoo downloader call `_validated` directly
with their own row numbers and header spellings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

OHLCV = ("open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")
PRICE_TOLERANCE = 1e-6  # relative slack when checking low <= open, close <= high
# Prices the float32 environment can hold with their ratios finite and accurate (float32 ends at
# 3.4e38); 1e300 passes every other check but becomes inf on the device and NaN in training.
MIN_PRICE, MAX_PRICE = 1e-12, 1e12
# A one-day close-to-close move this large (either way) looks like an unadjusted split or bonus.
SPLIT_MOVE_THRESHOLD = 0.35
# Close ratios of common NSE bonus issues that stay below the threshold (1:2 -> 2/3, 1:3 -> 3/4),
# flagged when the day's ratio is within SPLIT_RATIO_TOLERANCE of one of them (relative: the day's
# own move rides on top of the ratio; -22.7% .. -35% days are worth a look either way).
BONUS_RATIOS = {"a 1:2 bonus": 2 / 3, "a 1:3 bonus": 3 / 4}
SPLIT_RATIO_TOLERANCE = 0.03


class DataError(ValueError):
    """Unusable market data; the message names the file (or symbol), the column and the row."""


class DataFallbackWarning(UserWarning):
    """`auto` used synthetic data for a symbol; the message says why."""


_MISSING_TOKENS = frozenset({"", "nan", "null", "none", "na", "n/a", "-"})
# Tried in order; the format that parses the most cells wins, its failures are reported.
_DATE_FORMATS = ("ISO8601", "%d-%b-%Y", "%d %b %Y", "%d-%m-%Y", "%d/%m/%Y", "%Y/%m/%d")
_TZ_SUFFIX = re.compile(r"(?<=\d)(Z|[+-]\d{2}:\d{2})$")


def validate_ohlcv(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return the validated frame for `df` or raise DataError.

    `df` has its dates in a DatetimeIndex or a `date` column and the columns open, high, low,
    close, volume (any capitalisation). The result has a tz-naive, sorted, unique DatetimeIndex
    named `date` and float64 columns `open, high, low, close, volume`. Row numbers in messages
    count as in a spreadsheet of the frame: header = row 1, first data row = row 2.
    """
    columns = {str(c).strip().lower(): c for c in df.columns}
    if "date" in columns:
        dates = df[columns["date"]]
        date_label = str(columns["date"])
    elif isinstance(df.index, pd.DatetimeIndex) or str(df.index.name).lower() == "date":
        dates = pd.Series(df.index, index=df.index)
        date_label = str(df.index.name or "date")
    else:
        raise DataError(f"{name}: missing column 'date' (row 1): give a DatetimeIndex or a date column")
    labels = {"date": date_label}
    for col in OHLCV:
        if col not in columns:
            raise DataError(f"{name}: missing column '{col}' (row 1); found: {_listing(df.columns)}")
        labels[col] = str(columns[col])
    rows = np.arange(len(df)) + 2
    frame = _validated(dates, {c: df[columns[c]] for c in OHLCV}, name, rows, labels)
    frame.attrs.update(df.attrs)
    return frame


def _validated(
    dates: pd.Series, values: Mapping[str, pd.Series], name: str, rows: np.ndarray, labels: Mapping[str, str]
) -> pd.DataFrame:
    if len(dates) == 0:
        raise DataError(f"{name}: no data rows")
    index = _parse_dates(dates, name, rows, labels["date"])
    numbers = {c: _parse_numbers(values[c], name, rows, labels[c]) for c in OHLCV}
    _check_dates(index, name, rows, labels["date"])
    _check_values(numbers, name, rows, labels)
    return pd.DataFrame(numbers, index=index)


def _parse_dates(raw: pd.Series, name: str, rows: np.ndarray, label: str) -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = pd.DatetimeIndex(raw)
    else:
        text = raw.fillna("").astype(str).str.strip().str.replace(_TZ_SUFFIX, "", regex=True)
        best: pd.DatetimeIndex | None = None
        for fmt in _DATE_FORMATS:
            candidate = pd.DatetimeIndex(pd.to_datetime(text, format=fmt, errors="coerce"))
            if best is None or candidate.notna().sum() > best.notna().sum():
                best = candidate
            if candidate.notna().all():
                break
        parsed = best
    if parsed.tz is not None:
        parsed = parsed.tz_localize(None)  # keep the exchange's wall-clock date
    bad = np.flatnonzero(parsed.isna())
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{name}: column '{label}', row {rows[i]}: cannot parse date {raw.iloc[i]!r}{_more(bad)}"
        )
    return parsed.normalize().as_unit("ns").rename("date")


def _parse_numbers(raw: pd.Series, name: str, rows: np.ndarray, label: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    text = raw.fillna("").astype(str).str.strip().str.replace(",", "", regex=False)  # 1,234.5
    missing = text.str.lower().isin(_MISSING_TOKENS).to_numpy()
    number = pd.to_numeric(text.where(~missing, "nan"), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(number) & ~missing)
    if bad.size:
        i = bad[0]
        raise DataError(f"{name}: column '{label}', row {rows[i]}: {raw.iloc[i]!r} is not a number{_more(bad)}")
    return number


def _check_dates(index: pd.DatetimeIndex, name: str, rows: np.ndarray, label: str) -> None:
    days = index.asi8
    step = np.diff(days)
    bad = np.flatnonzero(step <= 0)
    if not bad.size:
        return
    i = bad[0]
    date, previous = index[i + 1].date(), index[i].date()
    where = f"{name}: column '{label}', row {rows[i + 1]}"
    if step[i] == 0:
        raise DataError(f"{where}: duplicate date {date} (also in row {rows[i]})")
    hint = " (the file is newest-first: sort it oldest-first)" if (step < 0).all() else ""
    raise DataError(
        f"{where}: date {date} is earlier than {previous} in row {rows[i]}; dates must be ascending{hint}"
    )


def _check_values(numbers: Mapping[str, np.ndarray], name: str, rows: np.ndarray, labels: Mapping[str, str]) -> None:
    def fail(masks: Mapping[str, np.ndarray], describe) -> None:
        # Report the earliest offending row over all columns: that is where a user starts fixing.
        found = [(np.flatnonzero(m), col) for col, m in masks.items() if m.any()]
        if not found:
            return
        bad, col = min(found, key=lambda f: f[0][0])
        i = bad[0]
        total = sum(len(b) for b, _ in found)
        more = f" ({total - 1} more bad cells)" if total > 1 else ""
        raise DataError(f"{name}: column '{labels[col]}', row {rows[i]}: {describe(col, i)}{more}")

    fail({c: np.isnan(numbers[c]) for c in OHLCV},
         lambda c, i: "missing value (evorl never fills gaps: fix or delete the row)")
    fail({c: np.isinf(numbers[c]) for c in OHLCV}, lambda c, i: f"{numbers[c][i]} is not a finite number")
    fail({c: numbers[c] <= 0 for c in PRICES}, lambda c, i: f"price must be positive (got {numbers[c][i]:g})")
    fail({c: (numbers[c] < MIN_PRICE) | (numbers[c] > MAX_PRICE) for c in PRICES},
         lambda c, i: f"price {numbers[c][i]:g} is outside {MIN_PRICE:g} .. {MAX_PRICE:g}, the range evorl's "
                      "float32 accounting holds")
    fail({"volume": numbers["volume"] < 0}, lambda c, i: f"volume must be >= 0 (got {numbers[c][i]:g})")

    o, h, low, c = (numbers[k] for k in PRICES)
    body_top, body_bottom = np.maximum(o, c), np.minimum(o, c)

    def above(i: int) -> str:
        other = "close" if c[i] >= o[i] else "open"
        return f"high {h[i]:g} is below {other} {numbers[other][i]:g}"

    def below(i: int) -> str:
        other = "open" if o[i] <= c[i] else "close"
        return f"low {low[i]:g} is above {other} {numbers[other][i]:g}"

    fail({"high": h < body_top * (1 - PRICE_TOLERANCE)}, lambda _, i: above(i))
    fail({"low": low > body_bottom * (1 + PRICE_TOLERANCE)}, lambda _, i: below(i))


def _more(bad: np.ndarray) -> str:
    return f" ({len(bad) - 1} more rows like this)" if len(bad) > 1 else ""


def _listing(columns: Iterable[Any]) -> str:
    return ", ".join(str(c) for c in columns) or "(none)"


def adjust_for_dividends(frame: pd.DataFrame, adj_close: pd.Series, name: str, rows: np.ndarray,
                         label: str) -> pd.DataFrame:
    """Total-return prices: open, high, low and close of each day times adj_close / close of that
    day (volume unchanged). `adj_close` holds the raw cells of the `label` column, aligned with the
    frame's rows; a missing or non-positive value is a DataError naming its row."""
    adj = _parse_numbers(adj_close, name, rows, label)
    bad = np.flatnonzero(~np.isfinite(adj) | (adj <= 0))
    if bad.size:
        i = bad[0]
        what = "missing value (evorl never fills gaps: fix or delete the row)" if np.isnan(adj[i]) else (
            f"price must be positive (got {adj[i]:g})")
        raise DataError(f"{name}: column '{label}', row {rows[i]}: {what}{_more(bad)}")
    out = frame.copy()
    factor = adj / frame["close"].to_numpy()
    for col in PRICES:
        out[col] = frame[col].to_numpy() * factor
    return out


def suspicious_moves(frame: pd.DataFrame, symbol: str) -> list[str]:
    """Warnings, naming symbol and date, for one-day close-to-close moves that look like an
    unadjusted split or bonus: |move| > SPLIT_MOVE_THRESHOLD, or a ratio near a common bonus ratio."""
    close = frame["close"].to_numpy(dtype=np.float64)
    if len(close) < 2:
        return []
    ratio = close[1:] / close[:-1]
    out = []
    for i in np.flatnonzero((np.abs(ratio - 1.0) > SPLIT_MOVE_THRESHOLD)
                            | np.any([np.abs(ratio / r - 1.0) < SPLIT_RATIO_TOLERANCE
                                      for r in BONUS_RATIOS.values()], axis=0)):
        r = float(ratio[i])
        out.append(f"{symbol}: close moved {r - 1.0:+.1%} on {frame.index[i + 1].date()} "
                   f"(from {close[i]:g} to {close[i + 1]:g}, ratio {r:.3f}{_split_hint(r)}): this looks "
                   "like an unadjusted split or bonus; use adjusted prices or check the data")
    return out


def _split_hint(ratio: float) -> str:
    """' ~ a 1:2 bonus' near a bonus ratio, else ' ~ 1:10' when the ratio is within 10% of a simple
    fraction a/b (a, b up to 10): the day's own move rides on top of the split ratio."""
    for label, r in BONUS_RATIOS.items():
        if abs(ratio / r - 1.0) < SPLIT_RATIO_TOLERANCE:
            return f" ~ {label}"
    best = min(((a, b) for a in range(1, 11) for b in range(1, 11) if a != b),
               key=lambda ab: abs(ratio / (ab[0] / ab[1]) - 1.0))
    if abs(ratio / (best[0] / best[1]) - 1.0) < 0.1:
        return f" ~ {best[0]}:{best[1]}"
    return ""
