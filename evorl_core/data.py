"""Market data: load, validate, build causal features, split train/test.

Read top to bottom:
1. the validated-frame contract and its errors (`DataError`, `validate_ohlcv`);
2. the sources: CSV files (`read_symbol_csv`), Yahoo Finance (`fetch_yahoo`), synthetic
   (`synthetic_ohlcv`);
3. `load_frames`: one source per symbol; `auto` falls back to synthetic data loudly, never quietly;
4. causal features (`FEATURE_NAMES`, `raw_features`, `features_for_inference`);
5. `build_market`: padded device arrays, train/test split indices, training-range normalisation,
   data hash; `load_market` does 3 + 5 from a `TrainConfig`.

Nothing here fills gaps: a missing or inconsistent value is a `DataError` naming the file, the
column and the row, so a user can fix the data instead of training on invented prices.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd

from evorl_core.market_data import MarketData  # one class shared with env, ppo, deploy
from evorl_core.rundir import atomic_write_text

logger = logging.getLogger(__name__)

OHLCV = ("open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")
SOURCES = ("auto", "synthetic", "yahoo", "csv:DIR")

MIN_TRAIN_STEPS = 20  # training transitions a symbol must offer besides window and test days
PRICE_TOLERANCE = 1e-6  # relative slack when checking low <= open, close <= high
STD_FLOOR = 1e-8
FEATURE_CLIP = 10.0
VOLUME_LOOKBACK = 20

SYNTHETIC_END = "2025-12-31"
SYNTHETIC_DAYS = 2500  # ~10 years of business days, the longest default synthetic history
# Real listing dates, so the synthetic stand-ins of young stocks are as short as the real ones.
_LISTING_DATES = {
    "HDFCLIFE": "2017-11-17",
    "SBILIFE": "2017-10-03",
    "ICICIGI": "2017-09-27",
    "ICICIPRULI": "2016-09-29",
    "HDFCAMC": "2018-08-06",
}

YAHOO_HOST = "query1.finance.yahoo.com"
DOWNLOAD_START = "2008-01-01"
DOWNLOAD_ATTEMPTS = 3
RETRY_BACKOFF_S = (0.5, 1.5)  # sleep before the 2nd and 3rd attempt
NETWORK_CHECK_TIMEOUT_S = 2.0
DOWNLOAD_TIMEOUT_S = 10


class DataError(ValueError):
    """Unusable market data; the message names the file (or symbol), the column and the row."""


class DataFallbackWarning(UserWarning):
    """`auto` used synthetic data for a symbol; the message says why."""


class _NetworkUnavailable(DataError):
    """Yahoo cannot be reached at all: retrying would only make an offline user wait."""


# ---------------------------------------------------------------------------------------------
# 1. Validation: the one place that decides whether OHLCV data is usable
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# 2a. CSV files: Yahoo layout and NSE bhavcopy / Kaggle layout
# ---------------------------------------------------------------------------------------------

YAHOO_LAYOUT = "Date,Open,High,Low,Close[,Adj Close],Volume"
NSE_LAYOUT = "Date,Symbol,Series,Prev Close,Open,High,Low,Last,Close,VWAP,Volume,..."

# Header spellings (lower case, runs of space/underscore/dot collapsed to one space).
# 'adj close', 'last' and 'prev close' are deliberately absent: prices are the traded Close.
_ALIASES = {
    "date": ("date", "timestamp", "datetime"),
    "open": ("open", "open price"),
    "high": ("high", "high price"),
    "low": ("low", "low price"),
    "close": ("close", "close price"),
    "volume": ("volume", "tottrdqty", "total traded quantity", "shares traded", "no of shares"),
}
_NSE_MARKERS = ("series", "symbol", "prev close", "vwap")


def read_symbol_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate one symbol's daily CSV (Yahoo or NSE/Kaggle layout, auto-detected)."""
    return _read_csv(Path(path))[0]


