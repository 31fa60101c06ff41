"""Baseline strategies in the backtest's own accounting (docs/accounting.md, docs/evaluation.md).

Every rule returns target positions with the convention of `accounting`: `positions[t]` is decided at
the close of day t from closes up to and including day t (tests/test_significance.py checks that
changing later prices never changes an earlier position). Rules that need a warm-up (moving
averages, look-back returns) take the closes before the test window as `prior_close`; without
enough history they stay flat until they can decide.

Baselines: flat, buy & hold, exposure-matched random timing (the agent's own held positions
circularly shifted in time: same exposure, nearly the same trades, no information about the
prices it meets), SMA crossover, time-series momentum, and the equal-weight buy & hold portfolio
of all symbols (each symbol gets 1/S of the capital on day 0; no rebalancing).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from evorl_core.metrics import METRIC_NAMES, compute_metrics
from evorl_core.modes.single.accounting import buy_and_hold, equity_curve

SMA_FAST, SMA_SLOW = 20, 50  # days
MOMENTUM_LOOKBACK = 60  # days
RANDOM_DRAWS = 200  # random-timing draws averaged in the baseline table
EXCLUDE_BACKWARD = 1  # days: look-back shifts left out of random timing (they see the future)
RULES = ("flat", "buy_hold", "sma_crossover", "momentum")
BASELINES = ("flat", "buy_hold", "random_timing", "sma_crossover", "momentum")
PORTFOLIO = "equal_weight_buy_hold"


# ---------------------------------------------------------------- rules (positions)
def trailing_mean(close: np.ndarray, window: int) -> np.ndarray:
    """Mean of the closes t-window+1 .. t at each day t (NaN for the first window-1 days)."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape, np.nan)
    if window <= close.size:
        csum = np.concatenate([[0.0], np.cumsum(close)])
        out[window - 1:] = (csum[window:] - csum[:-window]) / window
    return out


def flat_positions(close: np.ndarray) -> np.ndarray:
    return np.zeros(np.shape(close))


def buy_hold_positions(close: np.ndarray) -> np.ndarray:
    return np.ones(np.shape(close))


def sma_crossover_positions(close: np.ndarray, fast: int = SMA_FAST, slow: int = SMA_SLOW,
                            invested: float = 1.0, out: float = 0.0) -> np.ndarray:
    """`invested` while the fast moving average of the closes is above the slow one, else `out`."""
    f, s = trailing_mean(close, fast), trailing_mean(close, slow)
    return np.where(np.isfinite(s) & (f > s), invested, out).astype(np.float64)


def momentum_positions(close: np.ndarray, lookback: int = MOMENTUM_LOOKBACK,
                       invested: float = 1.0, out: float = 0.0) -> np.ndarray:
    """Time-series momentum: `invested` while the close is above the close `lookback` days earlier."""
    close = np.asarray(close, dtype=np.float64)
    past = np.full(close.shape, np.nan)
    past[lookback:] = close[:-lookback] if lookback else close
    return np.where(np.isfinite(past) & (close > past), invested, out).astype(np.float64)


def rule_positions(name: str, close: np.ndarray, prior_close: np.ndarray | None = None) -> np.ndarray:
    """Positions of rule `name` (one of RULES) on the days of `close`, warmed up on `prior_close`."""
    rules = {"flat": flat_positions, "buy_hold": buy_hold_positions,
             "sma_crossover": sma_crossover_positions, "momentum": momentum_positions}
    if name not in rules:
        raise ValueError(f"unknown rule {name!r}; choose one of {', '.join(rules)}")
    close = np.asarray(close, dtype=np.float64)
    history = np.asarray(prior_close if prior_close is not None else [], dtype=np.float64)
    full = np.concatenate([history, close])
    return rules[name](full)[history.size:]


# ---------------------------------------------------------------- exposure-matched random timing
def timing_shifts(num_held: int, exclude_backward: int = EXCLUDE_BACKWARD, n_shifts: int | None = None,
                  seed: int = 0) -> np.ndarray:
    """Circular shifts of a held sequence of num_held periods used as random timing: every shift of
    the circle except 0 and the `exclude_backward` shifts that move positions back by 1 ..
    exclude_backward days (a position decided at the close of day t, moved back one day, is held over
    day t itself: it trades on its own future). All of them when there are at most n_shifts, else
    n_shifts drawn without replacement (seeded)."""
    shifts = np.arange(1, num_held - max(0, int(exclude_backward)))
    if n_shifts is not None and shifts.size > n_shifts:
        shifts = np.sort(np.random.default_rng(seed).choice(shifts, size=n_shifts, replace=False))
    return shifts


