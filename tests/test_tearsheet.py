"""evorl_core.evaluation.tearsheet against independent computations: round trips agree with backtest's win
rate, fills and dates by hand, the portfolio, monthly returns and rolling Sharpe in plain Python."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evorl_core.evaluation import tearsheet
from evorl_core.metrics import compute_metrics
from evorl_core.modes.single.accounting import backtest_rows, equity_curve


def _rows(positions, symbol="AAA", start="2024-01-01", execution="next_open", cost=0.001, seed=0):
    rng = np.random.default_rng(seed)
    n = len(positions)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.02, n))
    open_ = close * (1 + rng.normal(0, 0.005, n))
    dates = pd.bdate_range(start, periods=n)
    eq = equity_curve(open_, close, positions, cost, execution, 1000.0)
    bench = equity_curve(open_, close, np.ones(n), cost, execution, 1000.0)
    return backtest_rows(dates.values, symbol, open_, close, positions, eq, bench)


def test_hand_example_next_open():
    # decisions at the close of rows 0..6; held in period k is positions[k]
    positions = np.array([0, 1, 1, 0, 0.5, 1, 1.0])
    rows = _rows(positions)
    trades = tearsheet.trade_list(rows, "next_open")
    eq, opens, dates = rows["equity"].to_numpy(), rows["open"].to_numpy(), pd.to_datetime(rows["date"])
    assert len(trades) == 3
    first, second, third = trades.to_dict("records")
    # 1 decided at close 1, filled at open 2; flat decided at close 3, filled at open 4
    assert first["entry_date"] == dates[2] and first["exit_date"] == dates[4]
    assert first["entry_price"] == pytest.approx(opens[2]) and first["exit_price"] == pytest.approx(opens[4])
    assert first["holding_days"] == 2 and first["position"] == 1.0 and not first["open"]
    assert first["return"] == pytest.approx(eq[4] / eq[1] - 1)  # periods 1, 2 and the closing period 3
    assert first["pnl"] == pytest.approx(eq[4] - eq[1])
    # 0.5 decided at close 4, switched to 1 at close 5: the switch period belongs to the next trade
    assert second["position"] == 0.5 and second["holding_days"] == 1
    assert second["return"] == pytest.approx(eq[5] / eq[4] - 1)
    assert second["exit_date"] == dates[6] and not second["open"]
    # 1 held in period 5 only (6 periods in all), still open: valued at the last close
    assert third["open"] and third["exit_date"] == dates[6]
    assert third["exit_price"] == pytest.approx(rows["close"].iloc[-1])
    assert third["return"] == pytest.approx(eq[6] / eq[5] - 1)


def test_hand_example_close_execution():
    positions = np.array([1, 1, 0, 0.0])
    rows = _rows(positions, execution="close")
    trades = tearsheet.trade_list(rows, "close")
    closes, dates = rows["close"].to_numpy(), pd.to_datetime(rows["date"])
    (t,) = trades.to_dict("records")
    assert t["entry_date"] == dates[0] and t["entry_price"] == pytest.approx(closes[0])
    assert t["exit_date"] == dates[2] and t["exit_price"] == pytest.approx(closes[2])
    assert t["holding_days"] == 2


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_round_trips_agree_with_backtest_win_rate(seed, execution):
    rng = np.random.default_rng(100 + seed)
    positions = rng.choice([-1.0, 0.0, 0.0, 0.5, 1.0], size=80)
    rows = _rows(positions, execution=execution, seed=seed)
    eq = rows["equity"].to_numpy()
    metrics = compute_metrics(eq, positions)
    trades = tearsheet.trade_list(rows, execution)
    summary = tearsheet.trade_summary(trades)
    if math.isnan(metrics["win_rate"]):
        assert summary["round_trips"] == 0
    else:
        assert summary["win_rate"] == pytest.approx(metrics["win_rate"])
    # every held non-zero period belongs to exactly one trade
    assert trades["holding_days"].sum() == np.count_nonzero(positions[:-1])
    # trade returns recomputed from the daily returns, period by period
    daily = eq[1:] / eq[:-1] - 1
    held = positions[:-1]
    expected, k = [], 0
    while k < len(held):
        if held[k] == 0:
            k += 1
            continue
        j = k
        growth = 1 + daily[k]
        while j + 1 < len(held) and held[j + 1] == held[k]:
            j += 1
            growth *= 1 + daily[j]
        if j + 1 < len(held) and held[j + 1] == 0:
            growth *= 1 + daily[j + 1]
        expected.append(growth - 1)
        k = j + 1
    assert trades["return"].to_numpy() == pytest.approx(np.array(expected))
    # backtest's `trades` metric counts position changes, a different (larger or equal) number
    assert metrics["trades"] >= summary["round_trips"]


def test_portfolio_is_the_mean_of_normalised_curves_with_gaps_held():
    a = pd.DataFrame({"date": ["2024-01-01", "2024-01-02", "2024-01-03"], "symbol": "A",
                      "position": 0.0, "equity": [100.0, 110.0, 121.0], "benchmark_equity": 100.0})
    b = pd.DataFrame({"date": ["2024-01-02", "2024-01-04"], "symbol": "B", "position": 1.0,
                      "equity": [50.0, 40.0], "benchmark_equity": 50.0})
    value = tearsheet.portfolio(pd.concat([a, b]), initial=1000.0)
    # B starts on the 2nd (cash before), A has no row on the 4th (keeps 121)
    expected = [1000 * (1.0 + 1.0) / 2, 1000 * (1.1 + 1.0) / 2, 1000 * (1.21 + 1.0) / 2, 1000 * (1.21 + 0.8) / 2]
    assert value.to_numpy() == pytest.approx(expected)
    assert list(value.index) == list(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]))


def test_portfolio_exposure_weights_held_positions_by_value():
    a = _rows(np.array([1.0, 1.0, 0.0, 0.0]), "A")
    b = _rows(np.array([0.0, 0.5, 0.5, 0.5]), "B", seed=1)
    exposure = tearsheet.portfolio_exposure(pd.concat([a, b]))
    ea, eb = a["equity"].to_numpy() / 1000, b["equity"].to_numpy() / 1000
    held_a, held_b = [0, 1, 1, 0], [0, 0, 0.5, 0.5]
    expected = [0.0] + [(held_a[t] * ea[t - 1] + held_b[t] * eb[t - 1]) / (ea[t - 1] + eb[t - 1])
                        for t in range(1, 4)]
    assert exposure.to_numpy() == pytest.approx(expected)


def test_monthly_returns_by_hand():
    dates = pd.to_datetime(["2024-01-30", "2024-01-31", "2024-02-15", "2024-02-29", "2024-04-02"])
    s = pd.Series([100.0, 102.0, 99.0, 105.0, 110.0], index=dates)
    table = tearsheet.monthly_returns(s)
    assert table.loc[2024, "Jan"] == pytest.approx(102 / 100 - 1)
    assert table.loc[2024, "Feb"] == pytest.approx(105 / 102 - 1)
    assert math.isnan(table.loc[2024, "Mar"])
    assert table.loc[2024, "Apr"] == pytest.approx(110 / 105 - 1)
    assert table.loc[2024, "Year"] == pytest.approx(110 / 100 - 1)


def test_rolling_sharpe_matches_a_loop():
    rng = np.random.default_rng(3)
    s = pd.Series(100 * np.cumprod(1 + rng.normal(0.001, 0.01, 40)), index=pd.bdate_range("2024-01-01", periods=40))
    out = tearsheet.rolling_sharpe(s, 10)
    r = s.to_numpy()[1:] / s.to_numpy()[:-1] - 1
    for end in range(len(r)):
        got = out.iloc[end]
        if end < 9:
            assert math.isnan(got)
            continue
        w = r[end - 9:end + 1]
        mean = sum(w) / 10
        std = math.sqrt(sum((x - mean) ** 2 for x in w) / 9)
        assert got == pytest.approx(mean / std * math.sqrt(252))
    assert out.index[0] == s.index[1]


def test_portfolio_metrics_use_backtest_formulas_and_cagr_caveat():
    s = pd.Series([100.0, 101.0, 99.0, 103.0], index=pd.bdate_range("2024-01-01", periods=4))
    m = tearsheet.portfolio_metrics(s)
    assert m["total_return"] == pytest.approx(0.03)
    assert m["cagr"] == pytest.approx(1.03 ** (252 / 3) - 1)
    assert tearsheet.cagr_is_short(60) and not tearsheet.cagr_is_short(253)
    assert tearsheet.rolling_window(60) == 30 and tearsheet.rolling_window(100) == 21
    assert tearsheet.rolling_window(400) == 63
