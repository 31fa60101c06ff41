"""Backtest accounting and metrics (NumPy, float64), vectorised over symbols.

Arrays are [S, N] (symbols x test days) or [N] for one symbol. The conventions are those of
docs/accounting.md:

- `positions[:, t]` is the target exposure decided at the close of day t (from data up to day t).
- The backtest starts flat with `equity[:, 0] = initial` at the close of day 0. Equity at the close
  of day t+1 follows from the step formula with p_prev = positions[:, t-1] (0 for t = 0) and
  p_new = positions[:, t]. The last position (decided at the close of the last day) is the signal
  for the next session and does not move equity inside the test.
- Metrics use the n = N-1 daily simple returns r_k = E_k / E_{k-1} - 1, k = 1..n.
- Costs are a `costs.CostModel` (per-side rates and a flat rupee charge per sell day); a plain
  number is a flat cost per unit of exposure on each side. Equity is in rupees (`initial` = the
  initial capital), because the flat charge is a fraction of the account at the fill.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .config import EXECUTION_MODES, MIN_GROWTH
from .costs import CostModel, as_cost_model, flat, zero
from .rundir import EQUITY_COLUMNS  # the run-directory contract owns the column order

METRIC_NAMES = (
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar",
    "trades", "win_rate", "exposure", "turnover", "trades_per_year", "avg_holding_days",
)
# Metrics that need prices and the cost model (`cost_metrics`), besides those of `compute_metrics`.
COST_METRIC_NAMES = ("gross_return", "cost_drag", "cost_drag_annual", "cost_sensitivity")
# Flat costs per side (bps) of the cost-sensitivity table: the same positions re-costed.
SENSITIVITY_BPS = (0, 10, 25, 50)

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


def _factor(x: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 + x, MIN_GROWTH)


def step_growth(p_prev, p_new, open_next, close_now, close_next, costs: CostModel | float, execution: str,
                equity=1.0) -> np.ndarray:
    """E_{t+1} / E_t for moving from exposure p_prev to p_new at the close of day t (docs/accounting.md).

    `equity` is E_t in rupees: the flat sell-day charge is the fraction charge / E_open of the account.
    """
    costs = as_cost_model(costs)
    p_prev, p_new = np.asarray(p_prev, dtype=np.float64), np.asarray(p_new, dtype=np.float64)
    if execution == "next_open":
        overnight = _factor(p_prev * (open_next / close_now - 1.0))
        after_fill = _factor(p_new * (close_next / open_next - 1.0))
    elif execution == "close":
        overnight = np.ones_like(p_new)
        after_fill = _factor(p_new * (close_next / close_now - 1.0))
    else:
        raise ValueError(f"execution: must be one of {', '.join(EXECUTION_MODES)} (got {execution!r})")
    e_open = np.asarray(equity, dtype=np.float64) * overnight
    charge = np.where(p_new < p_prev, costs.sell_day_charge_rupees, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        flat_fraction = np.where(charge > 0, charge / e_open, 0.0)
    fill = _factor(-(costs.c_buy * np.maximum(p_new - p_prev, 0.0) + costs.c_sell * np.maximum(p_prev - p_new, 0.0)
                     + flat_fraction))
    return overnight * fill * after_fill


def equity_curve(open_, close, positions, costs: CostModel | float, execution: str = "next_open",
                 initial: float = 1.0) -> np.ndarray:
    """Equity at the close of every test day, [S, N] (or [N] for 1-D input), starting at `initial`
    (rupees when the cost model has a flat sell-day charge)."""
    costs = as_cost_model(costs)
    open_ = np.asarray(open_, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    one_symbol = close.ndim == 1
    open_, close, positions = np.atleast_2d(open_), np.atleast_2d(close), np.atleast_2d(positions)
    if not (open_.shape == close.shape == positions.shape):
        raise ValueError(f"open {open_.shape}, close {close.shape} and positions {positions.shape} differ")
    if execution not in EXECUTION_MODES:
        raise ValueError(f"execution: must be one of {', '.join(EXECUTION_MODES)} (got {execution!r})")
    num_symbols, num_days = close.shape
    # Transition t -> t+1 for t = 0..N-2 moves from positions[t-1] (flat before day 0) to positions[t].
    p_prev = np.concatenate([np.zeros((num_symbols, 1)), positions], axis=1)[:, : num_days - 1]
    equity = np.empty((num_symbols, num_days))
    equity[:, 0] = float(initial)
    for t in range(num_days - 1):  # sequential: the flat charge depends on the equity reached
        equity[:, t + 1] = equity[:, t] * step_growth(p_prev[:, t], positions[:, t], open_[:, t + 1], close[:, t],
                                                      close[:, t + 1], costs, execution, equity[:, t])
    return equity[0] if one_symbol else equity


def buy_and_hold(open_, close, costs: CostModel | float, execution: str = "next_open", initial: float = 1.0) -> np.ndarray:
    """The benchmark: the same accounting with a constant position of 1 (one entry fee)."""
    return equity_curve(open_, close, np.ones_like(np.asarray(close, dtype=np.float64)), costs, execution, initial)


def _trade_returns(returns: np.ndarray, held: np.ndarray) -> list[float]:
    """Compounded return of each trade.

    held[k] is the position held in period k (aligned with returns[k]). A trade is a maximal run of
    one unchanged non-zero held position; its return compounds the periods of the run. When the
    run is followed by a flat period, that closing period is added too: it carries the exit fee
    (and, with next_open execution, the last overnight move of the position). When the position is
    switched directly to another non-zero one, the switching period belongs to the new trade. A
    trade still open at the end is valued at the last close.
    """
    trades = []
    n = len(held)
    k = 0
    while k < n:
        if held[k] == 0:
            k += 1
            continue
        end = k
        while end + 1 < n and held[end + 1] == held[k]:
            end += 1
        last = end + 1 if (end + 1 < n and held[end + 1] == 0) else end
        trades.append(float(np.prod(1.0 + returns[k : last + 1]) - 1.0))
        k = end + 1
    return trades


def _metrics_one(equity: np.ndarray, positions: np.ndarray, annualization: float, rf: float) -> dict[str, float]:
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


def _cagr(growth: float, n: int, a: float) -> float:
    return float(growth ** (a / n) - 1.0) if growth > 0 else -1.0


def cost_metrics(open_, close, positions, costs: CostModel | float, execution: str = "next_open",
                 initial: float = 1.0, annualization: float = 252, rf: float = 0.0) -> dict:
    """What the costs took, for one symbol ([N] arrays): `gross_return` (the same positions at zero
    cost), `cost_drag` = gross - net total return, `cost_drag_annual` = gross CAGR - net CAGR, and
    `cost_sensitivity` = {bps: {total_return, sharpe}} at a flat cost of SENSITIVITY_BPS per side."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 1:
        raise ValueError(f"cost_metrics takes one symbol's [N] arrays (got positions {positions.shape})")
    n = len(positions) - 1
    a = float(annualization)
    net = equity_curve(open_, close, positions, costs, execution, initial)
    gross = equity_curve(open_, close, positions, zero(), execution, initial)
    net_growth, gross_growth = net[-1] / net[0], gross[-1] / gross[0]
    out: dict = {
        "gross_return": float(gross_growth - 1.0),
        "cost_drag": float(gross_growth - net_growth),
        "cost_drag_annual": _cagr(gross_growth, n, a) - _cagr(net_growth, n, a) if n >= 1 else float("nan"),
        "cost_sensitivity": {},
    }
    for bps in SENSITIVITY_BPS:
        equity = equity_curve(open_, close, positions, flat(bps), execution, initial)
        m = _metrics_one(equity, positions, a, rf)
        out["cost_sensitivity"][str(bps)] = {"total_return": m["total_return"], "sharpe": m["sharpe"]}
    return out


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
        return _metrics_one(equity, positions, annualization, rf)
    rows = [_metrics_one(e, p, annualization, rf) for e, p in zip(equity, positions, strict=True)]
    return {name: np.array([row[name] for row in rows]) for name in METRIC_NAMES}


def metrics_by_symbol(symbols, equity, positions, annualization: float = 252, rf: float = 0.0) -> dict[str, dict[str, float]]:
    """{symbol: {metric: float}} for backtest/metrics.json (NaN stays NaN; rundir writes it as null)."""
    equity = np.atleast_2d(np.asarray(equity, dtype=np.float64))
    positions = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    return {
        str(sym): _metrics_one(e, p, annualization, rf)
        for sym, e, p in zip(symbols, equity, positions, strict=True)
    }


def backtest_rows(dates, symbol, open_, close, positions, equity, benchmark) -> pd.DataFrame:
    """Rows of backtest/equity.csv for one symbol: one per test day, dates as YYYY-MM-DD."""
    dates = pd.to_datetime(np.asarray(dates))
    return pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),
            "symbol": [str(symbol)] * len(dates),
            "open": np.asarray(open_, dtype=np.float64),
            "close": np.asarray(close, dtype=np.float64),
            "position": np.asarray(positions, dtype=np.float64),
            "equity": np.asarray(equity, dtype=np.float64),
            "benchmark_equity": np.asarray(benchmark, dtype=np.float64),
        },
        columns=EQUITY_COLUMNS,
    )
