"""The questions a backtest must answer, with calibrated p-values (docs/evaluation.md).

For one symbol and one or more agents (members: seeds, folds, population members) on the same test
days, `symbol_report` asks:

1. Excess over buy & hold: is the mean daily difference of net returns (agent minus buy & hold,
   both in the same accounting) zero? Two-sided: stationary block bootstrap-t and Student's t, the
   more cautious of the two (`stats.mean_test`);
   several members are pooled by averaging their daily differences day by day, so the resampled
   time blocks stay paired.
2. Timing skill against an exposure-matched null: is the agent's log return larger than what the
   same positions earn at random times? The null draws shift the held positions circularly in time
   (`baselines.shift_held`: exposure kept exactly, trades within 2) and recompute net equity with
   `accounting.equity_curve`; p = (1 + #{null >= observed}) / (K + 1), the larger of two shift sets
   (`timing_test`).
   Several members are shifted together (one shift per draw) and their mean log return compared
   with the mean of the shifted members, which keeps the dependence between members in the null.
3. When a best member is picked from several, the deflated Sharpe ratio of the pick
   (`stats.deflated_sharpe_ratio`, with every member counted as a trial).

`verdict` turns the answers into one line of plain words. Each claim it can make ("beats buy &
hold", "worse than buy & hold", "timing skill") needs a one-sided p below alpha / 2, so a false
claim of skill (either kind) has probability at most about alpha (Bonferroni over the two tests;
measured in benchmarks/calibration.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evorl_core.config import TrainConfig
from evorl_core.evaluation.pbo import pbo_report
from evorl_core.evaluation.stats import deflated_sharpe_ratio, mean_test, sharpe_ratio
from evorl_core.modes.single.accounting import buy_and_hold, equity_curve
from evorl_core.modes.single.baselines import baseline_table, shift_held, timing_shifts

ALPHA = 0.05
EXCESS_LEVEL = ALPHA  # two-sided excess p below this: "beats" / "worse than buy & hold"
TIMING_LEVEL = ALPHA / 2  # timing p below this: "timing skill"
N_BOOT = 2000  # bootstrap resamples of the excess test
N_SHIFTS = 999  # most circular shifts drawn by the timing test (all valid shifts when fewer)
LEVEL = 0.95
BASELINE_KEYS = ("total_return", "sharpe", "max_drawdown", "trades", "exposure")


def count_trials(config: TrainConfig, rounds: int | None = None) -> int:
    """Trials behind a reported agent, counted honestly for the deflated Sharpe ratio: every member,
    and for a population every member of every generation (one per PBT round plus the first)."""
    if not config.evolving:
        return config.members
    rounds = config.num_updates // config.pbt_interval if rounds is None else rounds
    return config.members * (rounds + 1)


def _members(positions_by_member: np.ndarray, num_days: int) -> np.ndarray:
    pos = np.asarray(positions_by_member, dtype=np.float64)
    pos = pos[None, :] if pos.ndim == 1 else pos
    if pos.ndim != 2 or pos.shape[1] != num_days or pos.shape[0] < 1:
        raise ValueError(f"positions_by_member must be [members, {num_days}] (got {np.shape(positions_by_member)})")
    return pos


def _equities(open_: np.ndarray, close: np.ndarray, positions: np.ndarray, cost: float, execution: str) -> np.ndarray:
    """Equity curves [R, N] of position rows [R, N] on one symbol's prices [N]."""
    rows, n = positions.shape
    return equity_curve(np.broadcast_to(open_, (rows, n)), np.broadcast_to(close, (rows, n)),
                        positions, cost, execution)


def excess_test(open_: np.ndarray, close: np.ndarray, positions_by_member: np.ndarray, cost: float,
                execution: str = "next_open", *, annualization: float = 252.0, n_boot: int = N_BOOT,
                block: int | None = None, level: float = LEVEL, seed: int = 0) -> dict[str, Any]:
    """Mean daily excess of the agent's net returns over buy & hold's (annualised), its interval and
    two-sided p-value; members pooled day by day."""
    open_, close = np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64)
    pos = _members(positions_by_member, close.size)
    eq = _equities(open_, close, pos, cost, execution)
    bh = buy_and_hold(open_, close, cost, execution)
    diff = (eq[:, 1:] / eq[:, :-1]) - (bh[1:] / bh[:-1])[None, :]
    res = mean_test(diff.mean(axis=0), annualization, level, n_boot, block, seed)
    return {"excess_mean_annual": res["mean"], "excess_ci_low": res["ci_low"], "excess_ci_high": res["ci_high"],
            "excess_p_value": res["p_value"], "excess_p_bootstrap": res["p_bootstrap"],
            "excess_p_student": res["p_student"], "excess_block": res["block"], "excess_resamples": int(n_boot)}


