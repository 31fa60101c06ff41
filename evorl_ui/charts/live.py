"""The Live page's figures: throughput, memory, the training curves and the overlay of several
runs' curves.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from evorl_ui.charts.base import (
    COLORS,
    NUMBER_TICKS,
    RUN_COLORS,
    SMALL_TICKS,
    band_figure,
    empty,
    layout,
    lines_figure,
    stacked_figure,
    thin,
)
from evorl_ui.presenters.format import has_values
from evorl_ui.presenters.live import cumulative, ema, throughput


def throughput_figure(x: np.ndarray, steps_per_sec: np.ndarray, xtitle: str = "env steps") -> go.Figure:
    """Env steps / s per update (updates/s is the same curve divided by the batch) and its median."""
    fig = go.Figure()
    if has_values(steps_per_sec):
        xs, ys = thin(x, steps_per_sec)
        fig.add_trace(go.Scatter(x=xs, y=ys, name="env steps / s", mode="lines", line=dict(color=COLORS["agent"])))
        median = throughput(steps_per_sec)["median"]
        if median is not None:
            fig.add_hline(y=median, line=dict(color=COLORS["bench"], dash="dash"),
                          annotation_text=f"median {median:,.0f}", annotation_position="bottom right")
        fig.update_yaxes(tickformat=NUMBER_TICKS, rangemode="tozero")
        fig.update_xaxes(tickformat=NUMBER_TICKS)
    else:
        empty(fig)
    return layout(fig, "Throughput", "env steps / s", xaxis_title=xtitle)


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
                                    nominal={"explained variance": (-1.0, 1.0)})),
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
        xs, ys = thin(x, y)
        if smoothing > 0:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=color, width=1), opacity=0.25,
                                     name=f"{label} (raw)", showlegend=False, hoverinfo="skip"))
            ys = thin(x, ema(y, smoothing))[1]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=color, width=2), name=label))
    if not fig.data:
        empty(fig)
    fig.update_xaxes(tickformat=NUMBER_TICKS)
    fig.update_yaxes(tickformat=SMALL_TICKS)
    return layout(fig, title, ytitle, height=360, xaxis_title=xtitle)
