"""What the CLI prints: the progress bar and the result tables (the text views of the engine's
figures; every number goes through the metric registry, `metrics.format_value`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from evorl_core.config import ConfigError, TrainConfig
from evorl_core.costs import cost_model
from evorl_core.metrics import AVERAGE, CHOSEN, MISSING, POOLED, format_value, subject_of
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


VERDICT_NOTE = "verdicts: the excess and timing tests and their words are explained in docs/evaluation.md"


def members_of(metrics: dict[str, dict[str, Any]]) -> int:
    """Members behind a metrics table (1 for one agent)."""
    counts = [m.get("members") for m in metrics.values() if isinstance(m, dict)]
    return max([int(c) for c in counts if isinstance(c, (int, float))] or [1])


def subject_line(metrics: dict[str, dict[str, Any]], pooled: bool = False) -> str:
    """Whose figures a table shows, when that is not simply the agent ('' for one agent)."""
    if pooled:
        return f"subject: {POOLED} (each fold's test days chained in time order, every day out of sample)"
    members = members_of(metrics)
    if members <= 1:
        return ""
    chosen = next((m.get("chosen_member") for m in metrics.values() if isinstance(m, dict)), None)
    which = f"member {chosen} of {members}" if isinstance(chosen, int) else f"one of {members} members"
    return (f"subject: figures of the {CHOSEN} ({which}, picked on validation days); the verdict is of the "
            f"{AVERAGE} (all {members}, their returns pooled day by day)")


def format_metrics_table(metrics: dict[str, dict[str, Any]], pooled: bool = False) -> str:
    """Per-symbol test metrics of the agent against buy & hold, as an aligned text table, with the
    Sharpe ratio's interval and the verdict of the excess and timing tests (docs/evaluation.md).
    With several members (or `pooled` folds) a first line and the verdict's header say whose
    figures they are (`metrics.subject_of`)."""
    verdict_subject = subject_of("verdict", members_of(metrics), pooled)
    header = ["symbol", "total ret", "B&H ret", "CAGR", "B&H CAGR", "Sharpe [95% CI]", "B&H Sharpe", "max DD",
              "B&H max DD", "position changes", "win rate", "exposure",
              "verdict" if verdict_subject == "agent" else f"verdict ({verdict_subject})"]
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
    if subject := subject_line(metrics, pooled):
        table = f"{subject}\n{table}"
    if any(isinstance(m, dict) and m.get("verdict") for m in metrics.values()):
        table += f"\n{VERDICT_NOTE}"
    if selection := selection_lines(metrics):
        table += "\n" + "\n".join(selection)
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
    lines += selection_lines(metrics)
    return "\n".join(lines)


def selection_lines(metrics: dict[str, Any]) -> list[str]:
    """What choosing among several members costs, per symbol (or the account): the best member's
    deflated Sharpe ratio beside the members' probability of backtest overfitting (CSCV)."""
    out = []
    for symbol, m in metrics.items():
        if not isinstance(m, dict) or (m.get("deflated_sharpe") is None and m.get("pbo") is None):
            continue
        parts = []
        if m.get("deflated_sharpe") is not None:
            parts.append(f"deflated Sharpe of the best member (m{m.get('best_member')}) "
                         f"{m['deflated_sharpe']:.2f} over {m.get('deflated_sharpe_trials')} trials")
        if m.get("pbo") is not None:
            parts.append(f"probability of backtest overfitting {m['pbo']:.2f} (CSCV over {m.get('pbo_candidates')} "
                         f"members, {m.get('pbo_blocks')} blocks of the {m.get('pbo_days')} test days, "
                         f"{m.get('pbo_splits'):,} splits)")
        out.append(f"selection, {symbol}: " + "; ".join(parts))
    return out


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
def aligned(header: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> str:
    """A text table: columns padded to their widest cell (those in `right` right-aligned), a rule
    under the header, trailing spaces trimmed."""
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             .rstrip() for r in table]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def _mean_return(per_symbol: dict[str, Any], key: str) -> float | None:
    values = [m.get(key) for m in per_symbol.values() if isinstance(m, dict)]
    values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else None


