"""The probability of backtest overfitting (PBO) by combinatorially symmetric cross-validation (CSCV).

Bailey, Borwein, López de Prado and Zhu, "The probability of backtest overfitting" (Journal of
Computational Finance, 2017). Given the daily returns of N candidates (members of a population,
seeds, walk-forward candidates) over the same T days:

1. split the days, in time order, into S blocks of equal length (S even; the oldest T mod S days are
   left out);
2. for each of the C(S, S/2) ways to take half the blocks as the in-sample set J (the other half,
   J̄, is out of sample), find the candidate n* with the best in-sample Sharpe ratio;
3. rank n*'s out-of-sample Sharpe ratio among all N candidates' (rank 1 = worst, ties get their
   average rank) and take ω = rank / (N + 1) and its logit λ = ln(ω / (1 − ω));
4. PBO = the share of the splits with λ ≤ 0: how often the in-sample winner ends at or below the
   median out of sample.

A PBO near 0 says selection on the backtest carries over; near 0.5 or above, that picking the
best candidate is picking noise. The Sharpe ratio of a block set comes from per-block sums (exact,
the same figure as over the concatenated days); a candidate with no variation has Sharpe 0.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

DEFAULT_BLOCKS = 16
MIN_BLOCK_DAYS = 2  # a block's Sharpe needs at least two days
LOGIT_EDGES = tuple(float(x) for x in np.arange(-4.0, 4.01, 0.5))  # histogram of λ (outer bins open-ended)


def blocks_for(num_days: int, blocks: int = DEFAULT_BLOCKS) -> int:
    """The number of blocks used for `num_days` days: `blocks`, fewer (even, >= 2) when the days
    cannot fill that many blocks of MIN_BLOCK_DAYS; 0 when even two blocks do not fit."""
    s = min(int(blocks), num_days // MIN_BLOCK_DAYS)
    s -= s % 2
    return s if s >= 2 else 0


def _sharpe(total: np.ndarray, squares: np.ndarray, count: np.ndarray) -> np.ndarray:
    mean = total / count
    var = np.maximum(squares - count * mean**2, 0.0) / np.maximum(count - 1, 1)
    std = np.sqrt(var)
    return np.where(std > 1e-12 * np.maximum(np.abs(mean), 1e-300), mean / np.where(std > 0, std, 1.0), 0.0)


def _average_rank(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per row of `values` [C, N]: the average rank (1 = lowest) of the entry at column index[c]."""
    chosen = values[np.arange(len(values)), index][:, None]
    below = (values < chosen).sum(axis=1)
    ties = (values == chosen).sum(axis=1)
    return below + (ties + 1) / 2.0


def pbo(returns: np.ndarray, blocks: int = DEFAULT_BLOCKS) -> dict[str, Any]:
    """CSCV over `returns` [N candidates, T days] (see the module docstring).

    Returns pbo, pbo_logits ([C] λ of every split, float64), pbo_oos_loss (share of splits whose
    in-sample winner has a negative out-of-sample Sharpe), pbo_blocks (S), pbo_splits (C),
    pbo_candidates (N), pbo_days (days used). Raises ValueError for fewer than 2 candidates or too
    few days for two blocks."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError(f"pbo: needs a [candidates, days] matrix with at least 2 candidates (got shape {r.shape})")
    if not np.isfinite(r).all():
        raise ValueError("pbo: the returns hold NaN or infinite values")
    n, t = r.shape
    s = blocks_for(t, blocks)
    if s == 0:
        raise ValueError(f"pbo: {t} days cannot fill 2 blocks of {MIN_BLOCK_DAYS} days")
    size = t // s
    used = r[:, t - s * size:].reshape(n, s, size)  # the newest s * size days, in time order
    block_sum, block_sq = used.sum(axis=2), (used**2).sum(axis=2)  # [N, S]
    splits = np.array(list(itertools.combinations(range(s), s // 2)))  # [C, S/2]
    inside = np.zeros((len(splits), s))
    inside[np.arange(len(splits))[:, None], splits] = 1.0
    outside = 1.0 - inside
    days_in = inside.sum(axis=1, keepdims=True) * size  # [C, 1]
    sharpe_in = _sharpe(inside @ block_sum.T, inside @ block_sq.T, days_in)  # [C, N]
    sharpe_out = _sharpe(outside @ block_sum.T, outside @ block_sq.T, (s * size) - days_in)
    best = np.argmax(sharpe_in, axis=1)
    omega = _average_rank(sharpe_out, best) / (n + 1)
    logits = np.log(omega / (1.0 - omega))
    return {"pbo": float(np.mean(logits <= 0)), "pbo_logits": logits,
            "pbo_oos_loss": float(np.mean(sharpe_out[np.arange(len(best)), best] < 0)),
            "pbo_blocks": int(s), "pbo_splits": int(len(splits)), "pbo_candidates": int(n), "pbo_days": int(s * size)}


def pbo_report(returns: np.ndarray, blocks: int = DEFAULT_BLOCKS) -> dict[str, Any]:
    """`pbo` for backtest/metrics.json: the λ histogram (counts over LOGIT_EDGES, right-closed,
    outer bins open-ended) instead of every λ; {} when there are too few candidates or days."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2 or blocks_for(r.shape[1], blocks) == 0 or not np.isfinite(r).all():
        return {}
    out = pbo(r, blocks)
    logits = out.pop("pbo_logits")
    # right-closed bins (a < λ <= b; the outer ones open-ended), so the bins at or left of 0 hold the PBO
    counts = np.bincount(np.searchsorted(np.array(LOGIT_EDGES[1:-1]), logits, side="left"),
                         minlength=len(LOGIT_EDGES) - 1)
    out.update(pbo_logit_edges=list(LOGIT_EDGES), pbo_logit_counts=[int(c) for c in counts])
    return out
