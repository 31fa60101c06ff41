"""Evaluation statistics: the timing null keeps exposure and trades, the deflated Sharpe ratio
against the paper's worked example, bootstrap coverage, verdict wording, baselines without look-ahead,
and a small calibration (false positives on random walks, power on the planted signal)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from evorl_core.agents.build import make_ppo
from evorl_core.config import make_config
from evorl_core.costs import cost_model
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.evaluation import significance
from evorl_core.evaluation.evaluate import backtest_policy
from evorl_core.evaluation.stats import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    mean_test,
    probabilistic_sharpe_ratio,
)
from evorl_core.metrics import compute_metrics
from evorl_core.modes.single import baselines
from evorl_core.modes.single.accounting import buy_and_hold, equity_curve

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("calibration", ROOT / "benchmarks" / "calibration.py")
calibration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(calibration)


def _walk(n: int, seed: int):
    return calibration.martingale_market(n, np.random.default_rng(seed))


# ---------------------------------------------------------------- the timing null
def _trades(positions: np.ndarray) -> int:
    filled = np.concatenate([[0.0], positions[:-1]])
    return int(np.count_nonzero(np.diff(filled)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=3, max_size=40), st.integers(0, 10_000))
def test_circular_shift_keeps_exposure_exactly_and_trades_within_two(levels, seed):
    pos = np.array(levels)
    shifts = np.arange(1, len(pos) - 1)
    shifted = baselines.shift_held(pos, shifts)
    assert shifted.shape == (shifts.size, pos.size)
    for row, s in zip(shifted, shifts, strict=True):
        held, new_held = pos[:-1], row[:-1]
        assert sorted(new_held) == sorted(held)  # the same held positions, hence the same exposure
        assert np.roll(held, s).tolist() == new_held.tolist()
        assert row[-1] == pos[-1]  # the next-session signal is not part of the test
        assert abs(_trades(row) - _trades(pos)) <= 2
        eq_row, eq_pos = np.ones(pos.size), np.ones(pos.size)
        assert compute_metrics(eq_row, row)["exposure"] == compute_metrics(eq_pos, pos)["exposure"]


def test_members_share_one_shift_per_draw():
    pos = np.array([[0, 1, 1, 0, 0, 1.0], [1, 1, 0, 0, 1, 0.0]])
    shifted = baselines.shift_held(pos, np.array([2]))
    assert shifted.shape == (1, 2, 6)
    for m in range(2):
        assert shifted[0, m, :-1].tolist() == np.roll(pos[m, :-1], 2).tolist()


def test_timing_shifts_leave_out_look_back_shifts():
    assert baselines.timing_shifts(10, 0).tolist() == list(range(1, 10))
    assert baselines.timing_shifts(10, 1).tolist() == list(range(1, 9))  # 9 = one day back
    assert baselines.timing_shifts(10, 3).tolist() == list(range(1, 7))
    drawn = baselines.timing_shifts(2000, 1, n_shifts=999, seed=4)
    assert drawn.size == 999 and len(set(drawn)) == 999 and drawn.max() <= 1998
    assert drawn.tolist() == baselines.timing_shifts(2000, 1, n_shifts=999, seed=4).tolist()


def test_timing_always_invested_agent_has_no_skill():
    open_, close = _walk(80, 1)
    res = significance.timing_test(open_, close, np.ones(80), 0.001)
    assert res["timing_p_value"] == 1.0  # every shift is the same strategy: ties count against it
    assert res["timing_draws"] == 78 - 1


def test_timing_detects_look_ahead_and_null_matches_equity_curve():
    open_, close = _walk(120, 2)
    oracle = np.concatenate([(close[1:] > open_[1:]).astype(float), [0.0]])  # sees tomorrow: cheating
    res = significance.timing_test(open_, close, oracle, 0.001)
    assert res["timing_p_value"] == pytest.approx(1 / (res["timing_draws"] + 1))
    assert res["timing_log_return"] == pytest.approx(math.log(equity_curve(open_, close, oracle, 0.001)[-1]))
    # the null mean recomputed shift by shift with the plain accounting
    shifts = baselines.timing_shifts(119, 1)
    logs = [math.log(equity_curve(open_, close, np.concatenate([np.roll(oracle[:-1], s), oracle[-1:]]), 0.001)[-1])
            for s in shifts]
    assert res["timing_null_mean"] == pytest.approx(np.mean(logs), rel=1e-12)


def test_identical_members_give_the_single_agent_answer():
    open_, close = _walk(90, 3)
    pos = calibration.contrarian(close, 5)
    one = significance.symbol_report(open_, close, pos, cost=0.001, seed=5, baselines=False)
    three = significance.symbol_report(open_, close, np.stack([pos] * 3), cost=0.001, seed=5, baselines=False)
    for key in ("excess_p_value", "excess_mean_annual", "excess_ci_low", "timing_p_value", "verdict"):
        assert three[key] == pytest.approx(one[key]) if isinstance(one[key], float) else three[key] == one[key]
    assert three["members"] == 3 and "deflated_sharpe" in three and "deflated_sharpe" not in one


# ---------------------------------------------------------------- deflated Sharpe ratio
def test_deflated_sharpe_matches_the_papers_worked_example():
    """Bailey and Lopez de Prado (2014), numerical example: N = 100 independent trials whose annualised
    Sharpe ratios have variance 1/2; the selected one has an annualised Sharpe of 2.5 over T = 1250
    daily returns (5 years of 250 days), skewness -3 and kurtosis 10. The paper gives the expected
    maximum Sharpe SR0 = 0.1132 (non-annualised) and DSR = 0.9004."""
    days = 250
    sr0 = expected_max_sharpe(100, 0.5 / days)  # the variance in daily units
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr0 * math.sqrt(days) == pytest.approx(expected_max_sharpe(100, 0.5), rel=1e-12)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(days), sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_expected_max_sharpe_against_simulation():
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000):
        simulated = rng.standard_normal((4000, n)).max(axis=1).mean()
        assert expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.03)
    assert expected_max_sharpe(1, 4.0) == 0.0


def test_deflated_sharpe_from_returns_uses_their_moments():
    r = np.random.default_rng(1).standard_t(4, 500) * 0.01 + 0.002
    out = deflated_sharpe_ratio(r, 20, 0.8, annualization=252)
    sr = r.mean() / r.std(ddof=1)
    expected = probabilistic_sharpe_ratio(sr, expected_max_sharpe(20, 0.8 / 252), r.size, sps.skew(r),
                                          sps.kurtosis(r, fisher=False))
    assert out["dsr"] == pytest.approx(expected, rel=1e-12)
    assert out["sharpe"] == pytest.approx(sr * math.sqrt(252))
    assert out["sharpe0"] == pytest.approx(expected_max_sharpe(20, 0.8))
    assert deflated_sharpe_ratio(r, 1, 0.8)["dsr"] > out["dsr"]  # more trials, more deflation


# ---------------------------------------------------------------- the excess test
def test_bootstrap_interval_covers_a_known_mean():
    rng = np.random.default_rng(7)
    trials, covered = 200, 0
    for i in range(trials):
        e = rng.standard_normal(121) * 0.01
        x = 0.0004 + e[1:] + 0.3 * e[:-1]  # MA(1): dependent days, true mean 0.0004
        res = mean_test(x, annualization=1.0, n_boot=300, seed=i)
        covered += res["ci_low"] <= 0.0004 <= res["ci_high"]
    # nominal 95%, binomial standard error 1.5% over 200 samples
    assert 0.95 - 3 * math.sqrt(0.05 * 0.95 / trials) <= covered / trials <= 0.995


def test_excess_of_buy_and_hold_itself_is_zero():
    open_, close = _walk(60, 4)
    res = significance.excess_test(open_, close, np.ones(60), 0.001)
    assert res["excess_mean_annual"] == 0.0 and res["excess_p_value"] == 1.0


def test_excess_is_the_mean_daily_difference_annualised():
    open_, close = _walk(70, 5)
    pos = calibration.contrarian(close, 5)
    eq, bh = equity_curve(open_, close, pos, 0.001), buy_and_hold(open_, close, 0.001)
    diff = eq[1:] / eq[:-1] - bh[1:] / bh[:-1]
    res = significance.excess_test(open_, close, pos, 0.001, annualization=252)
    assert res["excess_mean_annual"] == pytest.approx(diff.mean() * 252, rel=1e-12)
    assert res["excess_ci_low"] <= res["excess_mean_annual"] <= res["excess_ci_high"]


# ---------------------------------------------------------------- verdict wording
@pytest.mark.parametrize("p_ex, mean, p_tm, text, claims", [
    (0.01, 0.12, 0.4, "beats buy & hold (p = 0.01); no evidence of timing skill (p = 0.40)", {"beats"}),
    (0.02, -0.30, 0.9, "worse than buy & hold (p = 0.02); no evidence of timing skill (p = 0.90)", {"worse"}),
    (0.5, 0.05, 0.004, "not distinguishable from buy & hold (p = 0.50); timing skill (p = 0.004)", {"timing"}),
    (0.5, -0.05, 0.03, "not distinguishable from buy & hold (p = 0.50); no evidence of timing skill "
                       "(p = 0.030; a claim needs p < 0.025)", set()),
    (0.5, -0.05, 0.025, "not distinguishable from buy & hold (p = 0.50); no evidence of timing skill "
                        "(p = 0.025; a claim needs p < 0.025)", set()),
    (0.5, 0.05, 0.0249, "not distinguishable from buy & hold (p = 0.50); timing skill (p = 0.02)", {"timing"}),
    (0.001, -0.4, 0.001, "worse than buy & hold (p = 0.001); timing skill (p = 0.001)", {"worse", "timing"}),
    (0.0002, -0.4, 0.0, "worse than buy & hold (p < 0.001); timing skill (p < 0.001)", {"worse", "timing"}),
])
def test_verdict_wording(p_ex, mean, p_tm, text, claims):
    got, made = significance.verdict({"excess_p_value": p_ex, "excess_mean_annual": mean}, {"timing_p_value": p_tm})
    assert got == text
    assert {k for k, v in made.items() if v} == claims
    assert "significant" not in got


def test_verdict_without_enough_days():
    text, made = significance.verdict({"excess_p_value": None, "excess_mean_annual": None}, {"timing_p_value": None})
    assert text == "too few days to compare with buy & hold; too few days to test timing" and not any(made.values())


# ---------------------------------------------------------------- baselines
@pytest.mark.parametrize("rule", baselines.RULES)
def test_rules_never_look_ahead(rule):
    _, close = _walk(200, 6)
    full = baselines.rule_positions(rule, close)
    rng = np.random.default_rng(0)
    for t in rng.integers(0, 200, 25):
        changed = close.copy()
        changed[t + 1:] *= rng.uniform(0.5, 1.5, 199 - t)  # any future
        assert baselines.rule_positions(rule, changed)[: t + 1].tolist() == full[: t + 1].tolist()


def test_rules_warm_up_on_prior_closes():
    _, close = _walk(200, 7)
    for rule in ("sma_crossover", "momentum"):
        whole = baselines.rule_positions(rule, close)
        assert baselines.rule_positions(rule, close[120:], prior_close=close[:120]).tolist() == whole[120:].tolist()
    assert baselines.sma_crossover_positions(close[:30]).tolist() == [0.0] * 30  # no slow average yet


def test_baseline_table_uses_the_backtest_accounting():
    open_, close = _walk(90, 8)
    ref = calibration.contrarian(close, 5)
    table = baselines.baseline_table(open_, close, 0.001, reference_positions=ref, n_random=50)
    assert list(table.index) == list(baselines.BASELINES)
    bh = compute_metrics(buy_and_hold(open_, close, 0.001), np.ones(90))
    assert table.loc["buy_hold", "total_return"] == pytest.approx(bh["total_return"], rel=1e-12)
    assert table.loc["flat", "total_return"] == 0.0
    sma = baselines.sma_crossover_positions(close)
    assert table.loc["sma_crossover", "sharpe"] == pytest.approx(
        compute_metrics(equity_curve(open_, close, sma, 0.001), sma)["sharpe"], nan_ok=True)
    held = ref[:-1]
    assert table.loc["random_timing", "exposure"] == pytest.approx(np.mean(np.abs(held)), rel=1e-12)


def test_equal_weight_portfolio_is_the_mean_of_buy_and_hold_accounts():
    markets = {f"S{i}": _walk(60, 20 + i) for i in range(3)}
    table = baselines.baselines_by_symbol(markets, 0.001)
    eq = np.mean([buy_and_hold(o, c, 0.001) for o, c in markets.values()], axis=0)
    assert table.loc[("portfolio", baselines.PORTFOLIO), "total_return"] == pytest.approx(eq[-1] - 1.0, rel=1e-12)
    assert set(table.index.get_level_values("symbol")) == {"S0", "S1", "S2", "portfolio"}


# ---------------------------------------------------------------- calibration (small)
def _claims(report):
    return calibration._claims(report)


def test_small_calibration_false_positives_on_random_walks():
    """200 random walks (martingale prices, no cost: the null of both tests), one contrarian rule
    (5-day memory; the direction in which a look-back bias would be liberal)."""
    n, days = 200, 120
    hits = {"excess_rejects": 0, "timing_5pct": 0, "skill": 0}
    for i in range(n):
        rng = np.random.default_rng([99, i])
        open_, close = calibration.martingale_market(calibration.HISTORY + days, rng)
        pos = calibration.contrarian(close, 5)[calibration.HISTORY:]
        rep = significance.symbol_report(open_[calibration.HISTORY:], close[calibration.HISTORY:], pos, cost=0.0,
                                         seed=i, n_boot=400, lookback=5, baselines=False)
        c = _claims(rep)
        hits["excess_rejects"] += c["excess_rejects"]
        hits["timing_5pct"] += c["timing_5pct"]
        hits["skill"] += c["beats"] or c["timing"]
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)
    rates = {k: v / n for k, v in hits.items()}
    print("false-positive rates on", n, "random walks:", rates)
    assert all(rate <= limit for rate in rates.values()), rates


def test_small_calibration_power_on_the_planted_signal():
    """50 planted markets of tests/test_learning.py (p_stay 0.9), the regime-following rule, 120 test days."""
    n, days, found = 50, 120, 0
    for i in range(n):
        rng = np.random.default_rng([98, i])
        open_, close = calibration.planted_market(calibration.HISTORY + days, rng)
        pos = calibration.regime_follower(open_, close)[calibration.HISTORY:]
        rep = significance.symbol_report(open_[calibration.HISTORY:], close[calibration.HISTORY:], pos,
                                         cost=calibration.COST, seed=i, n_boot=400, lookback=1, baselines=False)
        found += rep["verdict"].startswith("beats") or "; timing skill" in rep["verdict"]
    print("power on", n, "planted markets:", found / n)
    assert found / n >= 0.8


def test_planted_market_is_the_learning_tests_market():
    rng = np.random.default_rng(0)
    open_, close = calibration.planted_market(300, rng)
    # the same recipe as tests/test_learning.py: planted_frames(symbols, seed=0) for its first symbol
    rng = np.random.default_rng(0)
    regime = np.empty(300)
    regime[0] = 1.0
    flips = rng.random(300) > 0.9
    for t in range(1, 300):
        regime[t] = -regime[t - 1] if flips[t] else regime[t - 1]
    expected = 100.0 * np.cumprod(np.exp(regime * 0.01 + 0.002 * rng.standard_normal(300)))
    np.testing.assert_allclose(close, expected, rtol=1e-12)
    np.testing.assert_allclose(open_[1:], close[:-1], rtol=1e-12)


# ---------------------------------------------------------------- wiring
def relative_costs(config):
    """The run's cost model for an account of 1 (the flat sell-day charge scaled by the capital)."""
    costs = cost_model(config)
    return dataclasses.replace(costs, sell_day_charge_rupees=costs.sell_day_charge_rupees / config.initial_capital)


