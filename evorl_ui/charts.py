"""Plotly figure builders for the dashboard pages (no Streamlit; widgets.chart draws them).

Every builder downsamples through evorl_ui.presenters.format before handing arrays to plotly, so a
figure stays small whatever the length of the series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from evorl_core.config import SEARCH_SPACE
from evorl_ui.presenters.format import (
    downsample_indices,
    drawdown,
    has_values,
    marker_points,
    minmax_downsample_indices,
    ohlc_downsample,
)
from evorl_ui.presenters.live import cumulative, ema, throughput
from evorl_ui.presenters.population import best_per_round

COLORS = {"agent": "#2563eb", "bench": "#9ca3af", "band": "rgba(37,99,235,0.18)", "dd": "#dc2626",
          "entry": "#16a34a", "exit": "#dc2626", "price": "#374151", "expected": "#7c3aed",
          "expected_band": "rgba(124,58,237,0.12)", "exposure": "#0891b2"}
# Three significant digits on numeric axes: '39.1k', not '39.0815k'.
NUMBER_TICKS = ".3~s"
SMALL_TICKS = ".3~g"
RUN_COLORS = qualitative.Plotly


def _layout(fig: go.Figure, title: str, ytitle: str = "", height: int = 300, **kw: Any) -> go.Figure:
    # Title on the first line, legend on its own line under it: no overlap in narrow columns.
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=0.985, yanchor="top", yref="container",
                                 font=dict(size=15)),
                      height=height + 20, margin=dict(l=10, r=10, t=58, b=10), hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
                      **({"yaxis_title": ytitle} if ytitle else {}), **kw)
    return fig


def _empty(fig: go.Figure) -> go.Figure:
    fig.add_annotation(text="no data yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(color="#6b7280", size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _thin(x: np.ndarray, *ys: np.ndarray, minmax_of: np.ndarray | None = None) -> list[np.ndarray]:
    idx = (minmax_downsample_indices(minmax_of) if minmax_of is not None
           else downsample_indices(len(x)))
    return [np.asarray(x)[idx]] + [np.asarray(y)[idx] for y in ys]


def lines_figure(x: np.ndarray, series: Mapping[str, np.ndarray], title: str, ytitle: str = "",
                 xtitle: str = "env steps", secondary: Sequence[str] = ()) -> go.Figure:
    fig = go.Figure()
    names = list(series)
    thinned = _thin(x, *[series[n] for n in names])
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
    return _layout(fig, title, ytitle, xaxis_title=xtitle, **extra)


def band_figure(x: np.ndarray, mean: np.ndarray, spread: np.ndarray, title: str, name: str,
                band_name: str, xtitle: str = "env steps") -> go.Figure:
    x, mean, spread = _thin(x, mean, spread)
    spread = np.where(np.isfinite(spread), spread, 0.0)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=mean + spread, mode="lines", line=dict(width=0), showlegend=False,
                             hoverinfo="skip", name="upper"))
    fig.add_trace(go.Scatter(x=x, y=mean - spread, mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor=COLORS["band"], name=band_name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=name, line=dict(color=COLORS["agent"])))
    fig.update_xaxes(tickformat=NUMBER_TICKS)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    return _layout(fig, title, xaxis_title=xtitle)


def equity_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dates, equity, bench = _thin(dates, equity, bench, minmax_of=equity)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=equity, name="agent", mode="lines",
                             line=dict(color=COLORS["agent"], width=2)))
    fig.add_trace(go.Scatter(x=dates, y=bench, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")))
    return _layout(fig, title, "equity", height=320)


def drawdown_figure(dates: np.ndarray, equity: np.ndarray, bench: np.ndarray, title: str) -> go.Figure:
    dd = drawdown(equity)
    bdd = drawdown(bench)
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
    marks = marker_points(frame, execution)
    for name, symbol, color in (("entry", "triangle-up", COLORS["entry"]),
                                ("exit", "triangle-down", COLORS["exit"])):
        pts = marks[name]
        idx = downsample_indices(len(pts["date"]))
        fig.add_trace(go.Scatter(x=pts["date"][idx], y=pts["price"][idx], name=f"{name} (position {'up' if name == 'entry' else 'down'})",
                                 mode="markers", marker=dict(symbol=symbol, size=9, color=color)))
    return _layout(fig, title, "price", height=260)


def candlestick_figure(df: pd.DataFrame, title: str) -> go.Figure:
    bars = ohlc_downsample(df)
    fig = go.Figure(go.Candlestick(
        x=np.asarray(bars.index), open=bars["open"].to_numpy(), high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(), close=bars["close"].to_numpy(), name="OHLC"))
    fig.update_layout(xaxis_rangeslider_visible=False)
    return _layout(fig, title, "price", height=380)


# one figure set per page section ---------------------------------------------------
def stacked_figure(x: np.ndarray, panels: Sequence[tuple[str, np.ndarray, str]], title: str,
                   xtitle: str = "env steps", clip: Mapping[str, tuple[float, float]] | None = None,
                   height: int = 300) -> go.Figure:
    """One panel per (name, values, y-axis title), stacked with a shared x axis (zooming one zooms
    all): each quantity on its own readable axis instead of a second axis on the right. ``clip``
    limits a panel's y range (name -> (low, high)) around the values that fall inside it."""
    panels = [p for p in panels if has_values(p[1])]
    if not panels:
        return _layout(_empty(go.Figure()), title, xaxis_title=xtitle)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.08)
    thinned = _thin(x, *[y for _, y, _ in panels])
    for i, ((name, _, ytitle), y) in enumerate(zip(panels, thinned[1:], strict=True), start=1):
        fig.add_trace(go.Scatter(x=thinned[0], y=y, name=name, mode="lines", showlegend=False,
                                 line=dict(color=RUN_COLORS[(i - 1) % len(RUN_COLORS)])), row=i, col=1)
        fig.update_yaxes(title_text=ytitle, tickformat=SMALL_TICKS, row=i, col=1)
        if clip and name in clip:
            low, high = clip[name]
            finite = y[np.isfinite(y)]
            inside = finite[(finite >= low) & (finite <= high)]
            lo = low if (finite < low).any() or not inside.size else max(low, float(inside.min()))
            pad = 0.05 * (high - lo or 1.0)
            fig.update_yaxes(range=[lo - pad, high + pad], row=i, col=1)
    fig.update_xaxes(title_text=xtitle, tickformat=NUMBER_TICKS, row=len(panels), col=1)
    return _layout(fig, title, height=height + 60 * (len(panels) - 1))


