"""Bootstrap Sharpe interval: checked against a plain-loop computation and for coverage."""

import math

import numpy as np

from evorl_core.evaluation.stats import block_bootstrap_indices, sharpe_confidence_interval, sharpe_ratio


def test_sharpe_ratio_matches_hand_formula():
    r = np.array([0.01, -0.02, 0.015, 0.003, -0.001])
    mean = sum(r) / len(r)
    var = sum((x - mean) ** 2 for x in r) / (len(r) - 1)
    assert math.isclose(float(sharpe_ratio(r)), mean / math.sqrt(var) * math.sqrt(252), rel_tol=1e-12)


def test_block_indices_are_consecutive_runs():
    rng = np.random.default_rng(1)
    idx = block_bootstrap_indices(23, 5, 50, rng)
    assert idx.shape == (50, 23)
    assert idx.min() >= 0 and idx.max() < 23
    # within each block of 5 the indices step by one
    for row in idx:
        for b in range(0, 20, 5):
            assert list(np.diff(row[b:b + 5])) == [1, 1, 1, 1]


def test_strong_positive_drift_is_significant():
    r = np.random.default_rng(0).normal(0.01, 0.01, 120)  # Sharpe ~ 16
    ci = sharpe_confidence_interval(r)
    assert ci["significant"] and ci["sharpe_ci_low"] > 0


def test_flat_strategy_is_not_significant():
    ci = sharpe_confidence_interval(np.zeros(60))
    assert ci == {"sharpe_ci_low": None, "sharpe_ci_high": None, "significant": False}


def test_zero_mean_coverage_near_nominal():
    # iid zero-mean returns: the 95% interval should contain the true Sharpe (0) most of the time
    rng = np.random.default_rng(42)
    covered = 0
    trials = 200
    for i in range(trials):
        r = rng.normal(0.0, 0.01, 250)
        ci = sharpe_confidence_interval(r, n_boot=400, seed=i)
        covered += ci["sharpe_ci_low"] <= 0 <= ci["sharpe_ci_high"]
    assert 0.85 <= covered / trials <= 0.995
