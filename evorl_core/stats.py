"""Honest statistics for short backtests.

A 60-day backtest says little on its own. We report a bootstrap confidence interval of the
annualised Sharpe ratio of daily returns, using the moving-block bootstrap (blocks of consecutive
days keep short-range dependence such as volatility clustering). "Significant" means the interval
excludes zero: the strategy is distinguishable from staying flat (whose Sharpe is zero).
"""

from __future__ import annotations

import numpy as np


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
