"""Plotly building blocks shared by the chart modules: colours, tick formats, the common layout,
the 'no data yet' figure, downsampling before plotting, line/band/equity/drawdown/price/candlestick
figures and the stacked panels figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from evorl_ui.presenters.format import (
    downsample_indices,
    drawdown,
    has_values,
    marker_points,
    minmax_downsample_indices,
    ohlc_downsample,
)

# layout helpers -------------------------------------------------------------------
COLORS = {"agent": "#2563eb", "bench": "#9ca3af", "band": "rgba(37,99,235,0.18)", "dd": "#dc2626",
          "entry": "#16a34a", "exit": "#dc2626", "price": "#374151", "expected": "#7c3aed",
          "expected_band": "rgba(124,58,237,0.12)", "exposure": "#0891b2"}
# Three significant digits on numeric axes: '39.1k', not '39.0815k'.
NUMBER_TICKS = ".3~s"
SMALL_TICKS = ".3~g"
RUN_COLORS = qualitative.Plotly


def layout(fig: go.Figure, title: str, ytitle: str = "", height: int = 300, **kw: Any) -> go.Figure:
    # Title on the first line, legend on its own line under it: no overlap in narrow columns.
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=0.985, yanchor="top", yref="container",
                                 font=dict(size=15)),
                      height=height + 20, margin=dict(l=10, r=10, t=58, b=10), hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
                      **({"yaxis_title": ytitle} if ytitle else {}), **kw)
    return fig


def empty(fig: go.Figure) -> go.Figure:
    fig.add_annotation(text="no data yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(color="#6b7280", size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def thin(x: np.ndarray, *ys: np.ndarray, minmax_of: np.ndarray | None = None) -> list[np.ndarray]:
    idx = (minmax_downsample_indices(minmax_of) if minmax_of is not None
           else downsample_indices(len(x)))
    return [np.asarray(x)[idx]] + [np.asarray(y)[idx] for y in ys]


# figures --------------------------------------------------------------------------
def lines_figure(x: np.ndarray, series: Mapping[str, np.ndarray], title: str, ytitle: str = "",
                 xtitle: str = "env steps", secondary: Sequence[str] = ()) -> go.Figure:
    fig = go.Figure()
    names = list(series)
    thinned = thin(x, *[series[n] for n in names])
    for name, y in zip(names, thinned[1:], strict=True):
        if not has_values(y):
            continue
        right = name in secondary  # right-axis series are dotted so overlapping lines stay visible
        fig.add_trace(go.Scatter(x=thinned[0], y=y, name=name + (" (right)" if right else ""), mode="lines",
                                 yaxis="y2" if right else "y", line=dict(dash="dot" if right else "solid")))
    extra = {}
    if any(getattr(t, "yaxis", None) == "y2" for t in fig.data):
        extra["yaxis2"] = dict(overlaying="y", side="right", showgrid=False, title=", ".join(secondary))
    if not fig.data:
        fig.add_annotation(text="no data yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font=dict(color="#6b7280", size=14))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return layout(fig, title, ytitle, xaxis_title=xtitle, **extra)


def band_figure(x: np.ndarray, mean: np.ndarray, spread: np.ndarray, title: str, name: str,
                band_name: str, xtitle: str = "env steps") -> go.Figure:
    x, mean, spread = thin(x, mean, spread)
    spread = np.where(np.isfinite(spread), spread, 0.0)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=mean + spread, mode="lines", line=dict(width=0), showlegend=False,
                             hoverinfo="skip", name="upper"))
    fig.add_trace(go.Scatter(x=x, y=mean - spread, mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor=COLORS["band"], name=band_name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=name, line=dict(color=COLORS["agent"])))
    fig.update_xaxes(tickformat=NUMBER_TICKS)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    return layout(fig, title, xaxis_title=xtitle)


def equity_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dates, equity, bench = thin(dates, equity, bench, minmax_of=equity)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=equity, name="agent", mode="lines",
                             line=dict(color=COLORS["agent"], width=2)))
    fig.add_trace(go.Scatter(x=dates, y=bench, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")))
    return layout(fig, title, "equity", height=320)


def drawdown_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dd = drawdown(equity)
    bdd = drawdown(bench)
    dates, dd, bdd = thin(dates, dd, bdd, minmax_of=dd)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=dd, name="agent", mode="lines", fill="tozeroy",
                             line=dict(color=COLORS["dd"], width=1.5)))
    fig.add_trace(go.Scatter(x=dates, y=bdd, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1, dash="dot")))
    fig.update_yaxes(tickformat=".0%")
    return layout(fig, title, "drawdown", height=260)


def price_figure(frame: pd.DataFrame, execution: str, title: str) -> go.Figure:
    dates = frame["date"].to_numpy()
    close = frame["close"].to_numpy(dtype=np.float64)
    d, c = thin(dates, close, minmax_of=close)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=d, y=c, name="close", mode="lines", line=dict(color=COLORS["price"], width=1.2)))
    marks = marker_points(frame, execution)
    for name, symbol, color in (("entry", "triangle-up", COLORS["entry"]),
                                ("exit", "triangle-down", COLORS["exit"])):
        pts = marks[name]
        idx = downsample_indices(len(pts["date"]))
        fig.add_trace(go.Scatter(x=pts["date"][idx], y=pts["price"][idx], name=f"{name} (position {'up' if name == 'entry' else 'down'})",
                                 mode="markers", marker=dict(symbol=symbol, size=9, color=color)))
    return layout(fig, title, "price", height=260)


def candlestick_figure(df: pd.DataFrame, title: str) -> go.Figure:
    bars = ohlc_downsample(df)
    fig = go.Figure(go.Candlestick(
        x=np.asarray(bars.index), open=bars["open"].to_numpy(), high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(), close=bars["close"].to_numpy(), name="OHLC"))
    fig.update_layout(xaxis_rangeslider_visible=False)
    return layout(fig, title, "price", height=380)


def stacked_figure(x: np.ndarray, panels: Sequence[tuple[str, np.ndarray, str]], title: str,
                   xtitle: str = "env steps", nominal: Mapping[str, tuple[float, float]] | None = None,
                   height: int = 300) -> go.Figure:
    """One panel per (name, values, y-axis title), stacked with a shared x axis (zooming one zooms
    all): each quantity on its own readable axis instead of a second axis on the right.
    ``nominal`` gives a panel its usual range (name -> (low, high)): the axis spans it (or less,
    around the values) and always every value; a bound that values cross is drawn as a dotted
    line, so a value off the usual range is shown, never cut off."""
    panels = [p for p in panels if has_values(p[1])]
    if not panels:
        return layout(empty(go.Figure()), title, xaxis_title=xtitle)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.08)
    thinned = thin(x, *[y for _, y, _ in panels])
    for i, ((name, _, ytitle), y) in enumerate(zip(panels, thinned[1:], strict=True), start=1):
        fig.add_trace(go.Scatter(x=thinned[0], y=y, name=name, mode="lines", showlegend=False,
                                 line=dict(color=RUN_COLORS[(i - 1) % len(RUN_COLORS)])), row=i, col=1)
        fig.update_yaxes(title_text=ytitle, tickformat=SMALL_TICKS, row=i, col=1)
        if nominal and name in nominal:
            low, high = nominal[name]
            finite = y[np.isfinite(y)]
            lo = min(float(finite.min()), low) if (finite < low).any() else max(low, float(finite.min()))
            hi = max(float(finite.max()), high) if (finite > high).any() else high
            pad = 0.05 * (hi - lo or 1.0)
            fig.update_yaxes(range=[lo - pad, hi + pad], row=i, col=1)
            for bound, crossed in ((low, (finite < low).any()), (high, (finite > high).any())):
                if crossed:
                    fig.add_hline(y=bound, line=dict(dash="dot", width=1, color="#888"), row=i, col=1,
                                  annotation_text=f"usual range ends at {bound:g}", annotation_position="top left")
    fig.update_xaxes(title_text=xtitle, tickformat=NUMBER_TICKS, row=len(panels), col=1)
    return layout(fig, title, height=height + 60 * (len(panels) - 1))
