"""The Backtest page's view of a portfolio run (one account over a universe): the account against
1/N, buy & hold and cash, the weights over time, contributions, concentration and the verdict."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from evorl_core.store.rundir import RunDir
from evorl_ui import widgets
from evorl_ui.charts.portfolio import (
    account_figure,
    concentration_figure,
    contribution_figure,
    weights_figure,
)
from evorl_ui.presenters.portfolio import account_table, diagnostics_lines, universe_lines


def _csv(path) -> pd.DataFrame | None:
    return pd.read_csv(path, parse_dates=["date"]) if path.exists() else None


def render(run_dir: RunDir, config: dict, metrics: dict) -> None:
    m = metrics.get("PORTFOLIO") or {}
    bt = run_dir.backtest_dir
    equity, weights, baselines = _csv(bt / "equity.csv"), _csv(bt / "weights.csv"), _csv(bt / "baselines.csv")
    for line in universe_lines(config):  # quotes file names and validation errors: plain text
        st.text(line)
    st.subheader("Account")
    for line in diagnostics_lines(m):
        st.text(line)
    for flag in m.get("flags") or []:
        st.warning(flag, icon=":material/warning:")
    st.dataframe(account_table(m), key="pf_account")
    if equity is not None:
        widgets.chart(account_figure(equity, baselines), key="pf_equity")
    if weights is not None:
        widgets.chart(weights_figure(weights), key="pf_weights")
        c1, c2 = st.columns(2)
        with c1:
            widgets.chart(contribution_figure(m.get("contribution") or {}), key="pf_contribution")
        with c2:
            widgets.chart(concentration_figure(weights), key="pf_concentration")
        st.download_button("Download weights.csv", icon=":material/download:", data=(bt / "weights.csv").read_bytes(),
                           file_name=f"{run_dir.run_id}-weights.csv", mime="text/csv", key="pf_download")
