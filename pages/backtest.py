"""Backtest: held-out equity vs buy & hold per symbol, drawdowns, trades, metrics; compare runs."""

from __future__ import annotations

import streamlit as st

import evorl_ui as ui
from evorl_core import views

ui.require_frame()
st.title("Backtest")

runs = []
with ui.user_errors("Could not read runs: "):
    runs = [r for r in ui.all_runs() if r.get("backtest")]
if not runs:
    st.info(f"No finished runs with a backtest in `{ui.runs_dir()}` yet. Runs write one when training ends.")
    st.stop()

run_id = ui.pick_run(runs, key="bt_run")
rd = ui.open_run(run_id)

with ui.user_errors("Could not read this run: "):
    config = rd.read_config() or {}
    metrics = rd.read_backtest_metrics() or {}
    equity = rd.read_equity()
    data_info = config.get("data_info") or {}

    fee, slip = config.get("fee_bps"), config.get("slippage_bps")
    execution = config.get("execution", "next_open")
    badges = []
    if data_info.get("synthetic"):
        st.badge("Synthetic data — not real prices", icon=":material/science:", color="orange")
    else:
        badges.append(f"data: {data_info.get('source', config.get('data', '?'))}")
    st.caption(
        "Conventions: daily simple returns of equity, annualisation A = 252, risk-free rate 0; "
        "Sharpe = mean/std·√A, Sortino uses downside deviation; win rate is per trade (a trade = a run "
        f"of one unchanged non-zero position); execution **{execution}**; costs fee {fee} bps + slippage "
        f"{slip} bps per unit of position change; the backtest starts flat at the close of the first "
        "test day; buy & hold pays one entry cost. \"Differs from flat\": the 95% moving-block bootstrap "
        "interval of the Sharpe ratio excludes 0." + (" · " + " · ".join(badges) if badges else "")
    )
    with st.expander("Metric definitions"):
        st.table(views.metric_definitions_table())
    for w in data_info.get("warnings") or []:
        st.warning(w)

    overview = views.overview_table(metrics)
    if not overview.empty:
        st.subheader("All symbols")
        st.dataframe(overview)

    if equity is not None and len(equity):
        st.download_button("Download equity.csv", icon=":material/download:", data=rd.equity_path.read_bytes(),
                           file_name=f"{run_id}-equity.csv", mime="text/csv", key="bt_download")

    symbols = list(metrics) if metrics else []
    if equity is not None:
        symbols += [s for s in equity["symbol"].unique().tolist() if s not in symbols]
    for sym in symbols:
        st.divider()
        st.subheader(sym)
        frame = equity[equity["symbol"] == sym].sort_values("date") if equity is not None else None
        if frame is None or frame.empty:
            st.warning(f"{sym}: no equity rows in backtest/equity.csv")
        else:
            dates = frame["date"].to_numpy()
            eq = frame["equity"].to_numpy(dtype=float)
            bench = frame["benchmark_equity"].to_numpy(dtype=float)
            ui.chart(ui.equity_figure(dates, eq, bench, f"{sym} — equity vs buy & hold"), key=f"bt_eq_{sym}")
            c1, c2 = st.columns(2)
            with c1:
                ui.chart(ui.drawdown_figure(dates, eq, bench, f"{sym} — drawdown (underwater)"),
                         key=f"bt_dd_{sym}")
            with c2:
                ui.chart(ui.price_figure(frame, execution, f"{sym} — close with entries ▲ and exits ▼"),
                         key=f"bt_px_{sym}")
        if isinstance(metrics.get(sym), dict):
            notes = views.metric_notes(metrics[sym])
            if notes:
                st.caption(" · ".join(f"{k}: {v}" for k, v in notes.items()))
            table = views.symbol_metrics_table(metrics[sym])
            st.dataframe(table, key=f"bt_tbl_{sym}", height=35 * (len(table) + 1) + 3)

st.divider()
st.subheader("Compare with another run")
others = [r["run_id"] for r in runs if r["run_id"] != run_id]
if not others:
    st.caption("Only one run has a backtest so far.")
else:
    other = st.selectbox("Second run", others, key="bt_compare")
    with ui.user_errors("Could not compare: "):
        other_metrics = ui.open_run(other).read_backtest_metrics() or {}
        table = views.compare_table(run_id, metrics, other, other_metrics)
        if table.empty:
            st.info("Neither run has metrics to compare.")
        else:
            st.dataframe(table)
