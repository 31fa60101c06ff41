"""`load_frames`: one source per symbol, and a record of what was actually used.

`auto` falls back to synthetic data loudly (a `DataFallbackWarning` and a log line that say why),
never quietly. `data_info` builds the info dict that a run records about its data; `load_frames`
and `build_market` (for frames built by hand) both use it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from evorl_core.config import PRICE_ADJUSTMENTS
from evorl_core.data.calendar import calendar_problems
from evorl_core.data.csv_files import _find_symbol_file, _read_csv, csv_folder, yahoo_ticker
from evorl_core.data.synthetic import synthetic_ohlcv
from evorl_core.data.validate import DataError, DataFallbackWarning, suspicious_moves
from evorl_core.data.yahoo import _load_yahoo

logger = logging.getLogger(__name__)

DATA_SOURCES = ("auto", "synthetic", "yahoo", "csv:DIR")


def load_frames(
    source: str,
    symbols: Iterable[str],
    *,
    cache_dir: str | os.PathLike = "data_cache",
    seed: int = 0,
    n_days: int | None = None,
    allow_download: bool = True,
    csv_dir: str | os.PathLike | None = None,
    price_adjustment: str = "none",
    synthetic_fallback: bool = True,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Validated frames for `symbols` from `source` = auto | synthetic | yahoo | csv:DIR.

    auto, per symbol: `csv_dir` if given, else the cache file, else a download (when
    `allow_download`), else synthetic data with a `DataFallbackWarning` that says why.
    `n_days`: synthetic length (default per symbol); for real data, keep the last `n_days` rows.
    `price_adjustment`: "none" (the traded close) or "dividends" (total-return prices from an
    `Adj Close` column: a CSV file without one is an error, a Yahoo cache file without one and
    synthetic data give a warning). One-day moves that look like an unadjusted split or bonus are
    warnings.
    `synthetic_fallback=False`: auto raises a DataError naming the symbol and why instead of
    falling back (signals and the paper ledger must never act on invented prices unasked).
    The info dict (`data_info`) records per symbol what was used; `info["source"]` is "mixed"
    when symbols came from different places.
    """
    symbols = list(symbols)
    if not symbols:
        raise DataError("no symbols given")
    if price_adjustment not in PRICE_ADJUSTMENTS:
        raise DataError(f"price adjustment {price_adjustment!r}: use one of {', '.join(PRICE_ADJUSTMENTS)}")
    if source.startswith("csv:"):
        kind, csv_dir = "csv", source[4:]
        if not csv_dir:
            raise DataError("data source 'csv:' needs a directory, e.g. csv:data/nse")
    elif source in ("auto", "synthetic", "yahoo"):
        kind = "csv" if source == "auto" and csv_dir is not None else source
    else:
        raise DataError(f"unknown data source {source!r}; use one of {', '.join(DATA_SOURCES)}")
    cache_dir = Path(cache_dir)
    frames: dict[str, pd.DataFrame] = {}
    paths: dict[str, Path | None] = {}
    extras: dict[str, dict[str, Any]] = {}
    notes: list[str] = []

    for symbol in symbols:
        path: Path | None = None
        extra: dict[str, Any] = {}
        if kind == "synthetic":
            frame, used = synthetic_ohlcv(symbol, n_days, seed), "synthetic"
        elif kind == "csv":
            directory = csv_folder(csv_dir)
            path = _find_symbol_file(directory, symbol)
            if path is None:
                raise DataError(
                    f"csv:{csv_dir}: no file for {symbol} (looked for {symbol}.csv, {yahoo_ticker(symbol)}.csv)"
                )
            (frame, extra["layout"]), used = _read_csv(path, price_adjustment, symbol=symbol), "csv"
            if price_adjustment == "dividends" and frame.attrs.get("price_adjustment") != "dividends":
                raise DataError(
                    f"{path}: price adjustment 'dividends' needs an 'Adj Close' column (Yahoo layout) and "
                    "this file has none (NSE bhavcopy files never do); add the column or use "
                    "--price-adjustment none"
                )
        elif kind == "yahoo":
            try:
                frame, used, path, warns = _load_yahoo(symbol, cache_dir, allow_download, price_adjustment)
            except DataError as e:
                raise DataError(f"{symbol}: no Yahoo data: {e}") from None
            notes += warns
        else:  # auto without csv_dir
            try:
                frame, used, path, warns = _load_yahoo(symbol, cache_dir, allow_download, price_adjustment)
                notes += warns
            except DataError as e:
                reason = str(e)
                if not synthetic_fallback:
                    raise DataError(f"{symbol}: no real data ({reason}); 'auto' does not fall back to "
                                    "synthetic prices here (ask for them with data 'synthetic')") from None
                msg = f"{symbol}: using SYNTHETIC data because {reason}"
                warnings.warn(msg, DataFallbackWarning, stacklevel=2)
                logger.warning(msg)
                notes.append(msg)
                frame, used, extra["reason"] = synthetic_ohlcv(symbol, n_days, seed), "synthetic", reason
        if used != "synthetic" and n_days is not None:
            frame = frame.iloc[-int(n_days):]
        if used in ("yahoo", "cache"):
            extra["ticker"] = yahoo_ticker(symbol)
        applied = frame.attrs.get("price_adjustment", "none")
        if price_adjustment == "dividends" and applied != "dividends":
            if used == "synthetic":
                notes.append(f"{symbol}: synthetic prices have no dividends; price adjustment 'dividends' "
                             "does not apply")
            else:
                notes.append(f"{symbol}: no 'Adj Close' column in {path}; prices are the traded close, NOT "
                             "adjusted for dividends" + (" (delete the cached file to download a fresh copy)"
                                                         if used == "cache" else ""))
        extra["price_adjustment"] = applied
        if used != "synthetic":
            notes += calendar_problems(frame, str(path or symbol)) + suspicious_moves(frame, symbol)
        frame.attrs["source"] = used
        frames[symbol] = frame
        paths[symbol] = path
        extras[symbol] = extra

    return frames, data_info(frames, source, notes=notes, paths=paths, extras=extras,
                             price_adjustment=price_adjustment)


