"""The tearsheet's figures (the Backtest page, the HTML report and the Models page): one symbol's
stacked equity/drawdown/price, the portfolio, monthly returns, rolling Sharpe, the forward
(paper) equity and the Backtest page's per-symbol figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from evorl_ui.charts.base import (
    COLORS,
    NUMBER_TICKS,
    SMALL_TICKS,
    drawdown_figure,
    empty,
    equity_figure,
    layout,
    price_figure,
    thin,
)
from evorl_ui.presenters.format import downsample_indices, drawdown, marker_points


def symbol_figure(symbol: str, frame: pd.DataFrame, execution: str) -> go.Figure:
    """One symbol's equity vs buy & hold, drawdowns, and close with fills, stacked on one shared
    date axis: zooming one zooms all three."""
    dates = frame["date"].to_numpy()
    eq = frame["equity"].to_numpy(dtype=float)
    bench = frame["benchmark_equity"].to_numpy(dtype=float)
    close = frame["close"].to_numpy(dtype=float)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.45, 0.25, 0.30])
    d, e, b = thin(dates, eq, bench, minmax_of=eq)
    fig.add_trace(go.Scatter(x=d, y=e, name="agent", mode="lines", line=dict(color=COLORS["agent"], width=2)),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=d, y=b, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")), row=1, col=1)
    dd, bdd = drawdown(eq), drawdown(bench)
    d2, dd, bdd = thin(dates, dd, bdd, minmax_of=dd)
    fig.add_trace(go.Scatter(x=d2, y=dd, name="agent drawdown", mode="lines", fill="tozeroy", showlegend=False,
                             line=dict(color=COLORS["dd"], width=1.2)), row=2, col=1)
    fig.add_trace(go.Scatter(x=d2, y=bdd, name="buy & hold drawdown", mode="lines", showlegend=False,
                             line=dict(color=COLORS["bench"], width=1, dash="dot")), row=2, col=1)
    d3, c = thin(dates, close, minmax_of=close)
    fig.add_trace(go.Scatter(x=d3, y=c, name="close", mode="lines", showlegend=False,
                             line=dict(color=COLORS["price"], width=1.2)), row=3, col=1)
    marks = marker_points(frame, execution)
    for name, marker, color in (("entry", "triangle-up", COLORS["entry"]), ("exit", "triangle-down", COLORS["exit"])):
        pts = marks[name]
        idx = downsample_indices(len(pts["date"]))
        fig.add_trace(go.Scatter(x=pts["date"][idx], y=pts["price"][idx], mode="markers",
                                 name=f"{'▲ position up' if name == 'entry' else '▼ position down'} (fill)",
                                 marker=dict(symbol=marker, size=9, color=color)), row=3, col=1)
    fig.update_yaxes(title_text="equity (currency)", tickformat=NUMBER_TICKS, row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_yaxes(title_text="close (currency)", tickformat=NUMBER_TICKS, row=3, col=1)
    return layout(fig, f"{symbol} — equity vs buy & hold", height=560)


def portfolio_figure(value: pd.Series, bench: pd.Series, exposure: pd.Series) -> go.Figure:
    """The combined portfolio (equal capital per symbol) against buy & hold, its drawdown and its
    gross exposure, on one shared date axis."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.5, 0.25, 0.25])
    dates = value.index.to_numpy()
    v, b = value.to_numpy(float), bench.reindex(value.index).to_numpy(float)
    d, v2, b2 = thin(dates, v, b, minmax_of=v)
    fig.add_trace(go.Scatter(x=d, y=v2, name="portfolio", mode="lines", line=dict(color=COLORS["agent"], width=2)),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=d, y=b2, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")), row=1, col=1)
    dd = drawdown(v)
    d2, dd2 = thin(dates, dd, minmax_of=dd)
    fig.add_trace(go.Scatter(x=d2, y=dd2, name="drawdown", mode="lines", fill="tozeroy", showlegend=False,
                             line=dict(color=COLORS["dd"], width=1.2)), row=2, col=1)
    ex = exposure.reindex(value.index).to_numpy(float)
    d3, ex2 = thin(dates, ex)
    fig.add_trace(go.Scatter(x=d3, y=ex2, name="gross exposure", mode="lines", fill="tozeroy", showlegend=False,
                             line=dict(color=COLORS["exposure"], width=1.2, shape="hv")), row=3, col=1)
    fig.update_yaxes(title_text="value (currency)", tickformat=NUMBER_TICKS, row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_yaxes(title_text="exposure", tickformat=".0%", rangemode="tozero", row=3, col=1)
    return layout(fig, "Portfolio — equity vs buy & hold, drawdown, exposure", height=560)


def monthly_heatmap(table: pd.DataFrame, title: str = "Monthly returns of the portfolio (%)") -> go.Figure:
    """tearsheet.monthly_returns as a heatmap: green up, red down, the value in each cell."""
    if table.empty:
        return layout(empty(go.Figure()), title)
    z = table.to_numpy(float) * 100
    text = [[("" if not np.isfinite(v) else f"{v:+.1f}%") for v in row] for row in z]
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=list(table.columns), y=[str(y) for y in table.index], text=text,
                               texttemplate="%{text}", colorscale="RdYlGn", zmid=0, zmin=-bound, zmax=bound,
                               colorbar=dict(title="%", ticksuffix="%"), hovertemplate="%{y} %{x}: %{text}<extra></extra>",
                               xgap=2, ygap=2))
    fig.update_yaxes(type="category", autorange="reversed")
    fig = layout(fig, title, "year", height=max(180, 60 + 40 * len(table)))
    fig.update_layout(hovermode="closest")
    return fig


