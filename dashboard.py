"""evorl dashboard: `streamlit run dashboard.py`.

The entry point only sets up the shared frame (page config, sidebar, navigation); each page in
pages/ is a thin view over run directories. Directories come from the sidebar settings, else
EVORL_RUNS_DIR / EVORL_MODELS_DIR / EVORL_DATA_CACHE, else runs/, models/, data_cache/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # pages import evorl_ui / evorl_core from the repository root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

import evorl_ui as ui  # noqa: E402

st.set_page_config(page_title="evorl", page_icon=str(ui.LOGO_ICON), layout="wide",
                   initial_sidebar_state="expanded")

pages = [
    st.Page(ui.PAGE_FILES["home"], title="Home", icon=":material/home:", default=True),
    st.Page(ui.PAGE_FILES["train"], title="Train", icon=":material/rocket_launch:"),
    st.Page(ui.PAGE_FILES["live"], title="Live", icon=":material/monitoring:"),
    st.Page(ui.PAGE_FILES["backtest"], title="Backtest", icon=":material/query_stats:"),
    st.Page(ui.PAGE_FILES["models"], title="Models", icon=":material/deployed_code:"),
    st.Page(ui.PAGE_FILES["data"], title="Data", icon=":material/table_chart:"),
]
page = st.navigation(pages)
ui.inject_css()
ui.sidebar()
page.run()
