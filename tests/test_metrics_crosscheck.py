"""backtest.compute_metrics against an independent library (empyrical-reloaded, test-only dependency).

Conventions, stated so that the comparison is exact (docs/accounting.md):
- returns are the daily simple returns r_k = E_k / E_{k-1} - 1 of the equity curve, k = 1..n;
- Sharpe: mean(r - rf/A) / std(r, ddof=1) * sqrt(A). empyrical also uses ddof=1 and subtracts a
  per-period risk-free rate, so we pass it rf / A (evorl takes the annual rate);
- Sortino: mean(x) / sqrt(mean(min(x, 0)^2)) * sqrt(A), x = r - rf/A: the downside deviation averages
  the squared shortfalls over ALL n periods (up days count as 0), not only over the down days and not
  with n - 1. empyrical's downside_risk is the same definition (required_return = rf / A);
- annual volatility: std(r, ddof=1) * sqrt(A) (empyrical: nanstd with ddof=1);
- max drawdown: the running peak includes the starting equity E_0 (empyrical anchors its cumulative
  returns at a starting value too), reported as a number <= 0;
- CAGR: (E_n / E_0) ^ (A / n) - 1, i.e. n daily returns are n / A years (empyrical's annual_return);
- Calmar: CAGR / |max drawdown| (empyrical's calmar_ratio);
- total return: E_n / E_0 - 1 (empyrical's cum_returns_final).
"""

from __future__ import annotations

import empyrical
import numpy as np
import pytest

from evorl_core.metrics import compute_metrics

A = 252
TOL = 1e-9


def _equity(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # fat-tailed daily returns with some zero (flat) days, as a strategy's equity has
    r = rng.standard_t(4, n) * rng.uniform(0.003, 0.03) + rng.uniform(-0.001, 0.002)
    r[rng.random(n) < 0.2] = 0.0
    return rng.uniform(0.5, 1e6) * np.concatenate([[1.0], np.cumprod(1.0 + np.clip(r, -0.9, None))])


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("rf", [0.0, 0.05])
def test_metrics_match_empyrical(seed, rf):
    n = int(np.random.default_rng(1000 + seed).integers(2, 400))
    equity = _equity(seed, n + 1)
    r = equity[1:] / equity[:-1] - 1.0
    ours = compute_metrics(equity, np.ones_like(equity), annualization=A, rf=rf)
    per_day = rf / A

    def close(a, b):
        assert a == pytest.approx(b, rel=TOL, abs=TOL)

    close(ours["total_return"], empyrical.cum_returns_final(r))
    close(ours["cagr"], empyrical.annual_return(r, annualization=A))
    close(ours["annual_volatility"], empyrical.annual_volatility(r, annualization=A))
    close(ours["sharpe"], empyrical.sharpe_ratio(r, risk_free=per_day, annualization=A))
    close(ours["sortino"], empyrical.sortino_ratio(r, required_return=per_day, annualization=A))
    close(ours["max_drawdown"], empyrical.max_drawdown(r))
    close(ours["calmar"], empyrical.calmar_ratio(r, annualization=A))


def test_sortino_downside_deviation_is_over_all_periods():
    """The convention difference that matters most: sqrt(mean(min(r, 0)^2)) over all n periods.
    Dividing by the number of down days only (a common alternative) gives a different number."""
    equity = np.array([100.0, 101.0, 99.0, 100.0, 102.0, 101.0])
    r = equity[1:] / equity[:-1] - 1.0
    down = np.minimum(r, 0.0)
    ours = compute_metrics(equity, np.ones_like(equity))["sortino"]
    assert ours == pytest.approx(r.mean() / np.sqrt(np.mean(down ** 2)) * np.sqrt(A), rel=1e-12)
    assert ours == pytest.approx(empyrical.sortino_ratio(r), rel=1e-12)
    only_down_days = r.mean() / np.sqrt(np.mean(down[down < 0] ** 2)) * np.sqrt(A)
    assert abs(ours - only_down_days) > 0.1


def test_drawdown_counts_a_fall_from_the_starting_equity():
    equity = np.array([100.0, 90.0, 95.0, 99.0])  # never above the start
    assert compute_metrics(equity, np.ones(4))["max_drawdown"] == pytest.approx(-0.1)
    assert empyrical.max_drawdown(equity[1:] / equity[:-1] - 1.0) == pytest.approx(-0.1)
