"""Home: backend and devices, recent runs, one-click quick start."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

import evorl_ui as ui
from evorl_core import views
from evorl_core.config import make_config

ui.require_frame()
st.title("evorl — RL trading workbench")
st.caption("PPO agents in pure JAX on daily NSE data. Train, watch, backtest on held-out days, deploy.")

with ui.user_errors():
    info = ui.backend_info()
    mem = ui.host_memory()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Backend", info["platform"])
    c2.metric("Devices", info["device_count"])
    c3.metric("JAX", info["jax_version"])
    c4.metric(f"Host memory free (of {mem['total_gb']:.0f} GB)", f"{mem['available_gb']:.1f} GB")
    if info["error"]:
        st.error(f"JAX backend unavailable: {info['error']}")
    elif info["devices"]:
        st.caption("Devices: " + ", ".join(info["devices"]) + f" · dashboard process RSS "
                   f"{mem['process_rss_mb']:.0f} MB")

st.subheader("Quick start")
left, right = st.columns([3, 2])
left.write("Train the **quick** preset on **synthetic** data for BPCL, HDFCLIFE and TATASTEEL — "
           "small enough to show a learning curve on a laptop CPU in a minute or two.")
if right.button("Quick start", type="primary", key="quick_start", icon=":material/rocket_launch:"):
    with ui.user_errors("Could not start: "):
        run_id = ui.registry().start(make_config("quick", data="synthetic"), ui.runs_dir(),
                                     models_dir=ui.models_dir())
        ui.go_to("live", run_id)

st.subheader("Recent runs")
with ui.user_errors("Could not read runs: "):
    runs = ui.all_runs()
    if not runs:
        st.info(f"No runs in `{ui.runs_dir()}` yet. Start one from **Train** or with Quick start.")
    else:
        rows = []
        for r in runs[:20]:
            head = views.headline(r.get("backtest"))
            prog = views.progress({"env_steps": r.get("env_steps"), "total_steps": r.get("total_steps"),
                                   "state": r.get("state")})
            rows.append({
                "run": r["run_id"],
                "state": r.get("state"),
                "progress": prog["fraction"],
                "symbols": ", ".join(r.get("symbols") or []),
                "preset": r.get("preset"),
                "data": r.get("data_source"),
                "mean test return": head["total_return"],
                "mean Sharpe": head["sharpe"],
                "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("updated_at") or 0)),
            })
        st.dataframe(
            pd.DataFrame(rows), hide_index=True,
            column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                            format="percent"),
                "mean test return": st.column_config.NumberColumn(format="percent"),
                "mean Sharpe": st.column_config.NumberColumn(format="%.2f"),
            },
        )
        b1, b2, _ = st.columns([2, 2, 4])
        pick = b1.selectbox("Open run", [r["run_id"] for r in runs], key="home_open",
                            label_visibility="collapsed")
        if b2.button("Open in Live", key="home_open_live"):
            ui.go_to("live", pick)
