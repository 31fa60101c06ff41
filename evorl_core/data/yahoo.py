"""Yahoo Finance downloads, cached on disk in the Yahoo CSV layout.

`fetch_yahoo` downloads one symbol (a quick network probe first, then up to 3 attempts),
validates it, writes `<cache_dir>/<ticker>.csv` and returns the cache file read back.
`_load_yahoo` is what the `yahoo` and `auto` sources do: the cache file if valid, else a download.
`_download` is the only function that touches the network; tests replace it with a recorded frame.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from evorl_core.data.csv_files import _find_symbol_file, read_symbol_csv, yahoo_ticker
from evorl_core.data.validate import OHLCV, DataError, _validated
from evorl_core.store.atomic import atomic_write_text

YAHOO_HOST = "query1.finance.yahoo.com"
DOWNLOAD_START = "2008-01-01"
DOWNLOAD_ATTEMPTS = 3
RETRY_BACKOFF_S = (0.5, 1.5)  # sleep before the 2nd and 3rd attempt
NETWORK_CHECK_TIMEOUT_S = 2.0
DOWNLOAD_TIMEOUT_S = 10


class _NetworkUnavailable(DataError):
    """Yahoo cannot be reached at all: retrying would only make an offline user wait."""


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
    import yfinance as yf  # here, not at the top: it is slow to import and only downloads need it

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
    end: str | None = None, price_adjustment: str = "none",
) -> tuple[pd.DataFrame, Path]:
    """Download `symbol` (3 attempts), validate, write the cache CSV, return (frame, cache path).

    Invalid data is never cached; the frame returned is the cache file read back (with
    `price_adjustment` applied as `read_symbol_csv` does), so a later cached load gives exactly the
    same frame. The cache keeps Yahoo's `Adj Close` column.
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
    return read_symbol_csv(path, price_adjustment), path


def _load_yahoo(
    symbol: str, cache_dir: Path, allow_download: bool, price_adjustment: str = "none"
) -> tuple[pd.DataFrame, str, Path, list[str]]:
    """(frame, 'cache' | 'yahoo', path, warnings): the cache file if valid, else a download.

    Raises DataError whose message lists every reason nothing usable was found.
    """
    reasons: list[str] = []
    cached = _find_symbol_file(cache_dir, symbol, prefer_ticker=True)
    if cached is not None:
        try:
            return read_symbol_csv(cached, price_adjustment), "cache", cached, []
        except DataError as e:
            reasons.append(f"the cached file is invalid ({e})")
    else:
        reasons.append(f"no cached file {cache_path(cache_dir, symbol)}")
    if not allow_download:
        raise DataError(" and ".join(reasons + ["downloads are disabled (allow_download=False)"]))
    try:
        frame, path = fetch_yahoo(symbol, cache_dir, price_adjustment=price_adjustment)
    except DataError as e:
        raise DataError(" and ".join(reasons + [f"download failed: {e}"])) from None
    warns = [f"{symbol}: {reasons[0]}; downloaded a fresh copy"] if cached is not None else []
    return frame, "yahoo", path, warns
