"""Backtest accounting and metrics against hand arithmetic and independent plain-Python code."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evorl_core import costs, metrics
from evorl_core.modes.single import accounting as backtest
from evorl_core.modes.single.reference import ReferenceTradingEnv

OPEN = np.array([100.0, 102.0, 99.0])
CLOSE = np.array([100.0, 104.0, 110.0])


def random_prices(seed: int, num_symbols: int = 3, num_days: int = 30, vol: float = 0.02):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, (num_symbols, num_days)), axis=1))
    prev_close = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    open_ = prev_close * np.exp(rng.normal(0.0, vol / 2, (num_symbols, num_days)))
    return open_, close


# ---------------------------------------------------------------- accounting
def test_hand_computed_three_days():
    positions = [1.0, 0.5, 0.0]  # decided at the closes of days 0, 1, 2; cost 10 bps
    eq = backtest.equity_curve(OPEN, CLOSE, positions, 0.001, "next_open", initial=1000.0)
    # Day 1: flat overnight, buy 1.0 at the open (fee 0.1%), hold open 102 -> close 104.
    e1 = 1000.0 * 0.999 * 104.0 / 102.0
    # Day 2: hold 1.0 overnight 104 -> 99, sell half at the open (fee 0.05%), hold 0.5 from 99 -> 110.
    e2 = e1 * (99.0 / 104.0) * 0.9995 * (1.0 + 0.5 * (110.0 / 99.0 - 1.0))
    np.testing.assert_allclose(eq, [1000.0, e1, e2], rtol=1e-12)
    np.testing.assert_allclose(eq, [1000.0, 1018.5882352941176, 1022.9735514705882], rtol=1e-12)

    eq = backtest.equity_curve(OPEN, CLOSE, positions, 0.001, "close", initial=1000.0)
    np.testing.assert_allclose(eq, [1000.0, 1038.96, 1068.395535], rtol=1e-12)


def test_flat_position_keeps_equity_flat():
    open_, close = random_prices(0)
    for execution in ("next_open", "close"):
        eq = backtest.equity_curve(open_, close, np.zeros_like(close), 0.002, execution, initial=5.0)
        np.testing.assert_array_equal(eq, np.full_like(close, 5.0))


def test_always_long_without_fees_is_buy_and_hold():
    open_, close = random_prices(1)
    ones = np.ones_like(close)
    eq = backtest.equity_curve(open_, close, ones, 0.0, "close", initial=2.0)
    bh = backtest.buy_and_hold(open_, close, 0.0, "close", initial=2.0)
    np.testing.assert_allclose(eq, bh, rtol=1e-12)
    np.testing.assert_allclose(eq[:, -1], 2.0 * close[:, -1] / close[:, 0], rtol=1e-12)
    np.testing.assert_allclose(eq, 2.0 * close / close[:, :1], rtol=1e-12)
    # next_open: bought at the open of day 1.
    eq = backtest.equity_curve(open_, close, ones, 0.0, "next_open")
    np.testing.assert_allclose(eq[:, -1], close[:, -1] / open_[:, 1], rtol=1e-12)


def test_buy_and_hold_pays_one_entry_fee():
    open_, close = random_prices(2)
    cost = 0.0015
    bh = backtest.buy_and_hold(open_, close, cost, "close")
    np.testing.assert_allclose(bh[:, -1], (1 - cost) * close[:, -1] / close[:, 0], rtol=1e-12)
    bh = backtest.buy_and_hold(open_, close, cost, "next_open")
    np.testing.assert_allclose(bh[:, -1], (1 - cost) * close[:, -1] / open_[:, 1], rtol=1e-12)


def test_fees_strictly_reduce_equity():
    open_, close = random_prices(3)
    rng = np.random.default_rng(3)
    positions = rng.choice([0.0, 0.5, 1.0], size=close.shape)
    positions[:, 0] = 1.0  # at least one trade per symbol
    for execution in ("next_open", "close"):
        free = backtest.equity_curve(open_, close, positions, 0.0, execution)
        paid = backtest.equity_curve(open_, close, positions, 0.001, execution)
        assert np.all(paid <= free)
        assert np.all(paid[:, -1] < free[:, -1])
        # And more fees cost more.
        dearer = backtest.equity_curve(open_, close, positions, 0.003, execution)
        assert np.all(dearer[:, -1] < paid[:, -1])


def test_last_position_is_only_a_signal():
    open_, close = random_prices(4)
    positions = np.ones_like(close)
    other = positions.copy()
    other[:, -1] = 0.0
    for execution in ("next_open", "close"):
        np.testing.assert_array_equal(backtest.equity_curve(open_, close, positions, 0.001, execution),
                                      backtest.equity_curve(open_, close, other, 0.001, execution))


def test_one_symbol_and_many_agree():
    open_, close = random_prices(5)
    positions = np.random.default_rng(5).choice([-1.0, 0.0, 1.0], size=close.shape)
    many = backtest.equity_curve(open_, close, positions, 0.001)
    for s in range(close.shape[0]):
        np.testing.assert_array_equal(backtest.equity_curve(open_[s], close[s], positions[s], 0.001), many[s])
    batch = metrics.compute_metrics(many, positions)
    for s in range(close.shape[0]):
        one = metrics.compute_metrics(many[s], positions[s])
        for name in metrics.METRIC_NAMES:
            np.testing.assert_array_equal(batch[name][s], one[name])


@pytest.mark.parametrize("execution", ["next_open", "close"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c_buy=st.one_of(st.just(0.0), st.floats(1e-4, 0.01)),
       c_sell=st.one_of(st.just(0.0), st.floats(1e-4, 0.01)), charge=st.one_of(st.just(0.0), st.floats(1.0, 2000.0)),
       long_short=st.booleans())
def test_equity_curve_matches_reference_env(execution, seed, c_buy, c_sell, charge, long_short):
    """The vectorised accounting equals stepping the reference env through the same positions."""
    num_days = 25
    capital = 50_000.0
    open_, close = random_prices(seed, num_symbols=1, num_days=num_days, vol=0.05)
    choices = [-1.0, 0.0, 1.0] if long_short else [0.0, 0.5, 1.0]
    actions = np.random.default_rng(seed).integers(0, 3, num_days)
    positions = np.array(choices)[actions]
    model = costs.CostModel(c_buy, c_sell, charge)
    eq = backtest.equity_curve(open_[0], close[0], positions, model, execution, initial=capital)
    ref = ReferenceTradingEnv(open_, close, np.zeros((1, num_days, 1)), [num_days], [0], [num_days + 1],
                              choices, c_buy, c_sell, execution, 1, num_days + 10, sell_day_charge=charge,
                              initial_capital=capital)
    ref.reset_to(0, 0)
    ref_equity = [ref.rupees]
    for t in range(num_days - 1):
        ref.step(actions[t])
        ref_equity.append(ref.rupees)
    np.testing.assert_allclose(eq, ref_equity, rtol=1e-12)


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_per_side_equity_against_a_plain_python_loop(execution):
    """Per-side costs and the flat sell-day charge, every symbol recomputed with plain floats."""
    open_, close = random_prices(11, num_symbols=3, num_days=40)
    positions = np.random.default_rng(11).choice([0.0, 0.5, 1.0], size=close.shape)
    model = costs.nse_delivery(brokerage_bps=3.0, slippage_bps=7.0, dp_charge=20.0)
    capital = 200_000.0
    eq = backtest.equity_curve(open_, close, positions, model, execution, initial=capital)
    for s in range(3):
        o, c, p = open_[s].tolist(), close[s].tolist(), positions[s].tolist()
        expected, held = [capital], 0.0
        for t in range(len(c) - 1):
            new = p[t]
            e_open = expected[-1] * (1 + held * (o[t + 1] / c[t] - 1)) if execution == "next_open" else expected[-1]
            paid = model.c_buy * max(new - held, 0) + model.c_sell * max(held - new, 0)
            paid += model.sell_day_charge_rupees / e_open if new < held else 0.0
            e_fill = e_open * (1 - paid)
            move = o[t + 1] if execution == "next_open" else c[t]
            expected.append(e_fill * (1 + new * (c[t + 1] / move - 1)))
            held = new
        np.testing.assert_allclose(eq[s], expected, rtol=1e-12)
    # flat per-side = the old scalar cost, and a number still means a flat cost on both sides
    np.testing.assert_array_equal(backtest.equity_curve(open_, close, positions, costs.flat(5, 5), execution),
                                  backtest.equity_curve(open_, close, positions, 0.001, execution))


def test_selling_costs_more_than_buying_when_c_sell_is_larger():
    open_, close = random_prices(12, num_symbols=1, num_days=3)
    buy_only = backtest.equity_curve(open_[0], close[0], [1.0, 1.0, 1.0], costs.CostModel(0.0, 0.01))
    free = backtest.equity_curve(open_[0], close[0], [1.0, 1.0, 1.0], 0.0)
    np.testing.assert_array_equal(buy_only, free)  # c_sell is never paid by a buy
    sell = backtest.equity_curve(open_[0], close[0], [1.0, 0.0, 0.0], costs.CostModel(0.0, 0.01, 0.0))
    sell_free = backtest.equity_curve(open_[0], close[0], [1.0, 0.0, 0.0], 0.0)
    assert sell[-1] == pytest.approx(sell_free[-1] * 0.99, rel=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError):
        backtest.equity_curve(OPEN, CLOSE, [1.0, 1.0], 0.0)
    with pytest.raises(ValueError):
        backtest.equity_curve(OPEN, CLOSE, [1.0, 1.0, 1.0], 0.0, "vwap")
    with pytest.raises(ValueError):
        metrics.compute_metrics([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- metrics
EQUITY = [100.0, 103.0, 101.0, 99.5, 99.5, 99.0, 100.0, 101.0]
POSITIONS = [1.0, 1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 0.0]


def independent_metrics(equity, annualization, rf):
    """Plain-Python loops, written from the definitions in docs/accounting.md."""
    returns = [equity[i] / equity[i - 1] - 1.0 for i in range(1, len(equity))]
    n = len(returns)
    daily_rf = rf / annualization
    excess = [r - daily_rf for r in returns]
    sd = statistics.stdev(returns)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in excess) / n)
    peak, mdd = equity[0], 0.0
    for e in equity:
        peak = max(peak, e)
        mdd = min(mdd, e / peak - 1.0)
    cagr = (equity[-1] / equity[0]) ** (annualization / n) - 1.0
    return {
        "total_return": equity[-1] / equity[0] - 1.0,
        "cagr": cagr,
        "annual_volatility": sd * math.sqrt(annualization),
        "sharpe": statistics.mean(excess) / sd * math.sqrt(annualization),
        "sortino": statistics.mean(excess) / downside * math.sqrt(annualization),
        "max_drawdown": mdd,
        "calmar": cagr / abs(mdd),
    }


@pytest.mark.parametrize("annualization,rf", [(252, 0.0), (252, 0.05), (365, 0.02)])
def test_return_metrics_independent(annualization, rf):
    got = metrics.compute_metrics(EQUITY, POSITIONS, annualization=annualization, rf=rf)
    expected = independent_metrics(EQUITY, annualization, rf)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-10), name
    assert got["max_drawdown"] == pytest.approx(99.0 / 103.0 - 1.0)


def test_trade_metrics_by_hand():
    got = metrics.compute_metrics(EQUITY, POSITIONS)
    # Filled sequence 0, 1, 1, 0, 0, 0.5, 1, 1: changes 0->1, 1->0, 0->0.5, 0.5->1.
    assert got["trades"] == 4
    # Trades: long 1 over days 1-2 closed on day 3 (100 -> 99.5: loss once the closing day is
    # included, although 100 -> 101 before it); 0.5 on day 5 (99.5 -> 99: loss); 1 on days 6-7,
    # open at the end (99 -> 101: win).
    assert got["win_rate"] == pytest.approx(1 / 3)
    # Held 1, 1, 0, 0, 0.5, 1, 1 over the 7 periods.
    assert got["exposure"] == pytest.approx(4.5 / 7)
    # |changes| = 1 + 1 + 0.5 + 0.5 = 3 over 7 periods, per 252 days.
    assert got["turnover"] == pytest.approx(3 * 252 / 7)
    # 4 fills in 7 periods, per 252 days.
    assert got["trades_per_year"] == pytest.approx(4 * 252 / 7)
    # Held 1, 1, 0, 0, 0.5, 1, 1: runs of an unchanged non-zero position last 2, 1 and 2 days.
    assert got["avg_holding_days"] == pytest.approx(5 / 3)


def test_holding_period_definition():
    def holding(held):  # positions = held + a final signal
        return metrics.compute_metrics(np.ones(len(held) + 1), [*held, 0.0])["avg_holding_days"]

    assert holding([1, 1, 1, 1]) == 4
    assert holding([0, 1, 0, 1, 1, 0]) == 1.5
    assert holding([0.5, 1, 1, -1]) == pytest.approx(4 / 3)  # a change of size starts a new run
    assert math.isnan(holding([0, 0, 0]))


def test_metric_edge_cases():
    flat = metrics.compute_metrics([1.0] * 5, [0.0] * 5)
    assert flat["total_return"] == 0 and flat["cagr"] == 0 and flat["max_drawdown"] == 0
    assert flat["annual_volatility"] == 0
    for name in ("sharpe", "sortino", "calmar", "win_rate"):
        assert math.isnan(flat[name]), name
    assert flat["trades"] == 0 and flat["exposure"] == 0 and flat["turnover"] == 0
    assert flat["trades_per_year"] == 0 and math.isnan(flat["avg_holding_days"])
    rising = metrics.compute_metrics([1.0, 1.1, 1.3, 1.4], [1.0] * 4)
    assert math.isnan(rising["sortino"]) and math.isnan(rising["calmar"])
    assert rising["win_rate"] == 1.0 and rising["trades"] == 1
    # Doubling over two years of days: CAGR = sqrt(2) - 1.
    doubling = np.linspace(1.0, 2.0, 505)
    assert metrics.compute_metrics(doubling, np.ones(505))["cagr"] == pytest.approx(math.sqrt(2) - 1)
    # Max drawdown from the running peak: 1.2 -> 0.6.
    dd = metrics.compute_metrics([1.0, 1.2, 0.9, 1.1, 0.6, 0.8], [1.0] * 6)
    assert dd["max_drawdown"] == pytest.approx(-0.5)
    short = metrics.compute_metrics([1.0, 0.9], [-1.0, 0.0])
    assert short["win_rate"] == 0.0 and short["exposure"] == 1.0 and short["trades"] == 1
    assert math.isnan(short["sharpe"])  # one return has no sample standard deviation


def test_metric_definitions_cover_every_metric():
    assert set(metrics.METRIC_DEFINITIONS) == set(metrics.METRIC_NAMES) | set(backtest.COST_METRIC_NAMES)
    assert set(metrics.compute_metrics(EQUITY, POSITIONS)) == set(metrics.METRIC_NAMES)


def test_metrics_table_and_rows():
    open_, close = random_prices(6, num_symbols=2, num_days=5)
    positions = np.array([[1.0, 1.0, 0.0, 0.5, 1.0], [0.0] * 5])
    eq = backtest.equity_curve(open_, close, positions, 0.001, initial=1e6)
    bh = backtest.buy_and_hold(open_, close, 0.001, initial=1e6)
    table = metrics.metrics_by_symbol(["AAA", "BBB"], eq, positions)
    assert set(table) == {"AAA", "BBB"}
    assert table["AAA"]["trades"] == 3 and table["BBB"]["trades"] == 0
    dates = pd.bdate_range("2024-01-01", periods=5).values
    rows = backtest.backtest_rows(dates, "AAA", open_[0], close[0], positions[0], eq[0], bh[0])
    assert list(rows.columns) == ["date", "symbol", "open", "close", "position", "equity", "benchmark_equity"]
    assert rows["date"].tolist()[:2] == ["2024-01-01", "2024-01-02"]
    assert (rows["symbol"] == "AAA").all() and len(rows) == 5
    np.testing.assert_array_equal(rows["equity"].to_numpy(), eq[0])
    np.testing.assert_array_equal(rows["benchmark_equity"].to_numpy(), bh[0])
    np.testing.assert_array_equal(rows["position"].to_numpy(), positions[0])


# ---------------------------------------------------------------- cost metrics
def test_cost_metrics_gross_net_drag_and_sensitivity():
    open_, close = random_prices(13, num_symbols=1, num_days=60)
    open_, close = open_[0], close[0]
    positions = np.random.default_rng(13).choice([0.0, 1.0], size=60)
    model = costs.nse_delivery()
    capital = 1e6
    got = backtest.cost_metrics(open_, close, positions, model, "next_open", capital)
    net = backtest.equity_curve(open_, close, positions, model, "next_open", capital)
    gross = backtest.equity_curve(open_, close, positions, 0.0, "next_open", capital)
    assert got["gross_return"] == pytest.approx(gross[-1] / capital - 1, rel=1e-12)
    assert got["cost_drag"] == pytest.approx(gross[-1] / capital - net[-1] / capital, rel=1e-12)
    assert got["cost_drag"] > 0
    n = 59
    cagr = lambda e: (e[-1] / e[0]) ** (252 / n) - 1  # noqa: E731
    assert got["cost_drag_annual"] == pytest.approx(cagr(gross) - cagr(net), rel=1e-12)
    table = got["cost_sensitivity"]
    assert list(table) == ["0", "10", "25", "50"]
    assert table["0"]["total_return"] == pytest.approx(got["gross_return"], rel=1e-12)
    for bps in (10, 25, 50):
        eq = backtest.equity_curve(open_, close, positions, bps / 1e4, "next_open", capital)
        m = metrics.compute_metrics(eq, positions)
        assert table[str(bps)]["total_return"] == pytest.approx(m["total_return"], rel=1e-12)
        assert table[str(bps)]["sharpe"] == pytest.approx(m["sharpe"], rel=1e-12)
    returns = [table[k]["total_return"] for k in table]
    assert returns == sorted(returns, reverse=True)  # dearer costs, lower returns
    # never trading: no drag at all
    still = backtest.cost_metrics(open_, close, np.zeros(60), model, "close", capital)
    assert still["cost_drag"] == 0 and still["gross_return"] == 0
