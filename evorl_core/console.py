"""What the CLI prints: the progress bar and the result tables (the text views of the engine's
figures; every number goes through the metric registry, `metrics.format_value`)."""

from __future__ import annotations

import sys
import time
from typing import Any

from evorl_core.config import ConfigError, TrainConfig
from evorl_core.costs import cost_model
from evorl_core.metrics import MISSING, format_value
from evorl_core.timefmt import format_duration


class ProgressBar:
    """A one-line progress bar: steps, steps/s, reward, ETA. Redraws in place on a terminal."""

    def __init__(self, stream=sys.stderr, width: int = 28):
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.last_print = 0.0

    def __call__(self, info: dict[str, Any]) -> None:
        done, total = info.get("env_steps", 0), max(info.get("total_steps") or 1, 1)
        frac = min(done / total, 1.0)
        filled = int(frac * self.width)
        reward = info.get("episode_return_mean")
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:5.1f}% "
                f"{done:,}/{total:,} steps | {info.get('steps_per_sec', 0):,.0f} steps/s | "
                f"episode return {format_value('episode_return_mean', reward)} | ETA {format_duration(info.get('eta_seconds'), clock=True)}")
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif now - self.last_print > 5 or frac >= 1.0:
            self.stream.write(line + "\n")
            self.last_print = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _sharpe_with_interval(m: dict[str, Any]) -> str:
    """'0.850 [-1.20, 2.90]': the Sharpe ratio and its 95% bootstrap interval (when there is one)."""
    low, high = m.get("sharpe_ci_low"), m.get("sharpe_ci_high")
    if low is None or high is None:
        return format_value("sharpe", m.get("sharpe"))
    return f"{format_value('sharpe', m.get('sharpe'))} [{low:.2f}, {high:.2f}]"


def format_metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Per-symbol test metrics of the agent against buy & hold, as an aligned text table, with the
    Sharpe ratio's interval and the verdict of the excess and timing tests (docs/evaluation.md)."""
    header = ["symbol", "total ret", "B&H ret", "CAGR", "B&H CAGR", "Sharpe [95% CI]", "B&H Sharpe", "max DD",
              "B&H max DD", "trades", "win rate", "exposure", "verdict"]
    rows = [header]
    for symbol, m in metrics.items():
        rows.append([
            symbol, format_value("total_return", m.get("total_return")), format_value("bh_total_return", m.get("bh_total_return")),
            format_value("cagr", m.get("cagr")), format_value("bh_cagr", m.get("bh_cagr")), _sharpe_with_interval(m),
            format_value("bh_sharpe", m.get("bh_sharpe")), format_value("max_drawdown", m.get("max_drawdown")), format_value("bh_max_drawdown", m.get("bh_max_drawdown")),
            format_value("trades", m.get("trades")), format_value("win_rate", m.get("win_rate")),
            format_value("exposure", m.get("exposure")), str(m.get("verdict") or MISSING),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    last = len(header) - 1  # the verdict is text: left-aligned, not padded
    lines = ["  ".join(c if i == last else (c.rjust(w) if i else c.ljust(w))
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    table = "\n".join(lines)
    costs = format_cost_table(metrics)
    return f"{table}\n\n{costs}" if costs else table


def format_portfolio_table(metrics: dict[str, Any], top: int = 5) -> str:
    """A portfolio run's test account against its baselines (1/N rebalanced, equal-weight buy &
    hold, cash), the verdict, the allocation diagnostics and the largest contributions."""
    m = metrics.get("PORTFOLIO") or {}
    header = ["account", "total ret", "CAGR", "Sharpe", "max DD", "cost drag", "turnover/yr", "eff. assets"]
    rows = [header]

    def row(name: str, r: dict[str, Any]) -> list[str]:
        return [name, format_value("total_return", r.get("total_return")), format_value("cagr", r.get("cagr")),
                format_value("sharpe", r.get("sharpe")), format_value("max_drawdown", r.get("max_drawdown")),
                format_value("cost_drag", r.get("cost_drag")),
                "—" if r.get("turnover_annual") is None else f"{r['turnover_annual']:.2f}x",
                "—" if r.get("effective_assets") is None else f"{r['effective_assets']:.1f}"]

    rows.append(row("agent", m))
    for name, r in (m.get("baselines") or {}).items():
        rows.append(row(name, r))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    subject = m.get("verdict_subject")
    lines.append("")
    lines.append(f"verdict ({subject}): {m.get('verdict') or MISSING}" if subject else
                 f"verdict: {m.get('verdict') or MISSING}")
    if m.get("distance_from_1n") is not None:
        lines.append(f"distance from 1/N {m['distance_from_1n']:.1%}, cash {m.get('cash_weight_mean', 0):.1%} on "
                     f"average, largest weight {m.get('max_weight', 0):.1%}, {m.get('assets', '?')} assets")
    for flag in m.get("flags") or []:
        lines.append(f"warning: {flag}")
    contribution = m.get("contribution") or {}
    if contribution:
        ranked = sorted(contribution.items(), key=lambda kv: -abs(kv[1]))[:top]
        lines.append("largest contributions: " + ", ".join(f"{s} {v:+.2%}" for s, v in ranked))
    return "\n".join(lines)


def format_cost_table(metrics: dict[str, dict[str, Any]]) -> str:
    """What costs took and how often each symbol traded: gross vs net return, cost drag per year,
    trades per year, average holding period, and net return / Sharpe of the same positions at a
    flat 0 / 10 / 25 / 50 bps per side. Empty when the metrics predate these numbers."""
    if not any("gross_return" in m for m in metrics.values()):
        return ""
    levels = list(next(m["cost_sensitivity"] for m in metrics.values() if "cost_sensitivity" in m))
    at = "/".join(levels)
    header = ["symbol", "gross ret", "net ret", "cost drag", "drag/yr", "trades/yr", "avg hold",
              f"net ret @ {at} bps", f"Sharpe @ {at} bps"]
    rows = [header]
    for symbol, m in metrics.items():
        table = m.get("cost_sensitivity") or {}
        rows.append([
            symbol, format_value("gross_return", m.get("gross_return")), format_value("total_return", m.get("total_return")),
            format_value("cost_drag", m.get("cost_drag")), format_value("cost_drag_annual", m.get("cost_drag_annual")),
            format_value("trades_per_year", m.get("trades_per_year")),
            format_value("avg_holding_days", m.get("avg_holding_days")),
            " ".join(format_value("total_return", (table.get(k) or {}).get("total_return")) for k in levels),
            " ".join(format_value("sharpe", (table.get(k) or {}).get("sharpe")) for k in levels),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def cost_line(config: dict[str, Any]) -> str:
    """The cost model of a run, one line (rates per side and the flat charge)."""
    try:
        return cost_model(TrainConfig.from_dict(config)).describe()
    except (ConfigError, TypeError, ValueError):
        return f"{config.get('fee_bps')}+{config.get('slippage_bps')} bps"


# ---------------------------------------------------------------------------------------------


def indented(exc: BaseException) -> str:
    """The message, its further lines indented under the `error:` line (a DataError lists one
    problem a line)."""
    return "\n  ".join(str(exc).splitlines())