def shift_held(positions: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Positions whose held part is circularly shifted: [..., N] -> [K, ..., N].

    The held sequence is positions[..., :N-1] (the last position is the next-session signal and never
    moves equity). Shifting it by s moves the position held in period k to period k + s (mod N-1):
    the multiset of held positions, hence the exposure, is kept exactly; the number of position
    changes (trades) changes by at most 2 (the cut of the circle and the start from flat).
    """
    positions = np.asarray(positions, dtype=np.float64)
    held, last = positions[..., :-1], positions[..., -1:]
    n = held.shape[-1]
    shifts = np.asarray(shifts, dtype=np.int64)
    idx = (np.arange(n)[None, :] - shifts[:, None]) % n  # [K, n]
    shifted = np.take(held, idx, axis=-1)  # [..., K, n]
    shifted = np.moveaxis(shifted, -2, 0)  # [K, ..., n]
    return np.concatenate([shifted, np.broadcast_to(last, shifted.shape[:-1] + (1,))], axis=-1)


def random_timing_positions(reference: np.ndarray, rng: np.random.Generator,
                            exclude_backward: int = EXCLUDE_BACKWARD) -> np.ndarray:
    """One draw of exposure-matched random timing: `reference` held positions shifted by a random
    shift of `timing_shifts` (one draw of the null of the timing test in `significance`)."""
    reference = np.asarray(reference, dtype=np.float64)
    shifts = timing_shifts(reference.shape[-1] - 1, exclude_backward)
    if shifts.size == 0:
        return reference.copy()
    return shift_held(reference, rng.choice(shifts, size=1))[0]


# ---------------------------------------------------------------- tables
def _row(equity: np.ndarray, positions: np.ndarray, annualization: float) -> dict[str, float]:
    return compute_metrics(equity, positions, annualization)


def baseline_table(open_: np.ndarray, close: np.ndarray, cost: float, execution: str = "next_open", *,
                   prior_close: np.ndarray | None = None, reference_positions: np.ndarray | None = None,
                   annualization: float = 252.0, n_random: int = RANDOM_DRAWS,
                   exclude_backward: int = EXCLUDE_BACKWARD, seed: int = 0) -> pd.DataFrame:
    """Metrics (metrics.compute_metrics) of every baseline on one symbol's test days.

    Rows: flat, buy_hold, sma_crossover, momentum and, when `reference_positions` (the agent's) is
    given, random_timing: the mean of each metric over `n_random` random circular shifts of the
    reference's held positions. Columns: metrics.METRIC_NAMES.
    """
    open_ = np.asarray(open_, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    rows: dict[str, dict[str, float]] = {}
    for name in RULES:
        pos = rule_positions(name, close, prior_close)
        rows[name] = _row(equity_curve(open_, close, pos, cost, execution), pos, annualization)
    if reference_positions is not None:
        ref = np.asarray(reference_positions, dtype=np.float64)
        shifts = timing_shifts(close.size - 1, exclude_backward)
        if shifts.size:
            rng = np.random.default_rng(seed)
            pos = shift_held(ref, rng.choice(shifts, size=n_random))  # [K, N]
            k = pos.shape[0]
            eq = equity_curve(np.broadcast_to(open_, (k, close.size)), np.broadcast_to(close, (k, close.size)),
                              pos, cost, execution)
            m = compute_metrics(eq, pos, annualization)
            with np.errstate(all="ignore"):
                rows["random_timing"] = {name: float(np.nanmean(v)) if np.any(np.isfinite(v)) else float("nan")
                                         for name, v in m.items()}
    order = [b for b in BASELINES if b in rows]
    return pd.DataFrame.from_dict({b: rows[b] for b in order}, orient="index", columns=list(METRIC_NAMES))


def portfolio_equity(equities: np.ndarray) -> np.ndarray:
    """Equal-weight portfolio without rebalancing: each of the S accounts starts with 1/S of the
    capital, so the portfolio's equity is the mean of the S equity curves (aligned by test day)."""
    return np.mean(np.atleast_2d(np.asarray(equities, dtype=np.float64)), axis=0)


def baselines_by_symbol(markets: Mapping[str, tuple], cost: float, execution: str = "next_open", *,
                        annualization: float = 252.0, seed: int = 0) -> pd.DataFrame:
    """Baseline metrics of several symbols and of their equal-weight buy & hold portfolio.

    markets: {symbol: (open_, close) or (open_, close, prior_close)} over the same number of test
    days. Returns a frame indexed by (symbol, baseline); the portfolio's row is ("portfolio",
    "equal_weight_buy_hold") (days aligned by position in the test window).
    """
    frames, bh = [], []
    for symbol, arrays in markets.items():
        open_, close, *rest = arrays
        table = baseline_table(open_, close, cost, execution, prior_close=rest[0] if rest else None,
                               annualization=annualization, seed=seed)
        frames.append(table.set_index(pd.MultiIndex.from_product([[symbol], table.index])))
        bh.append(buy_and_hold(open_, close, cost, execution))
    if bh:
        lengths = {len(e) for e in bh}
        if len(lengths) != 1:
            raise ValueError(f"symbols have different test lengths {sorted(lengths)}; the portfolio needs one")
        eq = portfolio_equity(np.stack(bh))
        row = compute_metrics(eq, np.ones_like(eq), annualization)
        frames.append(pd.DataFrame([row], columns=list(METRIC_NAMES),
                                   index=pd.MultiIndex.from_tuples([("portfolio", PORTFOLIO)])))
    if not frames:
        return pd.DataFrame(columns=list(METRIC_NAMES))
    out = pd.concat(frames)
    out.index.names = ["symbol", "baseline"]
    return out
