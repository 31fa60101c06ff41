"""Home: backend and devices, one-click quick start, and the runs: filter, sort, open, name, tag,
note, archive, delete."""

from __future__ import annotations

import streamlit as st

from evorl_core.config import make_config
from evorl_core.store.catalogue import delete_run, write_annotations
from evorl_core.store.rundir import ACTIVE_STATES, STATES
from evorl_ui import forms, settings, shell, widgets
from evorl_ui.presenters.format import plain
from evorl_ui.presenters.runs import RUN_SORTS, devices_text, filter_runs, runs_table

shell.require_frame()
st.title("evorl — RL trading workbench")
st.caption("PPO agents in pure JAX on daily NSE data. Train, watch, backtest on held-out days, deploy.")

if flash := st.session_state.pop("home_flash", None):
    st.success(plain(flash))

with shell.user_errors():
    info = settings.backend()
    mem = settings.host_memory()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Backend", info["jax_platform"])
    c2.metric("Devices", info["device_count"])
    c3.metric("JAX", info["jax"])
    c4.metric(f"Host memory free (of {mem['total_gb']:.0f} GB)", f"{mem['available_gb']:.1f} GB")
    if info["error"]:
        st.error(plain(f"JAX backend unavailable: {info['error']}"))
    elif info["devices"]:
        st.caption(f"Devices: {devices_text(info)} · dashboard process RSS "
                   f"{mem['process_rss_mb']:.0f} MB")

st.subheader("Quick start")
left, right = st.columns([3, 2])
QUICK = forms.DASHBOARD_PRESET_DEFAULTS["quick"]
left.write(f"Train the **quick** preset on **synthetic** data for BPCL, HDFCLIFE and TATASTEEL with "
           f"**{QUICK['seeds']} seeds** as one program — small enough to show learning curves on a laptop CPU in a "
           "few minutes, and a spread of results rather than one draw.")
if right.button("Quick start", type="primary", key="quick_start", icon=":material/rocket_launch:"):
    with shell.user_errors("Could not start: "):
        run_id = settings.registry().start(make_config("quick", data="synthetic", **QUICK), settings.runs_dir(),
                                           models_dir=settings.models_dir())
        write_annotations(settings.open_run(run_id), name="quick start", tags="quick-start")
        shell.go_to("live", run_id)

st.subheader("Runs")
runs = []
with shell.user_errors("Could not read runs: "):
    runs = settings.all_runs(include_archived=True)
if not runs:
    st.info(f"No runs in `{settings.runs_dir()}` yet. Start one from **Train** or with Quick start.")
    st.stop()

f1, f2, f3, f4, f5 = st.columns([3, 3, 2, 2, 1.4], vertical_alignment="bottom")
text = f1.text_input("Search", key="home_search", placeholder="name, tag, note, symbol or id")
states = f2.multiselect("State", list(STATES), key="home_states", placeholder="any state")
data = f3.selectbox("Data", ["any", "real", "synthetic"], key="home_data")
sort = f4.selectbox("Sort", list(RUN_SORTS), key="home_sort")
archived = f5.checkbox("Archived", key="home_archived", help="Show archived runs too.")
shown = filter_runs(runs, text, states, data, archived, sort)
hidden = sum(1 for r in runs if r.get("archived")) if not archived else 0
st.caption(f"{len(shown)} of {len(runs)} run(s)" + (f" · {hidden} archived hidden" if hidden else ""))
if shown:
    st.dataframe(
        runs_table(shown, limit=200), hide_index=True, key="home_runs",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                        width=80),
            "state": st.column_config.TextColumn(width=70),
            "name": st.column_config.TextColumn(width=110),
            "data": st.column_config.TextColumn(width=85, help="Where the run's prices came from: real (csv, "
                                                               "cache, yahoo) or SYNTHETIC"),
            "size": st.column_config.TextColumn(width=170, help="Preset, env steps per member, and the "
                                                             "members: seeds or a PBT population"),
            "symbols": st.column_config.TextColumn(width=140),
            "test return": st.column_config.TextColumn(width=80, help="Mean over symbols of the held-out return"),
            "Sharpe": st.column_config.TextColumn(width=60, help="Mean over symbols of the held-out Sharpe"),
            "tags": st.column_config.TextColumn(width=110),
            "run": st.column_config.TextColumn(width=200),
        },
    )
else:
    st.info("No run matches these filters.")
    st.stop()

st.subheader("Manage a run")
by_id = {r["run_id"]: r for r in shown}
c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
pick = widgets.pick_run(shown, key="home_open", label="Run", column=c1)
if c2.button("Open in Live", key="home_open_live"):
    shell.go_to("live", pick)
if c3.button("Open backtest", key="home_open_backtest", disabled=not by_id[pick].get("backtest")):
    shell.go_to("backtest", pick)

run = by_id[pick]
if st.session_state.get("_home_annotated") != pick:  # a new pick: load its annotations into the fields
    st.session_state["_home_annotated"] = pick
    st.session_state["home_name"] = run.get("name") or ""
    st.session_state["home_tags"] = ", ".join(run.get("tags") or [])
    st.session_state["home_note"] = run.get("note") or ""
widgets.data_badge(run.get("synthetic"), run.get("data_source"))
with st.form("home_annotations", border=True):
    n1, n2 = st.columns([2, 3])
    n1.text_input("Name", key="home_name", placeholder="a name shown in every picker")
    n2.text_input("Tags (comma-separated)", key="home_tags")
    st.text_area("Note", key="home_note", height=68)
    if st.form_submit_button("Save name, tags and note", icon=":material/save:"):
        with shell.user_errors("Could not save: "):
            write_annotations(settings.open_run(pick), name=st.session_state["home_name"],
                              tags=st.session_state["home_tags"], note=st.session_state["home_note"])
            st.session_state["home_flash"] = f"Saved name, tags and note of {pick}."
            st.session_state.pop("_home_annotated", None)
            st.rerun()

active = run.get("state") in ACTIVE_STATES
a1, a2, a3 = st.columns([1.3, 2.5, 1.3], vertical_alignment="center")
if a1.button("Unarchive" if run.get("archived") else "Archive", key="home_archive",
             icon=":material/unarchive:" if run.get("archived") else ":material/archive:",
             help="Archived runs leave the pickers of every page; nothing is deleted."):
    with shell.user_errors("Could not archive: "):
        write_annotations(settings.open_run(pick), archived=not run.get("archived"))
        st.session_state["home_flash"] = f"{'Unarchived' if run.get('archived') else 'Archived'} {pick}."
        st.rerun()
confirm = a2.checkbox(f"Delete {plain(pick)} and all its files", key=f"home_confirm_{pick}", disabled=active,
                      help="A running run cannot be deleted: stop it first." if active else None)
if a3.button("Delete", key="home_delete", type="primary", icon=":material/delete:", disabled=active or not confirm):
    with shell.user_errors("Could not delete: "):
        delete_run(settings.open_run(pick))
        st.session_state["home_flash"] = f"Deleted {pick}."
        for key in (shell.SELECTED_RUN, "home_open", "_home_annotated"):
            st.session_state.pop(key, None)
        st.query_params.pop("run", None)
        st.rerun()
if active:
    st.caption(f":material/info: {plain(pick)} is {run.get('state')}: stop it on **Live** before deleting it.")
