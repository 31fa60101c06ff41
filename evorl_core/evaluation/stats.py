"""Honest statistics for short backtests (pure NumPy/SciPy; deterministic given a seed).

- `sharpe_confidence_interval`: a moving-block bootstrap interval of the annualised Sharpe ratio.
  "Significant" there means "different from staying flat", which is the wrong question for a
  trading agent (a half-invested agent in a rising stock passes it); kept for compatibility.
- `mean_test`: the paired question, e.g. "is the mean daily excess over buy & hold zero?", by the
  stationary block bootstrap-t (arch.bootstrap).
- `deflated_sharpe_ratio`: the Sharpe ratio of a strategy picked as the best of many trials,
  deflated for the selection (Bailey and Lopez de Prado 2014).

Conventions and calibration: docs/evaluation.md.
"""

from __future__ import annotations

import math

import numpy as np
from arch.bootstrap import StationaryBootstrap, optimal_block_length
from scipy import stats as sps
from scipy.special import ndtr, ndtri


def block_bootstrap_indices(n: int, block: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] indices: concatenated blocks of `block` consecutive days with random starts."""
    block = max(1, min(block, n))
    blocks_needed = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, blocks_needed))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)
    return idx[:, :n]


def sharpe_ratio(returns: np.ndarray, annualization: float = 252.0, rf: float = 0.0, axis: int = -1) -> np.ndarray:
    excess = np.asarray(returns, dtype=np.float64) - rf / annualization
    std = excess.std(axis=axis, ddof=1)
    mean = excess.mean(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, mean / std * np.sqrt(annualization), np.nan)


def sharpe_confidence_interval(
    returns: np.ndarray,
    annualization: float = 252.0,
    rf: float = 0.0,
    level: float = 0.95,
    n_boot: int = 2000,
    block: int = 5,
    seed: int = 0,
) -> dict[str, float | bool | None]:
    """Percentile interval of the Sharpe ratio under the moving-block bootstrap.

    Returns {"sharpe_ci_low", "sharpe_ci_high", "significant"}; a strategy that never trades (all
    returns zero) has no defined Sharpe and is reported as not significant.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 3 or not np.any(r != 0):
        return {"sharpe_ci_low": None, "sharpe_ci_high": None, "significant": False}
    rng = np.random.default_rng(seed)
    idx = block_bootstrap_indices(r.size, block, n_boot, rng)
    samples = sharpe_ratio(r[idx], annualization, rf, axis=1)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return {"sharpe_ci_low": None, "sharpe_ci_high": None, "significant": False}
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return {"sharpe_ci_low": float(low), "sharpe_ci_high": float(high), "significant": bool(low > 0 or high < 0)}


# ---------------------------------------------------------------- the mean of a return series
def block_length(x: np.ndarray, max_fraction: float = 0.2) -> int:
    """Expected block length for the stationary bootstrap of `x`: the Politis-White (2004) automatic
    choice (with the Patton-Politis-White 2009 correction, `arch.bootstrap.optimal_block_length`),
    rounded up and kept within [1, max_fraction * len(x)]."""
    x = np.asarray(x, dtype=np.float64)
    cap = max(1, int(max_fraction * x.size))
    if x.size < 8 or not np.any(x != x[0]):
        return 1
    b = float(optimal_block_length(x)["stationary"].iloc[0])
    return int(min(cap, max(1, math.ceil(b)))) if math.isfinite(b) else 1


_BIG = 1e12