def data_info(
    frames: Mapping[str, pd.DataFrame],
    requested: str,
    *,
    notes: Iterable[str] = (),
    paths: Mapping[str, str | os.PathLike | None] | None = None,
    extras: Mapping[str, Mapping[str, Any]] | None = None,
    price_adjustment: str = "none",
) -> dict:
    """The info dict a run records about its data (see docs/internals.md).

    Per symbol: `source` (the frame's `attrs["source"]`, "frames" when unset), `path`, `rows`,
    `first_date`, `last_date`, plus that symbol's `extras` (layout, ticker, fallback reason, the
    price adjustment applied). Overall: `source` ("mixed" when symbols came from different places),
    `requested`, `price_adjustment` (requested), `synthetic` (any symbol synthetic), `warnings`
    (`notes`) and `per_symbol`.
    """
    paths = paths or {}
    extras = extras or {}
    per_symbol: dict[str, dict] = {}
    for symbol, frame in frames.items():
        path = paths.get(symbol)
        per_symbol[symbol] = {
            "source": frame.attrs.get("source", "frames"), "path": None if path is None else str(path),
            "rows": len(frame), "first_date": str(frame.index[0].date()),
            "last_date": str(frame.index[-1].date()), **extras.get(symbol, {}),
        }
    used_kinds = {entry["source"] for entry in per_symbol.values()}
    return {
        "source": used_kinds.pop() if len(used_kinds) == 1 else "mixed",
        "requested": requested,
        "price_adjustment": price_adjustment,
        "synthetic": any(entry["source"] == "synthetic" for entry in per_symbol.values()),
        "warnings": list(notes),
        "per_symbol": per_symbol,
    }