def rolling_sharpe_figure(series: pd.Series, window: int) -> go.Figure:
    fig = go.Figure()
    finite = series.dropna()
    if finite.empty:
        fig.add_annotation(text=f"needs more than {window} test days", showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font=dict(color="#6b7280", size=14))
    else:
        d, y = thin(finite.index.to_numpy(), finite.to_numpy(float))
        fig.add_trace(go.Scatter(x=d, y=y, name="rolling Sharpe", mode="lines", line=dict(color=COLORS["agent"])))
        fig.add_hline(y=0, line=dict(color=COLORS["bench"], width=1))
        fig.update_yaxes(tickformat=SMALL_TICKS)
    return layout(fig, f"Rolling Sharpe of the portfolio ({window}-day window, annualised)", "Sharpe (annualised)",
                   height=280)


def forward_figure(curves: pd.DataFrame, benchmark: str = "buy & hold") -> go.Figure:
    """ledger.forward_curves: paper equity since deployment, the benchmark (buy & hold; 1/N for a
    portfolio), and the backtest's expectation with its ±1σ band."""
    fig = go.Figure()
    if curves.empty:
        return layout(empty(fig), "Forward (paper) equity since deployment")
    d = curves.index.to_numpy()
    if curves["expected"].notna().any():
        fig.add_trace(go.Scatter(x=d, y=curves["expected_high"], mode="lines", line=dict(width=0), showlegend=False,
                                 hoverinfo="skip", name="upper"))
        fig.add_trace(go.Scatter(x=d, y=curves["expected_low"], mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=COLORS["expected_band"], name="backtest ±1σ", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=d, y=curves["expected"], mode="lines", name="backtest expectation",
                                 line=dict(color=COLORS["expected"], dash="dash")))
    fig.add_trace(go.Scatter(x=d, y=curves["buy_hold"], mode="lines+markers", name=benchmark,
                             line=dict(color=COLORS["bench"], dash="dot")))
    fig.add_trace(go.Scatter(x=d, y=curves["paper"], mode="lines+markers", name="paper (forward)",
                             line=dict(color=COLORS["agent"], width=2)))
    fig.update_yaxes(tickformat=",.0f")
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d")
    if len(d) == 1:  # the deployment day alone: a week around it, not a millisecond axis
        day = pd.Timestamp(d[0])
        fig.update_xaxes(range=[day - pd.Timedelta(days=3), day + pd.Timedelta(days=4)], dtick=86_400_000)
    return layout(fig, "Forward (paper) equity since deployment", "value (currency)", height=340)


def backtest_figures(symbol: str, frame: pd.DataFrame, execution: str) -> dict[str, go.Figure]:
    """One symbol's equity vs buy & hold, drawdowns, and prices with fills, from its equity rows."""
    dates = frame["date"].to_numpy()
    eq = frame["equity"].to_numpy(dtype=float)
    bench = frame["benchmark_equity"].to_numpy(dtype=float)
    return {
        "equity": equity_figure(dates, eq, bench, f"{symbol} — equity vs buy & hold"),
        "drawdown": drawdown_figure(dates, eq, bench, f"{symbol} — drawdown (underwater)"),
        "price": price_figure(frame, execution, f"{symbol} — close with entries ▲ and exits ▼"),
    }
