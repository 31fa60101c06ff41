"""Validation: the one place that decides whether OHLCV data is usable.

A validated frame has a tz-naive, sorted, unique DatetimeIndex named `date` and float64 columns
`open, high, low, close, volume`. Nothing here fills gaps: a missing or inconsistent value is a
`DataError` naming the file, the column and the row, so a user can fix the data instead of
training on invented prices. One pass finds every problem of a file: the error lists them, one a
line and in row order (the first MAX_LISTED, then how many more), so one upload shows them all.
Only a problem that makes the other checks meaningless (no rows, a missing column, a date column
where no cell parses) stops early. The CSV reader and the Yahoo downloader call `_validated`
directly with their own row numbers and header spellings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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
# Problems one DataError lists; the message counts the rest ("... and 80 more").
MAX_LISTED = 20


class DataError(ValueError):
    """Unusable market data; the message names the file (or symbol), the column and the row.

    `problems`: the problems listed, one line each (at most MAX_LISTED of the `count` found); an
    error raised with just a message has that message as its one problem. The message of several
    problems (`DataError.listing`) has each on its own line; its first line is the first problem
    and how many more there are, so a caller that shows only one line still shows a real problem.
    """

    def __init__(self, message: str = "", problems: Iterable[str] | None = None, count: int | None = None):
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) if problems is not None else ((message,) if message else ())
        self.count: int = len(self.problems) if count is None else count

    def __reduce__(self):  # keep problems and count across pickling (ValueError pickles args only)
        return type(self), (str(self), self.problems, self.count)

    @classmethod
    def listing(cls, problems: Sequence[str], count: int | None = None) -> DataError:
        """One error for `problems` (at least one), listing the first MAX_LISTED one a line.

        `count`: how many problems were found, when `problems` holds only the first of them."""
        count = len(problems) if count is None else count
        listed = tuple(problems[:MAX_LISTED])
        if not listed:
            raise ValueError("DataError.listing needs at least one problem")
        first = listed[0] + (f" ({count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else "")
        tail = [f"... and {count - len(listed)} more"] if count > len(listed) else []
        return cls("\n".join([first, *listed[1:], *tail]), listed, count)


class DataFallbackWarning(UserWarning):
    """`auto` used synthetic data for a symbol; the message says why."""


_MISSING_VALUE = "missing value (evorl never fills gaps: fix or delete the row)"


def _not_finite(x: float) -> str:
    return f"{x} is not a finite number"


def _not_positive(x: float) -> str:
    return f"price must be positive (got {x:g})"
_MISSING_TOKENS = frozenset({"", "nan", "null", "none", "na", "n/a", "-"})
# Tried in order; the format that parses the most cells wins, its failures are reported.
_DATE_FORMATS = ("ISO8601", "%d-%b-%Y", "%d %b %Y", "%d-%m-%Y", "%d/%m/%Y", "%Y/%m/%d")
_TZ_SUFFIX = re.compile(r"(?<=\d)(Z|[+-]\d{2}:\d{2})$")


def validate_ohlcv(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return the validated frame for `df` or raise one DataError listing every problem found.

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


class _Problems:
    """The problems of one file found in one pass; `raise_any` lists them by row (then in the order
    the checks ran: dates, numbers, date order, then the value checks column by column)."""

    def __init__(self, name: str, rows: np.ndarray):
        self.name, self.rows = name, rows
        self._found: list[tuple[np.ndarray, str, Callable[[int], str]]] = []

    def add(self, where: np.ndarray, label: str, describe: Callable[[int], str]) -> None:
        """The cells of column `label` at positions `where`; `describe(position)` says what is wrong."""
        if len(where):
            self._found.append((np.asarray(where, dtype=np.int64), label, describe))

    def raise_any(self) -> None:
        if not self._found:
            return
        where = np.concatenate([w for w, _, _ in self._found])
        check = np.concatenate([np.full(len(w), k) for k, (w, _, _) in enumerate(self._found)])
        first = np.lexsort((check, self.rows[where]))[:MAX_LISTED]  # formats only what is listed
        lines = []
        for j in first:
            _, label, describe = self._found[check[j]]
            lines.append(f"{self.name}: column '{label}', row {self.rows[where[j]]}: {describe(int(where[j]))}")
        raise DataError.listing(lines, len(where))


def _validated(
    dates: pd.Series, values: Mapping[str, pd.Series], name: str, rows: np.ndarray, labels: Mapping[str, str]
) -> pd.DataFrame:
    if len(dates) == 0:
        raise DataError(f"{name}: no data rows")
    found = _Problems(name, np.asarray(rows))
    index = _parse_dates(dates, found, labels["date"])
    parsed = {c: _parse_numbers(values[c], found, labels[c]) for c in OHLCV}
    _check_dates(index, found, labels["date"])
    numbers = {c: number for c, (number, _) in parsed.items()}
    _check_values(numbers, {c: bad for c, (_, bad) in parsed.items()}, found, labels)
    found.raise_any()
    return pd.DataFrame(numbers, index=index)


def _parse_dates(raw: pd.Series, found: _Problems, label: str) -> pd.DatetimeIndex:
    """The dates, NaT where a cell does not parse (each such cell is a problem in `found`); a
    column where no cell parses is a DataError at once."""
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
    # e.g. 2924 for 2024: a typo in a year is a problem of its row, not an OutOfBoundsDatetime
    years = np.asarray(parsed.year, dtype=np.float64)  # NaN for NaT
    in_range = ~((years < 1678) | (years > 2261))  # what a nanosecond date can hold
    outside = np.flatnonzero(~in_range)
    parsed = parsed.where(in_range) if outside.size else parsed
    bad = np.setdiff1d(np.flatnonzero(parsed.isna()), outside)
    if bad.size == len(parsed):  # not one date parses: the wrong column or format, not bad rows
        raise DataError(
            f"{found.name}: column '{label}', row {found.rows[0]}: cannot parse date {raw.iloc[0]!r}{_more(bad)}"
        )
    found.add(bad, label, lambda i: f"cannot parse date {raw.iloc[i]!r}")
    found.add(outside, label, lambda i: f"date {raw.iloc[i]!r} is outside the years 1678 .. 2261 (a typo in the year?)")
    return parsed.normalize().as_unit("ns").rename("date")


def _parse_numbers(raw: pd.Series, found: _Problems, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(numbers, mask of cells that are not numbers); NaN for missing cells and for non-numbers,
    each non-number a problem in `found` (missing cells are left to the caller's checks)."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(raw), dtype=bool)
    text = raw.fillna("").astype(str).str.strip().str.replace(",", "", regex=False)  # 1,234.5
    missing = text.str.lower().isin(_MISSING_TOKENS).to_numpy()
    number = pd.to_numeric(text.where(~missing, "nan"), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(number) & ~missing
    found.add(np.flatnonzero(bad), label, lambda i: f"{raw.iloc[i]!r} is not a number")
    return number, bad


def _check_dates(index: pd.DatetimeIndex, found: _Problems, label: str) -> None:
    """Each parsed date after the previous parsed one (cells that did not parse are skipped)."""
    ok = np.flatnonzero(index.notna())
    step = np.diff(index.asi8[ok])
    back = np.flatnonzero(step <= 0)
    if not back.size:
        return
    rows = found.rows
    newest_first = bool((step < 0).all())
    if newest_first:  # one problem, not one a row
        back = back[:1]
    previous = dict(zip(ok[back + 1].tolist(), ok[back].tolist(), strict=True))
    hint = " (the file is newest-first: sort it oldest-first)" if newest_first else ""

    def describe(i: int) -> str:
        p = previous[i]
        date, before = index[i].date(), index[p].date()
        if date == before:
            return f"duplicate date {date} (also in row {rows[p]})"
        return f"date {date} is earlier than {before} in row {rows[p]}; dates must be ascending{hint}"

    found.add(ok[back + 1], label, describe)


def _check_values(numbers: Mapping[str, np.ndarray], not_numbers: Mapping[str, np.ndarray], found: _Problems,
                  labels: Mapping[str, str]) -> None:
    """Every cell's value checks; a cell is reported once (by the first check it fails), and the
    high/low consistency of a row is checked only when its four prices passed."""
    reported = {c: not_numbers[c].copy() for c in OHLCV}

    def check(col: str, mask: np.ndarray, describe: Callable[[int], str]) -> None:
        mask = mask & ~reported[col]
        found.add(np.flatnonzero(mask), labels[col], describe)
        reported[col] |= mask

    with np.errstate(invalid="ignore"):  # NaN compares false; those cells are reported already
        for col in OHLCV:
            check(col, np.isnan(numbers[col]), lambda i: _MISSING_VALUE)
        for col in OHLCV:
            check(col, np.isinf(numbers[col]), lambda i, col=col: _not_finite(numbers[col][i]))
        for col in PRICES:
            check(col, numbers[col] <= 0, lambda i, col=col: _not_positive(numbers[col][i]))
        for col in PRICES:
            check(col, (numbers[col] < MIN_PRICE) | (numbers[col] > MAX_PRICE),
                  lambda i, col=col: f"price {numbers[col][i]:g} is outside {MIN_PRICE:g} .. {MAX_PRICE:g}, the "
                                     "range evorl's float32 accounting holds")
        check("volume", numbers["volume"] < 0, lambda i: f"volume must be >= 0 (got {numbers['volume'][i]:g})")

        usable = ~np.any([reported[col] for col in PRICES], axis=0)
        o, h, low, c = (numbers[k] for k in PRICES)
        body_top, body_bottom = np.maximum(o, c), np.minimum(o, c)

        def above(i: int) -> str:
            other = "close" if c[i] >= o[i] else "open"
            return f"high {h[i]:g} is below {other} {numbers[other][i]:g}"

        def below(i: int) -> str:
            other = "open" if o[i] <= c[i] else "close"
            return f"low {low[i]:g} is above {other} {numbers[other][i]:g}"

        check("high", usable & (h < body_top * (1 - PRICE_TOLERANCE)), above)
        check("low", usable & (low > body_bottom * (1 + PRICE_TOLERANCE)), below)


def _more(bad: np.ndarray) -> str:
    return f" ({len(bad) - 1} more rows like this)" if len(bad) > 1 else ""


def _listing(columns: Iterable[Any]) -> str:
    return ", ".join(str(c) for c in columns) or "(none)"


def adjust_for_dividends(frame: pd.DataFrame, adj_close: pd.Series, name: str, rows: np.ndarray,
                         label: str) -> pd.DataFrame:
    """Total-return prices: open, high, low and close of each day times adj_close / close of that
    day (volume unchanged). `adj_close` holds the raw cells of the `label` column, aligned with the
    frame's rows; every missing or non-positive value is a problem of one DataError naming its row."""
    found = _Problems(name, np.asarray(rows))
    adj, not_numbers = _parse_numbers(adj_close, found, label)
    with np.errstate(invalid="ignore"):
        bad = (~np.isfinite(adj) | (adj <= 0)) & ~not_numbers
    found.add(np.flatnonzero(bad), label, lambda i: _MISSING_VALUE if np.isnan(adj[i]) else (
        _not_finite(adj[i]) if np.isinf(adj[i]) else _not_positive(adj[i])))
    found.raise_any()
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