def test_backtest_policy_reports_verdict_and_tests_per_symbol():
    frames = {s: synthetic_ohlcv(s, n_days=260, seed=2) for s in ("AAA", "BBB")}
    config = make_config("quick", symbols=("AAA", "BBB"), data="synthetic", test_days=40, window=8, seed=3)
    market = build_market(frames, config.window, config.test_days, info={"source": "synthetic", "synthetic": True})
    runner = make_ppo(config).init(jax.random.PRNGKey(0), market.data)
    frame, metrics = backtest_policy(config, runner.params, market)
    for symbol, m in metrics.items():
        rows = frame[frame.symbol == symbol]
        s = market.symbols.index(symbol)
        t0 = int(market.data.test_start[s])
        expected = significance.symbol_report(rows["open"].to_numpy(), rows["close"].to_numpy(),
                                              rows["position"].to_numpy(), cost=relative_costs(config),
                                              execution=config.execution, seed=config.seed, lookback=config.window,
                                              prior_close=frames[symbol]["close"].to_numpy()[:t0])
        for key in ("excess_p_value", "excess_mean_annual", "excess_ci_low", "excess_ci_high", "timing_p_value",
                    "verdict", "baselines"):
            np.testing.assert_equal(m[key], expected[key], err_msg=key)
        assert m["verdict"].split(";")[0].split(" (")[0] in (
            "beats buy & hold", "worse than buy & hold", "not distinguishable from buy & hold")
        assert m["timing_draws"] == config.test_days - 3
        assert m["timing_draws_past_only"] == config.test_days - 2 - config.window
        # the existing keys stay
        for key in ("total_return", "sharpe", "sharpe_ci_low", "significant", "bh_total_return", "days"):
            assert key in m


