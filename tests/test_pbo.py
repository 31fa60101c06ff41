"""The probability of backtest overfitting (CSCV) against a direct implementation of the paper's
definition, and its behaviour on candidates with and without skill."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from evorl_core.evaluation.pbo import LOGIT_EDGES, blocks_for, pbo, pbo_report


def reference_pbo(returns: np.ndarray, blocks: int) -> tuple[float, np.ndarray]:
    """Bailey et al. (2017), step by step: concatenate the chosen blocks' days, Sharpe ratio over
    them (sample std), the in-sample winner, its out-of-sample rank among all candidates (scipy's
    average ranks), omega = rank / (N + 1), logit; PBO = share of logits <= 0."""
    n, t = returns.shape
    size = t // blocks
    days = returns[:, t - blocks * size:]
    parts = [days[:, i * size:(i + 1) * size] for i in range(blocks)]

    def sharpe(x):
        sd = x.std(axis=1, ddof=1)
        return np.where(sd > 0, x.mean(axis=1) / np.where(sd > 0, sd, 1.0), 0.0)

    logits = []
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        rest = [i for i in range(blocks) if i not in chosen]
        inside = np.concatenate([parts[i] for i in chosen], axis=1)
        outside = np.concatenate([parts[i] for i in rest], axis=1)
        best = int(np.argmax(sharpe(inside)))
        omega = rankdata(sharpe(outside))[best] / (n + 1)
        logits.append(np.log(omega / (1 - omega)))
    logits = np.array(logits)
    return float(np.mean(logits <= 0)), logits


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 7), t=st.integers(8, 90), blocks=st.sampled_from([2, 4, 6, 8]), seed=st.integers(0, 10_000),
       flat=st.booleans())
def test_pbo_equals_the_papers_definition(n, t, blocks, seed, flat):
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.01, (n, t)) + rng.normal(0.0, 0.002, (n, 1))
    if flat:
        returns[0] = 0.0  # a candidate that stays in cash: Sharpe 0 in every split
    returns[-1] = returns[0]  # two identical candidates: ties in every split, average ranks
    s = blocks_for(t, blocks)
    got = pbo(returns, blocks)
    want, logits = reference_pbo(returns, s)
    assert got["pbo_blocks"] == s and got["pbo_splits"] == len(logits) and got["pbo_candidates"] == n
    np.testing.assert_allclose(got["pbo_logits"], logits, rtol=1e-9, atol=1e-12)
    assert got["pbo"] == pytest.approx(want, abs=1e-12)


def test_skill_carries_over_and_noise_does_not():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.01, (20, 500))
    skilled = noise.copy()
    skilled[:5] += 0.002  # five candidates with an edge (annual Sharpe about 3) among 20
    assert pbo(skilled)["pbo"] < 0.05
    # on pure noise the in-sample winner is a coin toss out of sample; averaged over draws near 0.5
    draws = [pbo(rng.normal(0.0, 0.01, (20, 500)))["pbo"] for _ in range(8)]
    assert 0.3 < np.mean(draws) < 0.7


def test_report_histogram_and_refusals():
    rng = np.random.default_rng(1)
    r = rng.normal(0.0, 0.01, (6, 120))
    report = pbo_report(r)
    full = pbo(r)
    assert report["pbo"] == full["pbo"] and sum(report["pbo_logit_counts"]) == full["pbo_splits"]
    assert report["pbo_logit_edges"] == list(LOGIT_EDGES) and len(report["pbo_logit_counts"]) == len(LOGIT_EDGES) - 1
    overfit = sum(c for c, upper in zip(report["pbo_logit_counts"], LOGIT_EDGES[1:], strict=True) if upper <= 0)
    assert overfit / full["pbo_splits"] == pytest.approx(full["pbo"])  # the bins at or left of 0 are the PBO
    logits = full["pbo_logits"]
    inner = np.array(LOGIT_EDGES[1:-1])
    for i, count in enumerate(report["pbo_logit_counts"]):
        low = -np.inf if i == 0 else inner[i - 1]
        high = np.inf if i == len(inner) else inner[i]
        assert count == int(((logits > low) & (logits <= high)).sum())
    assert pbo_report(r[:1]) == {} and pbo_report(r[:, :3]) == {}
    assert blocks_for(120) == 16 and blocks_for(15) == 6 and blocks_for(3) == 0
    with pytest.raises(ValueError, match="at least 2 candidates"):
        pbo(r[:1])
    with pytest.raises(ValueError, match="NaN"):
        pbo(np.full((3, 40), np.nan))


def test_members_pbo_in_the_symbol_report_and_the_cli_table():
    """A run with several members reports their PBO beside the deflated Sharpe ratio: the members'
    daily test returns (by the single-asset accounting, member by member) through CSCV."""
    from evorl_core.console import format_metrics_table
    from evorl_core.evaluation import significance
    from evorl_core.modes.single.accounting import equity_curve

    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 120)))
    open_ = close * np.exp(rng.normal(0, 0.002, 120))
    positions = rng.choice([0.0, 0.5, 1.0], size=(6, 120))
    report = significance.symbol_report(open_, close, positions, cost=0.001, baselines=False)
    returns = []
    for member in positions:
        eq = equity_curve(open_, close, member, 0.001, "next_open")
        returns.append(eq[1:] / eq[:-1] - 1)
    want = pbo(np.array(returns))
    assert report["pbo"] == pytest.approx(want["pbo"]) and report["pbo_splits"] == want["pbo_splits"]
    assert report["pbo_candidates"] == 6 and sum(report["pbo_logit_counts"]) == want["pbo_splits"]
    text = format_metrics_table({"AAA": {**report, "members": 6}})
    assert f"probability of backtest overfitting {report['pbo']:.2f}" in text and "deflated Sharpe" in text


def test_pbo_chart_shows_the_logits_and_marks_the_overfit_share():
    from evorl_ui.charts.population import pbo_figure

    rng = np.random.default_rng(2)
    report = pbo_report(rng.normal(0.0, 0.01, (5, 80)))
    fig = pbo_figure(report, "AAA")
    bar = fig.data[0]
    assert sum(bar.y) == pytest.approx(1.0)
    red = [y for y, c in zip(bar.y, bar.marker.color, strict=True) if c == "#dc2626"]
    assert sum(red) == pytest.approx(report["pbo"])
    assert f"probability of backtest overfitting {report['pbo']:.2f}" in fig.layout.title.text
    assert pbo_figure({}, "AAA") is None
