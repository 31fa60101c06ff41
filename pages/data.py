"""Data: load a source, see what it holds, and what is wrong with it."""

from __future__ import annotations

import streamlit as st

from evorl_core.config import DEFAULT_DATA, DEFAULT_SYMBOLS
from evorl_ui import forms, shell, widgets
from evorl_ui.charts.base import candlestick_figure
from evorl_ui.presenters.data import candles_title, frames_summary
from evorl_ui.presenters.format import message_markdown

shell.require_frame()
st.title("Data")
st.caption("Validated daily OHLCV: sorted unique dates, positive prices, high ≥ max(open, close) ≥ "
           "min(open, close) ≥ low, non-negative volume. Problems name the file, column and row.")

# The form survives navigation and reloads; a first visit starts from the Train form's symbols and
# source, so checking the data a run will use takes one click.
train = widgets.saved_draft("train")
widgets.restore_draft("data", {"data_symbols": train.get("train_symbols") or ",".join(DEFAULT_SYMBOLS),
                               "data_source": train.get("train_source") or DEFAULT_DATA,
                               "data_csv_dir": train.get("train_csv_dir") or ""})

c1, c2 = st.columns([3, 2])
symbols = forms.parse_symbols(c1.text_input("Symbols", **widgets.keep("data", "data_symbols")))
with c2:
    choice = widgets.source_picker("data", symbols, form="data")

if st.button("Load", type="primary", key="data_load"):
    st.session_state.pop("data_result", None)
    with shell.user_errors():
        st.session_state["data_result"] = widgets.load_frames(choice, symbols, uploads_name="data")

if result := st.session_state.get("data_result"):
    frames, info = result
    with shell.user_errors():
        for w in info.get("warnings") or []:
            st.warning(message_markdown(w))
        if info.get("synthetic"):
            st.badge("Synthetic data", icon=":material/science:", color="orange")
        st.dataframe(frames_summary(frames, info), hide_index=True)
        sym = st.selectbox("Symbol", list(frames), key="data_symbol") if len(frames) > 1 else next(iter(frames))
        df = frames[sym]
        widgets.chart(candlestick_figure(df, candles_title(sym, len(df))), key="data_candles")
        with st.expander("Last rows"):
            st.dataframe(df.tail(20))
