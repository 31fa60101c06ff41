"""Home: backend and devices, recent runs, one-click quick start."""

from __future__ import annotations

import streamlit as st

from evorl_core.config import make_config
from evorl_ui import presenters, settings, shell, widgets

shell.require_frame()
st.title("evorl — RL trading workbench")
st.caption("PPO agents in pure JAX on daily NSE data. Train, watch, backtest on held-out days, deploy.")

with shell.user_errors():
    info = settings.backend()
    mem = settings.host_memory()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Backend", info["jax_platform"])
    c2.metric("Devices", info["device_count"])
    c3.metric("JAX", info["jax"])
    c4.metric(f"Host memory free (of {mem['total_gb']:.0f} GB)", f"{mem['available_gb']:.1f} GB")
    if info["error"]:
        st.error(f"JAX backend unavailable: {info['error']}")
    elif info["devices"]:
        st.caption(f"Devices: {presenters.devices_text(info)} · dashboard process RSS "
                   f"{mem['process_rss_mb']:.0f} MB")

st.subheader("Quick start")
left, right = st.columns([3, 2])
left.write("Train the **quick** preset on **synthetic** data for BPCL, HDFCLIFE and TATASTEEL — "
           "small enough to show a learning curve on a laptop CPU in a minute or two.")
if right.button("Quick start", type="primary", key="quick_start", icon=":material/rocket_launch:"):
    with shell.user_errors("Could not start: "):
        run_id = settings.registry().start(make_config("quick", data="synthetic"), settings.runs_dir(),
                                           models_dir=settings.models_dir())
        shell.go_to("live", run_id)

st.subheader("Recent runs")
with shell.user_errors("Could not read runs: "):
    runs = settings.all_runs()
    if not runs:
        st.info(f"No runs in `{settings.runs_dir()}` yet. Start one from **Train** or with Quick start.")
    else:
        st.dataframe(
            presenters.runs_table(runs), hide_index=True,
            column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                            format="percent"),
                "mean test return": st.column_config.NumberColumn(format="percent"),
                "mean Sharpe": st.column_config.NumberColumn(format="%.2f"),
            },
        )
        b1, b2, _ = st.columns([2, 2, 4])
        pick = widgets.pick_run(runs, key="home_open", label="Open run", column=b1, label_visibility="collapsed")
        if b2.button("Open in Live", key="home_open_live"):
            shell.go_to("live", pick)
