"""Display preparation (the evorl_ui.presenters modules) against independent, loop-based computations."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from evorl_core.metrics import METRIC_NAMES
from evorl_core.timefmt import format_duration
from evorl_ui.charts.live import live_figures
from evorl_ui.presenters.backtest import (
    backtest_symbols,
    baseline_comparison_table,
    compare_table,
    conventions_text,
    metric_definitions_table,
    metric_notes,
    notes_text,
    overview_table,
    sharpe_interval_text,
    significance_text,
    symbol_metrics_table,
    symbol_rows,
    tearsheet_caveats,
    trades_table,
    verdict_text,
)
from evorl_ui.presenters.data import candles_title, frames_summary
from evorl_ui.presenters.format import (
    downsample_indices,
    drawdown,
    format_metric,
    has_values,
    headline,
    last_finite,
    marker_points,
    message_markdown,
    metric_arrays,
    minmax_downsample_indices,
    number_text,
    ohlc_downsample,
    pretty,
    steps_text,
    trade_markers,
)
from evorl_ui.presenters.live import (
    LIVE_METRIC_KEYS,
    STALE_SECONDS,
    age_text,
    cumulative,
    ema,
    is_live,
    live_kpis,
    member_mean,
    memory_kpi,
    no_metrics_text,
    progress,
    status_alert,
    status_line,
)
from evorl_ui.presenters.models import ledger_table, models_table, paper_result_text, signals_table
from evorl_ui.presenters.runs import (
    backend_line,
    comparison_warning,
    data_badge,
    devices_text,
    filter_runs,
    run_label,
    run_size,
    runs_table,
)


# downsampling -----------------------------------------------------------------
@pytest.mark.parametrize("n,max_points", [(0, 10), (1, 10), (10, 10), (11, 10), (5000, 2000), (100_003, 2000)])
def test_downsample_indices_bounds(n, max_points):
    idx = downsample_indices(n, max_points)
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
    idx = minmax_downsample_indices(y, 2000)
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
    assert list(minmax_downsample_indices(y, 2000)) == [0, 1, 2]


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
    bars = ohlc_downsample(df, 700)
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
    assert ohlc_downsample(df.iloc[:10], 700) is not None and len(ohlc_downsample(df.iloc[:10], 700)) == 10


# series -----------------------------------------------------------------------
def test_drawdown_matches_loop():
    rng = np.random.default_rng(2)
    equity = 1e6 * np.exp(np.cumsum(rng.normal(0, 0.02, 500)))
    expected, peak = [], -math.inf
    for e in equity:
        peak = max(peak, e)
        expected.append(e / peak - 1.0)
    dd = drawdown(equity)
    np.testing.assert_allclose(dd, expected)
    assert dd.max() <= 0.0 and dd[0] == 0.0
    assert drawdown(np.array([])).size == 0


def test_trade_markers_from_flat_start():
    positions = np.array([0, 0.5, 1, 1, 0, 0, 1, 0.5, 0.5])
    buys, sells = trade_markers(positions)
    assert list(buys) == [1, 2, 6]
    assert list(sells) == [4, 7]
    buys, sells = trade_markers(np.array([1.0, 1.0, -1.0]))
    assert list(buys) == [0] and list(sells) == [2]


def test_marker_points_fill_conventions():
    frame = pd.DataFrame({
        "date": pd.bdate_range("2024-01-01", periods=5),
        "open": [10.0, 11.0, 12.0, 13.0, 14.0],
        "close": [10.5, 11.5, 12.5, 13.5, 14.5],
        "position": [1.0, 1.0, 0.0, 0.0, 1.0],
    })
    nxt = marker_points(frame, "next_open")
    # decided at the close of day 0, filled at the open of day 1; the last-day entry has no fill
    assert list(nxt["entry"]["price"]) == [11.0]
    assert list(nxt["exit"]["price"]) == [13.0]
    at_close = marker_points(frame, "close")
    assert list(at_close["entry"]["price"]) == [10.5, 14.5]
    assert list(at_close["exit"]["price"]) == [12.5]


def test_metric_arrays_and_last_finite():
    rows = [{"env_steps": 10, "sps": 5.0}, {"env_steps": 20, "sps": None}, {"env_steps": 30}]
    m = metric_arrays(rows, ["env_steps", "sps"])
    np.testing.assert_array_equal(m["env_steps"], [10, 20, 30])
    assert np.isnan(m["sps"][1]) and np.isnan(m["sps"][2])
    assert last_finite(m["sps"]) == 5.0
    assert last_finite(np.array([np.nan])) is None
    assert has_values(m["sps"]) and not has_values(np.array([np.nan]))


# progress -----------------------------------------------------------------------
def test_progress_and_eta():
    p = progress({"state": "running", "env_steps": 250, "total_steps": 1000},
                 [{"env_steps": 250, "steps_per_sec": 50.0}])
    assert p["fraction"] == 0.25 and p["eta_seconds"] == pytest.approx(15.0)
    p = progress({"state": "running", "env_steps": 250, "total_steps": 1000, "eta_seconds": 7.0})
    assert p["eta_seconds"] == 7.0
    assert progress({"state": "done", "env_steps": 5, "total_steps": 0})["fraction"] == 1.0
    assert progress(None)["fraction"] == 0.0
    assert format_duration(None) == "—"
    assert format_duration(59) == "59s"
    assert format_duration(61) == "1m 01s"
    assert format_duration(3 * 3600 + 120) == "3h 02m"


def test_is_live():
    now = 1000.0
    assert is_live({"state": "running", "updated_at": 990.0}, now=now)
    assert not is_live({"state": "done", "updated_at": 990.0}, now=now)
    assert not is_live(None)
    stale = {"state": "running", "updated_at": now - STALE_SECONDS - 1}
    assert not is_live(stale, now=now)
    assert is_live(stale, owned=True, now=now)


# tables ------------------------------------------------------------------------
METRICS = {
    "BPCL": {"total_return": 0.1, "sharpe": 1.234, "trades": 7.0, "bh_total_return": 0.05, "bh_sharpe": 0.5,
             "test_start": "2024-01-01", "significant": False, "sharpe_ci_low": None},
    "TATASTEEL": {"total_return": -0.02, "sharpe": float("nan")},
}


def test_symbol_metrics_table_reads_whatever_is_present():
    t = symbol_metrics_table(METRICS["BPCL"])
    assert list(t.columns) == ["Agent", "Buy & hold"]
    assert t.loc["total return", "Agent"] == "+10.00%"
    assert t.loc["total return", "Buy & hold"] == "+5.00%"
    assert t.loc["Sharpe", "Agent"] == "1.234"
    assert t.loc["position changes", "Buy & hold"] == "—"
    assert "sharpe ci low" not in t.index  # the interval is shown as one text, with its verdict
    assert "test start" not in t.index
    assert metric_notes(METRICS["BPCL"]) == {"test_start": "2024-01-01"}  # no raw "significant: False"
    assert t.loc["position changes", "Agent"] == "7"  # backtest's `trades` counts position changes
    t2 = symbol_metrics_table(METRICS["TATASTEEL"])
    assert list(t2.columns) == ["Agent"] and t2.loc["Sharpe", "Agent"] == "—"


def test_overview_compare_headline():
    o = overview_table(METRICS)
    assert list(o.index) == ["BPCL", "TATASTEEL"]
    assert o.loc["BPCL", "total return (B&H)"] == "+5.00%"
    c = compare_table("a", METRICS, "b", {"BPCL": {"total_return": 0.2}})
    assert c.loc[("BPCL", "total return"), "a"] == "+10.00%"
    assert c.loc[("BPCL", "total return"), "b"] == "+20.00%"
    assert c.loc[("TATASTEEL", "total return"), "b"] == "—"
    with pytest.raises(ValueError):
        compare_table("a", METRICS, "a", METRICS)
    h = headline(METRICS)
    assert h["total_return"] == pytest.approx(0.04)
    assert h["sharpe"] == pytest.approx(1.234)
    assert headline(None) == {"total_return": None, "sharpe": None}
    assert overview_table({}).empty and compare_table("a", {}, "b", {}).empty


def test_overview_reports_sharpe_interval_and_significance():
    metrics = {
        "AAA": {"total_return": 0.1, "sharpe": 1.5, "sharpe_ci_low": 0.2, "sharpe_ci_high": 2.9,
                "significant": True, "bh_total_return": 0.05},
        "BBB": {"total_return": 0.0, "sharpe": None, "sharpe_ci_low": None, "sharpe_ci_high": None,
                "significant": False},
    }
    table = overview_table(metrics)
    assert table.loc["AAA", "Sharpe 95% CI"] == "[0.20, 2.90]"
    assert table.loc["AAA", "vs flat (95%)"] == "better than flat"
    assert table.loc["BBB", "Sharpe 95% CI"] == "—" and table.loc["BBB", "vs flat (95%)"] == "undefined"
    # a significantly worse result says so, not just "significant"
    assert significance_text({"sharpe_ci_low": -2.0, "sharpe_ci_high": -0.1}) == "worse than flat"
    assert significance_text({"sharpe_ci_low": -1.0, "sharpe_ci_high": 0.5}) == "indistinguishable"
    assert sharpe_interval_text({"sharpe_ci_low": -0.123, "sharpe_ci_high": 0.5}) == "[-0.12, 0.50]"


def test_metric_definitions_cover_every_reported_metric():
    table = metric_definitions_table()
    assert set(METRIC_NAMES) <= set(table.index)
    assert all(isinstance(d, str) and d for d in table["definition"])


# the pages' texts and tables ------------------------------------------------------------
def test_status_line_and_alerts():
    prog = {"env_steps": 1234, "total_steps": 5000, "eta_seconds": 65.0}
    line = status_line({"state": "running", "phase": "training"}, prog, stop_requested=True)
    assert "**running** (training)" in line and "1,234 / 5,000 env steps" in line
    assert "ETA 1m 05s" in line and line.endswith("stop requested")
    done = status_line({"state": "done"}, prog, stop_requested=True)
    assert "ETA" not in done and "stop requested" not in done  # final states: no ETA, no stop note
    stopping = status_line({"state": "stopping"}, prog, stop_requested=True)
    assert "ETA" in stopping and "stop requested" not in stopping
    assert status_alert({"state": "failed", "error": "boom"}, False) == ("error", "Run failed: boom")
    assert status_alert({"state": "interrupted"}, False)[0] == "warning"
    kind, text = status_alert({"state": "running", "updated_at": 100.0}, still_live=False, now=400.0)
    assert kind == "warning" and "5m 00s ago" in text
    assert status_alert({"state": "running"}, still_live=True) is None
    assert status_alert({"state": "done"}, still_live=False) is None
    assert "Waiting" in no_metrics_text("compiling")
    assert no_metrics_text("done") == "This run has no metrics."
    assert age_text(None) == "—" and age_text(10.0, now=70.0) == "1m 00s ago"


def test_message_markdown_keeps_each_line_of_a_message():
    from evorl_core.data import DataError

    exc = DataError.listing(["a.csv: column 'Close', row 5: missing value", "a.csv: column 'Open', row 9: x"])
    assert message_markdown(f"AAA: {exc}") == (
        "AAA: a.csv: column 'Close', row 5: missing value (1 more problem)  \na.csv: column 'Open', row 9: x")
    assert message_markdown("one line") == "one line"


def test_live_kpis():
    rows = [{"update": 1, "steps_per_sec": 1000.0, "host_rss_mb": 512.2, "train_seconds": 1.0},
            {"update": 2, "steps_per_sec": 3000.0, "host_rss_mb": None, "train_seconds": 2.0},
            {"update": 3, "steps_per_sec": 2000.0, "train_seconds": 3.0},
            {"update": 4, "steps_per_sec": 500.0, "train_seconds": 0.5}]  # resumed: its clock restarts
    m = metric_arrays(rows, LIVE_METRIC_KEYS)
    kpis = live_kpis(m, {"compile_seconds": 3.21})
    assert kpis == {"Env steps / s": "1,500", "Last chunk": "500 steps/s", "Updates": "4", "Compile": "3.2 s",
                    "Training time": "4s"}
    empty = live_kpis(metric_arrays([], LIVE_METRIC_KEYS), {})
    assert empty == {"Env steps / s": "—", "Last chunk": "—", "Updates": "0", "Compile": "—", "Training time": "—"}
    assert memory_kpi(m, "cpu")[:2] == ("Process RSS", "512 MB")
    gpu = metric_arrays([{"device_mem_mb": 2048.0, "host_rss_mb": 900.0}], LIVE_METRIC_KEYS)
    assert memory_kpi(gpu, "gpu")[:2] == ("Device memory", "2,048 MB")  # a run from before the peak
    peak = metric_arrays([{"device_mem_mb": 21.0, "device_peak_mb": 1500.0, "host_rss_mb": 900.0}],
                         LIVE_METRIC_KEYS)
    label, value, help_text = memory_kpi(peak, "gpu")
    assert (label, value) == ("Device memory (peak)", "1,500 MB") and "21 MB held between chunks" in help_text
    assert memory_kpi(peak, "cpu")[:2] == ("Process RSS", "900 MB")


def test_cumulative_clock_across_resumes():
    x = np.array([1.0, 2.0, 3.0, 0.5, 1.5, np.nan, 0.2])
    got = cumulative(x)
    assert got[:5].tolist() == [1.0, 2.0, 3.0, 3.5, 4.5] and np.isnan(got[5]) and got[6] == pytest.approx(4.7)


def test_member_mean_averages_population_rows_per_update():
    rows = [{"update": 1, "env_steps": 10, "member": 0, "entropy": 1.0},
            {"update": 1, "env_steps": 10, "member": 1, "entropy": 3.0},
            {"update": 2, "env_steps": 20, "member": 0, "entropy": 2.0, "steps_per_sec": 5.0},
            {"update": 2, "env_steps": 20, "member": 1, "entropy": None, "steps_per_sec": 7.0}]
    out = member_mean(rows)
    assert [r["entropy"] for r in out] == [2.0, 2.0] and out[1]["steps_per_sec"] == 6.0
    assert out[0]["members"] == 2 and "member" not in out[0]
    plain = [{"update": 1, "entropy": 1.0}]
    assert member_mean(plain) == plain


def test_ema_is_tensorboard_smoothing():
    y = np.array([1.0, 2.0, np.nan, 4.0])
    out = ema(y, 0.5)
    # debiased EMA: 1, (0.25 + 0.5*... ) computed by hand
    last, n, expected = 0.0, 0, []
    for v in (1.0, 2.0, 4.0):
        last = 0.5 * last + 0.5 * v
        n += 1
        expected.append(last / (1 - 0.5 ** n))
    assert out[0] == pytest.approx(expected[0]) and out[1] == pytest.approx(expected[1])
    assert np.isnan(out[2]) and out[3] == pytest.approx(expected[2])
    assert ema(y, 0.0)[[0, 1, 3]].tolist() == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError):
        ema(y, 1.0)


def test_backend_texts():
    info = {"jax_platform": "cpu", "device_count": 2, "device_kinds": ["cpu"], "jax": "0.5.0",
            "devices": [{"id": 0, "platform": "cpu", "kind": "cpu"}, {"id": 1, "platform": "cpu", "kind": "cpu"}]}
    assert backend_line(info) == "Backend **cpu** · 2 device(s) · cpu · JAX 0.5.0"
    assert devices_text(info) == "cpu:0 (cpu), cpu:1 (cpu)"


def test_runs_and_models_tables():
    runs = [{"run_id": "r1", "state": "running", "env_steps": 50, "total_steps": 200, "symbols": ["A", "B"],
             "preset": "quick", "backtest": None, "updated_at": 0, "synthetic": True, "data_source": "synthetic",
             "name": "first", "tags": ["x", "y"], "total_timesteps": 200_000},
            {"run_id": "r2", "state": "done", "env_steps": 10, "total_steps": 0, "backtest": METRICS,
             "synthetic": False, "data_source": "csv"}]
    t = runs_table(runs)
    assert t["run"].tolist() == ["r1", "r2"]
    assert t["progress"].tolist() == [0.25, 1.0]
    assert t.loc[1, "test return"] == "+4.00%" and t.loc[0, "test return"] == "—"  # never "None"
    assert t.loc[0, "Sharpe"] == "—" and t.loc[1, "Sharpe"] == "1.23"
    assert t["data"].tolist() == ["SYNTHETIC", "real: csv"] and t.loc[0, "tags"] == "x, y"
    assert len(runs_table(runs, limit=1)) == 1
    assert run_label(runs[0]) == "running · first · SYNTHETIC · quick · 200k steps · A,B · r1"
    assert run_label({"run_id": "r3", "state": "queued", "synthetic": None}) == "queued · data ? · r3"
    # members: seeds or a population, counted wherever the run's size shows (Home, pickers)
    seeded = {**runs[0], "seeds": 4, "population": 1}
    assert runs_table([seeded]).loc[0, "size"] == "quick · 200k steps · 4 seeds"
    assert run_size({**seeded, "population": 16}) == "quick · 200k steps · population 16"
    assert run_size({**seeded, "seeds": 1}) == "quick · 200k steps"
    models = [{"name": "m", "symbols": ["A"], "created_at": 0, "positions": [0.0, 0.5, 1.0],
               "date_ranges": {"A": {"first": "2020-01-01", "train_end": "2021-01-01", "test_start": "2021-01-04",
                                     "last": "2021-06-01"}}, "test_metrics": METRICS, "synthetic": True}]
    mt = models_table(models)
    row = mt.iloc[0]
    assert row["train"] == "2020-01-01 → 2021-01-01"
    assert row["test return"] == "+4.00%" and row["data"] == "SYNTHETIC"
    sig = signals_table([{"symbol": "A", "date": "2021-06-01", "position": 0.5,
                         "probabilities": {0.0: 0.2, 0.5: 0.8}}])
    assert sig.loc[0, "target position"] == 0.5 and sig.loc[0, "P(0.5)"] == 0.8


def test_backtest_texts_and_symbol_rows():
    config = {"execution": "close", "fee_bps": 2.0, "slippage_bps": 3.0, "data": "yahoo",
              "data_info": {"source": "yahoo", "synthetic": False}}
    text = conventions_text(config)
    assert "A = 252" in text and "**close**" in text and "fee 2.0 bps" in text and "slippage 3.0 bps" in text
    assert text.endswith("data: yahoo")
    assert "data:" not in conventions_text({**config, "data_info": {"synthetic": True}})
    nse = conventions_text({**config, "cost_model": "nse-delivery", "brokerage_bps": 0.0,
                            "dp_charge": 13.5})
    assert "nse-delivery: buy 14.86 bps, sell 13.36 bps + Rs 15.93 per sell day" in nse  # slippage 3 bps
    assert "slippage 3.0 bps" in nse and "Rs 13.5 + GST" in nse
    assert format_metric("cost_drag", 0.0123) == "+1.23%"
    equity = pd.DataFrame({"date": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-01"]),
                           "symbol": ["A", "A", "C"], "equity": [2.0, 1.0, 1.0]})
    assert backtest_symbols({"B": {}, "A": {}}, equity) == ["B", "A", "C"]
    assert backtest_symbols(None, None) == []
    assert symbol_rows(equity, "A")["equity"].tolist() == [1.0, 2.0]
    assert symbol_rows(equity, "B") is None and symbol_rows(None, "A") is None
    assert notes_text(METRICS["BPCL"]) == "test_start: 2024-01-01"


def test_data_texts():
    df = pd.DataFrame({"close": [1.0, 2.5]}, index=pd.to_datetime(["2024-01-01", "2024-01-02"]))
    s = frames_summary({"A": df}, {"source": "synthetic", "per_symbol": {}})
    assert s.to_dict("records") == [{"symbol": "A", "rows": 2, "first date": "2024-01-01",
                                     "last date": "2024-01-02", "last close": 2.5, "source": "synthetic"}]
    assert candles_title("A", 10) == "A — daily OHLC (10 rows)"
    assert candles_title("A", 5000).endswith("aggregated for display)")


def test_pure_modules_import_no_streamlit():
    code = ("import importlib, pkgutil, sys, evorl_ui; "
            "assert 'streamlit' not in sys.modules and 'jax' not in sys.modules; "
            "import evorl_ui.presenters, evorl_ui.forms, evorl_ui.charts; "
            "[importlib.import_module(m.name) for pkg in (evorl_ui.presenters, evorl_ui.charts) "
            " for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.')]; "
            "assert 'streamlit' not in sys.modules, 'a pure module imports streamlit'")
    subprocess.run([sys.executable, "-c", code], check=True)


# run management, provenance, the tearsheet and the ledger --------------------------------
RUNS = [
    {"run_id": "a", "state": "done", "created_at": 3, "name": "Zeta", "tags": ["lr"], "note": "", "symbols": ["X"],
     "archived": False, "synthetic": False, "data_source": "csv", "backtest": {"X": {"sharpe": 0.5, "total_return": 0.1}}},
    {"run_id": "b", "state": "failed", "created_at": 2, "name": "", "tags": [], "note": "broken prices",
     "symbols": ["Y"], "archived": False, "synthetic": True, "data_source": "synthetic", "backtest": None},
    {"run_id": "c", "state": "done", "created_at": 1, "name": "alpha", "tags": [], "note": "", "symbols": ["X"],
     "archived": True, "synthetic": False, "data_source": "csv", "backtest": {"X": {"sharpe": 2.0, "total_return": 0.3}}},
]


def ids(runs):
    return [r["run_id"] for r in runs]


def test_filter_and_sort_runs():
    assert ids(filter_runs(RUNS)) == ["a", "b"]  # archived hidden
    assert ids(filter_runs(RUNS, archived=True)) == ["a", "b", "c"]
    assert ids(filter_runs(RUNS, "PRICES")) == ["b"]  # the note, case-insensitive
    assert ids(filter_runs(RUNS, "lr")) == ["a"]  # a tag
    assert ids(filter_runs(RUNS, states=["failed"])) == ["b"]
    assert ids(filter_runs(RUNS, data="real", archived=True)) == ["a", "c"]
    assert ids(filter_runs(RUNS, data="synthetic")) == ["b"]
    assert ids(filter_runs(RUNS, archived=True, sort="oldest first")) == ["c", "b", "a"]
    assert ids(filter_runs(RUNS, archived=True, sort="name")) == ["c", "a", "b"]  # unnamed last
    assert ids(filter_runs(RUNS, archived=True, sort="best mean Sharpe")) == ["c", "a", "b"]


def test_data_badges_and_comparison_warnings():
    assert data_badge(True)[1] == "orange" and "Synthetic" in data_badge(True)[0]
    assert data_badge(False, "csv") == ("Real data · csv", "green", ":material/verified:")
    assert data_badge(None)[0] == "Data not loaded yet"
    real, fake = RUNS[0], RUNS[1]
    warning = comparison_warning(real, fake)
    assert "SYNTHETIC" in warning and "real: csv" in warning and "not" in warning
    same = {**real, "run_id": "a2"}
    assert comparison_warning(real, same) is None
    assert "different price histories" in comparison_warning(
        {**real, "data_hash": "1"}, {**same, "data_hash": "2"})
    assert "test windows" in comparison_warning({**real, "test_days": 60}, {**same, "test_days": 90})


def test_units_and_short_window_caveats():
    assert format_metric("turnover", 149.492) == "149.5×"
    assert pretty("turnover") == "turnover (× equity / year)"
    table = symbol_metrics_table({"cagr": -0.6369, "days": 60, "total_return": -0.2})
    assert "CAGR ⚠ from 59 days" in table.index
    assert "CAGR" in symbol_metrics_table({"cagr": 0.1, "days": 400}).index
    caveats = tearsheet_caveats(60, True)
    assert len(caveats) == 2 and "Synthetic" in caveats[0] and "59 daily returns" in caveats[1]
    assert tearsheet_caveats(400, False) == []
    assert number_text(None) == "—" and number_text(float("nan")) == "—"
    assert steps_text(1_234_567) == "1.23M" and steps_text(500) == "500"


def test_trades_table_and_ledger_texts():
    trades = pd.DataFrame([{"symbol": "A", "entry_date": pd.Timestamp("2024-01-02"), "exit_date": pd.Timestamp("2024-01-05"),
                            "position": 1.0, "entry_price": 10.0, "exit_price": 11.0, "return": 0.0987, "pnl": 98.7,
                            "holding_days": 3, "open": False}])
    t = trades_table(trades)
    assert t.loc[0, "entry (fill)"] == "2024-01-02" and t.loc[0, "return"] == "+9.87%"
    assert t.loc[0, "P&L (account currency)"] == "+98.70" and t.loc[0, "status"] == "closed"
    assert list(trades_table(trades.iloc[0:0]).columns) == list(t.columns)

    class Result:
        appended = [{"date": "2026-01-02", "symbol": "A"}, {"date": "2026-01-02", "symbol": "B"}]
        latest = {"A": "2026-01-02", "B": "2026-01-02"}

    assert paper_result_text(Result()) == (
        True, "Appended 2 entries for 2026-01-02. The new targets fill at the next session.")
    Result.appended = []
    appended, text = paper_result_text(Result())
    assert not appended and text.startswith("Nothing appended: already recorded up to 2026-01-02")
    rows = [{"date": "2026-01-01", "symbol": "A", "held": 0.0, "target": 1.0, "close": 5.0, "equity": 100.0,
             "benchmark_equity": 100.0, "synthetic": True, "stale": True}]
    assert ledger_table(rows).loc[0, "data"] == "SYNTHETIC · stale"


def test_overview_and_notes_show_the_verdict_in_plain_words():
    verdict = "worse than buy & hold (p = 0.02); no evidence of timing skill (p = 0.40)"
    metrics = {"AAA": {"total_return": -0.1, "sharpe": -0.5, "sharpe_ci_low": -2.0, "sharpe_ci_high": 0.4,
                       "significant": False, "excess_mean_annual": -0.31, "excess_p_value": 0.02,
                       "timing_p_value": 0.4, "timing_draws": 57, "verdict": verdict, "test_start": "2024-01-01",
                       "baselines": {"buy_hold": {"total_return": 0.05, "sharpe": 1.1, "max_drawdown": -0.1,
                                                  "trades": 1.0, "exposure": 1.0}}}}
    table = overview_table(metrics)
    assert table.loc["AAA", "verdict"] == verdict
    assert "differs from flat" not in table.columns  # the verdict replaces it on screen
    assert table.loc["AAA", "Sharpe 95% CI"] == "[-2.00, 0.40]"
    assert notes_text(metrics["AAA"]) == f"Verdict: {verdict} · test_start: 2024-01-01"
    t = symbol_metrics_table(metrics["AAA"])
    assert t.loc["excess over buy & hold / year", "Agent"] == "-31.00%" and t.loc["timing null draws", "Agent"] == "57"
    b = baseline_comparison_table(metrics["AAA"])
    assert list(b.index) == ["agent", "buy hold"]
    assert b.loc["agent", "total return"] == "-10.00%" and b.loc["buy hold", "Sharpe"] == "1.100"
    assert baseline_comparison_table({"sharpe": 1.0}).empty
    assert verdict_text({"significant": True}).startswith("no verdict")
    assert {"excess mean annual", "timing p value", "verdict"} <= set(metric_definitions_table().index)


def test_memory_chart_draws_the_device_peak_beside_the_memory_between_chunks():
    rows = [{"env_steps": 100.0 * i, "host_rss_mb": 900.0 + i, "device_mem_mb": 21.0, "device_peak_mb": 1500.0 + i}
            for i in range(1, 4)]
    m = metric_arrays(rows, LIVE_METRIC_KEYS)
    fig = dict(live_figures(m))["live_mem"]
    traces = {t.name: list(t.y) for t in fig.data}
    assert traces == {"process RSS (whole process)": [901.0, 902.0, 903.0],
                      "device memory between chunks": [21.0, 21.0, 21.0],
                      "device memory, peak so far": [1501.0, 1502.0, 1503.0]}
    cpu = metric_arrays([{k: v for k, v in r.items() if "device" not in k} for r in rows],
                        LIVE_METRIC_KEYS)
    assert [t.name for t in dict(live_figures(cpu))["live_mem"].data] == ["process RSS (whole process)"]


def test_the_phases_caption_reads_the_status_phases():
    from evorl_ui.presenters.live import phases_caption

    assert phases_caption({"state": "running"}) == ""
    status = {"phases": [{"name": "loading data", "started_at": 0.0, "seconds": 2.0},
                         {"name": "compiling", "started_at": 2.0, "seconds": 11.04},
                         {"name": "training", "started_at": 13.0, "seconds": None}]}
    assert phases_caption(status, now=20.0) == "Phases: loading data 2.0 s · compiling 11.0 s · training 7.0 s so far"


def test_the_explained_variance_panel_shows_values_far_below_its_usual_range():
    from evorl_ui.charts.live import live_figures

    n = 20
    steps = np.arange(1, n + 1) * 1000.0
    ev = np.linspace(-32.0, -0.1, n)  # a value function much worse than a constant, then recovering
    m = {k: np.full(n, np.nan) for k in ("reward_mean", "reward_std", "episode_return_mean", "steps_per_sec",
                                         "host_rss_mb", "device_mem_mb", "device_peak_mb", "policy_loss",
                                         "value_loss", "approx_kl", "clip_fraction", "mean_abs_position",
                                         "turnover", "train_seconds")}
    m.update(env_steps=steps, entropy=np.linspace(1.0, 0.5, n), explained_variance=ev)
    fig = dict(live_figures(m, "env_steps"))["live_ent"]
    panel = next(t for t in fig.data if t.name == "explained variance")
    axis = fig.layout[f"yaxis{panel.yaxis[1:]}"] if panel.yaxis != "y" else fig.layout.yaxis
    low, high = axis.range
    assert low <= -32.0 and high >= 1.0  # every value on the chart, and the usual range's top
    assert [s.y0 for s in fig.layout.shapes] == [-1.0]  # the crossed bound is marked
    # inside the usual range the axis stays tight on [-1, 1]
    m["explained_variance"] = np.linspace(0.2, 0.9, n)
    fig = dict(live_figures(m, "env_steps"))["live_ent"]
    panel = next(t for t in fig.data if t.name == "explained variance")
    axis = fig.layout[f"yaxis{panel.yaxis[1:]}"]
    assert -0.1 < axis.range[0] < 0.2 and 1.0 <= axis.range[1] < 1.1 and not fig.layout.shapes
