"""Portfolio accounting (NumPy, float64, rupees): the reference the JAX env is tested against and
the source of every reported portfolio figure.

Written literally from docs/portfolio.md, in rupees: the account holds `values[i]` rupees of each
asset and `cash`; each day it drifts overnight, trades at the fill, pays its costs, and drifts to
the close. `simulate` runs a whole window from a list of target weights (or a rule that chooses
them from the drifted weights, for the buy & hold baseline).

Conventions (as in single-asset mode): `targets[k]` is decided at the close of day k of the window
(from data up to day k); equity[0] is the initial capital at the close of day 0; the last target is
the signal for the next session and moves nothing inside the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evorl_core.config import EXECUTION_MODES, MIN_GROWTH
from evorl_core.costs import CostModel, as_cost_model


@dataclass
class Path:
    """What one window of the account did (T days, N assets)."""

    equity: np.ndarray  # [T] rupees at each close
    weights: np.ndarray  # [T, N + 1] weights at each close (after drift), cash last
    traded: np.ndarray  # [T] fraction of E_open traded at the fill after day k's decision (0 for the last day)
    costs: np.ndarray  # [T] rupees paid at that fill
    sold_scrips: np.ndarray  # [T] assets sold at that fill (each pays the flat charge)
    pnl: np.ndarray  # [N] rupees earned by each asset's price moves over the window
    held: np.ndarray  # [T, N + 1] weights held after each fill (what was chosen, after the band), cash last


def masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """NumPy twin of the env's target weights: softmax over the assets in `mask` and cash."""
    valid = np.concatenate([np.asarray(mask, bool), [True]])
    z = np.where(valid, np.asarray(scores, np.float64), -np.inf)
    z = np.exp(z - z[valid].max())
    return z / z.sum()


def trade(drifted: np.ndarray, target: np.ndarray, mask: np.ndarray, band: float) -> np.ndarray:
    """[N + 1] weights after the fill, from the drifted weights and the target (both [N + 1]).

    A difference of at most `band` is not traded; an asset outside `mask` that is held is sold;
    buys are scaled down when cash plus what is sold cannot pay for them.
    """
    d = np.asarray(target[:-1], np.float64) - drifted[:-1]
    keep = (np.abs(d) > band) | (~np.asarray(mask, bool) & (drifted[:-1] > 0))
    d = np.where(keep, d, 0.0)
    sold, bought = np.maximum(-d, 0.0).sum(), np.maximum(d, 0.0).sum()
    available = drifted[-1] + sold
    if bought > available:
        d = np.where(d > 0, d * available / bought, d)
        bought = available
    assets = np.maximum(drifted[:-1] + d, 0.0)
    return np.concatenate([assets, [max(drifted[-1] + sold - bought, 0.0)]])


def simulate(open_: np.ndarray, close: np.ndarray, tradable: np.ndarray, targets: np.ndarray | Callable,
             costs: CostModel | float, *, band: float = 0.0, execution: str = "next_open",
             initial: float = 1.0, initial_weights: np.ndarray | None = None) -> Path:
    """Run the account over a window of T days of N assets.

    open_, close, tradable: [N, T]. targets: [T, N + 1] target weights decided at each close, or
    `rule(k, drifted [N + 1], mask [N]) -> target [N + 1]`. Starts all in cash, or holding
    `initial_weights` ([N + 1], at the close of the first day) of `initial` rupees.
    """
    if execution not in EXECUTION_MODES:
        raise ValueError(f"execution: must be one of {', '.join(EXECUTION_MODES)} (got {execution!r})")
    costs = as_cost_model(costs)
    open_, close = np.asarray(open_, np.float64), np.asarray(close, np.float64)
    tradable = np.asarray(tradable, bool)
    n, horizon = close.shape
    equity = np.empty(horizon)
    weights = np.zeros((horizon, n + 1))
    held = np.zeros((horizon, n + 1))
    traded, paid, sold_n = np.zeros(horizon), np.zeros(horizon), np.zeros(horizon)
    pnl = np.zeros(n)
    equity[0] = float(initial)
    if initial_weights is None:
        weights[0, -1] = 1.0
    else:
        weights[0] = np.asarray(initial_weights, np.float64)
    values, cash = weights[0, :-1] * equity[0], float(weights[0, -1] * equity[0])  # rupees at the close of day k
    for k in range(horizon - 1):
        # overnight to the fill
        if execution == "next_open":
            moved = np.where(values > 0, values * (open_[:, k + 1] / close[:, k]), 0.0)
        else:
            moved = values.copy()
        pnl += moved - values
        e_open = cash + moved.sum()
        drifted = np.concatenate([moved, [cash]]) / e_open
        target = targets(k, drifted, tradable[:, k]) if callable(targets) else np.asarray(targets[k], np.float64)
        after = trade(drifted, target, tradable[:, k], band)
        d = after[:-1] - drifted[:-1]
        bought, sold = np.maximum(d, 0.0).sum(), np.maximum(-d, 0.0).sum()
        n_sold = int((d < 0).sum())
        cost = e_open * (costs.c_buy * bought + costs.c_sell * sold) + n_sold * costs.sell_day_charge_rupees
        e_fill = max(e_open - cost, MIN_GROWTH * e_open)
        traded[k], paid[k], sold_n[k] = bought + sold, e_open - e_fill, n_sold
        held[k] = after
        values, cash = after[:-1] * e_fill, after[-1] * e_fill
        # fill to the close of day k + 1
        start = open_[:, k + 1] if execution == "next_open" else close[:, k]
        grown = np.where(values > 0, values * (close[:, k + 1] / start), 0.0)
        pnl += grown - values
        values = grown
        equity[k + 1] = cash + values.sum()
        weights[k + 1] = np.concatenate([values, [cash]]) / equity[k + 1]
    if horizon:
        last = targets(horizon - 1, weights[-1], tradable[:, -1]) if callable(targets) else targets[-1]
        held[-1] = np.asarray(last, np.float64)
    return Path(equity=equity, weights=weights, traded=traded, costs=paid, sold_scrips=sold_n, pnl=pnl, held=held)


# -- the baselines, in the same accounting ---------------------------------------------------------
def equal_weight_targets(tradable: np.ndarray) -> np.ndarray:
    """[T, N + 1]: 1/N over the assets tradable on each day (all cash on a day with none)."""
    tradable = np.asarray(tradable, bool).T
    count = tradable.sum(axis=1, keepdims=True)
    assets = np.where(count > 0, tradable / np.maximum(count, 1), 0.0)
    return np.concatenate([assets, (count == 0).astype(np.float64)], axis=1)


def buy_and_hold_rule(tradable: np.ndarray) -> Callable:
    """Equal weights over the assets tradable on the first day, then no trade (a holding whose data
    ends is sold, and newly listed assets are not bought)."""
    first = equal_weight_targets(tradable)[0]

    def rule(k: int, drifted: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return first if k == 0 else drifted

    return rule


def cash_targets(num_assets: int, num_days: int) -> np.ndarray:
    out = np.zeros((num_days, num_assets + 1))
    out[:, -1] = 1.0
    return out