def throughput_figure(x: np.ndarray, steps_per_sec: np.ndarray, xtitle: str = "env steps") -> go.Figure:
    """Env steps / s per update (updates/s is the same curve divided by the batch) and its median."""
    fig = go.Figure()
    if has_values(steps_per_sec):
        xs, ys = _thin(x, steps_per_sec)
        fig.add_trace(go.Scatter(x=xs, y=ys, name="env steps / s", mode="lines", line=dict(color=COLORS["agent"])))
        median = throughput(steps_per_sec)["median"]
        if median is not None:
            fig.add_hline(y=median, line=dict(color=COLORS["bench"], dash="dash"),
                          annotation_text=f"median {median:,.0f}", annotation_position="bottom right")
        fig.update_yaxes(tickformat=NUMBER_TICKS, rangemode="tozero")
        fig.update_xaxes(tickformat=NUMBER_TICKS)
    else:
        _empty(fig)
    return _layout(fig, "Throughput", "env steps / s", xaxis_title=xtitle)


def memory_figure(x: np.ndarray, host_rss: np.ndarray, device_mem: np.ndarray, xtitle: str = "env steps",
                  device_peak: np.ndarray | None = None) -> go.Figure:
    series = {"process RSS (whole process)": host_rss, "device memory between chunks": device_mem}
    if device_peak is not None:
        series["device memory, peak so far"] = device_peak
    fig = lines_figure(x, series, "Memory", "MB", xtitle=xtitle)
    fig.update_yaxes(tickformat=",.4~g")
    fig.update_xaxes(tickformat=NUMBER_TICKS)
    return fig