def _rank_p(null: np.ndarray, observed: float) -> float:
    """(1 + #{null >= observed}) / (K + 1); ties (e.g. an always-invested agent, whose shifts are all
    the same strategy) count against the agent."""
    if null.size == 0:
        return 1.0
    tol = 1e-12 * max(1.0, abs(observed))
    return (1 + int(np.count_nonzero(null >= observed - tol))) / (null.size + 1)


def timing_test(open_: np.ndarray, close: np.ndarray, positions_by_member: np.ndarray, cost: float,
                execution: str = "next_open", *, n_shifts: int = N_SHIFTS, lookback: int = 1,
                seed: int = 0) -> dict[str, Any]:
    """One-sided p-value of the mean member log return against its circularly shifted positions.

    Shift s moves the held position of period k to period k + s (mod N-1) (`baselines.shift_held`:
    exposure kept exactly, trades within 2); net equity is recomputed with `accounting.equity_curve`.
    Two sets of shifts give two p-values, and the test reports the larger:

    - every shift but the one-day look-back (`timing_p_all_shifts`): with every rotation of the circle
      the test would be exact for positions that do not depend on prices; the one-day look-back holds
      a position over the very day that decided it, so it is always left out;
    - only shifts that keep every decision away from the returns it read (`timing_p_past_only`): a
      decision reading the last `lookback` days, moved back d <= lookback days, trades on returns it
      has seen, so those shifts are left out too.

    For trend-following decisions the first set is too hard to beat (their look-back shifts profit
    from hindsight) and the second too easy (an arc of the circle rather than the whole circle: its
    end sits next to the observed result); for contrarian decisions the first set is the easier one.
    Requiring both keeps the measured false-positive rate near or below the nominal level for rules
    of either kind (docs/evaluation.md). With at most `n_shifts` shifts
    all are used, else `n_shifts` drawn without replacement (seeded).
    """
    open_, close = np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64)
    pos = _members(positions_by_member, close.size)
    num_held = close.size - 1
    out: dict[str, Any] = {"timing_p_value": None, "timing_p_all_shifts": None, "timing_p_past_only": None,
                           "timing_log_return": None, "timing_null_mean": None, "timing_draws": 0,
                           "timing_draws_past_only": 0}
    shifts = timing_shifts(num_held, 1, n_shifts, seed)
    if shifts.size == 0:
        return out
    observed = float(np.mean(np.log(_equities(open_, close, pos, cost, execution)[:, -1])))
    null = np.empty(shifts.size)
    chunk = max(1, 2_000_000 // pos.size)  # bound the [K, M, N] work arrays
    for start in range(0, shifts.size, chunk):
        part = shift_held(pos, shifts[start:start + chunk])  # [k, M, N]; one shift for all members
        k = part.shape[0]
        eq = _equities(open_, close, part.reshape(k * pos.shape[0], close.size), cost, execution)
        null[start:start + k] = np.log(eq[:, -1]).reshape(k, pos.shape[0]).mean(axis=1)
    # shift s moves positions back by num_held - s days: keep those moved back by more than lookback
    past_only = null[shifts < num_held - max(1, int(lookback))]
    p_all, p_past = _rank_p(null, observed), _rank_p(past_only, observed)
    out.update(timing_p_value=max(p_all, p_past), timing_p_all_shifts=p_all, timing_p_past_only=p_past,
               timing_log_return=observed, timing_null_mean=float(null.mean()), timing_draws=int(null.size),
               timing_draws_past_only=int(past_only.size))
    return out


def _p_text(p: float) -> str:
    if p < 0.001:  # never "p = 0.000": a bootstrap or permutation p-value is not zero
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(excess: dict[str, Any], timing: dict[str, Any], excess_level: float = EXCESS_LEVEL,
            timing_level: float = TIMING_LEVEL, benchmark: str = "buy & hold") -> tuple[str, dict[str, bool]]:
    """One line in plain words and the claims it makes: {"beats", "worse", "timing"}.

    "beats" / "worse than buy & hold" when the two-sided excess p-value is below `excess_level` (in the
    direction of the mean: a significantly negative excess is always worded "worse"), "timing
    skill" when the timing p-value is below `timing_level`. With the defaults every claim is made at
    a one-sided 2.5%, so a false claim of skill of either kind has probability at most about 5%.
    """
    p_ex, mean = excess.get("excess_p_value"), excess.get("excess_mean_annual")
    p_tm = timing.get("timing_p_value")
    claims = {"beats": False, "worse": False, "timing": False}
    if p_ex is None or mean is None:
        ex_text = f"too few days to compare with {benchmark}"
    elif p_ex < excess_level and mean > 0:
        claims["beats"] = True
        ex_text = f"beats {benchmark} ({_p_text(p_ex)})"
    elif p_ex < excess_level and mean < 0:
        claims["worse"] = True
        ex_text = f"worse than {benchmark} ({_p_text(p_ex)})"
    else:
        ex_text = f"not distinguishable from {benchmark} ({_p_text(p_ex)})"
    if p_tm is None:
        tm_text = "too few days to test timing"
    elif p_tm < timing_level:
        claims["timing"] = True
        tm_text = f"timing skill ({_p_text(p_tm)})"
    elif p_tm < 2 * timing_level:  # between the one-sided level and the usual 5%: say why no claim
        tm_text = f"no evidence of timing skill (p = {p_tm:.3f}; a claim needs p < {timing_level:g})"
    else:
        tm_text = f"no evidence of timing skill ({_p_text(p_tm)})"
    return f"{ex_text}; {tm_text}", claims


def best_member_deflated(open_: np.ndarray, close: np.ndarray, positions_by_member: np.ndarray, cost: float,
                         execution: str = "next_open", *, n_trials: int | None = None,
                         trials_sharpe_variance: float | None = None, annualization: float = 252.0) -> dict:
    """The member with the highest Sharpe ratio and its deflated Sharpe ratio, and the members'
    probability of backtest overfitting (`pbo.pbo_report`: pbo, pbo_* keys; with 2+ members).

    n_trials defaults to the number of members; pass more when more configurations were tried on these
    days. The variance of the trials' Sharpe ratios defaults to that of the members (annualised).
    """
    pos = _members(positions_by_member, np.size(close))
    eq = _equities(np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64), pos, cost, execution)
    returns = eq[:, 1:] / eq[:, :-1] - 1.0
    sharpes = sharpe_ratio(returns, annualization, axis=1)
    if not np.any(np.isfinite(sharpes)):
        return {}
    best = int(np.nanargmax(sharpes))
    trials = max(int(n_trials or 0), pos.shape[0])
    if trials_sharpe_variance is None:
        finite = sharpes[np.isfinite(sharpes)]
        trials_sharpe_variance = float(np.var(finite, ddof=1)) if finite.size > 1 else 0.0
    dsr = deflated_sharpe_ratio(returns[best], trials, trials_sharpe_variance, annualization)
    return {"best_member": best, "best_member_sharpe": dsr["sharpe"], "deflated_sharpe": dsr["dsr"],
            "deflated_sharpe_threshold": dsr["sharpe0"], "deflated_sharpe_trials": trials,
            **pbo_report(returns)}  # the members' probability of backtest overfitting (CSCV)