def mean_test(
    x: np.ndarray,
    annualization: float = 252.0,
    level: float = 0.95,
    n_boot: int = 2000,
    block: int | None = None,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Two-sided test of "the mean of `x` is 0" and an interval for the mean: the stationary block
    bootstrap-t (`arch.bootstrap.StationaryBootstrap`, random blocks of mean length `block`) and
    Student's t, the more cautious of the two.

    Bootstrap-t: each resample gives T* = (mean* - mean) / (std* / sqrt(n)); its p-value is
    (1 + #{|T*| >= |T|}) / (n_boot + 1) with T = mean / (std / sqrt(n)) and its interval is
    mean - q(T*) * std / sqrt(n) at the quantiles (1 + level) / 2 and (1 - level) / 2. Resampling
    blocks keeps short-range dependence; studentising keeps the level in short samples (a
    percentile interval of the mean is too narrow there). Student's t (n - 1 degrees of freedom)
    guards the other way: with 60 days and many zero days the bootstrap's quantiles can come out
    too narrow. Reported: the larger p-value (`p_value`; both in `p_bootstrap`, `p_student`) and the
    union of the two intervals. Mean and interval are multiplied by `annualization` (daily -> per
    year, arithmetic). Deterministic given `seed`.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    out: dict[str, float | int | None] = {"mean": None, "ci_low": None, "ci_high": None, "p_value": None,
                                          "p_bootstrap": None, "p_student": None, "block": None,
                                          "n_boot": int(n_boot)}
    if n < 3:
        return out
    a = float(annualization)
    mean, std = float(x.mean()), float(x.std(ddof=1))
    out["mean"] = mean * a
    if std <= 1e-15 * max(1.0, abs(mean)):  # constant series: nothing to resample
        p = 1.0 if mean == 0 else 1.0 / (n_boot + 1)
        out.update(ci_low=mean * a, ci_high=mean * a, p_value=p, p_bootstrap=p, p_student=p, block=1)
        return out
    block = block_length(x) if block is None else max(1, min(int(block), n))
    boot = StationaryBootstrap(block, x, seed=np.random.default_rng(seed))
    draws = boot.apply(lambda y: np.array([y.mean(), y.std(ddof=1)]), int(n_boot))
    se = std / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = (draws[:, 0] - mean) / (draws[:, 1] / math.sqrt(n))
    # A constant resample: T* = 0 when it equals the mean, else +-inf (kept finite for the quantiles).
    t_star = np.nan_to_num(t_star, nan=0.0, posinf=_BIG, neginf=-_BIG)
    t_obs = mean / se
    p_boot = float((1 + np.count_nonzero(np.abs(t_star) >= abs(t_obs))) / (n_boot + 1))
    p_student = float(2.0 * sps.t.sf(abs(t_obs), n - 1))
    out.update(p_value=max(p_boot, p_student), p_bootstrap=p_boot, p_student=p_student, block=int(block))
    q_low, q_high = np.quantile(t_star, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    q_t = float(sps.t.ppf((1.0 + level) / 2.0, n - 1))
    if max(abs(q_low), abs(q_high)) < _BIG:
        out["ci_low"] = float((mean - max(q_high, q_t) * se) * a)
        out["ci_high"] = float((mean - min(q_low, -q_t) * se) * a)
    return out


# ---------------------------------------------------------------- the deflated Sharpe ratio
EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, sharpe_variance: float, mean_sharpe: float = 0.0) -> float:
    """E[max of n_trials Sharpe ratios] when none has skill (Bailey and Lopez de Prado 2014, eq. 2):

        mean + sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e))),  g = Euler's gamma.

    In the units of `sharpe_variance` (per period or annualised); `mean` for N = 1 (no selection).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1 (got {n_trials})")
    if n_trials == 1:
        return float(mean_sharpe)
    z = (1.0 - EULER_GAMMA) * ndtri(1.0 - 1.0 / n_trials) + EULER_GAMMA * ndtri(1.0 - 1.0 / (n_trials * math.e))
    return float(mean_sharpe + math.sqrt(max(sharpe_variance, 0.0)) * z)


def probabilistic_sharpe_ratio(sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """P(true Sharpe > benchmark) for an observed per-period Sharpe over n_obs returns with the
    given skewness and (non-excess) kurtosis (Bailey and Lopez de Prado 2012):

        Phi((SR - SR*) sqrt(n_obs - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2)).
    """
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    return float(ndtr((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(max(denom, 1e-12))))


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, sharpe_variance: float,
                          annualization: float = 1.0) -> dict[str, float]:
    """The deflated Sharpe ratio (Bailey and Lopez de Prado 2014) of the selected strategy's returns.

    `n_trials`: every configuration (run, seed, member, hyperparameter set) whose result on these
    same days could have been picked; `sharpe_variance`: the variance of the trials' Sharpe ratios,
    annualised with `annualization` (1 = per-period Sharpe ratios). Returns the DSR (the probability
    that the true Sharpe exceeds the best that luck alone gives with n_trials tries), the
    threshold sharpe0 = expected_max_sharpe and the observed Sharpe, both annualised with
    `annualization`, and the moments used.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 3 or r.std(ddof=1) == 0:
        raise ValueError("the deflated Sharpe ratio needs at least 3 returns that are not all equal")
    scale = math.sqrt(annualization)
    sr = float(r.mean() / r.std(ddof=1))
    sr0 = expected_max_sharpe(n_trials, sharpe_variance / annualization)
    skew, kurt = float(sps.skew(r)), float(sps.kurtosis(r, fisher=False))
    return {"dsr": probabilistic_sharpe_ratio(sr, sr0, r.size, skew, kurt), "sharpe": sr * scale,
            "sharpe0": sr0 * scale, "n_trials": int(n_trials), "n_obs": int(r.size), "skew": skew, "kurtosis": kurt}
