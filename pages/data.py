"""Data: load a source, see what it holds, and what is wrong with it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

import evorl_ui as ui
from evorl_core import views
from evorl_core.config import DEFAULT_SYMBOLS

SOURCES = {"synthetic": "Synthetic (offline)", "auto": "Auto (cache → Yahoo → synthetic)",
           "yahoo": "Yahoo Finance", "csv_dir": "CSV directory", "upload": "Upload one CSV"}

ui.require_frame()
st.title("Data")
st.caption("Validated daily OHLCV: sorted unique dates, positive prices, high ≥ max(open, close) ≥ "
           "min(open, close) ≥ low, non-negative volume. Problems name the file, column and row.")

c1, c2 = st.columns([3, 2])
symbols_text = c1.text_input("Symbols", value=",".join(DEFAULT_SYMBOLS), key="data_symbols")
source = c2.selectbox("Source", list(SOURCES), format_func=SOURCES.get, key="data_source")
csv_dir, upload = "", None
if source == "csv_dir":
    csv_dir = st.text_input("CSV directory (one <SYMBOL>.csv per symbol)", key="data_csv_dir")
elif source == "upload":
    upload = st.file_uploader("CSV file (Yahoo or NSE/Kaggle layout)", type=["csv"], key="data_upload")


def _load() -> tuple[dict[str, pd.DataFrame], dict]:
    from evorl_core.data import DataError, load_frames, read_symbol_csv

    if source == "upload":
        if upload is None:
            raise DataError("choose a CSV file to upload")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / upload.name
            path.write_bytes(upload.getvalue())
            frame = read_symbol_csv(path)
        name = Path(upload.name).stem.upper()
        return {name: frame}, {"source": "upload", "synthetic": False, "warnings": []}
    symbols = views.parse_symbols(symbols_text)
    if not symbols:
        raise DataError("give at least one symbol")
    if source == "csv_dir":
        if not csv_dir.strip():
            raise DataError("give a CSV directory")
        src = f"csv:{Path(csv_dir.strip()).expanduser()}"
    else:
        src = source
    return load_frames(src, symbols, cache_dir=ui.data_cache())


if st.button("Load", type="primary", key="data_load"):
    st.session_state.pop("data_result", None)
    with ui.user_errors():
        st.session_state["data_result"] = _load()

if result := st.session_state.get("data_result"):
    frames, info = result
    with ui.user_errors():
        for w in info.get("warnings") or []:
            st.warning(w)
        if info.get("synthetic"):
            st.badge("Synthetic data", icon=":material/science:", color="orange")
        summary = pd.DataFrame([{
            "symbol": sym, "rows": len(df), "first date": str(df.index[0].date()),
            "last date": str(df.index[-1].date()), "last close": float(df["close"].iloc[-1]),
            "source": (info.get("per_symbol") or {}).get(sym, {}).get("source", info.get("source")),
        } for sym, df in frames.items()])
        st.dataframe(summary, hide_index=True)
        sym = st.selectbox("Symbol", list(frames), key="data_symbol") if len(frames) > 1 else next(iter(frames))
        df = frames[sym]
        ui.chart(ui.candlestick_figure(df, f"{sym} — daily OHLC ({len(df):,} rows"
                                       + (", aggregated for display)" if len(df) > views.MAX_POINTS else ")")),
                 key="data_candles")
        with st.expander("Last rows"):
            st.dataframe(df.tail(20))
