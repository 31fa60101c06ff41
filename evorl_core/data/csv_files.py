"""CSV files of one symbol each: the Yahoo layout and the NSE bhavcopy / Kaggle layout.

`read_symbol_csv` detects the layout from the header and validates the rows (see `validate`), so
a problem is reported with the file's own header spelling and spreadsheet row number. The file
naming rule (`SYMBOL.csv` or `SYMBOL.NS.csv`, found by `_find_symbol_file`) is shared by
`csv:DIR` sources and the Yahoo download cache; `yahoo_ticker` lives here for that reason.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.data.validate import OHLCV, DataError, _listing, _validated, adjust_for_dividends

YAHOO_LAYOUT = "Date,Open,High,Low,Close[,Adj Close],Volume"
NSE_LAYOUT = "Date,Symbol,Series,Prev Close,Open,High,Low,Last,Close,VWAP,Volume,..."

# Header spellings (lower case, runs of space/underscore/dot collapsed to one space).
# 'adj close', 'last' and 'prev close' are deliberately absent: prices are the traded Close
# (`price_adjustment="dividends"` scales them by Adj Close / Close instead, see ADJ_CLOSE_ALIASES).
_ALIASES = {
    "date": ("date", "timestamp", "datetime"),
    "open": ("open", "open price"),
    "high": ("high", "high price"),
    "low": ("low", "low price"),
    "close": ("close", "close price"),
    "volume": ("volume", "tottrdqty", "total traded quantity", "shares traded", "no of shares"),
}
_NSE_MARKERS = ("series", "symbol", "prev close", "vwap")
ADJ_CLOSE_ALIASES = ("adj close", "adjclose", "adjusted close")
SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def csv_folder(folder: str | os.PathLike) -> Path:
    """The folder of a `csv:` source, or a DataError that says what is wrong with it (missing, or a
    file given where the folder that holds it is meant)."""
    directory = Path(folder)
    if directory.is_file():
        raise DataError(f"csv:{folder}: is a file; csv: takes the folder that holds one <SYMBOL>.csv per symbol "
                        f"(here: csv:{directory.parent})")
    if not directory.is_dir():
        raise DataError(f"csv:{folder}: folder not found")
    return directory


def yahoo_ticker(symbol: str) -> str:
    """NSE symbols get '.NS'; anything already qualified ('RELIANCE.BO', '^NSEI') is kept."""
    return symbol if ("." in symbol or "^" in symbol) else f"{symbol}.NS"


def read_symbol_csv(path: str | os.PathLike, price_adjustment: str = "none",
                    symbol: str | None = None) -> pd.DataFrame:
    """Read and validate one symbol's daily CSV (Yahoo or NSE/Kaggle layout, auto-detected).

    `price_adjustment="dividends"`: total-return prices from the `Adj Close` column when the file
    has one; `frame.attrs["price_adjustment"]` says what was applied ("dividends" or "none").
    `symbol` (default: the file name less `.csv`) is checked against a yfinance Ticker row.
    """
    return _read_csv(Path(path), price_adjustment, symbol=symbol)[0]


def parse_symbol_csv(content: bytes, name: str) -> pd.DataFrame:
    """Validate a CSV held in memory (an upload) exactly as `read_symbol_csv` validates a file;
    messages name `name`. Nothing is written anywhere."""
    return _read_csv(bytes(content), name=name)[0]


def _header_key(header: Any) -> str:
    return re.sub(r"[\s_.]+", " ", str(header).strip().lower()).strip()


def _read_csv(source: Path | bytes, price_adjustment: str = "none", name: str | None = None,
              symbol: str | None = None) -> tuple[pd.DataFrame, str]:
    """(validated frame, layout) where layout is 'yahoo', 'yahoo-multiindex' or 'nse'.

    `source`: a file, or the bytes of one (then `name` is what messages call it). With
    `price_adjustment="dividends"` and an `Adj Close` column, the prices are total-return prices;
    `frame.attrs["price_adjustment"]` records "dividends" or "none" (no such column).
    """
    name = name or str(source)
    symbol = symbol or re.sub(r"\.csv$", "", Path(name).name, flags=re.I)  # the file names the symbol
    if isinstance(source, Path) and not source.is_file():
        raise DataError(f"{name}: file not found")
    read = dict(dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")

    def table(**extra: Any) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(source) if isinstance(source, bytes) else source, **read, **extra)

    try:
        raw = table()
        first_row = 2
        header = [str(h) for h in table(header=None, nrows=1).iloc[0].tolist()] if raw.columns.size else []
        # `DataFrame.to_csv` of a yfinance MultiIndex frame: Price,..  /  Ticker,..  /  Date,,,
        if (len(raw) >= 2 and raw.columns.size and _header_key(raw.columns[0]) == "price"
                and str(raw.iloc[0, 0]).strip().lower() == "ticker"):
            keep = _ticker_columns(name, header, [str(t) for t in raw.iloc[0].tolist()], symbol)
            raw = table(skiprows=[1, 2], usecols=keep)
            raw.columns = [header[i] for i in keep]
            raw = raw.rename(columns={raw.columns[0]: "Date"})
            header = list(raw.columns)
            first_row = 4
        _refuse_repeated(name, header)
    except UnicodeDecodeError as e:  # named by its row (and the byte within the file)
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        row = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{name}: row {row}: byte 0x{data[e.start]:02x} (offset {e.start}) is not UTF-8 text; "
                        "save the file as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        detail = " ".join(str(e).split())  # pandas puts line breaks in its messages
        raise DataError(f"{name}: not a readable CSV file ({type(e).__name__}: {detail})") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read it ({e.strerror or e})") from None
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
            separator = next((label for sep, label in SEPARATORS.items()
                              if raw.columns.size <= 2 and any(sep in str(c) for c in raw.columns)), None)
            hint = f"; the file looks {separator}-separated: save it with commas" if separator else ""
            raise DataError(
                f"{name}: missing column '{canon.capitalize()}' in the header (row 1); "
                f"found: {_listing(raw.columns)}; expected {expected}{hint}"
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
    adj_col = next((headers[a] for a in ADJ_CLOSE_ALIASES if a in headers), None)
    applied = "none"
    if price_adjustment == "dividends" and adj_col is not None:
        frame = adjust_for_dividends(frame, raw[adj_col], name, rows, str(adj_col).strip())
        applied = "dividends"
    frame.attrs["price_adjustment"] = applied
    frame.attrs["has_adj_close"] = adj_col is not None
    return frame, layout


def _base_ticker(ticker: str) -> str:
    return re.sub(r"\.(NS|BO)$", "", ticker.strip().upper())


def _ticker_columns(name: str, header: list[str], tickers: list[str], symbol: str) -> list[int]:
    """The columns of a yfinance three-line header (Price / Ticker / Date rows) that belong to
    `symbol` (the Date column first). A file of several tickers keeps the symbol's columns, or is
    refused naming the tickers found; a file of one other ticker is refused (it is not this
    symbol's prices)."""
    found = list(dict.fromkeys(t.strip() for t in tickers[1:] if t.strip()))
    want = _base_ticker(symbol)
    mine = [i for i, t in enumerate(tickers) if i > 0 and t.strip() and _base_ticker(t) == want]
    if not mine and len(found) == 1 and _base_ticker(found[0]) in want:
        mine = [i for i, t in enumerate(tickers) if i > 0 and t.strip()]  # e.g. yfinance_BPCL.NS.csv
    if not mine:
        raise DataError(f"{name}: the Ticker row (row 2) holds {', '.join(found) or 'no ticker'}, not {symbol}; "
                        f"save {symbol}'s download as {symbol}.csv (one ticker per file)")
    return [0, *mine]


def _refuse_repeated(name: str, header: list[str]) -> None:
    """A header that names a column twice (a multi-ticker download saved as one table) is refused:
    taking one of the repeats would read another stock's prices."""
    keys = [_header_key(h) for h in header]
    repeated = sorted({header[i].strip() for i, k in enumerate(keys) if k and keys.count(k) > 1})
    if not repeated:
        return
    counts = ", ".join(f"'{h}' ({keys.count(_header_key(h))}x)" for h in repeated)
    priced = [h for h in repeated if _header_key(h) in {a for al in _ALIASES.values() for a in al} | set(ADJ_CLOSE_ALIASES)]
    hint = (" - this looks like a multi-ticker download (one column per stock under each price name); save "
            "one file per symbol") if priced else ""
    raise DataError(f"{name}: the header (row 1) repeats {counts}{hint}")


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

