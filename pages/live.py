"""Live: progress and charts of a run while it trains (any run in the runs directory, CLI included)."""

from __future__ import annotations

import streamlit as st

from evorl_core.rundir import RESUMABLE_STATES
from evorl_ui import charts, presenters, settings, shell, widgets

shell.require_frame()
st.title("Live")

runs = []
with shell.user_errors("Could not read runs: "):
    runs = settings.all_runs()
if not runs:
    st.info(f"No runs in `{settings.runs_dir()}` yet. Start one on **Train** (or `evorl train` from a shell).")
    st.stop()

run_id = widgets.pick_run(runs, key="live_run", prefer_active=True)
registry = settings.registry()
rd = settings.open_run(run_id)
live = presenters.is_live(rd.read_status(), owned=registry.is_active(run_id, settings.runs_dir()))


def controls(status: dict) -> None:
    state = status.get("state")
    b1, b2, b3, _ = st.columns([1, 1, 2, 3])
    if b1.button("Stop", icon=":material/stop:", key="live_stop", disabled=state not in presenters.STOPPABLE_STATES,
                 help="Stops at the next chunk boundary and keeps a checkpoint (works for CLI runs too)."):
        with shell.user_errors("Could not stop: "):
            registry.stop(run_id, settings.runs_dir())
            st.toast(f"Stop requested for {run_id}")
    can_resume = state in RESUMABLE_STATES and rd.has_checkpoint()
    if b2.button("Resume", icon=":material/play_arrow:", key="live_resume", disabled=not can_resume,
                 help="Continue from the last checkpoint."):
        with shell.user_errors("Could not resume: "):
            registry.resume(run_id, settings.runs_dir(), models_dir=settings.models_dir(),
                            cache_dir=settings.data_cache())
            st.rerun()
    if state == "done" and b3.button("Open backtest", icon=":material/query_stats:", key="live_backtest", type="primary"):
        shell.go_to("backtest", run_id)


# Progress and the headline figures refresh every second; the eight charts every few seconds.
# Redrawing all charts each second cost about one of two CPU cores (Streamlit building the
# figures, Chromium drawing them) and slowed a concurrent training run by ~40% on a 2-core machine
# (benchmarks/live_overhead.py).
PROGRESS_REFRESH_S = 1.0
CHART_REFRESH_S = 5.0


@st.fragment(run_every=PROGRESS_REFRESH_S if live else None)
def panel() -> None:
    # Fragment reruns execute only this function, so it catches its own errors.
    with shell.user_errors("Could not show this run: "):
        _panel()


@st.fragment(run_every=CHART_REFRESH_S if live else None)
def charts_panel() -> None:
    with shell.user_errors("Could not draw the charts: "):
        _charts()


def _panel() -> None:
    status = rd.read_status() or {}
    rows = rd.read_metrics()
    still_live = presenters.is_live(status, owned=registry.is_active(run_id, settings.runs_dir()))
    if live and not still_live:
        st.rerun()  # run ended: redraw the whole page once, without the polling timer

    prog = presenters.progress(status, rows)
    st.progress(prog["fraction"], text=presenters.status_line(status, prog, rd.stop_requested()))
    if alert := presenters.status_alert(status, still_live):
        kind, message = alert
        (st.error if kind == "error" else st.warning)(message)

    kpis = presenters.live_kpis(presenters.metric_arrays(rows, presenters.LIVE_METRIC_KEYS), status)
    k1, k2, k3, k4 = st.columns([2, 1, 1, 1])
    with k1.container(key="throughput"):  # assets/style.css enlarges this figure
        st.metric("Env steps / s", kpis["Env steps / s"],
                  help="Training throughput of the latest chunk (compile time excluded).")
    for col, label in ((k2, "Updates"), (k3, "Compile"), (k4, "Host RSS")):
        col.metric(label, kpis[label])

    if not rows:
        st.info(presenters.no_metrics_text(status.get("state")))


def _charts() -> None:
    rows = rd.read_metrics()
    if not rows:
        return
    figures = charts.live_figures(presenters.metric_arrays(rows, presenters.LIVE_METRIC_KEYS))
    for i in range(0, len(figures), 2):
        for col, (key, fig) in zip(st.columns(2), figures[i:i + 2], strict=False):
            with col:
                widgets.chart(fig, key=key)


with shell.user_errors("Could not show this run: "):
    # Buttons live outside the polling fragment: a click reruns the whole page, so the run state
    # they act on is fresh; the fragment reruns the page itself when the run ends.
    controls(rd.read_status() or {})
panel()
charts_panel()
