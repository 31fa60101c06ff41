"""The Backtest page's view of a portfolio run (one account over a universe): the account against
1/N, buy & hold and cash, the weights over time, contributions, concentration and the verdict."""

from __future__ import annotations

import streamlit as st

from evorl_core.store.rundir import RunDir
from evorl_ui import report, widgets
from evorl_ui.presenters.portfolio import account_table, diagnostics_lines, universe_lines


def render(run_dir: RunDir, config: dict, metrics: dict) -> None:
    m = metrics.get("PORTFOLIO") or {}
    bt = run_dir.backtest_dir
    figs = report.portfolio_figures(report.portfolio_frames(run_dir), m)
    st.download_button("Download HTML report", icon=":material/download:", key="pf_report",
                       data=lambda: report.report_html(run_dir), file_name=f"{run_dir.run_id}-report.html",
                       mime="text/html", help="One self-contained file (charts included) that opens offline.")
    for line in universe_lines(config):  # quotes file names and validation errors: plain text
        st.text(line)
    st.subheader("Account")
    for line in diagnostics_lines(m):
        st.text(line)
    for flag in m.get("flags") or []:
        st.warning(flag, icon=":material/warning:")
    st.dataframe(account_table(m), key="pf_account")
    if "account" in figs:
        widgets.chart(figs["account"], key="pf_equity")
    if "weights" in figs:
        widgets.chart(figs["weights"], key="pf_weights")
        c1, c2 = st.columns(2)
        with c1:
            widgets.chart(figs["contribution"], key="pf_contribution")
        with c2:
            widgets.chart(figs["concentration"], key="pf_concentration")
    if "pbo" in figs:
        widgets.chart(figs["pbo"], key="pf_pbo")
        st.download_button("Download weights.csv", icon=":material/download:", data=(bt / "weights.csv").read_bytes(),
                           file_name=f"{run_dir.run_id}-weights.csv", mime="text/csv", key="pf_download")
