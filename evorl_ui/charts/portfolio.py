"""Figures of a portfolio run's backtest: the account against 1/N, buy & hold and cash; the weights
over time (stacked area, the largest names and the rest, cash on top); the contribution of each
asset; concentration (effective number of assets) and distance from 1/N over time."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from evorl_ui.charts.base import COLORS, NUMBER_TICKS, RUN_COLORS, layout

BASELINE_STYLE = {"1/N rebalanced": dict(color="#111827", dash="dot"),
                  "equal-weight buy & hold": dict(color=COLORS["bench"], dash="dash"),
                  "cash": dict(color="#9ca3af", dash="dashdot")}


def account_figure(equity: pd.DataFrame, baselines: pd.DataFrame | None) -> go.Figure:
    """Account equity (rupees) of the agent and each baseline on the test days."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=equity["date"], y=equity["equity"], name="agent", mode="lines",
                             line=dict(color=COLORS["agent"], width=2)))
    if baselines is not None:
        for name, rows in baselines.groupby("baseline", sort=False):
            fig.add_trace(go.Scatter(x=rows["date"], y=rows["equity"], name=str(name), mode="lines",
                                     line=dict(width=1.5, **BASELINE_STYLE.get(str(name), {}))))
    fig.update_yaxes(tickformat=NUMBER_TICKS)
    return layout(fig, "Account equity against 1/N, buy & hold and cash", "equity (rupees)", height=340)


def top_assets(weights: pd.DataFrame, k: int = 10) -> list[str]:
    """The k assets with the largest mean weight (cash excluded)."""
    wide = weights.pivot(index="date", columns="symbol", values="weight")
    means = wide.drop(columns=["CASH"], errors="ignore").mean().sort_values(ascending=False)
    return list(means.index[:k])


def weights_figure(weights: pd.DataFrame, k: int = 10) -> go.Figure:
    """Stacked weights held after each fill: the k largest names, the rest as 'others', then cash."""
    wide = weights.pivot(index="date", columns="symbol", values="weight").sort_index()
    top = top_assets(weights, k)
    rest = [c for c in wide.columns if c not in top and c != "CASH"]
    fig = go.Figure()
    series = [(s, wide[s]) for s in top]
    if rest:
        series.append((f"others ({len(rest)})", wide[rest].sum(axis=1)))
    if "CASH" in wide:
        series.append(("cash", wide["CASH"]))
    for i, (name, y) in enumerate(series):
        color = "#d1d5db" if name == "cash" else ("#9ca3af" if name.startswith("others") else RUN_COLORS[i % len(RUN_COLORS)])
        fig.add_trace(go.Scatter(x=wide.index, y=y.to_numpy(), name=str(name), mode="lines", stackgroup="w",
                                 line=dict(width=0.5, color=color)))
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    return layout(fig, "Weights over time (after each fill)", "weight", height=340)


def contribution_figure(contribution: Mapping[str, float], k: int = 15) -> go.Figure:
    """Price P&L of each asset as a fraction of the initial capital (the k largest in size)."""
    items = sorted(contribution.items(), key=lambda kv: -abs(kv[1]))[:k][::-1]
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[s for s, _ in items], orientation="h",
                           marker_color=[COLORS["entry"] if v >= 0 else COLORS["exit"] for _, v in items]))
    fig.update_xaxes(tickformat=".1%")
    fig = layout(fig, "Contribution per asset (price P&L / initial capital)", "", height=40 + 22 * max(len(items), 3))
    return fig.update_layout(hovermode="closest")


def concentration_figure(weights: pd.DataFrame) -> go.Figure:
    """Effective number of assets (Σw)² / Σw² of the invested weights, day by day."""
    wide = weights.pivot(index="date", columns="symbol", values="weight").sort_index()
    assets = wide.drop(columns=["CASH"], errors="ignore").to_numpy()
    invested = assets.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(invested > 0, invested**2 / (assets**2).sum(axis=1), 0.0)
    fig = go.Figure(go.Scatter(x=wide.index, y=eff, name="effective assets", mode="lines",
                               line=dict(color=COLORS["exposure"])))
    fig.add_hline(y=assets.shape[1], line=dict(color=COLORS["bench"], dash="dot"),
                  annotation_text=f"all {assets.shape[1]} assets", annotation_position="bottom right")
    fig.update_yaxes(rangemode="tozero")
    return layout(fig, "Concentration: effective number of assets", "assets", height=280)