def live_figures(m: Mapping[str, np.ndarray], x_key: str = "env_steps") -> list[tuple[str, go.Figure]]:
    """The Live page's charts as (widget key, figure), from metric_arrays(rows, LIVE_METRIC_KEYS).
    ``x_key``: "env_steps", or "train_seconds" for training time summed over resumes."""
    if x_key == "train_seconds":
        x, xtitle = cumulative(m["train_seconds"]), "training time (s)"
    else:
        x, xtitle = m["env_steps"], "env steps"
    ret = lines_figure(x, {"episode return": m["episode_return_mean"]},
                       "Episode return (mean over episodes finished in the update)", "log return", xtitle=xtitle)
    ret.update_xaxes(tickformat=NUMBER_TICKS)
    return [
        ("live_reward", band_figure(x, m["reward_mean"], m["reward_std"], "Reward per step (mean ± std)",
                                    "reward mean", "± std", xtitle=xtitle)),
        ("live_return", ret),
        ("live_tput", throughput_figure(x, m["steps_per_sec"], xtitle)),
        ("live_mem", memory_figure(x, m["host_rss_mb"], m["device_mem_mb"], xtitle, m.get("device_peak_mb"))),
        ("live_loss", stacked_figure(x, [("policy loss", m["policy_loss"], "policy loss"),
                                         ("value loss", m["value_loss"], "value loss")], "PPO losses", xtitle)),
        ("live_ent", stacked_figure(x, [("entropy", m["entropy"], "entropy (nats)"),
                                        ("explained variance", m["explained_variance"], "explained var.")],
                                    "Entropy and explained variance", xtitle,
                                    clip={"explained variance": (-1.0, 1.0)})),
        ("live_kl", stacked_figure(x, [("approx KL", m["approx_kl"], "approx KL"),
                                       ("clip fraction", m["clip_fraction"], "clip fraction")],
                                   "Approx KL and clip fraction", xtitle)),
        ("live_behaviour", stacked_figure(x, [("mean |position|", m["mean_abs_position"], "mean |position|"),
                                              ("turnover", m["turnover"], "turnover / step")],
                                          "Behaviour (mean |position|, turnover)", xtitle)),
    ]


def overlay_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, ytitle: str,
                   smoothing: float = 0.0, xtitle: str = "env steps") -> go.Figure:
    """Several runs' curves on one axis, as TensorBoard draws them: with ``smoothing`` > 0 the raw
    curve faint and its EMA (presenters.live.ema) in the same colour."""
    fig = go.Figure()
    for i, (label, (x, y)) in enumerate(curves.items()):
        if not has_values(y):
            continue
        color = RUN_COLORS[i % len(RUN_COLORS)]
        xs, ys = _thin(x, y)
        if smoothing > 0:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=color, width=1), opacity=0.25,
                                     name=f"{label} (raw)", showlegend=False, hoverinfo="skip"))
            ys = _thin(x, ema(y, smoothing))[1]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=color, width=2), name=label))
    if not fig.data:
        _empty(fig)
    fig.update_xaxes(tickformat=NUMBER_TICKS)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    return _layout(fig, title, ytitle, height=360, xaxis_title=xtitle)


# several agents: seeds and populations ----------------------------------------------------
MEMBER_COLORS = qualitative.Plotly + qualitative.D3
OTHER_MEMBER = "#94a3b8"
BEST = "#f59e0b"


def member_color(member: int) -> str:
    return MEMBER_COLORS[member % len(MEMBER_COLORS)]


