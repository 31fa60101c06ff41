"""Display helpers (evorl_core.views) against independent, loop-based computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evorl_core import views
from evorl_core.config import PRESETS, TrainConfig


# downsampling -----------------------------------------------------------------
@pytest.mark.parametrize("n,max_points", [(0, 10), (1, 10), (10, 10), (11, 10), (5000, 2000), (100_003, 2000)])
def test_downsample_indices_bounds(n, max_points):
    idx = views.downsample_indices(n, max_points)
    assert len(idx) == min(n, max_points)
    if n:
        assert idx[0] == 0 and idx[-1] == n - 1
        assert np.all(np.diff(idx) > 0)
    if n <= max_points:
        assert list(idx) == list(range(n))


def test_minmax_downsample_keeps_global_extremes_and_bound():
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.standard_normal(50_000))
    y[12_345] = y.max() + 100.0  # a spike stride sampling would almost surely miss
    y[40_001] = y.min() - 100.0
    idx = views.minmax_downsample_indices(y, 2000)
    assert len(idx) <= 2000
    assert idx[0] == 0 and idx[-1] == len(y) - 1
    assert np.all(np.diff(idx) > 0)
    assert 12_345 in idx and 40_001 in idx
    # every bucket's own extremes survive: compare with a direct per-bucket scan
    edges = np.linspace(1, len(y) - 1, (2000 - 2) // 2 + 1).astype(int)
    kept = set(idx.tolist())
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        seg = y[lo:hi]
        assert lo + int(np.argmax(seg)) in kept
        assert lo + int(np.argmin(seg)) in kept


def test_minmax_downsample_short_series_untouched():
    y = np.array([3.0, np.nan, 1.0])
    assert list(views.minmax_downsample_indices(y, 2000)) == [0, 1, 2]


def test_ohlc_downsample_matches_manual_aggregation():
    rng = np.random.default_rng(1)
    n = 5003
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    df = pd.DataFrame({
        "open": close * (1 + rng.normal(0, 0.002, n)), "close": close,
        "volume": rng.integers(1, 1000, n).astype(float),
    }, index=pd.bdate_range("2000-01-03", periods=n, name="date"))
    df["high"] = df[["open", "close"]].max(axis=1) * 1.01
    df["low"] = df[["open", "close"]].min(axis=1) * 0.99
    bars = views.ohlc_downsample(df, 700)
    assert len(bars) <= 700
    # independent: walk the rows and aggregate runs of equal bucket numbers
    expected = []
    for i in range(n):
        b = i * 700 // n
        if not expected or expected[-1]["b"] != b:
            expected.append({"b": b, "date": df.index[i], "open": df["open"].iloc[i], "high": df["high"].iloc[i],
                             "low": df["low"].iloc[i], "close": df["close"].iloc[i], "volume": df["volume"].iloc[i]})
        else:
            e = expected[-1]
            e["high"] = max(e["high"], df["high"].iloc[i])
            e["low"] = min(e["low"], df["low"].iloc[i])
            e["close"] = df["close"].iloc[i]
            e["volume"] += df["volume"].iloc[i]
    assert len(bars) == len(expected)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(bars[col].to_numpy(), [e[col] for e in expected])
    assert list(bars.index) == [e["date"] for e in expected]
    assert views.ohlc_downsample(df.iloc[:10], 700) is not None and len(views.ohlc_downsample(df.iloc[:10], 700)) == 10


# series -----------------------------------------------------------------------
def test_drawdown_matches_loop():
    rng = np.random.default_rng(2)
    equity = 1e6 * np.exp(np.cumsum(rng.normal(0, 0.02, 500)))
    expected, peak = [], -math.inf
    for e in equity:
        peak = max(peak, e)
        expected.append(e / peak - 1.0)
    dd = views.drawdown(equity)
    np.testing.assert_allclose(dd, expected)
    assert dd.max() <= 0.0 and dd[0] == 0.0
    assert views.drawdown(np.array([])).size == 0


def test_trade_markers_from_flat_start():
    positions = np.array([0, 0.5, 1, 1, 0, 0, 1, 0.5, 0.5])
    buys, sells = views.trade_markers(positions)
    assert list(buys) == [1, 2, 6]
    assert list(sells) == [4, 7]
    buys, sells = views.trade_markers(np.array([1.0, 1.0, -1.0]))
    assert list(buys) == [0] and list(sells) == [2]


def test_marker_points_fill_conventions():
    frame = pd.DataFrame({
        "date": pd.bdate_range("2024-01-01", periods=5),
        "open": [10.0, 11.0, 12.0, 13.0, 14.0],
        "close": [10.5, 11.5, 12.5, 13.5, 14.5],
        "position": [1.0, 1.0, 0.0, 0.0, 1.0],
    })
    nxt = views.marker_points(frame, "next_open")
    # decided at the close of day 0, filled at the open of day 1; the last-day entry has no fill
    assert list(nxt["entry"]["price"]) == [11.0]
    assert list(nxt["exit"]["price"]) == [13.0]
    at_close = views.marker_points(frame, "close")
    assert list(at_close["entry"]["price"]) == [10.5, 14.5]
    assert list(at_close["exit"]["price"]) == [12.5]


def test_metric_arrays_and_last_finite():
    rows = [{"env_steps": 10, "sps": 5.0}, {"env_steps": 20, "sps": None}, {"env_steps": 30}]
    m = views.metric_arrays(rows, ["env_steps", "sps"])
    np.testing.assert_array_equal(m["env_steps"], [10, 20, 30])
    assert np.isnan(m["sps"][1]) and np.isnan(m["sps"][2])
    assert views.last_finite(m["sps"]) == 5.0
    assert views.last_finite(np.array([np.nan])) is None
    assert views.has_values(m["sps"]) and not views.has_values(np.array([np.nan]))


# progress -----------------------------------------------------------------------
def test_progress_and_eta():
    p = views.progress({"state": "running", "env_steps": 250, "total_steps": 1000},
                       [{"env_steps": 250, "steps_per_sec": 50.0}])
    assert p["fraction"] == 0.25 and p["eta_seconds"] == pytest.approx(15.0)
    p = views.progress({"state": "running", "env_steps": 250, "total_steps": 1000, "eta_seconds": 7.0})
    assert p["eta_seconds"] == 7.0
    assert views.progress({"state": "done", "env_steps": 5, "total_steps": 0})["fraction"] == 1.0
    assert views.progress(None)["fraction"] == 0.0
    assert views.format_duration(None) == "—"
    assert views.format_duration(59) == "59s"
    assert views.format_duration(61) == "1m 01s"
    assert views.format_duration(3 * 3600 + 120) == "3h 02m"


def test_is_live():
    now = 1000.0
    assert views.is_live({"state": "running", "updated_at": 990.0}, now=now)
    assert not views.is_live({"state": "done", "updated_at": 990.0}, now=now)
    assert not views.is_live(None)
    stale = {"state": "running", "updated_at": now - views.STALE_SECONDS - 1}
    assert not views.is_live(stale, now=now)
    assert views.is_live(stale, owned=True, now=now)


# tables ------------------------------------------------------------------------
METRICS = {
    "BPCL": {"total_return": 0.1, "sharpe": 1.234, "trades": 7.0, "bh_total_return": 0.05, "bh_sharpe": 0.5,
             "test_start": "2024-01-01", "significant": False, "sharpe_ci_low": None},
    "TATASTEEL": {"total_return": -0.02, "sharpe": float("nan")},
}


def test_symbol_metrics_table_reads_whatever_is_present():
    t = views.symbol_metrics_table(METRICS["BPCL"])
    assert list(t.columns) == ["Agent", "Buy & hold"]
    assert t.loc["total return", "Agent"] == "10.00%"
    assert t.loc["total return", "Buy & hold"] == "5.00%"
    assert t.loc["sharpe", "Agent"] == "1.234"
    assert t.loc["trades", "Agent"] == "7" and t.loc["trades", "Buy & hold"] == "—"
    assert t.loc["sharpe ci low", "Agent"] == "—"
    assert "test start" not in t.index
    assert views.metric_notes(METRICS["BPCL"]) == {"test_start": "2024-01-01", "significant": "False"}
    t2 = views.symbol_metrics_table(METRICS["TATASTEEL"])
    assert list(t2.columns) == ["Agent"] and t2.loc["sharpe", "Agent"] == "—"


def test_overview_compare_headline():
    o = views.overview_table(METRICS)
    assert list(o.index) == ["BPCL", "TATASTEEL"]
    assert o.loc["BPCL", "total return (B&H)"] == "5.00%"
    c = views.compare_table("a", METRICS, "b", {"BPCL": {"total_return": 0.2}})
    assert c.loc[("BPCL", "total return"), "a"] == "10.00%"
    assert c.loc[("BPCL", "total return"), "b"] == "20.00%"
    assert c.loc[("TATASTEEL", "total return"), "b"] == "—"
    with pytest.raises(ValueError):
        views.compare_table("a", METRICS, "a", METRICS)
    h = views.headline(METRICS)
    assert h["total_return"] == pytest.approx(0.04)
    assert h["sharpe"] == pytest.approx(1.234)
    assert views.headline(None) == {"total_return": None, "sharpe": None}
    assert views.overview_table({}).empty and views.compare_table("a", {}, "b", {}).empty


# the Train form ------------------------------------------------------------------
def _form(**changes):
    values = views.preset_form_values("quick")
    form = {k: values[k] for k in views.FORM_FIELDS}
    form.update(symbols="bpcl, HDFCLIFE ,tatasteel", preset="quick", data="synthetic")
    form.update(changes)
    return form


def test_config_from_form_valid():
    config, errors = views.config_from_form(_form())
    assert errors == []
    assert config.symbols == ("BPCL", "HDFCLIFE", "TATASTEEL")
    assert config.hidden == tuple(PRESETS["quick"]["hidden"])
    assert config.preset == "quick" and config.data == "synthetic"
    assert config == config.validated()
    assert isinstance(config, TrainConfig)


@pytest.mark.parametrize("changes,needle", [
    ({"symbols": ""}, "symbols: give at least one symbol"),
    ({"symbols": "BPCL,BPCL"}, "symbols: duplicates"),
    ({"minibatch_size": 1000}, "minibatch_size: 1000 must divide"),
    ({"hidden": "64,abc"}, "hidden:"),
    ({"positions": "0"}, "positions: give at least two"),
    ({"positions": "0,2"}, "positions: each target exposure must lie in [-1, 1]"),
    ({"lr": 0.0}, "lr: must be a positive number"),
    ({"total_timesteps": -5}, "timesteps: must be positive"),
    ({"test_days": 1}, "test_days: must be at least 2"),
    ({"fee_bps": -1.0}, "fee_bps: must be >= 0"),
    ({"num_envs": 2.5}, "num_envs: must be a whole number"),
    ({"preset": "nope"}, "preset: unknown preset"),
])
def test_config_from_form_reports_field_errors(changes, needle):
    config, errors = views.config_from_form(_form(**changes))
    assert config is None
    assert any(needle in e for e in errors), errors


def test_config_from_form_reports_every_error_at_once():
    _, errors = views.config_from_form(_form(symbols="", lr=-1.0, epochs=0))
    joined = "\n".join(errors)
    assert "symbols:" in joined and "lr:" in joined and "epochs:" in joined


def test_overview_reports_sharpe_interval_and_significance():
    from evorl_core.views import overview_table, sharpe_interval_text

    metrics = {
        "AAA": {"total_return": 0.1, "sharpe": 1.5, "sharpe_ci_low": 0.2, "sharpe_ci_high": 2.9,
                "significant": True, "bh_total_return": 0.05},
        "BBB": {"total_return": 0.0, "sharpe": None, "sharpe_ci_low": None, "sharpe_ci_high": None,
                "significant": False},
    }
    table = overview_table(metrics)
    assert table.loc["AAA", "Sharpe 95% CI"] == "[0.20, 2.90]"
    assert table.loc["AAA", "differs from flat"] == "yes"
    assert table.loc["BBB", "Sharpe 95% CI"] == "—" and table.loc["BBB", "differs from flat"] == "no"
    assert sharpe_interval_text({"sharpe_ci_low": -0.123, "sharpe_ci_high": 0.5}) == "[-0.12, 0.50]"


def test_metric_definitions_cover_every_reported_metric():
    from evorl_core.backtest import METRIC_NAMES
    from evorl_core.views import metric_definitions_table

    table = metric_definitions_table()
    assert set(METRIC_NAMES) <= set(table.index)
    assert all(isinstance(d, str) and d for d in table["definition"])
