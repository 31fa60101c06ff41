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

import logging  # noqa: E402

import streamlit as st  # noqa: E402

from evorl_ui import shell  # noqa: E402
from evorl_ui.presenters.format import message_markdown  # noqa: E402

page = shell.frame()
try:
    page.run()
except Exception as exc:  # noqa: BLE001 - last line of defence: a message on screen, the traceback in the log
    logging.getLogger("evorl.dashboard").exception("page %s failed", page.title)
    st.error(message_markdown(f"This page hit an unexpected error: {shell.error_text(exc)}"))