def _header_key(header: Any) -> str:
    return re.sub(r"[\s_.]+", " ", str(header).strip().lower()).strip()


def _read_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """(validated frame, layout) where layout is 'yahoo', 'yahoo-multiindex' or 'nse'."""
    name = str(path)
    if not path.is_file():
        raise DataError(f"{name}: file not found")
    read = dict(dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    try:
        raw = pd.read_csv(path, **read)
        first_row = 2
        # `DataFrame.to_csv` of a yfinance MultiIndex frame: Price,..  /  Ticker,..  /  Date,,,
        if (len(raw) >= 2 and raw.columns.size and _header_key(raw.columns[0]) == "price"
                and str(raw.iloc[0, 0]).strip().lower() == "ticker"):
            raw = pd.read_csv(path, skiprows=[1, 2], **read).rename(columns={raw.columns[0]: "Date"})
            first_row = 4
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{name}: not a readable CSV file ({type(e).__name__}: {e})") from None
    headers: dict[str, str] = {}
    for col in raw.columns:
        headers.setdefault(_header_key(col), col)
    is_nse = any(m in headers for m in _NSE_MARKERS)
    layout = "nse" if is_nse else ("yahoo-multiindex" if first_row == 4 else "yahoo")

    labels: dict[str, str] = {}
    for canon, aliases in _ALIASES.items():
        found = next((headers[a] for a in aliases if a in headers), None)
        if found is None:
            expected = NSE_LAYOUT if is_nse else YAHOO_LAYOUT
            raise DataError(
                f"{name}: missing column '{canon.capitalize()}' in the header (row 1); "
                f"found: {_listing(raw.columns)}; expected {expected}"
            )
        labels[canon] = found

    rows = np.arange(len(raw)) + first_row
    if "series" in headers:
        series_col = headers["series"]
        series = raw[series_col].str.strip().str.upper()
        kinds = sorted(set(series))
        if len(kinds) > 1:  # bhavcopy-style files mix EQ with BE/BL/...: prices of the EQ book
            keep = (series == "EQ").to_numpy()
            if not keep.any():
                raise DataError(
                    f"{name}: column '{series_col}', row 2: several series ({', '.join(kinds)}) and "
                    "none is 'EQ'; keep one series per file"
                )
            raw, rows = raw[keep], rows[keep]
    shown = {c: str(col).strip() for c, col in labels.items()}
    frame = _validated(raw[labels["date"]], {c: raw[labels[c]] for c in OHLCV}, name, rows, shown)
    return frame, layout


def _find_symbol_file(directory: Path, symbol: str, prefer_ticker: bool = False) -> Path | None:
    names = [f"{symbol}.csv", f"{yahoo_ticker(symbol)}.csv"]
    if prefer_ticker:
        names.reverse()
    for n in dict.fromkeys(names):
        if (directory / n).is_file():
            return directory / n
    if directory.is_dir():  # case-insensitive second chance (bpcl.csv on a case-sensitive disk)
        by_lower = {p.name.lower(): p for p in directory.glob("*.csv")}
        for n in names:
            if n.lower() in by_lower:
                return by_lower[n.lower()]
    return None


# ---------------------------------------------------------------------------------------------
# 2b. Yahoo Finance, cached on disk in the Yahoo CSV layout
# ---------------------------------------------------------------------------------------------


def yahoo_ticker(symbol: str) -> str:
    """NSE symbols get '.NS'; anything already qualified ('RELIANCE.BO', '^NSEI') is kept."""
    return symbol if ("." in symbol or "^" in symbol) else f"{symbol}.NS"


def cache_path(cache_dir: str | os.PathLike, symbol: str) -> Path:
    """Where a download of `symbol` is cached: `<cache_dir>/<ticker>.csv`."""
    return Path(cache_dir) / f"{yahoo_ticker(symbol)}.csv"


def _host_unreachable(host: str, port: int = 443, timeout: float = NETWORK_CHECK_TIMEOUT_S) -> str | None:
    """None when a TCP connection to host opens within `timeout`, else the reason.

    Offline, yfinance can hang for a long time; this answers in ~timeout seconds. The probe runs
    in a daemon thread because name resolution ignores socket timeouts.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy a direct connection says nothing; let yfinance try
    result: dict[str, str | None] = {}

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["error"] = None
        except OSError as e:
            result["error"] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result.get("error", f"no answer from {host} within {timeout:g} s")


def _download(ticker: str, start: str, end: str | None) -> pd.DataFrame:
    """Raw daily bars from yfinance. The only function here that touches the network: tests
    replace it with a recorded frame."""
    reason = _host_unreachable(YAHOO_HOST)
    if reason:
        raise _NetworkUnavailable(f"cannot reach {YAHOO_HOST} ({reason})")
    import yfinance as yf

    return yf.download(
        ticker, start=start, end=end, auto_adjust=False, actions=False, progress=False,
        threads=False, timeout=DOWNLOAD_TIMEOUT_S,
    )


def _yahoo_table(raw: pd.DataFrame | None, ticker: str) -> pd.DataFrame:
    """yfinance output -> a flat Yahoo-layout table (Date index; Open..Volume), possibly empty."""
    if raw is None or len(raw) == 0:
        return pd.DataFrame()
    df = raw.copy()
    if isinstance(df.columns, pd.MultiIndex):  # yfinance >= 0.2.48: (Price, Ticker) columns
        field_level = next(
            (lvl for lvl in range(df.columns.nlevels)
             if "close" in {str(v).lower() for v in df.columns.get_level_values(lvl)}), 0)
        other = [lvl for lvl in range(df.columns.nlevels) if lvl != field_level]
        for lvl in reversed(other):
            values = df.columns.get_level_values(lvl)
            if ticker in set(values):
                df = df.xs(ticker, axis=1, level=lvl)
            else:
                df = df.droplevel(lvl, axis=1)
        df.columns = [str(c) for c in df.columns]
    wanted = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
    by_lower = {str(c).strip().lower(): c for c in df.columns}
    df = df[[by_lower[w.lower()] for w in wanted if w.lower() in by_lower]]
    df.columns = [w for w in wanted if w.lower() in by_lower]
    index = pd.DatetimeIndex(df.index)
    df.index = (index.tz_localize(None) if index.tz is not None else index).rename("Date")
    prices = [c for c in ("Open", "High", "Low", "Close") if c in df.columns]
    # Yahoo emits all-empty rows for some holidays: dropping a non-trading day is not filling.
    return df[~df[prices].isna().all(axis=1)] if prices else df


def fetch_yahoo(
    symbol: str, cache_dir: str | os.PathLike = "data_cache", *, start: str = DOWNLOAD_START,
    end: str | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Download `symbol` (3 attempts), validate, write the cache CSV, return (frame, cache path).

    Invalid data is never cached; the frame returned is the cache file read back, so a later
    cached load gives exactly the same frame.
    """
    ticker = yahoo_ticker(symbol)
    problems: list[str] = []
    table = pd.DataFrame()
    for attempt in range(DOWNLOAD_ATTEMPTS):
        if attempt:
            time.sleep(RETRY_BACKOFF_S[min(attempt - 1, len(RETRY_BACKOFF_S) - 1)])
        try:
            table = _yahoo_table(_download(ticker, start, end), ticker)
        except _NetworkUnavailable as e:
            raise DataError(f"{symbol}: cannot download {ticker}: {e}") from None
        except Exception as e:  # yfinance raises many types; every one is a failed attempt
            problems.append(f"{type(e).__name__}: {e}")
            continue
        if len(table):
            break
        problems.append(f"Yahoo Finance returned no rows for {ticker} from {start}")
    else:
        raise DataError(
            f"{symbol}: download of {ticker} failed after {DOWNLOAD_ATTEMPTS} attempts: {problems[-1]}"
            " (check the symbol, or your network)"
        )
    missing = [c for c in ("Open", "High", "Low", "Close", "Volume") if c not in table.columns]
    if missing:
        raise DataError(f"{symbol}: Yahoo data for {ticker} lacks column '{missing[0]}' (row 1)")
    path = cache_path(cache_dir, symbol)
    flat = table.reset_index()
    rows = np.arange(len(flat)) + 2
    labels = {"date": "Date", **{c: c.capitalize() for c in OHLCV}}
    _validated(flat["Date"], {c: flat[c.capitalize()] for c in OHLCV}, f"Yahoo data for {ticker}", rows, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, table.to_csv(index_label="Date", date_format="%Y-%m-%d"))
    return read_symbol_csv(path), path


# ---------------------------------------------------------------------------------------------
# 2c. Synthetic data: offline, deterministic, realistic enough to exercise the whole pipeline
# ---------------------------------------------------------------------------------------------


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def synthetic_length(symbol: str, end: str = SYNTHETIC_END) -> int:
    """Default synthetic history length: deterministic per symbol name, like real listings differ.

    Known young listings get their real number of business days; other names get 2000..2500.
    """
    listed = _LISTING_DATES.get(symbol.upper().split(".")[0])
    if listed:
        return min(SYNTHETIC_DAYS, len(pd.bdate_range(listed, end)))
    return SYNTHETIC_DAYS - 100 * (_stable_int(symbol) % 6)


def synthetic_ohlcv(
    symbol: str, n_days: int | None = None, seed: int = 0, start: str | None = None, *,
    end: str = SYNTHETIC_END,
) -> pd.DataFrame:
    """A validated synthetic daily OHLCV frame, deterministic per (seed, symbol).

    Log returns follow a GARCH(1,1) variance (volatility clustering) driven by unit-variance
    Student-t innovations (fat tails) plus a small drift. Each day's return is split into an
    overnight gap (open vs previous close) and an intraday move; high/low extend beyond the
    open-close body; volume rises with the size of the move. Business days: `n_days` of them
    (default `synthetic_length(symbol)`) ending at `end`, or starting at `start` when given.
    """
    n = synthetic_length(symbol, end) if n_days is None else int(n_days)
    if n < 2:
        raise DataError(f"{symbol}: synthetic data needs at least 2 days (got n_days={n_days})")
    if start is not None:
        dates = pd.bdate_range(start=start, periods=n)
    else:
        dates = pd.bdate_range(end=end, periods=n)
    rng = np.random.default_rng(_stable_int(f"{seed}|{symbol}"))

    # Per-symbol character: volatility level, drift, tail weight, clustering, price and volume scale.
    daily_vol = rng.uniform(0.013, 0.024)
    drift = rng.uniform(0.0, 0.16) / 252
    nu = rng.uniform(3.5, 6.0)
    alpha = rng.uniform(0.06, 0.12)
    beta = rng.uniform(0.85, 0.975 - alpha)
    gap_share = rng.uniform(0.15, 0.35)  # fraction of daily variance that arrives overnight
    price0 = math.exp(rng.uniform(math.log(80), math.log(3000)))
    volume0 = math.exp(rng.uniform(math.log(2e5), math.log(2e7)))

    t_scale = math.sqrt((nu - 2) / nu)  # Student-t with unit variance
    z_gap = rng.standard_t(nu, n) * t_scale
    z_day = rng.standard_t(nu, n) * t_scale
    z_range = np.abs(rng.standard_normal((2, n)))
    z_volume = rng.standard_normal(n)

    shock = math.sqrt(gap_share) * z_gap + math.sqrt(1 - gap_share) * z_day  # unit variance
    omega = daily_vol**2 * (1 - alpha - beta)
    var = np.empty(n)
    v = daily_vol**2
    for t in range(n):
        var[t] = v
        v = omega + alpha * v * shock[t] ** 2 + beta * v
    sigma = np.sqrt(var)

    gap = gap_share * (drift - 0.5 * var) + sigma * math.sqrt(gap_share) * z_gap
    intraday = (1 - gap_share) * (drift - 0.5 * var) + sigma * math.sqrt(1 - gap_share) * z_day
    log_close = math.log(price0) + np.cumsum(gap + intraday)
    log_prev = np.concatenate([[math.log(price0)], log_close[:-1]])
    open_, close = np.exp(log_prev + gap), np.exp(log_close)
    wick = 0.5 * sigma * math.sqrt(1 - gap_share)
    high = np.maximum(open_, close) * np.exp(wick * z_range[0])
    low = np.minimum(open_, close) * np.exp(-wick * z_range[1])
    volume = np.maximum(1.0, np.round(volume0 * np.exp(0.3 * z_volume + 0.6 * (np.abs(shock) - 0.8))))

    def tick(x: np.ndarray) -> np.ndarray:  # rounding is monotone, so low <= open,close <= high holds
        return np.maximum(np.round(x, 2), 0.01)

    frame = pd.DataFrame(
        {"open": tick(open_), "high": tick(high), "low": tick(low), "close": tick(close), "volume": volume},
        index=dates,
    )
    frame = validate_ohlcv(frame, f"synthetic {symbol}")
    frame.attrs["source"] = "synthetic"
    return frame


# ---------------------------------------------------------------------------------------------
# 3. load_frames: one source per symbol, and a record of what was actually used
# ---------------------------------------------------------------------------------------------


def load_frames(
    source: str,
    symbols: Iterable[str],
    *,
    cache_dir: str | os.PathLike = "data_cache",
    seed: int = 0,
    n_days: int | None = None,
    allow_download: bool = True,
    csv_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Validated frames for `symbols` from `source` = auto | synthetic | yahoo | csv:DIR.

    auto, per symbol: `csv_dir` if given, else the cache file, else a download (when
    `allow_download`), else synthetic data with a `DataFallbackWarning` that says why.
    `n_days`: synthetic length (default per symbol); for real data, keep the last `n_days` rows.
    The info dict records per symbol what was used (see docs/internals.md); `info["source"]` is
    "mixed" when symbols came from different places.
    """
    symbols = list(symbols)
    if not symbols:
        raise DataError("no symbols given")
    if source.startswith("csv:"):
        kind, csv_dir = "csv", source[4:]
        if not csv_dir:
            raise DataError("data source 'csv:' needs a directory, e.g. csv:data/nse")
    elif source in ("auto", "synthetic", "yahoo"):
        kind = "csv" if source == "auto" and csv_dir is not None else source
    else:
        raise DataError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")
    cache_dir = Path(cache_dir)
    frames: dict[str, pd.DataFrame] = {}
    per_symbol: dict[str, dict] = {}
    notes: list[str] = []

    for symbol in symbols:
        path: Path | None = None
        extra: dict[str, Any] = {}
        if kind == "synthetic":
            frame, used = synthetic_ohlcv(symbol, n_days, seed), "synthetic"
        elif kind == "csv":
            directory = Path(csv_dir)
            if not directory.is_dir():
                raise DataError(f"csv:{csv_dir}: directory not found")
            path = _find_symbol_file(directory, symbol)
            if path is None:
                raise DataError(
                    f"csv:{csv_dir}: no file for {symbol} (looked for {symbol}.csv, {yahoo_ticker(symbol)}.csv)"
                )
            (frame, extra["layout"]), used = _read_csv(path), "csv"
        elif kind == "yahoo":
            try:
                frame, used, path, warns = _load_yahoo(symbol, cache_dir, allow_download)
            except DataError as e:
                raise DataError(f"{symbol}: no Yahoo data: {e}") from None
            notes += warns
        else:  # auto without csv_dir
            try:
                frame, used, path, warns = _load_yahoo(symbol, cache_dir, allow_download)
                notes += warns
            except DataError as e:
                reason = str(e)
                msg = f"{symbol}: using SYNTHETIC data because {reason}"
                warnings.warn(msg, DataFallbackWarning, stacklevel=2)
                logger.warning(msg)
                notes.append(msg)
                frame, used, extra["reason"] = synthetic_ohlcv(symbol, n_days, seed), "synthetic", reason
        if used != "synthetic" and n_days is not None:
            frame = frame.iloc[-int(n_days):]
        if used in ("yahoo", "cache"):
            extra["ticker"] = yahoo_ticker(symbol)
        frame.attrs["source"] = used
        frames[symbol] = frame
        per_symbol[symbol] = {
            "source": used, "path": None if path is None else str(path), "rows": len(frame),
            "first_date": str(frame.index[0].date()), "last_date": str(frame.index[-1].date()), **extra,
        }

    used_kinds = {entry["source"] for entry in per_symbol.values()}
    info = {
        "source": used_kinds.pop() if len(used_kinds) == 1 else "mixed",
        "requested": source,
        "synthetic": any(entry["source"] == "synthetic" for entry in per_symbol.values()),
        "warnings": notes,
        "per_symbol": per_symbol,
    }
    return frames, info


def _load_yahoo(
    symbol: str, cache_dir: Path, allow_download: bool
) -> tuple[pd.DataFrame, str, Path, list[str]]:
    """(frame, 'cache' | 'yahoo', path, warnings): the cache file if valid, else a download.

    Raises DataError whose message lists every reason nothing usable was found.
    """
    reasons: list[str] = []
    cached = _find_symbol_file(cache_dir, symbol, prefer_ticker=True)
    if cached is not None:
        try:
            return read_symbol_csv(cached), "cache", cached, []
        except DataError as e:
            reasons.append(f"the cached file is invalid ({e})")
    else:
        reasons.append(f"no cached file {cache_path(cache_dir, symbol)}")
    if not allow_download:
        raise DataError(" and ".join(reasons + ["downloads are disabled (allow_download=False)"]))
    try:
        frame, path = fetch_yahoo(symbol, cache_dir)
    except DataError as e:
        raise DataError(" and ".join(reasons + [f"download failed: {e}"])) from None
    warns = [f"{symbol}: {reasons[0]}; downloaded a fresh copy"] if cached is not None else []
    return frame, "yahoo", path, warns


# ---------------------------------------------------------------------------------------------
# 4. Causal features: row t uses rows <= t only
# ---------------------------------------------------------------------------------------------

FEATURE_NAMES = (
    "log_return",       # log(close_t / close_{t-1})
    "overnight_gap",    # log(open_t / close_{t-1})
    "intraday_return",  # log(close_t / open_t)
    "high_to_close",    # log(high_t / close_t)  >= 0
    "low_to_close",     # log(low_t / close_t)   <= 0
    "volume_surprise",  # log1p(volume_t) - mean log1p(volume) over the previous 20 days (fewer early)
)
NUM_FEATURES = len(FEATURE_NAMES)


def raw_features(df: pd.DataFrame) -> np.ndarray:
    """[T, F] float64 unnormalised features of a validated frame. Row 0 is all zero: it has no
    previous close, and no observation window ever includes it (first_index = window >= 1)."""
    o, h, low, c, v = (df[col].to_numpy(dtype=np.float64) for col in OHLCV)
    n = len(c)
    out = np.zeros((n, NUM_FEATURES))
    if n < 2:
        return out
    prev_close = c[:-1]
    out[1:, 0] = np.log(c[1:] / prev_close)
    out[1:, 1] = np.log(o[1:] / prev_close)
    out[1:, 2] = np.log(c[1:] / o[1:])
    out[1:, 3] = np.log(h[1:] / c[1:])
    out[1:, 4] = np.log(low[1:] / c[1:])
    log_volume = np.log1p(v)
    prefix = np.concatenate([[0.0], np.cumsum(log_volume)])  # prefix[t] = sum of rows < t
    t = np.arange(1, n)
    lo = np.maximum(0, t - VOLUME_LOOKBACK)
    out[1:, 5] = log_volume[1:] - (prefix[t] - prefix[lo]) / (t - lo)
    return out


def normalisation_stats(raw: np.ndarray, test_start: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (floored at 1e-8) of each feature over the training rows 1 .. test_start-1."""
    train = raw[1:test_start]
    return train.mean(axis=0), np.maximum(train.std(axis=0), STD_FLOOR)


def _normalise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = np.clip((raw - mean) / std, -FEATURE_CLIP, FEATURE_CLIP)
    out[:1] = 0.0  # row 0 carries no information (see raw_features)
    return out.astype(np.float32)


def features_for_inference(
    df: pd.DataFrame, mean: np.ndarray, std: np.ndarray, window: int, *, name: str = "frame"
) -> np.ndarray:
    """[T, F] float32 normalised features of one frame with given statistics (e.g. a trained
    run's). Needs at least window + 1 rows so the last day has a full window; the observation
    for the last day uses rows T-window .. T-1. `build_market` uses this same function."""
    frame = validate_ohlcv(df, name)
    if len(frame) < window + 1:
        raise DataError(f"{name}: {len(frame)} rows present, need at least {window + 1} (window {window} + 1)")
    mean = np.asarray(mean, dtype=np.float64)
    std = np.maximum(np.asarray(std, dtype=np.float64), STD_FLOOR)
    if mean.shape != (NUM_FEATURES,) or std.shape != (NUM_FEATURES,):
        raise DataError(
            f"{name}: normalisation statistics must have shape ({NUM_FEATURES},) for features "
            f"{', '.join(FEATURE_NAMES)}; got {mean.shape} and {std.shape}"
        )
    return _normalise(raw_features(frame), mean, std)


# ---------------------------------------------------------------------------------------------
# 5. build_market: padded arrays, split, normalisation, hash
# ---------------------------------------------------------------------------------------------


@dataclass
class Market:
    """Host-side companion of MarketData."""

    symbols: list[str]
    frames: dict[str, pd.DataFrame]
    dates: list[np.ndarray]  # per symbol, datetime64[D], length[s] entries
    data: MarketData
    norm_mean: np.ndarray    # [S, F] statistics over the training range only
    norm_std: np.ndarray     # [S, F]
    window: int
    test_days: int
    info: dict
    data_hash: str


def rows_needed(window: int, test_days: int) -> int:
    """Fewest rows a symbol needs: window + MIN_TRAIN_STEPS training transitions + test days."""
    return window + MIN_TRAIN_STEPS + 1 + test_days


def hash_frames(frames: Mapping[str, pd.DataFrame]) -> str:
    """sha256 over symbols, dates and OHLCV values (float64 little-endian): stable across runs."""
    digest = hashlib.sha256()
    for symbol, frame in frames.items():
        days = frame.index.values.astype("datetime64[D]").astype("<i8")
        values = np.ascontiguousarray(frame[list(OHLCV)].to_numpy(dtype="<f8"))
        digest.update(f"{symbol}\0{len(frame)}\0".encode())
        digest.update(days.tobytes())
        digest.update(values.tobytes())
    return digest.hexdigest()


def build_market(
    frames: Mapping[str, pd.DataFrame],
    window: int,
    test_days: int,
    norm: tuple[np.ndarray, np.ndarray] | None = None,
    info: dict | None = None,
) -> Market:
    """Stack symbols of different lengths into padded [S, T] arrays with their split indices.

    Training transitions of symbol s go from t to t+1 with window <= t and t+1 <= test_start-1;
    test days are test_start .. length-1. `norm=(mean, std)` ([S, F] or [F]) replaces the
    training-range statistics, e.g. to re-backtest a trained run on new data.
    """
    if not frames:
        raise DataError("no symbols given")
    if window < 1 or test_days < 1:
        raise DataError(f"window and test_days must be >= 1 (got window={window}, test_days={test_days})")
    symbols = list(frames)
    valid = {s: validate_ohlcv(frames[s], s) for s in symbols}
    lengths = np.array([len(valid[s]) for s in symbols], dtype=np.int64)
    need = rows_needed(window, test_days)
    for s, length in zip(symbols, lengths, strict=True):
        if length < need:
            raise DataError(
                f"{s}: {length} rows present, need at least {need} (window {window} + "
                f"{MIN_TRAIN_STEPS + 1} for {MIN_TRAIN_STEPS} training steps + test_days {test_days})"
            )
    test_start = lengths - test_days
    raws = [raw_features(valid[s]) for s in symbols]

    if norm is None:
        stats = [normalisation_stats(raw, ts) for raw, ts in zip(raws, test_start, strict=True)]
        mean = np.stack([m for m, _ in stats])
        std = np.stack([sd for _, sd in stats])
    else:
        shape = (len(symbols), NUM_FEATURES)
        try:
            mean = np.broadcast_to(np.asarray(norm[0], dtype=np.float64), shape).copy()
            std = np.maximum(np.broadcast_to(np.asarray(norm[1], dtype=np.float64), shape), STD_FLOOR)
        except ValueError:
            raise DataError(
                f"norm: statistics must have shape {shape} or ({NUM_FEATURES},); "
                f"got {np.shape(norm[0])} and {np.shape(norm[1])}"
            ) from None

    horizon = int(lengths.max())
    open_ = np.empty((len(symbols), horizon), dtype=np.float32)
    close = np.empty((len(symbols), horizon), dtype=np.float32)
    features = np.zeros((len(symbols), horizon, NUM_FEATURES), dtype=np.float32)
    for i, s in enumerate(symbols):
        n = lengths[i]
        open_[i, :n], open_[i, n:] = valid[s]["open"].to_numpy(), valid[s]["open"].iloc[-1]
        close[i, :n], close[i, n:] = valid[s]["close"].to_numpy(), valid[s]["close"].iloc[-1]
        features[i, :n] = features_for_inference(valid[s], mean[i], std[i], window, name=s)

    data = MarketData(
        open=jnp.asarray(open_),
        close=jnp.asarray(close),
        features=jnp.asarray(features),
        length=jnp.asarray(lengths, dtype=jnp.int32),
        first_index=jnp.full((len(symbols),), window, dtype=jnp.int32),
        test_start=jnp.asarray(test_start, dtype=jnp.int32),
    )
    if info is None:  # frames built by hand: record what the frames say about themselves
        per_symbol = {
            s: {"source": valid[s].attrs.get("source", "frames"), "path": None, "rows": len(valid[s]),
                "first_date": str(valid[s].index[0].date()), "last_date": str(valid[s].index[-1].date())}
            for s in symbols
        }
        kinds = {e["source"] for e in per_symbol.values()}
        info = {"source": kinds.pop() if len(kinds) == 1 else "mixed", "requested": "frames",
                "synthetic": any(e["source"] == "synthetic" for e in per_symbol.values()),
                "warnings": [], "per_symbol": per_symbol}
    return Market(
        symbols=symbols,
        frames=valid,
        dates=[valid[s].index.values.astype("datetime64[D]") for s in symbols],
        data=data,
        norm_mean=mean,
        norm_std=std,
        window=int(window),
        test_days=int(test_days),
        info=info,
        data_hash=hash_frames(valid),
    )


def load_market(config: Any, cache_dir: str | os.PathLike = "data_cache", norm=None) -> Market:
    """`load_frames` + `build_market` for a TrainConfig (data, symbols, window, test_days, seed)."""
    frames, info = load_frames(config.data, config.symbols, cache_dir=cache_dir, seed=config.seed)
    return build_market(frames, config.window, config.test_days, norm=norm, info=info)
