"""Shared Streamlit helpers for the dashboard pages: settings, registry, run picking, figures.

Pages stay thin views: they read run directories (through evorl_core.rundir), ask
evorl_core.views for display-ready arrays, and draw them with the figure builders here.
Nothing here trains, computes metrics, or runs in a background thread.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from evorl_core import jobs, views
from evorl_core.rundir import ACTIVE_STATES, RunDir, list_runs

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
LOGO = ASSETS / "logo.svg"
LOGO_ICON = ASSETS / "icon.svg"
CSS = ASSETS / "style.css"

PAGE_FILES = {
    "home": "pages/home.py",
    "train": "pages/train.py",
    "live": "pages/live.py",
    "backtest": "pages/backtest.py",
    "models": "pages/models.py",
    "data": "pages/data.py",
}

# Material icons (markdown only; emoji fonts are often missing on Linux browsers).
STATE_ICONS = {
    "queued": ":material/schedule:", "compiling": ":material/settings:", "running": ":material/play_circle:",
    "stopping": ":material/stop_circle:", "stopped": ":material/pause_circle:",
    "done": ":material/check_circle:", "failed": ":material/error:", "interrupted": ":material/warning:",
}

COLORS = {"agent": "#2563eb", "bench": "#9ca3af", "band": "rgba(37,99,235,0.18)", "dd": "#dc2626",
          "entry": "#16a34a", "exit": "#dc2626", "price": "#374151"}

SETTINGS = {
    "runs_dir": ("EVORL_RUNS_DIR", "runs"),
    "models_dir": ("EVORL_MODELS_DIR", "models"),
    "data_cache": ("EVORL_DATA_CACHE", "data_cache"),
}


# settings and shared resources ---------------------------------------------------
def setting(name: str) -> str:
    """A directory setting: the sidebar value for this session, else env var, else default."""
    env, default = SETTINGS[name]
    value = st.session_state.get(f"setting_{name}")
    return str(value).strip() if value else os.environ.get(env, default)


def runs_dir() -> Path:
    return Path(setting("runs_dir"))


def models_dir() -> Path:
    return Path(setting("models_dir"))


def data_cache() -> Path:
    return Path(setting("data_cache"))


@st.cache_resource
def registry() -> jobs.JobRegistry:
    """The process-wide job registry (the same object as evorl_core.jobs.get_registry())."""
    return jobs.get_registry()


@st.cache_resource
def backend_info() -> dict[str, Any]:
    """JAX backend facts; JAX is initialised once per process here, not on every rerun."""
    try:
        import jax

        devices = jax.devices()
        return {
            "platform": jax.default_backend(),
            "device_count": len(devices),
            "devices": [str(d) for d in devices],
            "device_kinds": sorted({getattr(d, "device_kind", d.platform) for d in devices}),
            "jax_version": jax.__version__,
            "error": None,
        }
    except Exception as exc:  # noqa: BLE001 - shown on screen, the app still works without it
        return {"platform": "unavailable", "device_count": 0, "devices": [], "device_kinds": [],
                "jax_version": "?", "error": f"{type(exc).__name__}: {exc}"}


def host_memory() -> dict[str, float]:
    import psutil

    vm = psutil.virtual_memory()
    rss = psutil.Process().memory_info().rss
    return {"total_gb": vm.total / 2**30, "available_gb": vm.available / 2**30,
            "process_rss_mb": rss / 2**20}


# frame -------------------------------------------------------------------------
def frame() -> st.Page:
    """Page config, navigation and sidebar shared by every page; returns the page to run."""
    st.set_page_config(page_title="evorl", page_icon=str(LOGO_ICON), layout="wide",
                       initial_sidebar_state="expanded")
    page = st.navigation([
        st.Page(PAGE_FILES["home"], title="Home", icon=":material/home:", default=True),
        st.Page(PAGE_FILES["train"], title="Train", icon=":material/rocket_launch:"),
        st.Page(PAGE_FILES["live"], title="Live", icon=":material/monitoring:"),
        st.Page(PAGE_FILES["backtest"], title="Backtest", icon=":material/query_stats:"),
        st.Page(PAGE_FILES["models"], title="Models", icon=":material/deployed_code:"),
        st.Page(PAGE_FILES["data"], title="Data", icon=":material/table_chart:"),
    ])
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
    is not lost.
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
    """Logo, backend line and directory settings, shown on every page."""
    if LOGO.exists():
        st.logo(str(LOGO), icon_image=str(LOGO_ICON) if LOGO_ICON.exists() else None, size="large")
    info = backend_info()
    with st.sidebar:
        kinds = ", ".join(info["device_kinds"]) or info["platform"]
        st.caption(f"Backend **{info['platform']}** · {info['device_count']} device(s) · {kinds} · "
                   f"JAX {info['jax_version']}")
        active = registry().active_run_ids(runs_dir())
        if active:
            st.caption(f":material/play_circle: training: {', '.join(active)}")
        with st.expander("Settings", expanded=False):
            for name, label in (("runs_dir", "Runs directory"), ("models_dir", "Models directory"),
                                ("data_cache", "Data cache")):
                env, default = SETTINGS[name]
                key = f"setting_{name}"
                if key not in st.session_state:
                    st.session_state[key] = os.environ.get(env, default)
                st.text_input(label, key=key, help=f"Default from ${env} (else '{default}')")


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Show any error raised inside as st.error instead of a traceback.

    Streamlit's own control flow (st.rerun, st.switch_page, st.stop) derives from BaseException
    and passes through.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the user sees the message, not a traceback
        st.error(f"{prefix}{error_text(exc)}")


def error_text(exc: BaseException) -> str:
    name = type(exc).__name__
    msg = str(exc) or name
    if name in ("DataError", "ConfigError", "JobError", "RunDirError"):
        return msg
    return f"{name}: {msg}"


# runs ----------------------------------------------------------------------------
def all_runs() -> list[dict[str, Any]]:
    return list_runs(runs_dir())


def run_label(run: Mapping[str, Any]) -> str:
    # No state here: a selectbox keeps the label it was drawn with while a run changes state.
    syms = ",".join(run.get("symbols") or [])
    return run["run_id"] + (f" · {syms}" if syms else "") + (f" · {run['preset']}" if run.get("preset") else "")


def pick_run(runs: Sequence[Mapping[str, Any]], key: str, label: str = "Run",
             prefer_active: bool = False) -> str | None:
    """A run selector. Its default: the run a link asked for (go_to / ?run=...), else the run
    selected on another page this session, else (prefer_active) a running one, else the newest."""
    if not runs:
        return None
    ids = [r["run_id"] for r in runs]
    by_id = {r["run_id"]: r for r in runs}
    requested = st.session_state.pop("_requested_run", None)
    if requested in ids:
        st.session_state[key] = requested
    elif st.session_state.get(key) not in ids:
        candidates = [st.query_params.get("run"), st.session_state.get("selected_run")]
        if prefer_active:
            candidates.insert(1, next((i for i in ids if by_id[i].get("state") in ACTIVE_STATES), None))
        st.session_state[key] = next((c for c in candidates if c in ids), ids[0])
    chosen = st.selectbox(label, ids, key=key, format_func=lambda i: run_label(by_id[i]))
    st.session_state["selected_run"] = chosen
    if st.query_params.get("run") != chosen:
        st.query_params["run"] = chosen
    return chosen


def go_to(page: str, run_id: str | None = None) -> None:
    """Switch page with the run selected there (session state and ?run=...)."""
    if run_id:
        st.session_state["selected_run"] = run_id
        st.session_state["_requested_run"] = run_id
        st.switch_page(PAGE_FILES[page], query_params={"run": run_id})
    st.switch_page(PAGE_FILES[page])


def open_run(run_id: str) -> RunDir:
    return RunDir.open(runs_dir(), run_id)


def age_text(ts: float | None) -> str:
    if not ts:
        return "—"
    return views.format_duration(time.time() - ts) + " ago"


# figures -------------------------------------------------------------------------
def _layout(fig: go.Figure, title: str, ytitle: str = "", height: int = 300, **kw: Any) -> go.Figure:
    # Title on the first line, legend on its own line under it: no overlap in narrow columns.
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=0.985, yanchor="top", yref="container",
                                 font=dict(size=15)),
                      height=height + 20, margin=dict(l=10, r=10, t=58, b=10), hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
                      yaxis_title=ytitle, **kw)
    return fig


def _thin(x: np.ndarray, *ys: np.ndarray, minmax_of: np.ndarray | None = None) -> list[np.ndarray]:
    idx = (views.minmax_downsample_indices(minmax_of) if minmax_of is not None
           else views.downsample_indices(len(x)))
    return [np.asarray(x)[idx]] + [np.asarray(y)[idx] for y in ys]


def lines_figure(x: np.ndarray, series: Mapping[str, np.ndarray], title: str, ytitle: str = "",
                 xtitle: str = "env steps", secondary: Sequence[str] = ()) -> go.Figure:
    fig = go.Figure()
    names = list(series)
    thinned = _thin(x, *[series[n] for n in names])
    for name, y in zip(names, thinned[1:], strict=True):
        if not views.has_values(y):
            continue
        right = name in secondary  # right-axis series are dotted so overlapping lines stay visible
        fig.add_trace(go.Scatter(x=thinned[0], y=y, name=name + (" (right)" if right else ""), mode="lines",
                                 yaxis="y2" if right else "y", line=dict(dash="dot" if right else "solid")))
    extra = {}
    if any(getattr(t, "yaxis", None) == "y2" for t in fig.data):
        extra["yaxis2"] = dict(overlaying="y", side="right", showgrid=False, title=", ".join(secondary))
    if not fig.data:
        fig.add_annotation(text="no data yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font=dict(color="#6b7280", size=14))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return _layout(fig, title, ytitle, xaxis_title=xtitle, **extra)


def band_figure(x: np.ndarray, mean: np.ndarray, spread: np.ndarray, title: str, name: str,
                band_name: str) -> go.Figure:
    x, mean, spread = _thin(x, mean, spread)
    spread = np.where(np.isfinite(spread), spread, 0.0)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=mean + spread, mode="lines", line=dict(width=0), showlegend=False,
                             hoverinfo="skip", name="upper"))
    fig.add_trace(go.Scatter(x=x, y=mean - spread, mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor=COLORS["band"], name=band_name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=name, line=dict(color=COLORS["agent"])))
    return _layout(fig, title, xaxis_title="env steps")


def equity_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dates, equity, bench = _thin(dates, equity, bench, minmax_of=equity)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=equity, name="agent", mode="lines",
                             line=dict(color=COLORS["agent"], width=2)))
    fig.add_trace(go.Scatter(x=dates, y=bench, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")))
    return _layout(fig, title, "equity", height=320)


def drawdown_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dd = views.drawdown(equity)
    bdd = views.drawdown(bench)
    dates, dd, bdd = _thin(dates, dd, bdd, minmax_of=dd)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=dd, name="agent", mode="lines", fill="tozeroy",
                             line=dict(color=COLORS["dd"], width=1.5)))
    fig.add_trace(go.Scatter(x=dates, y=bdd, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1, dash="dot")))
    fig.update_yaxes(tickformat=".0%")
    return _layout(fig, title, "drawdown", height=260)


def price_figure(frame: Any, execution: str, title: str) -> go.Figure:
    dates = frame["date"].to_numpy()
    close = frame["close"].to_numpy(dtype=np.float64)
    d, c = _thin(dates, close, minmax_of=close)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=d, y=c, name="close", mode="lines", line=dict(color=COLORS["price"], width=1.2)))
    marks = views.marker_points(frame, execution)
    for name, symbol, color in (("entry", "triangle-up", COLORS["entry"]),
                                ("exit", "triangle-down", COLORS["exit"])):
        pts = marks[name]
        idx = views.downsample_indices(len(pts["date"]))
        fig.add_trace(go.Scatter(x=pts["date"][idx], y=pts["price"][idx], name=f"{name} (position {'up' if name == 'entry' else 'down'})",
                                 mode="markers", marker=dict(symbol=symbol, size=9, color=color)))
    return _layout(fig, title, "price", height=260)


def candlestick_figure(df: Any, title: str) -> go.Figure:
    bars = views.ohlc_downsample(df)
    fig = go.Figure(go.Candlestick(
        x=np.asarray(bars.index), open=bars["open"].to_numpy(), high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(), close=bars["close"].to_numpy(), name="OHLC"))
    fig.update_layout(xaxis_rangeslider_visible=False)
    return _layout(fig, title, "price", height=380)


def chart(fig: go.Figure, key: str | None = None) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def fmt_pct(v: Any) -> str:
    return f"{v:+.1%}" if isinstance(v, (int, float)) and np.isfinite(v) else "—"


def fmt_num(v: Any, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and np.isfinite(v) else "—"
