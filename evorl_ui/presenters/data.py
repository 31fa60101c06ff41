"""The Data page: the loaded symbols' summary and the candlestick title.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from evorl_ui.presenters.format import MAX_POINTS


def frames_summary(frames: Mapping[str, pd.DataFrame], info: Mapping[str, Any]) -> pd.DataFrame:
    """One row per loaded symbol: rows, first/last date, last close, where it came from."""
    return pd.DataFrame([{
        "symbol": sym, "rows": len(df), "first date": str(df.index[0].date()),
        "last date": str(df.index[-1].date()), "last close": float(df["close"].iloc[-1]),
        "source": (info.get("per_symbol") or {}).get(sym, {}).get("source", info.get("source")),
    } for sym, df in frames.items()])


def candles_title(symbol: str, rows: int) -> str:
    return f"{symbol} — daily OHLC ({rows:,} rows" + (", aggregated for display)" if rows > MAX_POINTS else ")")