def symbol_report(open_: np.ndarray, close: np.ndarray, positions_by_member: np.ndarray, *, cost: float,
                  execution: str = "next_open", annualization: float = 252.0, seed: int = 0,
                  prior_close: np.ndarray | None = None, alpha: float = ALPHA, n_boot: int = N_BOOT,
                  block: int | None = None, n_shifts: int = N_SHIFTS, lookback: int = 1,
                  n_trials: int | None = None, trials_sharpe_variance: float | None = None,
                  baselines: bool = True) -> dict[str, Any]:
    """Excess test, timing test, verdict and baselines for one symbol.

    positions_by_member: [M, N] positions of M agents (or [N] for one) on the N test days, with the
    conventions of the single-asset `accounting`. lookback: how many days of past prices one decision reads (the agent's
    observation window): shifts that move a decision back by d <= lookback days read the very returns
    they then trade on (see `timing_test`). prior_close: the closes before the test window (warm-up
    of the rule baselines). alpha: the verdict's family level (excess claims at alpha two-sided,
    timing claims at alpha / 2).

    Returns flat keys (excess_*, timing_*, verdict) for backtest/metrics.json, plus "baselines":
    {name: {metric: value}} (random timing shifts the first member's positions) and, when a best
    member can be picked (M > 1, or n_trials > 1 with trials_sharpe_variance given), its deflated
    Sharpe ratio (best_member, deflated_sharpe, ...) with max(M, n_trials) trials.
    """
    open_, close = np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64)
    pos = _members(positions_by_member, close.size)
    excess = excess_test(open_, close, pos, cost, execution, annualization=annualization, n_boot=n_boot,
                         block=block, seed=seed)
    timing = timing_test(open_, close, pos, cost, execution, n_shifts=n_shifts, lookback=lookback, seed=seed)
    text, _ = verdict(excess, timing, alpha, alpha / 2)
    report: dict[str, Any] = {**excess, **timing, "verdict": text}
    if pos.shape[0] > 1:
        report["members"] = int(pos.shape[0])
    if pos.shape[0] > 1 or ((n_trials or 1) > 1 and trials_sharpe_variance is not None):
        report.update(best_member_deflated(open_, close, pos, cost, execution, n_trials=n_trials,
                                           trials_sharpe_variance=trials_sharpe_variance,
                                           annualization=annualization))
    if baselines:
        table = baseline_table(open_, close, cost, execution, prior_close=prior_close,
                               reference_positions=pos[0], annualization=annualization,
                               exclude_backward=lookback, seed=seed)
        report["baselines"] = {name: {k: float(row[k]) for k in BASELINE_KEYS} for name, row in table.iterrows()}
    return report
