"""Walk-forward: every `evorl walkforward` in the runs directory (runs/walkforward/<id>/summary.json):
the pooled out-of-sample result, each fold's test metrics, and the folds' own runs."""

from __future__ import annotations

import streamlit as st

from evorl_core.training.walkforward import WALKFORWARD_DIR, list_walkforwards
from evorl_ui import settings, shell, widgets
from evorl_ui.presenters.format import plain, steps_text
from evorl_ui.presenters.walkforward import fold_table, pooled_table, walkforwards_table

shell.require_frame()
st.title("Walk-forward")
st.caption("K rolling-origin folds, each a complete run on the history up to the end of its own test block "
           "(train | embargo | validation | embargo | test); no fold trains, validates or selects on a day it is "
           "tested on. Pooled: the folds' test days chained in time order, every day out of sample.")

summaries = []
with shell.user_errors("Could not read walk-forwards: "):
    summaries = list_walkforwards(settings.runs_dir())
if not summaries:
    st.info(f"No walk-forward in `{settings.runs_dir() / WALKFORWARD_DIR}` yet. Start one from a shell: "
            "`evorl walkforward --folds 4 --preset quick --data synthetic`.")
    st.stop()

st.dataframe(walkforwards_table(summaries), hide_index=True, key="wf_list")
by_id = {s.get("id"): s for s in summaries}
pick = st.selectbox("Walk-forward", list(by_id), key="wf_pick",
                    format_func=lambda i: f"{i} · {by_id[i].get('state')} · {by_id[i].get('folds')} folds")
summary = by_id[pick]

with shell.user_errors("Could not show this walk-forward: "):
    config = summary.get("config") or {}
    info = summary.get("data_info") or {}
    widgets.data_badge(None if not info else bool(info.get("synthetic")), info.get("source"))
    st.caption(f"{plain(', '.join(map(str, config.get('symbols') or [])))} · {plain(config.get('preset'))} preset · "
               f"{steps_text(config.get('total_timesteps'))} steps per fold · "
               f"{config.get('test_days')} test days per fold · {config.get('val_days')} validation days")
    done = len(summary.get("per_fold") or [])
    if summary.get("state") != "done":
        st.warning(f"This walk-forward is {summary.get('state')}: {done} of {summary.get('folds')} fold(s) finished; "
                   "the pooled result appears when every fold is done.", icon=":material/warning:")

    pooled = pooled_table(summary)
    if not pooled.empty:
        st.subheader("Pooled out-of-sample result")
        st.dataframe(pooled, key="wf_pooled")
    folds = fold_table(summary)
    if not folds.empty:
        st.subheader("Per fold")
        st.dataframe(folds, key="wf_folds")

    st.subheader("Fold runs")
    runs = [f.get("run_id") for f in summary.get("per_fold") or [] if f.get("run_id")]
    for i in range(0, len(runs), 4):
        for col, run_id in zip(st.columns(4), runs[i:i + 4], strict=False):
            exists = settings.open_run(run_id).status_path.exists()
            if col.button(f"{plain(run_id)} → Backtest", key=f"wf_open_{run_id}", icon=":material/query_stats:",
                          disabled=not exists, help=None if exists else "This fold's run directory is gone."):
                shell.go_to("backtest", run_id)
