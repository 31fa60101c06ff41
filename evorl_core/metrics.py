"""Performance metrics of an equity curve, and the one metric registry.

`compute_metrics` (NumPy, float64) turns equity at the close of each day and the positions decided
there into the figures of `METRIC_DEFINITIONS`; every mode's accounting produces such curves.
Metrics use the n = N-1 daily simple returns r_k = E_k / E_{k-1} - 1, k = 1..n, A = 252 by default,
rf = 0 by default (docs/accounting.md).

`METRICS` is the registry: for every metric the CLI, the pages and the report show, its definition,
unit, label and format (`format_value`), so a figure reads the same everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METRIC_NAMES = (
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar",
    "trades", "win_rate", "exposure", "turnover", "trades_per_year", "avg_holding_days",
)

@dataclass(frozen=True)
class Metric:
    """One reported figure: what it is, its unit and how it is written (CLI, pages and report)."""

    name: str
    label: str  # column / row label: says what is counted and, where it helps, the unit
    unit: str  # one of UNITS
    definition: str = ""  # the formula (docs/accounting.md, docs/evaluation.md)
    decimals: int = 3
    signed: bool = False  # '+1.23%': returns and excesses, whose sign is the point


# percent: a fraction written as a percentage; ratio: a plain number; count: an integer;
# per_year: a rate per year; days: a duration in days; times_per_year: a multiple of equity per year;
# p_value: a probability.
UNITS = ("percent", "ratio", "count", "per_year", "days", "times_per_year", "p_value")
MISSING = "—"  # how every front end writes a figure that does not exist (NaN, None)

_ROUND_TRIP = ("a round trip = a run of one unchanged non-zero held position (closing day included when it "
               "ends flat)")
METRICS: dict[str, Metric] = {m.name: m for m in (
    # backtest metrics of an equity curve (`compute_metrics`)
    Metric("total_return", "total return", "percent", "E_end / E_0 - 1", 2, True),
    Metric("cagr", "CAGR", "percent", "(E_end / E_0) ^ (A / n) - 1, n = number of daily returns (test days - 1)",
           2, True),
    Metric("annual_volatility", "annual volatility", "percent",
           "std(r, ddof=1) * sqrt(A), r = daily simple returns E_k / E_{k-1} - 1", 2),
    Metric("sharpe", "Sharpe", "ratio", "mean(r - rf/A) / std(r, ddof=1) * sqrt(A); NaN if std = 0"),
    Metric("sortino", "Sortino", "ratio",
           "mean(r - rf/A) / sqrt(mean(min(r - rf/A, 0)^2)) * sqrt(A); NaN without a down day"),
    Metric("max_drawdown", "max drawdown", "percent", "min over k of E_k / max(E_0..E_k) - 1 (0 or negative)",
           2, True),
    Metric("calmar", "Calmar", "ratio", "cagr / |max_drawdown|; NaN if max_drawdown = 0"),
    Metric("trades", "position changes", "count",
           "number of position changes in the filled sequence 0, p_0, ..., p_{N-2}", 0),
    Metric("win_rate", "win rate (per round trip)", "percent",
           f"winning round trips / round trips, {_ROUND_TRIP}; NaN without trades, and for buy & hold, which "
           "holds one position throughout and never completes a round trip", 1),
    Metric("exposure", "exposure", "percent", "mean |held position| over the n daily periods", 1),
    Metric("turnover", "turnover (× equity / year)", "times_per_year",
           "sum |change of position| over the filled sequence * A / n (exposure traded per year)", 1),
    Metric("trades_per_year", "position changes / year", "per_year", "trades * A / n (fills per year)", 1),
    Metric("avg_holding_days", "average holding", "days",
           "mean length in days of the runs of one unchanged non-zero held position (closing day not "
           "included); NaN without a position", 1),
    # what costs took (`accounting.cost_metrics` of each mode)
    Metric("gross_return", "gross return", "percent", "total return of the same positions with zero costs", 2,
           True),
    Metric("cost_drag", "cost drag", "percent", "gross_return - total_return (return lost to costs over the test)",
           2, True),
    Metric("cost_drag_annual", "cost drag / year", "percent",
           "CAGR of the gross equity - cagr (return lost to costs per year)", 2, True),
    Metric("cost_sensitivity", "cost sensitivity", "ratio",
           "net total_return and sharpe of the same positions at a flat 0 / 10 / 25 / 50 bps per side (no flat "
           "charge)"),
    # round trips of the tearsheet
    Metric("round_trips", "round trips", "count", _ROUND_TRIP, 0),
    Metric("winners", "winning round trips", "count", "round trips with a positive return", 0),
    Metric("mean_holding_days", "mean holding", "days", "mean days from a round trip's fill to its exit", 1),
    Metric("mean_trade_return", "mean round-trip return", "percent", "mean compounded return of the round trips",
           2, True),
    # significance (docs/evaluation.md)
    Metric("excess_mean_annual", "excess over buy & hold / year", "percent",
           "mean daily return difference agent - buy & hold * A", 2, True),
    Metric("excess_ci_low", "excess 95% interval, low", "percent", "stationary block bootstrap", 2, True),
    Metric("excess_ci_high", "excess 95% interval, high", "percent", "stationary block bootstrap", 2, True),
    Metric("excess_p_value", "excess p-value", "p_value", "one-sided, agent > buy & hold"),
    Metric("excess_p_bootstrap", "excess p-value (bootstrap)", "p_value"),
    Metric("excess_p_student", "excess p-value (Student)", "p_value"),
    Metric("excess_block", "excess bootstrap block (days)", "count", "Politis-White block length", 0),
    Metric("excess_resamples", "excess bootstrap resamples", "count", decimals=0),
    Metric("timing_p_value", "timing p-value", "p_value", "rank of the agent among exposure-matched shifts"),
    Metric("timing_p_all_shifts", "timing p-value (all shifts)", "p_value"),
    Metric("timing_p_past_only", "timing p-value (past-only shifts)", "p_value"),
    Metric("timing_draws", "timing null draws", "count", decimals=0),
    Metric("timing_draws_past_only", "timing null draws (past only)", "count", decimals=0),
    Metric("timing_log_return", "timing: agent log return", "ratio"),
    Metric("timing_null_mean", "timing: null mean log return", "ratio"),
    Metric("deflated_sharpe", "deflated Sharpe ratio", "p_value", "probability the best Sharpe beats the trials'"),
    Metric("deflated_sharpe_threshold", "deflated Sharpe threshold", "ratio"),
    Metric("deflated_sharpe_trials", "trials counted", "count", decimals=0),
    Metric("pbo", "probability of backtest overfitting", "p_value",
           "CSCV: share of in/out-of-sample splits whose in-sample best member ends at or below the median"),
    Metric("pbo_oos_loss", "PBO: best member loses out of sample", "p_value", "share of splits"),
    Metric("pbo_blocks", "PBO blocks", "count", decimals=0),
    Metric("pbo_splits", "PBO splits", "count", decimals=0),
    Metric("pbo_candidates", "PBO candidates", "count", decimals=0),
    Metric("pbo_days", "PBO days", "count", decimals=0),
    Metric("best_member", "best member", "count", decimals=0),
    Metric("best_member_sharpe", "best member's Sharpe", "ratio"),
    Metric("sharpe_ci_low", "Sharpe 95% interval, low", "ratio", "moving-block bootstrap", 2),
    Metric("sharpe_ci_high", "Sharpe 95% interval, high", "ratio", "moving-block bootstrap", 2),
    # counts of a window and of a run
    Metric("days", "days", "count", decimals=0),
    Metric("episodes", "episodes", "count", decimals=0),
    Metric("members", "members", "count", decimals=0),
    Metric("chosen_member", "chosen member", "count", decimals=0),
)}
# The backtest's own figures (compute_metrics and cost_metrics) and their formulas.
METRIC_DEFINITIONS: dict[str, str] = {
    name: METRICS[name].definition for name in (*METRIC_NAMES, "gross_return", "cost_drag", "cost_drag_annual",
                                                "cost_sensitivity")}
BH_PREFIX = "bh_"  # buy & hold's figures in metrics.json
SPREAD_SUFFIXES = ("_mean", "_sd", "_min", "_max")  # the members' spread of a figure


# Whose figure a metrics.json key is. With several members (seeds, a population) the headline
# figures are the chosen member's, the excess and timing tests and their verdict are of the members'
# average (their returns pooled day by day), the deflated Sharpe ratio is of the best member, the
# `_mean/_sd/_min/_max` keys are the members' spread, the probability of backtest overfitting (`pbo`)
# is of the selection among all members; a walk-forward's pooled table is of the pooled folds. One
# agent: every figure is the agent's.
AGENT, CHOSEN, AVERAGE, BEST, SPREAD, POOLED, SELECTION = (
    "agent", "chosen member", "members' average", "best member", "members' spread", "pooled folds",
    "selection among members")
_OF_THE_AVERAGE = ("excess_", "timing_")
_OF_THE_RUN = ("members", "chosen_member", "days", "episodes")


def subject_of(key: str, members: int = 1, pooled: bool = False) -> str:
    """The subject of an agent figure (`verdict` included): one of AGENT, CHOSEN, AVERAGE, BEST,
    SPREAD, POOLED, or 'run' for counts that describe the run (members, chosen member, days)."""
    name = key[len(BH_PREFIX):] if key.startswith(BH_PREFIX) else key
    if name in _OF_THE_RUN:
        return "run"
    if pooled:
        return POOLED
    if members <= 1:
        return AGENT
    if name == "verdict" or name.startswith(_OF_THE_AVERAGE):
        return AVERAGE
    if name.startswith(("deflated_sharpe", "best_member")):
        return BEST
    if name.startswith("pbo"):
        return SELECTION
    if any(name.endswith(s) and name[: -len(s)] in METRICS for s in SPREAD_SUFFIXES):
        return SPREAD
    return CHOSEN


def verdict_with_subject(verdict: str, members: int = 1, pooled: bool = False) -> str:
    """The verdict sentence led by its subject when that is not simply the agent:
    "members' average of 4: not distinguishable from buy & hold (p = 0.94)..."."""
    subject = subject_of("verdict", members, pooled)
    if subject == AVERAGE:
        return f"{subject} of {members}: {verdict}"
    return verdict if subject == AGENT else f"{subject}: {verdict}"


def metric_of(key: str) -> Metric | None:
    """The registry entry of a metrics.json key: `bh_sharpe` and `sharpe_mean` are `sharpe`'s."""
    name = key[len(BH_PREFIX):] if key.startswith(BH_PREFIX) else key
    if name not in METRICS:
        for suffix in SPREAD_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
                return METRICS[name[: -len(suffix)]]
    return METRICS.get(name)


