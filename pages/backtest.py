"""Backtest: held-out equity vs buy & hold per symbol, drawdowns, trades, metrics; compare runs."""

from __future__ import annotations

import streamlit as st

from evorl_ui import charts, presenters, settings, shell, widgets

shell.require_frame()
st.title("Backtest")

runs = []
with shell.user_errors("Could not read runs: "):
    runs = [r for r in settings.all_runs() if r.get("backtest")]
if not runs:
    st.info(f"No finished runs with a backtest in `{settings.runs_dir()}` yet. Runs write one when training ends.")
    st.stop()

run_id = widgets.pick_run(runs, key="bt_run")
rd = settings.open_run(run_id)

with shell.user_errors("Could not read this run: "):
    config = rd.read_config() or {}
    metrics = rd.read_backtest_metrics() or {}
    equity = rd.read_equity()
    data_info = config.get("data_info") or {}
    execution = config.get("execution", "next_open")

    if data_info.get("synthetic"):
        st.badge("Synthetic data — not real prices", icon=":material/science:", color="orange")
    st.caption(presenters.conventions_text(config))
    with st.expander("Metric definitions"):
        st.table(presenters.metric_definitions_table())
    for w in data_info.get("warnings") or []:
        st.warning(w)

    overview = presenters.overview_table(metrics)
    if not overview.empty:
        st.subheader("All symbols")
        st.dataframe(overview)

    if equity is not None and len(equity):
        st.download_button("Download equity.csv", icon=":material/download:", data=rd.equity_path.read_bytes(),
                           file_name=f"{run_id}-equity.csv", mime="text/csv", key="bt_download")

    for sym in presenters.backtest_symbols(metrics, equity):
        st.divider()
        st.subheader(sym)
        frame = presenters.symbol_rows(equity, sym)
        if frame is None:
            st.warning(f"{sym}: no equity rows in backtest/equity.csv")
        else:
            figures = charts.backtest_figures(sym, frame, execution)
            widgets.chart(figures["equity"], key=f"bt_eq_{sym}")
            c1, c2 = st.columns(2)
            with c1:
                widgets.chart(figures["drawdown"], key=f"bt_dd_{sym}")
            with c2:
                widgets.chart(figures["price"], key=f"bt_px_{sym}")
        if isinstance(metrics.get(sym), dict):
            if notes := presenters.notes_text(metrics[sym]):
                st.caption(notes)
            table = presenters.symbol_metrics_table(metrics[sym])
            st.dataframe(table, key=f"bt_tbl_{sym}", height=35 * (len(table) + 1) + 3)

st.divider()
st.subheader("Compare with another run")
others = [r["run_id"] for r in runs if r["run_id"] != run_id]
if not others:
    st.caption("Only one run has a backtest so far.")
else:
    other = st.selectbox("Second run", others, key="bt_compare")
    with shell.user_errors("Could not compare: "):
        other_metrics = settings.open_run(other).read_backtest_metrics() or {}
        table = presenters.compare_table(run_id, metrics, other, other_metrics)
        if table.empty:
            st.info("Neither run has metrics to compare.")
        else:
            st.dataframe(table)