def member_lines_figure(curves: Mapping[int, tuple[np.ndarray, np.ndarray]], title: str, ytitle: str,
                        xtitle: str = "env steps", mean: tuple[np.ndarray, np.ndarray] | None = None,
                        highlight: int | None = None) -> go.Figure:
    """One thin line per member (its own colour), the members' mean bold and black, and the
    ``highlight`` member (e.g. the one chosen on validation) bold in its colour."""
    fig = go.Figure()
    for m, (x, y) in curves.items():
        if not has_values(y):
            continue
        xs, ys = _thin(x, y)
        chosen = m == highlight
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"member {m}" + (" (chosen)" if chosen else ""),
                                 line=dict(color=member_color(m), width=3 if chosen else 1),
                                 opacity=1.0 if chosen else 0.55))
    if mean is not None and has_values(mean[1]):
        xs, ys = _thin(*mean)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="mean of members", line=dict(color="#111827", width=2.5)))
    if not fig.data:
        _empty(fig)
    fig.update_xaxes(tickformat=NUMBER_TICKS)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    fig = _layout(fig, title, ytitle, height=320, xaxis_title=xtitle)
    fig.update_layout(hovermode="closest")
    return fig


def fitness_figure(table: pd.DataFrame) -> go.Figure:
    """Validation fitness of every member at each PBT round (population_table), the round's best
    member marked with a star and joined by a bold line."""
    title = "Validation fitness per round (★ best member of the round)"
    fig = go.Figure()
    scored = table[np.isfinite(table["fitness"].to_numpy(dtype=float))] if len(table) else table
    for m, rows in scored.groupby("member") if len(scored) else ():
        fig.add_trace(go.Scatter(
            x=rows["round"], y=rows["fitness"], mode="lines+markers", name=f"member {m}", opacity=0.6,
            line=dict(color=member_color(int(m)), width=1), marker=dict(size=5),
            customdata=rows[["update"]].to_numpy(), hovertemplate=(
                f"member {m}<br>round %{{x}} (update %{{customdata[0]}})<br>fitness %{{y:.4f}}<extra></extra>")))
    best = best_per_round(table)
    if len(best):
        fig.add_trace(go.Scatter(
            x=best["round"], y=best["fitness"], mode="lines+markers+text", name="best of the round",
            text=[str(int(m)) for m in best["member"]], textposition="top center",
            line=dict(color=BEST, width=3), marker=dict(symbol="star", size=14, color=BEST, line=dict(width=1)),
            customdata=best[["member", "update"]].to_numpy(), hovertemplate=(
                "best: member %{customdata[0]}<br>round %{x} (update %{customdata[1]})<br>"
                "fitness %{y:.4f}<extra></extra>")))
    if not fig.data:
        _empty(fig)
    fig.update_xaxes(dtick=1 if len(best) <= 20 else None)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    fig = _layout(fig, title, "validation log return", height=340, xaxis_title="PBT round")
    fig.update_layout(hovermode="closest")
    return fig