def label(key: str) -> str:
    """A metric key as a label: its registry label ('trades' -> 'position changes'), else the key
    with spaces."""
    metric = METRICS.get(key)
    return metric.label if metric else key.replace("_", " ")


def format_value(key: str, value: Any) -> str:
    """One figure as text, the same in the CLI, the pages and the report: percentages for
    fractions (signed where the sign is the point), integers for counts, MISSING for NaN/None."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return MISSING
    metric = metric_of(key)
    if metric is None:
        return f"{v:,.3f}"
    sign = "+" if metric.signed and not key.endswith("_sd") else ""  # a spread has no sign
    if metric.unit == "percent":
        return f"{v * 100:{sign},.{metric.decimals}f}%"
    if metric.unit == "count":
        return f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"
    if metric.unit == "times_per_year":
        return f"{v:,.{metric.decimals}f}×"
    if metric.unit == "days":
        return f"{v:,.{metric.decimals}f} d"
    if metric.unit == "p_value":
        return "< 0.001" if v < 0.001 else f"{v:.3f}"
    return f"{v:{sign},.{metric.decimals}f}"


def trade_runs(held: np.ndarray) -> list[tuple[int, int, int]]:
    """The trades of a held-position sequence as (first, end, last) period indices: periods
    first..end hold one unchanged non-zero position; `last` is end + 1 when the trade is closed to
    flat in the next period (that period carries the exit), else end. One trade definition for the
    win rate here and the trade list of the tearsheet."""
    runs = []
    n = len(held)
    k = 0
    while k < n:
        if held[k] == 0:
            k += 1
            continue
        end = k
        while end + 1 < n and held[end + 1] == held[k]:
            end += 1
        runs.append((k, end, end + 1 if (end + 1 < n and held[end + 1] == 0) else end))
        k = end + 1
    return runs


def _trade_returns(returns: np.ndarray, held: np.ndarray) -> list[float]:
    """Compounded return of each trade.

    held[k] is the position held in period k (aligned with returns[k]). A trade is a maximal run of
    one unchanged non-zero held position; its return compounds the periods of the run. When the
    run is followed by a flat period, that closing period is added too: it carries the exit fee
    (and, with next_open execution, the last overnight move of the position). When the position is
    switched directly to another non-zero one, the switching period belongs to the new trade. A
    trade still open at the end is valued at the last close.
    """
    return [float(np.prod(1.0 + returns[k : last + 1]) - 1.0) for k, _, last in trade_runs(held)]


def metrics_one(equity: np.ndarray, positions: np.ndarray, annualization: float, rf: float) -> dict[str, float]:
    nan = float("nan")
    a = float(annualization)
    n = len(equity) - 1
    out = dict.fromkeys(METRIC_NAMES, nan)
    if n < 1:
        out.update(total_return=0.0, max_drawdown=0.0, trades=0.0, exposure=0.0, turnover=0.0, trades_per_year=0.0)
        return out
    returns = equity[1:] / equity[:-1] - 1.0
    excess = returns - rf / a
    growth = equity[-1] / equity[0]
    out["total_return"] = float(growth - 1.0)
    out["cagr"] = float(growth ** (a / n) - 1.0) if growth > 0 else -1.0
    if n >= 2:
        std = float(np.std(returns, ddof=1))
        out["annual_volatility"] = std * math.sqrt(a)
        # Below 1e-12 the returns are constant up to rounding and the ratio is meaningless.
        out["sharpe"] = float(np.mean(excess)) / std * math.sqrt(a) if std > 1e-12 else nan
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    out["sortino"] = float(np.mean(excess)) / downside * math.sqrt(a) if downside > 0 else nan
    out["max_drawdown"] = float(np.min(equity / np.maximum.accumulate(equity) - 1.0))
    out["calmar"] = out["cagr"] / abs(out["max_drawdown"]) if out["max_drawdown"] < 0 else nan

    # Filled sequence 0, p_0, ..., p_{N-2}; period k (close k-1 -> close k) holds p_{k-1} after the fill.
    filled = np.concatenate([[0.0], positions[:-1]])
    changes = np.abs(np.diff(filled))
    held = positions[:-1]
    out["trades"] = float(np.count_nonzero(changes))
    trade_returns = _trade_returns(returns, held)
    if trade_returns:
        out["win_rate"] = sum(r > 0 for r in trade_returns) / len(trade_returns)
    out["exposure"] = float(np.mean(np.abs(held)))
    out["turnover"] = float(np.sum(changes) * a / n)
    out["trades_per_year"] = out["trades"] * a / n
    runs = _holding_runs(held)
    if runs:
        out["avg_holding_days"] = float(np.mean(runs))
    return out


def _holding_runs(held: np.ndarray) -> list[int]:
    """Lengths (in periods = days) of the maximal runs of one unchanged non-zero held position."""
    runs: list[int] = []
    length = 0
    for k, h in enumerate(held):
        if h != 0 and k > 0 and h == held[k - 1]:
            length += 1
            continue
        if length:
            runs.append(length)
        length = 1 if h != 0 else 0
    if length:
        runs.append(length)
    return runs


def cagr_of(growth: float, n: int, a: float) -> float:
    return float(growth ** (a / n) - 1.0) if growth > 0 else -1.0


def compute_metrics(equity, positions, annualization: float = 252, rf: float = 0.0) -> dict:
    """Metrics of METRIC_DEFINITIONS. [N] input -> {metric: float}; [S, N] -> {metric: array [S]}.

    `positions` has the shape of `equity`: the target decided at the close of each day.
    `rf` is the annual risk-free rate (rf / annualization per day).
    """
    equity = np.asarray(equity, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if equity.shape != positions.shape:
        raise ValueError(f"equity {equity.shape} and positions {positions.shape} differ")
    if equity.ndim == 1:
        return metrics_one(equity, positions, annualization, rf)
    rows = [metrics_one(e, p, annualization, rf) for e, p in zip(equity, positions, strict=True)]
    return {name: np.array([row[name] for row in rows]) for name in METRIC_NAMES}


def buy_and_hold_metrics(equity, annualization: float = 252, rf: float = 0.0) -> dict[str, float]:
    """`compute_metrics` of a buy & hold curve ([N], a position of 1 throughout). Its win rate is
    undefined (NaN, written '—'): one position held from the first day to the last is no round trip."""
    equity = np.asarray(equity, dtype=np.float64)
    out = metrics_one(equity, np.ones_like(equity), annualization, rf)
    out["win_rate"] = float("nan")
    return out


def metrics_by_symbol(symbols, equity, positions, annualization: float = 252, rf: float = 0.0) -> dict[str, dict[str, float]]:
    """{symbol: {metric: float}} for backtest/metrics.json (NaN stays NaN; rundir writes it as null)."""
    equity = np.atleast_2d(np.asarray(equity, dtype=np.float64))
    positions = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    return {
        str(sym): metrics_one(e, p, annualization, rf)
        for sym, e, p in zip(symbols, equity, positions, strict=True)
    }
