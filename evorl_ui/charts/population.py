"""Figures of runs with several agents (seeds, populations): member colours and lines, validation
fitness per round, hyperparameters per member, the lineage of exploit events and the members'
test equity fan.
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
from evorl_ui.charts.base import COLORS, NUMBER_TICKS, SMALL_TICKS, empty, layout, thin
from evorl_ui.presenters.format import has_values
from evorl_ui.presenters.population import best_per_round

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
        xs, ys = thin(x, y)
        chosen = m == highlight
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"member {m}" + (" (chosen)" if chosen else ""),
                                 line=dict(color=member_color(m), width=3 if chosen else 1),
                                 opacity=1.0 if chosen else 0.55))
    if mean is not None and has_values(mean[1]):
        xs, ys = thin(*mean)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="mean of members", line=dict(color="#111827", width=2.5)))
    if not fig.data:
        empty(fig)
    fig.update_xaxes(tickformat=NUMBER_TICKS)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    fig = layout(fig, title, ytitle, height=320, xaxis_title=xtitle)
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
        empty(fig)
    fig.update_xaxes(dtick=1 if len(best) <= 20 else None)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    fig = layout(fig, title, "validation log return", height=340, xaxis_title="PBT round")
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
        return layout(empty(go.Figure()), title)
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
    fig = layout(fig, title, height=220 + 150 * (len(names) - 1))
    fig.update_layout(hovermode="closest")
    return fig


def lineage_figure(table: pd.DataFrame, events: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Who copied whom: each member's validation fitness at each round (colour), and an arrow
    from the donor to the member that copied its weights and hyperparameters at that round."""
    title = "Lineage: exploit events (arrow: donor → member that copied it)"
    fig = go.Figure()
    if not len(table):
        return layout(empty(fig), title)
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
    fig = layout(fig, title, "member", height=max(260, 60 + 32 * len(members)), xaxis_title="PBT round (× = replaced)")
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
        xs, lo, hi = thin(x0, np.nanmin(stack, axis=0), np.nanmax(stack, axis=0))
        fig.add_trace(go.Scatter(x=xs, y=hi, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip",
                                 name="max"))
        fig.add_trace(go.Scatter(x=xs, y=lo, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor="rgba(148,163,184,0.18)", name="range", hoverinfo="skip"))
    first = True
    for m, (x, y) in curves.items():
        if m == chosen:
            continue
        xs, ys = thin(x, y)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="other members", legendgroup="others",
                                 showlegend=first, line=dict(color=OTHER_MEMBER, width=1), opacity=0.8,
                                 hovertemplate=f"member {m}: %{{y:,.0f}}<extra></extra>"))
        first = False
    if bench is not None:
        xs, ys = thin(*bench)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="buy & hold",
                                 line=dict(color=COLORS["bench"], width=1.5, dash="dot")))
    if chosen in curves:
        xs, ys = thin(*curves[chosen])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"member {chosen} (chosen)",
                                 line=dict(color=COLORS["agent"], width=3)))
    if not fig.data:
        empty(fig)
    fig.update_yaxes(tickformat=NUMBER_TICKS)
    fig = layout(fig, title, "equity (currency)", height=320)
    fig.update_layout(hovermode="closest", margin=dict(t=78))  # room for a legend of two lines
    return fig


def pbo_figure(metrics: Mapping[str, Any], subject: str) -> go.Figure | None:
    """The logit distribution of the probability of backtest overfitting (CSCV): how far above or
    below the out-of-sample median the in-sample best member lands in each split; the bars at or
    left of 0 make up the PBO. None when the metrics hold no PBO."""
    edges, counts = metrics.get("pbo_logit_edges"), metrics.get("pbo_logit_counts")
    if not edges or not counts or len(edges) != len(counts) + 1:
        return None
    total = max(sum(counts), 1)
    labels = [f"≤ {edges[1]:g}"] + [f"{a:g} … {b:g}" for a, b in zip(edges[1:-2], edges[2:-1], strict=True)] \
        + [f"> {edges[-2]:g}"]
    overfit = [b <= 0 for b in edges[1:]]
    fig = go.Figure(go.Bar(x=labels, y=[c / total for c in counts], name="share of splits",
                           marker_color=[COLORS["dd"] if o else COLORS["agent"] for o in overfit],
                           hovertemplate="λ %{x}: %{y:.1%} of splits<extra></extra>"))
    fig.update_yaxes(tickformat=".0%")
    fig.update_xaxes(title_text="logit λ of the in-sample best member's out-of-sample rank (≤ 0: at or below the median)")
    title = (f"{subject}: probability of backtest overfitting {metrics['pbo']:.2f} "
             f"({metrics.get('pbo_splits', 0):,} splits of {metrics.get('pbo_candidates')} members)")
    return layout(fig, title, "share of splits", height=300)
