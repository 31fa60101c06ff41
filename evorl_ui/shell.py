"""The frame around every page: page config, navigation, sidebar, CSS, and how errors show.

``frame()`` is what dashboard.py calls; every page calls ``require_frame()`` first (see there why),
then renders inside ``user_errors()`` blocks so that a failure is a message, never a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from evorl_core.store.rundir import ACTIVE_STATES
from evorl_ui import settings
from evorl_ui.presenters.format import message_markdown, plain
from evorl_ui.presenters.runs import backend_line

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
LOGO = ASSETS / "logo.svg"
LOGO_ICON = ASSETS / "icon.svg"
CSS = ASSETS / "style.css"

# page -> (file relative to dashboard.py, title, icon); the first is the default page.
PAGES = {
    "home": ("pages/home.py", "Home", ":material/home:"),
    "train": ("pages/train.py", "Train", ":material/rocket_launch:"),
    "live": ("pages/live.py", "Live", ":material/monitoring:"),
    "backtest": ("pages/backtest.py", "Backtest", ":material/query_stats:"),
    "walkforward": ("pages/walkforward.py", "Walk-forward", ":material/timeline:"),
    "models": ("pages/models.py", "Models", ":material/deployed_code:"),
    "data": ("pages/data.py", "Data", ":material/table_chart:"),
}
DEFAULT_PAGE = "home"
# Error types whose message is written for the user already (no class name in front).
USER_ERRORS = ("DataError", "ConfigError", "JobError", "RunDirError", "StorageError", "RunInUse", "DeployError",
               "LedgerError", "TrainingDiverged")
# Session keys of the run selection shared by all pages (widgets.pick_run reads them).
SELECTED_RUN = "selected_run"  # the run last selected on any page
REQUESTED_RUN = "_requested_run"  # the run a go_to() asked the next page to select


def frame() -> st.Page:
    """Page config, navigation and sidebar shared by every page; returns the page to run."""
    st.set_page_config(page_title="evorl", page_icon=str(LOGO_ICON), layout="wide",
                       initial_sidebar_state="expanded")
    page = st.navigation([st.Page(path, title=title, icon=icon, default=name == DEFAULT_PAGE)
                          for name, (path, title, icon) in PAGES.items()])
    inject_css()
    sidebar()
    return page


def require_frame() -> None:
    """Make sure a page renders inside the shared frame.

    A ``pages/`` folder next to the entry script puts Streamlit in its legacy multipage mode
    until ``st.navigation`` has been called once in the process, and in that mode a deep link
    such as ``/backtest`` (the first one on a fresh server, and every AppTest run) executes the
    page file on its own. Then the page builds the frame itself (same URL paths, so the same
    page stays selected) and goes on rendering; no rerun, so a click that started this run
    is not lost. This reads Streamlit internals; each access falls back to doing nothing.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without the legacy mode
        return
    if not PagesManager.uses_pages_directory:
        return
    try:
        from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState

        active = ThreadState.get().active_script_hash
    except Exception:  # noqa: BLE001 - internals moved; widget ids may then differ for one run
        ThreadState, active = None, None
    frame()  # st.navigation leaves legacy mode for good
    if ThreadState is not None and active:
        # st.navigation resets the active page hash, which widget ids include; keep this page's
        # so widgets get the same ids as when dashboard.py runs the page.
        ThreadState.update(active_script_hash=active)


def inject_css() -> None:
    if CSS.exists():
        st.html(f"<style>{CSS.read_text(encoding='utf-8')}</style>")


def sidebar() -> None:
    """Logo, backend line, runs training in this process, directory settings: on every page."""
    if LOGO.exists():
        st.logo(str(LOGO), icon_image=str(LOGO_ICON) if LOGO_ICON.exists() else None, size="large")
    info = settings.backend()
    with st.sidebar:
        st.caption(backend_line(info))
        if training_runs():
            # Polls only while something trains here, so a run that ends in another tab stops
            # showing as training within seconds.
            st.fragment(run_every=ACTIVE_REFRESH_S)(_training_caption)()
        with st.expander("Settings", expanded=False):
            for name, label in settings.LABELS.items():
                env, fallback = settings.SETTINGS[name]
                key = settings.session_key(name)
                if key not in st.session_state:
                    st.session_state[key] = settings.default(name)
                st.text_input(label, key=key, help=f"Default from ${env} (else '{fallback}')")


ACTIVE_REFRESH_S = 5.0


def training_runs() -> list[str]:
    """Runs this process trains whose status is still active (a thread can outlive its run's
    final status by a moment)."""
    ids = settings.registry().active_run_ids(settings.runs_dir())
    return [i for i in ids if (settings.open_run(i).read_status() or {}).get("state") in ACTIVE_STATES]


def _training_caption() -> None:
    active = training_runs()
    if active:
        st.caption(f":material/play_circle: training: {plain(', '.join(active))}")


def go_to(page: str, run_id: str | None = None) -> None:
    """Switch page with the run selected there (session state and ?run=...)."""
    path = PAGES[page][0]
    if run_id:
        st.session_state[SELECTED_RUN] = run_id
        st.session_state[REQUESTED_RUN] = run_id
        st.switch_page(path, query_params={"run": run_id})
    st.switch_page(path)


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Show any error raised inside as st.error instead of a traceback.

    Streamlit's own control flow (st.rerun, st.switch_page, st.stop) derives from BaseException
    and passes through.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the user sees the message, not a traceback
        st.error(message_markdown(f"{prefix}{error_text(exc)}"))


def error_text(exc: BaseException) -> str:
    name = type(exc).__name__
    msg = str(exc) or name
    if name in USER_ERRORS:
        return msg
    return f"{name}: {msg}"