def test_mean_test_takes_the_more_cautious_of_bootstrap_and_student():
    x = np.random.default_rng(3).standard_t(3, 60) * 0.01 + 0.002
    res = mean_test(x, annualization=1.0, n_boot=500, seed=1)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert res["p_student"] == pytest.approx(2 * sps.t.sf(abs(x.mean() / se), x.size - 1), rel=1e-12)
    assert res["p_value"] == max(res["p_student"], res["p_bootstrap"])
    q = sps.t.ppf(0.975, x.size - 1)
    assert res["ci_low"] <= x.mean() - q * se + 1e-15 and res["ci_high"] >= x.mean() + q * se - 1e-15
    assert mean_test(x, n_boot=500, seed=1) == mean_test(x, n_boot=500, seed=1)  # deterministic given the seed


def test_deflated_sharpe_in_the_report_counts_trials():
    open_, close = _walk(120, 9)
    rng = np.random.default_rng(0)
    members = np.stack([calibration.random_positions(120, rng) for _ in range(4)])
    rep = significance.symbol_report(open_, close, members, cost=0.001, baselines=False)
    assert rep["deflated_sharpe_trials"] == 4 and 0.0 <= rep["deflated_sharpe"] <= 1.0
    more = significance.symbol_report(open_, close, members, cost=0.001, baselines=False, n_trials=40)
    assert more["deflated_sharpe_trials"] == 40 and more["deflated_sharpe"] < rep["deflated_sharpe"]
    one = significance.symbol_report(open_, close, members[0], cost=0.001, baselines=False, n_trials=40)
    assert "deflated_sharpe" not in one  # the trials' Sharpe variance is unknown: nothing to deflate with
    given = significance.symbol_report(open_, close, members[0], cost=0.001, baselines=False, n_trials=40,
                                       trials_sharpe_variance=1.0)
    assert given["deflated_sharpe_trials"] == 40 and given["best_member"] == 0
