"""Live: progress and charts of a run while it trains (any run in the runs directory, CLI included)."""

from __future__ import annotations

import numpy as np
import streamlit as st

import evorl_ui as ui
from evorl_core import views

CHART_KEYS = ("env_steps", "update", "wall_time", "steps_per_sec", "updates_per_sec", "reward_mean",
              "reward_std", "episode_return_mean", "policy_loss", "value_loss", "entropy", "approx_kl",
              "clip_fraction", "explained_variance", "host_rss_mb", "device_mem_mb",
              "mean_abs_position", "turnover")

ui.require_frame()
st.title("Live")

runs = []
with ui.user_errors("Could not read runs: "):
    runs = ui.all_runs()
if not runs:
    st.info(f"No runs in `{ui.runs_dir()}` yet. Start one on **Train** (or `evorl train` from a shell).")
    st.stop()

run_id = ui.pick_run(runs, key="live_run", prefer_active=True)
registry = ui.registry()
rd = ui.open_run(run_id)
owned = registry.is_active(run_id, ui.runs_dir())
live = views.is_live(rd.read_status(), owned=owned)


def controls(status: dict) -> None:
    state = status.get("state")
    b1, b2, b3, _ = st.columns([1, 1, 2, 3])
    if b1.button("Stop", icon=":material/stop:", key="live_stop", disabled=state not in ("queued", "compiling", "running"),
                 help="Stops at the next chunk boundary and keeps a checkpoint (works for CLI runs too)."):
        with ui.user_errors("Could not stop: "):
            registry.stop(run_id, ui.runs_dir())
            st.toast(f"Stop requested for {run_id}")
    can_resume = state in ("stopped", "interrupted", "failed") and rd.has_checkpoint()
    if b2.button("Resume", icon=":material/play_arrow:", key="live_resume", disabled=not can_resume,
                 help="Continue from the last checkpoint."):
        with ui.user_errors("Could not resume: "):
            registry.resume(run_id, ui.runs_dir(), models_dir=ui.models_dir(), cache_dir=ui.data_cache())
            st.rerun()
    if state == "done" and b3.button("Open backtest", icon=":material/query_stats:", key="live_backtest", type="primary"):
        ui.go_to("backtest", run_id)


# Progress and the headline figures refresh every second; the eight charts every few seconds.
# Redrawing all charts each second cost about one of two CPU cores (Streamlit building the
# figures, Chromium drawing them) and slowed a concurrent training run by ~40% on a 2-core machine
# (benchmarks/live_overhead.py).
PROGRESS_REFRESH_S = 1.0
CHART_REFRESH_S = 5.0


@st.fragment(run_every=PROGRESS_REFRESH_S if live else None)
def panel() -> None:
    # Fragment reruns execute only this function, so it catches its own errors.
    with ui.user_errors("Could not show this run: "):
        _panel()


@st.fragment(run_every=CHART_REFRESH_S if live else None)
def charts_panel() -> None:
    with ui.user_errors("Could not draw the charts: "):
        _charts()


def _panel() -> None:
    status = rd.read_status() or {}
    rows = rd.read_metrics()
    state = status.get("state", "?")
    still_live = views.is_live(status, owned=registry.is_active(run_id, ui.runs_dir()))
    if live and not still_live:
        st.rerun()  # run ended: redraw the whole page once, without the polling timer

    prog = views.progress(status, rows)
    phase = status.get("phase")
    label = (f"{ui.STATE_ICONS.get(state, '')} **{state}**" + (f" ({phase})" if phase and phase != state else "")
             + f" · {prog['env_steps']:,} / {prog['total_steps']:,} env steps")
    if state in ("queued", "compiling", "running", "stopping"):
        label += f" · ETA {views.format_duration(prog['eta_seconds'])}"
    if rd.stop_requested() and state in ("queued", "compiling", "running"):
        label += " · stop requested"
    st.progress(prog["fraction"], text=label)
    if state == "failed":
        st.error(f"Run failed: {status.get('error') or 'no error message recorded'}")
    elif state == "interrupted":
        st.warning(f"Run interrupted: {status.get('error') or ''}")
    elif status.get("state") in ("queued", "compiling", "running", "stopping") and not still_live:
        st.warning(f"No update for {ui.age_text(status.get('updated_at'))}: the training process "
                   "probably ended without writing a final status.")

    m = views.metric_arrays(rows, CHART_KEYS)
    sps = views.last_finite(m["steps_per_sec"])
    k1, k2, k3, k4 = st.columns([2, 1, 1, 1])
    with k1.container(key="throughput"):
        st.metric("Env steps / s", f"{sps:,.0f}" if sps is not None else "—",
                  help="Training throughput of the latest chunk (compile time excluded).")
    k2.metric("Updates", f"{int(m['update'][-1]):,}" if rows and np.isfinite(m["update"][-1]) else "0")
    comp = status.get("compile_seconds")
    k3.metric("Compile", f"{comp:.1f} s" if isinstance(comp, (int, float)) else "—")
    rss = views.last_finite(m["host_rss_mb"])
    k4.metric("Host RSS", f"{rss:,.0f} MB" if rss is not None else "—")

    if not rows:
        st.info("Waiting for the first metrics (JAX compiles the training step first; this can take "
                "a minute)." if state in ("queued", "compiling", "running") else "This run has no metrics.")


def _charts() -> None:
    rows = rd.read_metrics()
    if not rows:
        return
    m = views.metric_arrays(rows, CHART_KEYS)
    x = m["env_steps"]
    charts = [
        ("live_reward", ui.band_figure(x, m["reward_mean"], m["reward_std"], "Reward per step (mean ± std)",
                                       "reward mean", "± std")),
        ("live_return", ui.lines_figure(x, {"episode return": m["episode_return_mean"]},
                                        "Episode return (mean over episodes finished in the update)", "log return")),
        ("live_tput", ui.lines_figure(x, {"env steps/s": m["steps_per_sec"], "updates/s": m["updates_per_sec"]},
                                      "Throughput", "env steps / s", secondary=("updates/s",))),
        ("live_mem", ui.lines_figure(x, {"host RSS (MB)": m["host_rss_mb"], "device memory (MB)": m["device_mem_mb"]},
                                     "Memory", "MB")),
        ("live_loss", ui.lines_figure(x, {"policy loss": m["policy_loss"], "value loss": m["value_loss"]},
                                      "PPO losses", "policy loss", secondary=("value loss",))),
        ("live_ent", ui.lines_figure(x, {"entropy": m["entropy"], "explained variance": m["explained_variance"]},
                                     "Entropy and explained variance", "entropy", secondary=("explained variance",))),
        ("live_kl", ui.lines_figure(x, {"approx KL": m["approx_kl"], "clip fraction": m["clip_fraction"]},
                                    "Approx KL and clip fraction", "approx KL", secondary=("clip fraction",))),
        ("live_behaviour", ui.lines_figure(x, {"mean |position|": m["mean_abs_position"], "turnover": m["turnover"]},
                                           "Behaviour (mean |position|, turnover)", "")),
    ]
    for i in range(0, len(charts), 2):
        cols = st.columns(2)
        for col, (key, fig) in zip(cols, charts[i:i + 2], strict=False):
            with col:
                ui.chart(fig, key=key)


with ui.user_errors("Could not show this run: "):
    # Buttons live outside the polling fragment: a click reruns the whole page, so the run state
    # they act on is fresh; the fragment reruns the page itself when the run ends.
    controls(rd.read_status() or {})
panel()
charts_panel()
