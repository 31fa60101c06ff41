"""Backtest: a run's tearsheet on its held-out days (the combined portfolio, monthly returns, rolling
Sharpe, every symbol with linked equity / drawdown / price, round trips), an HTML export, and a
comparison with another run. A run with several agents adds how its headline member was chosen,
every member's test results and their spread, and a fan of every member's test equity per symbol."""

from __future__ import annotations

import streamlit as st

from evorl_ui import portfolio_view, report, settings, shell, widgets
from evorl_ui.presenters.backtest import (
    TRADE_DEFINITION,
    compare_table,
    conventions_text,
    metric_definitions_table,
    notes_text,
    overview_table,
    tearsheet_caveats,
    trades_table,
)
from evorl_ui.presenters.format import message_markdown, plain
from evorl_ui.presenters.population import member_table, selection_text, spread_table
from evorl_ui.presenters.runs import comparison_warning, run_label

shell.require_frame()
st.title("Backtest")

runs = []
with shell.user_errors("Could not read runs: "):
    runs = [r for r in settings.all_runs() if r.get("backtest")]
if not runs:
    st.info(f"No finished runs with a backtest in `{settings.runs_dir()}` yet. Runs write one when training ends.")
    st.stop()

by_id = {r["run_id"]: r for r in runs}
run_id = widgets.pick_run(runs, key="bt_run")
run_dir = settings.open_run(run_id)

if (run_dir.read_config() or {}).get("mode") == "portfolio":  # one account over a universe
    with shell.user_errors("Could not read this run: "):
        portfolio_view.render(run_dir, run_dir.read_config() or {}, run_dir.read_backtest_metrics() or {})
    st.stop()

with shell.user_errors("Could not read this run: "):
    sheet = report.load_tearsheet(run_dir)
    config, metrics = sheet.config, sheet.metrics
    data_info = config.get("data_info") or {}

    b1, b2 = st.columns([3, 1], vertical_alignment="center")
    with b1:
        widgets.data_badge(sheet.synthetic, sheet.source)
        if sheet.annotations.get("name") or sheet.annotations.get("note"):
            st.caption(" — ".join(plain(x) for x in (sheet.annotations.get("name"), sheet.annotations.get("note")) if x))
    b2.download_button("Download HTML report", icon=":material/download:", key="bt_report",
                       data=lambda: report.report_html(run_dir), file_name=f"{run_id}-report.html", mime="text/html",
                       help="One self-contained file (charts included) that opens offline in any browser.")
    for caveat in tearsheet_caveats(sheet.days, sheet.synthetic):
        st.warning(message_markdown(caveat), icon=":material/warning:")
    st.caption(conventions_text(config))
    with st.expander("Metric definitions"):
        st.table(metric_definitions_table())
        st.caption(TRADE_DEFINITION)
    for w in data_info.get("warnings") or []:
        st.warning(message_markdown(w))

    figures = report.tearsheet_figures(sheet)
    if sheet.members > 1 and sheet.selection:
        st.info(selection_text(sheet.selection, sheet.population), icon=":material/how_to_vote:")
    if sheet.value is not None:
        st.subheader("Portfolio")
        st.caption("Equal starting capital per symbol, no rebalancing; buy & hold the same way.")
        c1, c2 = st.columns([2, 3])
        summary = report.portfolio_summary(sheet)
        c1.dataframe(summary, height=35 * (len(summary) + 1) + 3)
        with c2:
            widgets.chart(figures["portfolio"], key="bt_portfolio")
        widgets.chart(figures["monthly"], key="bt_monthly")
        widgets.chart(figures["rolling"], key="bt_rolling")

    overview = overview_table(metrics)
    if not overview.empty:
        st.subheader("All symbols")
        st.dataframe(overview)

    if sheet.members > 1:
        st.subheader(f"All {sheet.members} members" + (" of the population" if sheet.population else " (seeds)"))
        st.caption("The spread is the result: the chosen member beside the mean ± sd (ddof 1) and the range over "
                   "all members, on the same test days.")
        st.dataframe(spread_table(metrics), key="bt_spread")
        st.caption("Every member: its validation score (the selection criterion: net log return on the validation "
                   "days, mean over symbols) and its test metrics.")
        st.dataframe(member_table(sheet.member_metrics, sheet.selection), key="bt_members")
        fans = [sym for sym in sheet.symbols if f"members:{sym}" in figures]
        for i in range(0, len(fans), 2):
            for col, sym in zip(st.columns(2), fans[i:i + 2], strict=False):
                with col:
                    widgets.chart(figures[f"members:{sym}"], key=f"bt_fan_{sym}")

    if sheet.equity is not None and len(sheet.equity):
        st.download_button("Download equity.csv", icon=":material/download:", data=run_dir.equity_path.read_bytes(),
                           file_name=f"{run_id}-equity.csv", mime="text/csv", key="bt_download")

    for sym in sheet.symbols:
        st.divider()
        st.subheader(plain(sym))
        if f"symbol:{sym}" not in figures:
            st.warning(plain(f"{sym}: no equity rows in backtest/equity.csv"))
        c1, c2 = st.columns([2, 3])
        if isinstance(metrics.get(sym), dict):
            with c1:
                if notes := notes_text(metrics[sym]):
                    st.caption(plain(notes))
                table = report.symbol_summary(sheet, sym, "curated")
                st.dataframe(table, key=f"bt_tbl_{sym}", height=35 * (len(table) + 1) + 3)
                rest = report.symbol_summary(sheet, sym, "rest")
                if len(rest):
                    with st.expander(f"Every other figure ({len(rest)})"):
                        st.dataframe(rest, key=f"bt_tbl_rest_{sym}")
        if f"symbol:{sym}" in figures:
            with c2:
                widgets.chart(figures[f"symbol:{sym}"], key=f"bt_sym_{sym}")
        if f"pbo:{sym}" in figures:
            widgets.chart(figures[f"pbo:{sym}"], key=f"bt_pbo_{sym}")
        trades = report.symbol_trades(sheet, sym)
        with st.expander(plain(f"{sym}: {len(trades)} round trip(s)")):
            st.dataframe(trades_table(trades), hide_index=True, key=f"bt_trades_{sym}")

st.divider()
st.subheader("Compare with another run")
others = [r["run_id"] for r in runs if r["run_id"] != run_id]
if not others:
    st.caption("Only one run has a backtest so far.")
else:
    other = st.selectbox("Second run", others, key="bt_compare", format_func=lambda i: run_label(by_id[i]))
    with shell.user_errors("Could not compare: "):
        if warning := comparison_warning(by_id[run_id], by_id[other]):
            st.warning(message_markdown(warning), icon=":material/warning:")
        other_metrics = settings.open_run(other).read_backtest_metrics() or {}
        table = compare_table(run_id, metrics, other, other_metrics)
        if table.empty:
            st.info("Neither run has metrics to compare.")
        else:
            st.dataframe(table)