def log_ticks(values: np.ndarray, most: int = 6) -> list[float]:
    """Tick values for a log axis over ``values``: 1, 2, 5 x 10^k inside their range (one
    decade beyond each end), thinned to 1 x 10^k when that gives more than ``most``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return []
    lo, hi = int(np.floor(np.log10(v.min()))), int(np.ceil(np.log10(v.max())))
    inside = lambda t: v.min() / 1.5 <= t <= v.max() * 1.5  # noqa: E731
    ticks = [m * 10.0 ** k for k in range(lo, hi + 1) for m in (1, 2, 5) if inside(m * 10.0 ** k)]
    if len(ticks) > most:
        ticks = [10.0 ** k for k in range(lo, hi + 1) if inside(10.0 ** k)] or ticks[:: len(ticks) // most + 1]
    return ticks


def hyperparameter_figure(table: pd.DataFrame, names: Sequence[str]) -> go.Figure:
    """Each evolved hyperparameter per member over updates (population_table), one panel each,
    a log axis for log-scale hyperparameters (lr, ent_coef); steps where an exploit or explore
    changed a value."""
    title = "Hyperparameters per member (after each round)"
    names = [n for n in names if n in table]
    if not len(table) or not names:
        return _layout(_empty(go.Figure()), title)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for i, name in enumerate(names, start=1):
        for m, rows in table.groupby("member"):
            fig.add_trace(go.Scatter(
                x=rows["update"], y=rows[name], mode="lines+markers", name=f"member {m}", legendgroup=f"m{m}",
                showlegend=i == 1, line=dict(color=member_color(int(m)), width=1.5, shape="hv"), marker=dict(size=4),
                customdata=rows[["round"]].to_numpy(),
                hovertemplate=f"member {m}<br>{name} %{{y:.3g}}<br>round %{{customdata[0]}}, update %{{x}}<extra></extra>"),
                row=i, col=1)
        log = SEARCH_SPACE[name].scale == "log" if name in SEARCH_SPACE else False
        if log:
            ticks = log_ticks(table[name].to_numpy(dtype=float))
            fig.update_yaxes(title_text=f"{name} (log)", type="log", tickvals=ticks,
                             ticktext=[f"{t:.0e}" for t in ticks], row=i, col=1)
        else:
            fig.update_yaxes(title_text=name, tickformat=SMALL_TICKS, row=i, col=1)
    fig.update_xaxes(title_text="update", row=len(names), col=1)
    fig = _layout(fig, title, height=220 + 150 * (len(names) - 1))
    fig.update_layout(hovermode="closest")
    return fig


def lineage_figure(table: pd.DataFrame, events: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Who copied whom: each member's validation fitness at each round (colour), and an arrow
    from the donor to the member that copied its weights and hyperparameters at that round."""
    title = "Lineage: exploit events (arrow: donor → member that copied it)"
    fig = go.Figure()
    if not len(table):
        return _layout(_empty(fig), title)
    members = sorted(int(m) for m in table["member"].unique())
    rounds = sorted(int(r) for r in table["round"].unique())
    for m in members:  # each member's lifeline
        fig.add_trace(go.Scatter(x=[rounds[0], rounds[-1]], y=[m, m], mode="lines", showlegend=False, hoverinfo="skip",
                                 line=dict(color="#e5e7eb", width=6)))
    scored = table[np.isfinite(table["fitness"].to_numpy(dtype=float))]
    if len(scored):
        fig.add_trace(go.Scatter(
            x=scored["round"], y=scored["member"], mode="markers", name="validation fitness",
            marker=dict(size=13, color=scored["fitness"], colorscale="RdYlGn", showscale=True,
                        colorbar=dict(title="fitness", thickness=12),
                        symbol=["x" if r else "circle" for r in scored["replaced"]],
                        line=dict(width=1, color="#374151")),
            customdata=np.stack([scored["donor"].to_numpy(), scored["update"].to_numpy()], axis=1),
            hovertemplate=("member %{y}, round %{x} (update %{customdata[1]})<br>fitness %{marker.color:.4f}"
                           "<br>donor %{customdata[0]}<extra></extra>")))
    for e in events:
        fig.add_annotation(x=e["round"], y=e["member"], ax=e["round"] - 0.45, ay=e["donor"], xref="x", yref="y",
                           axref="x", ayref="y", showarrow=True, arrowhead=3, arrowsize=1.2, arrowwidth=1.5,
                           arrowcolor="#7c3aed", standoff=7, text="")
    fig.update_xaxes(dtick=1 if len(rounds) <= 20 else None, range=[rounds[0] - 0.6, rounds[-1] + 0.4])
    fig.update_yaxes(tickmode="array", tickvals=members, range=[members[0] - 0.6, members[-1] + 0.6])
    fig = _layout(fig, title, "member", height=max(260, 60 + 32 * len(members)), xaxis_title="PBT round (× = replaced)")
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def members_fan_figure(curves: Mapping[int, tuple[np.ndarray, np.ndarray]], title: str, chosen: int | None = None,
                       bench: tuple[np.ndarray, np.ndarray] | None = None) -> go.Figure:
    """Every member's test equity (thin grey lines over the min … max band), the chosen member
    bold, buy & hold dotted."""
    fig = go.Figure()
    series = [y for _, y in curves.values()]
    if series and len({len(y) for y in series}) == 1 and len(series) > 1:
        x0 = next(iter(curves.values()))[0]
        stack = np.vstack(series)
        xs, lo, hi = _thin(x0, np.nanmin(stack, axis=0), np.nanmax(stack, axis=0))
        fig.add_trace(go.Scatter(x=xs, y=hi, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip",
                                 name="max"))
        fig.add_trace(go.Scatter(x=xs, y=lo, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor="rgba(148,163,184,0.18)", name="range", hoverinfo="skip"))
    first = True
    for m, (x, y) in curves.items():
        if m == chosen:
            continue
        xs, ys = _thin(x, y)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="other members", legendgroup="others",
                                 showlegend=first, line=dict(color=OTHER_MEMBER, width=1), opacity=0.8,
                                 hovertemplate=f"member {m}: %{{y:,.0f}}<extra></extra>"))
        first = False
    if bench is not None:
        xs, ys = _thin(*bench)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="buy & hold",
                                 line=dict(color=COLORS["bench"], width=1.5, dash="dot")))
    if chosen in curves:
        xs, ys = _thin(*curves[chosen])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"member {chosen} (chosen)",
                                 line=dict(color=COLORS["agent"], width=3)))
    if not fig.data:
        _empty(fig)
    fig.update_yaxes(tickformat=NUMBER_TICKS)
    fig = _layout(fig, title, "equity (currency)", height=320)
    fig.update_layout(hovermode="closest", margin=dict(t=78))  # room for a legend of two lines
    return fig