def headline_return(per_symbol: dict[str, Any] | None) -> str:
    """'+1.23% (B&H -0.50%)': the mean test return over the symbols and buy & hold's ('' without)."""
    agent, bh = _mean_return(per_symbol or {}, "total_return"), _mean_return(per_symbol or {}, "bh_total_return")
    if agent is None:
        return ""
    return format_value("total_return", agent) + (f" (B&H {format_value('bh_total_return', bh)})" if bh is not None else "")


def format_runs_table(runs: list[dict[str, Any]], runs_dir: Any) -> str:
    """`evorl runs`: one row per run (id, state, env steps, symbols, mean test return), an error
    line under a failed or damaged one; says when the folder is missing or empty."""
    if not runs:
        return f"no runs: {runs_dir} does not exist" if not Path(runs_dir).exists() else f"no runs in {runs_dir}"
    header = ["run id", "state", "env steps", "symbols", "mean test return"]
    rows = [[r["run_id"], str(r["state"]), f"{r.get('env_steps') or 0:,}", ",".join(r.get("symbols") or []) + (" [synthetic]" if r.get("synthetic") else ""),
             headline_return(r.get("backtest"))] for r in runs]
    table = aligned(header, rows, right=(2,)).split("\n")
    lines = table[:2]
    for r, line in zip(runs, table[2:], strict=True):
        lines.append(line)
        if r.get("error"):
            lines.append(f"    {'damaged' if r['state'] == 'damaged' else 'error'}: {r['error']}")
    return "\n".join(lines)


def format_models_table(models: list[dict[str, Any]], models_dir: Any) -> str:
    """`evorl models`, in the style of `evorl runs`: name, deploy date, symbols, source run, mean
    test return, paper ledger (entries and last date)."""
    if not models:
        return (f"no models: {models_dir} does not exist" if not Path(models_dir).exists()
                else f"no models in {models_dir}")
    header = ["model", "deployed", "symbols", "from run", "mean test return", "paper ledger"]
    rows = []
    for m in models:
        ledger = m.get("ledger") or {}
        if ledger.get("error"):
            paper = "damaged (see evorl paper)"
        elif ledger.get("entries"):
            paper = f"{ledger['entries']} entries, last {ledger.get('last_date')}"
        else:
            paper = "empty"
        created = m.get("created_at")
        rows.append([m["name"] + (" [synthetic]" if m.get("synthetic") else ""),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else MISSING,
                     ",".join(m.get("symbols") or []), str(m.get("source_run") or MISSING),
                     headline_return(m.get("test_metrics")), paper])
    table = aligned(header, rows)
    notes = [f"{m['name']}: " + "; ".join(m["notes"]) for m in models if m.get("notes")]
    return table + ("\n" + "\n".join(notes) if notes else "")


# ---------------------------------------------------------------------------------------------


def indented(exc: BaseException | str) -> str:
    """The message, its further lines indented under the `error:` line (a DataError lists one
    problem a line)."""
    return "\n  ".join(str(exc).splitlines())


def format_pooled_account(m: dict[str, Any], benchmark: str) -> str:
    """A portfolio walk-forward's pooled account against its benchmark (1/N), in three lines."""
    return "\n".join([
        f"account  total return {format_value('total_return', m.get('total_return'))}  Sharpe "
        f"{format_value('sharpe', m.get('sharpe'))}  max drawdown {format_value('max_drawdown', m.get('max_drawdown'))}"
        f"  over {m.get('days')} days ({m.get('first_test_day')} .. {m.get('last_test_day')})",
        f"{benchmark}  total return {format_value('bh_total_return', m.get('bh_total_return'))}  Sharpe "
        f"{format_value('bh_sharpe', m.get('bh_sharpe'))}  max drawdown {format_value('bh_max_drawdown', m.get('bh_max_drawdown'))}",
        f"verdict: {m.get('verdict')}",
    ])
