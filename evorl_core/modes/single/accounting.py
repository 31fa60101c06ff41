"""Single-asset accounting (NumPy, float64, exact), vectorised over symbols: the reference every
reported equity figure of single-asset mode comes from.

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

import numpy as np
import pandas as pd

from evorl_core.config import EXECUTION_MODES, MIN_GROWTH
from evorl_core.costs import CostModel, as_cost_model, flat, zero
from evorl_core.metrics import cagr_of, metrics_one
from evorl_core.store.rundir import EQUITY_COLUMNS  # the run-directory contract owns the column order

# Metrics that need prices and the cost model (`cost_metrics`), besides those of `compute_metrics`.
COST_METRIC_NAMES = ("gross_return", "cost_drag", "cost_drag_annual", "cost_sensitivity")
# Flat costs per side (bps) of the cost-sensitivity table: the same positions re-costed.
SENSITIVITY_BPS = (0, 10, 25, 50)


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
        "cost_drag_annual": cagr_of(gross_growth, n, a) - cagr_of(net_growth, n, a) if n >= 1 else float("nan"),
        "cost_sensitivity": {},
    }
    for bps in SENSITIVITY_BPS:
        equity = equity_curve(open_, close, positions, flat(bps), execution, initial)
        m = metrics_one(equity, positions, a, rf)
        out["cost_sensitivity"][str(bps)] = {"total_return": m["total_return"], "sharpe": m["sharpe"]}
    return out


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