# the tearsheet ------------------------------------------------------------------------------
def symbol_figure(symbol: str, frame: pd.DataFrame, execution: str) -> go.Figure:
    """One symbol's equity vs buy & hold, drawdowns, and close with fills, stacked on one shared
    date axis: zooming one zooms all three."""
    dates = frame["date"].to_numpy()
    eq = frame["equity"].to_numpy(dtype=float)
    bench = frame["benchmark_equity"].to_numpy(dtype=float)
    close = frame["close"].to_numpy(dtype=float)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.45, 0.25, 0.30])
    d, e, b = _thin(dates, eq, bench, minmax_of=eq)
    fig.add_trace(go.Scatter(x=d, y=e, name="agent", mode="lines", line=dict(color=COLORS["agent"], width=2)),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=d, y=b, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")), row=1, col=1)
    dd, bdd = drawdown(eq), drawdown(bench)
    d2, dd, bdd = _thin(dates, dd, bdd, minmax_of=dd)
    fig.add_trace(go.Scatter(x=d2, y=dd, name="agent drawdown", mode="lines", fill="tozeroy", showlegend=False,
                             line=dict(color=COLORS["dd"], width=1.2)), row=2, col=1)
    fig.add_trace(go.Scatter(x=d2, y=bdd, name="buy & hold drawdown", mode="lines", showlegend=False,
                             line=dict(color=COLORS["bench"], width=1, dash="dot")), row=2, col=1)
    d3, c = _thin(dates, close, minmax_of=close)
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
    return _layout(fig, f"{symbol} — equity vs buy & hold", height=560)


def portfolio_figure(value: pd.Series, bench: pd.Series, exposure: pd.Series) -> go.Figure:
    """The combined portfolio (equal capital per symbol) against buy & hold, its drawdown and its
    gross exposure, on one shared date axis."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.5, 0.25, 0.25])
    dates = value.index.to_numpy()
    v, b = value.to_numpy(float), bench.reindex(value.index).to_numpy(float)
    d, v2, b2 = _thin(dates, v, b, minmax_of=v)
    fig.add_trace(go.Scatter(x=d, y=v2, name="portfolio", mode="lines", line=dict(color=COLORS["agent"], width=2)),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=d, y=b2, name="buy & hold", mode="lines",
                             line=dict(color=COLORS["bench"], width=1.5, dash="dot")), row=1, col=1)
    dd = drawdown(v)
    d2, dd2 = _thin(dates, dd, minmax_of=dd)
    fig.add_trace(go.Scatter(x=d2, y=dd2, name="drawdown", mode="lines", fill="tozeroy", showlegend=False,
                             line=dict(color=COLORS["dd"], width=1.2)), row=2, col=1)
    ex = exposure.reindex(value.index).to_numpy(float)
    d3, ex2 = _thin(dates, ex)
    fig.add_trace(go.Scatter(x=d3, y=ex2, name="gross exposure", mode="lines", fill="tozeroy", showlegend=False,
                             line=dict(color=COLORS["exposure"], width=1.2, shape="hv")), row=3, col=1)
    fig.update_yaxes(title_text="value (currency)", tickformat=NUMBER_TICKS, row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_yaxes(title_text="exposure", tickformat=".0%", rangemode="tozero", row=3, col=1)
    return _layout(fig, "Portfolio — equity vs buy & hold, drawdown, exposure", height=560)


def monthly_heatmap(table: pd.DataFrame, title: str = "Monthly returns of the portfolio (%)") -> go.Figure:
    """tearsheet.monthly_returns as a heatmap: green up, red down, the value in each cell."""
    if table.empty:
        return _layout(_empty(go.Figure()), title)
    z = table.to_numpy(float) * 100
    text = [[("" if not np.isfinite(v) else f"{v:+.1f}%") for v in row] for row in z]
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=list(table.columns), y=[str(y) for y in table.index], text=text,
                               texttemplate="%{text}", colorscale="RdYlGn", zmid=0, zmin=-bound, zmax=bound,
                               colorbar=dict(title="%", ticksuffix="%"), hovertemplate="%{y} %{x}: %{text}<extra></extra>",
                               xgap=2, ygap=2))
    fig.update_yaxes(type="category", autorange="reversed")
    fig = _layout(fig, title, "year", height=max(180, 60 + 40 * len(table)))
    fig.update_layout(hovermode="closest")
    return fig


def rolling_sharpe_figure(series: pd.Series, window: int) -> go.Figure:
    fig = go.Figure()
    finite = series.dropna()
    if finite.empty:
        fig.add_annotation(text=f"needs more than {window} test days", showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font=dict(color="#6b7280", size=14))
    else:
        d, y = _thin(finite.index.to_numpy(), finite.to_numpy(float))
        fig.add_trace(go.Scatter(x=d, y=y, name="rolling Sharpe", mode="lines", line=dict(color=COLORS["agent"])))
        fig.add_hline(y=0, line=dict(color=COLORS["bench"], width=1))
        fig.update_yaxes(tickformat=SMALL_TICKS)
    return _layout(fig, f"Rolling Sharpe of the portfolio ({window}-day window, annualised)", "Sharpe (annualised)",
                   height=280)


def forward_figure(curves: pd.DataFrame) -> go.Figure:
    """ledger.forward_curves: paper equity since deployment, buy & hold, and the backtest's
    expectation with its ±1σ band."""
    fig = go.Figure()
    if curves.empty:
        return _layout(_empty(fig), "Forward (paper) equity since deployment")
    d = curves.index.to_numpy()
    if curves["expected"].notna().any():
        fig.add_trace(go.Scatter(x=d, y=curves["expected_high"], mode="lines", line=dict(width=0), showlegend=False,
                                 hoverinfo="skip", name="upper"))
        fig.add_trace(go.Scatter(x=d, y=curves["expected_low"], mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=COLORS["expected_band"], name="backtest ±1σ", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=d, y=curves["expected"], mode="lines", name="backtest expectation",
                                 line=dict(color=COLORS["expected"], dash="dash")))
    fig.add_trace(go.Scatter(x=d, y=curves["buy_hold"], mode="lines+markers", name="buy & hold",
                             line=dict(color=COLORS["bench"], dash="dot")))
    fig.add_trace(go.Scatter(x=d, y=curves["paper"], mode="lines+markers", name="paper (forward)",
                             line=dict(color=COLORS["agent"], width=2)))
    fig.update_yaxes(tickformat=",.0f")
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d")
    if len(d) == 1:  # the deployment day alone: a week around it, not a millisecond axis
        day = pd.Timestamp(d[0])
        fig.update_xaxes(range=[day - pd.Timedelta(days=3), day + pd.Timedelta(days=4)], dtick=86_400_000)
    return _layout(fig, "Forward (paper) equity since deployment", "value (currency)", height=340)


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
