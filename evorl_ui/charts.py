"""Plotly figure builders for the dashboard pages (no Streamlit; widgets.chart draws them).

Every builder downsamples through evorl_ui.presenters before handing arrays to plotly, so a
figure stays small whatever the length of the series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from evorl_ui import presenters

COLORS = {"agent": "#2563eb", "bench": "#9ca3af", "band": "rgba(37,99,235,0.18)", "dd": "#dc2626",
          "entry": "#16a34a", "exit": "#dc2626", "price": "#374151"}


def _layout(fig: go.Figure, title: str, ytitle: str = "", height: int = 300, **kw: Any) -> go.Figure:
    # Title on the first line, legend on its own line under it: no overlap in narrow columns.
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=0.985, yanchor="top", yref="container",
                                 font=dict(size=15)),
                      height=height + 20, margin=dict(l=10, r=10, t=58, b=10), hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
                      yaxis_title=ytitle, **kw)
    return fig


def _thin(x: np.ndarray, *ys: np.ndarray, minmax_of: np.ndarray | None = None) -> list[np.ndarray]:
    idx = (presenters.minmax_downsample_indices(minmax_of) if minmax_of is not None
           else presenters.downsample_indices(len(x)))
    return [np.asarray(x)[idx]] + [np.asarray(y)[idx] for y in ys]


def lines_figure(x: np.ndarray, series: Mapping[str, np.ndarray], title: str, ytitle: str = "",
                 xtitle: str = "env steps", secondary: Sequence[str] = ()) -> go.Figure:
    fig = go.Figure()
    names = list(series)
    thinned = _thin(x, *[series[n] for n in names])
    for name, y in zip(names, thinned[1:], strict=True):
        if not presenters.has_values(y):
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
    return _layout(fig, title, ytitle, xaxis_title=xtitle, **extra)


def band_figure(x: np.ndarray, mean: np.ndarray, spread: np.ndarray, title: str, name: str,
                band_name: str) -> go.Figure:
    x, mean, spread = _thin(x, mean, spread)
    spread = np.where(np.isfinite(spread), spread, 0.0)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=mean + spread, mode="lines", line=dict(width=0), showlegend=False,
                             hoverinfo="skip", name="upper"))
    fig.add_trace(go.Scatter(x=x, y=mean - spread, mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor=COLORS["band"], name=band_name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=name, line=dict(color=COLORS["agent"])))
    return _layout(fig, title, xaxis_title="env steps")


def equity_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dates, equity, bench = _thin(dates, equity, bench, minmax_of=equity)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=equity, name="agent", mode="lines",
                             line=dict(color=COLORS["agent"], width=2)))
    fig.add_trace(go.Scatter(x=dates, y=bench, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")))
    return _layout(fig, title, "equity", height=320)


def drawdown_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dd = presenters.drawdown(equity)
    bdd = presenters.drawdown(bench)
    dates, dd, bdd = _thin(dates, dd, bdd, minmax_of=dd)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=dd, name="agent", mode="lines", fill="tozeroy",
                             line=dict(color=COLORS["dd"], width=1.5)))
    fig.add_trace(go.Scatter(x=dates, y=bdd, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1, dash="dot")))
    fig.update_yaxes(tickformat=".0%")
    return _layout(fig, title, "drawdown", height=260)


def price_figure(frame: pd.DataFrame, execution: str, title: str) -> go.Figure:
    dates = frame["date"].to_numpy()
    close = frame["close"].to_numpy(dtype=np.float64)
    d, c = _thin(dates, close, minmax_of=close)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=d, y=c, name="close", mode="lines", line=dict(color=COLORS["price"], width=1.2)))
    marks = presenters.marker_points(frame, execution)
    for name, symbol, color in (("entry", "triangle-up", COLORS["entry"]),
                                ("exit", "triangle-down", COLORS["exit"])):
        pts = marks[name]
        idx = presenters.downsample_indices(len(pts["date"]))
        fig.add_trace(go.Scatter(x=pts["date"][idx], y=pts["price"][idx], name=f"{name} (position {'up' if name == 'entry' else 'down'})",
                                 mode="markers", marker=dict(symbol=symbol, size=9, color=color)))
    return _layout(fig, title, "price", height=260)


def candlestick_figure(df: pd.DataFrame, title: str) -> go.Figure:
    bars = presenters.ohlc_downsample(df)
    fig = go.Figure(go.Candlestick(
        x=np.asarray(bars.index), open=bars["open"].to_numpy(), high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(), close=bars["close"].to_numpy(), name="OHLC"))
    fig.update_layout(xaxis_rangeslider_visible=False)
    return _layout(fig, title, "price", height=380)


# one figure set per page section ---------------------------------------------------
def live_figures(m: Mapping[str, np.ndarray]) -> list[tuple[str, go.Figure]]:
    """The Live page's charts as (widget key, figure), from metric_arrays(rows, LIVE_METRIC_KEYS)."""
    x = m["env_steps"]
    return [
        ("live_reward", band_figure(x, m["reward_mean"], m["reward_std"], "Reward per step (mean ± std)",
                                    "reward mean", "± std")),
        ("live_return", lines_figure(x, {"episode return": m["episode_return_mean"]},
                                     "Episode return (mean over episodes finished in the update)", "log return")),
        ("live_tput", lines_figure(x, {"env steps/s": m["steps_per_sec"], "updates/s": m["updates_per_sec"]},
                                   "Throughput", "env steps / s", secondary=("updates/s",))),
        ("live_mem", lines_figure(x, {"host RSS (MB)": m["host_rss_mb"], "device memory (MB)": m["device_mem_mb"]},
                                  "Memory", "MB")),
        ("live_loss", lines_figure(x, {"policy loss": m["policy_loss"], "value loss": m["value_loss"]},
                                   "PPO losses", "policy loss", secondary=("value loss",))),
        ("live_ent", lines_figure(x, {"entropy": m["entropy"], "explained variance": m["explained_variance"]},
                                  "Entropy and explained variance", "entropy", secondary=("explained variance",))),
        ("live_kl", lines_figure(x, {"approx KL": m["approx_kl"], "clip fraction": m["clip_fraction"]},
                                 "Approx KL and clip fraction", "approx KL", secondary=("clip fraction",))),
        ("live_behaviour", lines_figure(x, {"mean |position|": m["mean_abs_position"], "turnover": m["turnover"]},
                                        "Behaviour (mean |position|, turnover)", "")),
    ]


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
