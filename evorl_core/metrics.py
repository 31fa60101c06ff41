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

import numpy as np

METRIC_NAMES = (
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar",
    "trades", "win_rate", "exposure", "turnover", "trades_per_year", "avg_holding_days",
)

METRIC_DEFINITIONS: dict[str, str] = {
    "total_return": "E_end / E_0 - 1",
    "cagr": "(E_end / E_0) ^ (A / n) - 1, n = number of daily returns (test days - 1)",
    "annual_volatility": "std(r, ddof=1) * sqrt(A), r = daily simple returns E_k / E_{k-1} - 1",
    "sharpe": "mean(r - rf/A) / std(r, ddof=1) * sqrt(A); NaN if std = 0",
    "sortino": "mean(r - rf/A) / sqrt(mean(min(r - rf/A, 0)^2)) * sqrt(A); NaN without a down day",
    "max_drawdown": "min over k of E_k / max(E_0..E_k) - 1 (0 or negative)",
    "calmar": "cagr / |max_drawdown|; NaN if max_drawdown = 0",
    "trades": "number of position changes in the filled sequence 0, p_0, ..., p_{N-2}",
    "win_rate": "winning trades / trades, a trade = a run of one unchanged non-zero held position "
                "(closing day included when it ends flat); NaN without trades",
    "exposure": "mean |held position| over the n daily periods",
    "turnover": "sum |change of position| over the filled sequence * A / n (exposure traded per year)",
    "trades_per_year": "trades * A / n (fills per year)",
    "avg_holding_days": "mean length in days of the runs of one unchanged non-zero held position "
                        "(closing day not included); NaN without a position",
    "gross_return": "total return of the same positions with zero costs",
    "cost_drag": "gross_return - total_return (return lost to costs over the test)",
    "cost_drag_annual": "CAGR of the gross equity - cagr (return lost to costs per year)",
    "cost_sensitivity": "net total_return and sharpe of the same positions at a flat 0 / 10 / 25 / 50 bps "
                        "per side (no flat charge)",
}


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


def metrics_by_symbol(symbols, equity, positions, annualization: float = 252, rf: float = 0.0) -> dict[str, dict[str, float]]:
    """{symbol: {metric: float}} for backtest/metrics.json (NaN stays NaN; rundir writes it as null)."""
    equity = np.atleast_2d(np.asarray(equity, dtype=np.float64))
    positions = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    return {
        str(sym): metrics_one(e, p, annualization, rf)
        for sym, e, p in zip(symbols, equity, positions, strict=True)
    }
