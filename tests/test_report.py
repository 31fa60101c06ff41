"""The tearsheet (evorl_ui.report) and its figures: a self-contained HTML report with every chart,
linked axes, clipped explained variance, overlays with smoothing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from evorl_core.config import make_config
from evorl_core.evaluation import tearsheet
from evorl_core.store.catalogue import write_annotations
from evorl_core.training.pipeline import run as train
from evorl_ui import report
from evorl_ui.charts.live import live_figures, overlay_figure
from evorl_ui.presenters.format import metric_arrays
from evorl_ui.presenters.live import LIVE_METRIC_KEYS, ema


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    config = make_config("quick", data="synthetic", num_envs=8, num_steps=16, minibatch_size=32, hidden=(16,),
                         total_timesteps=512, test_days=90, symbols=("BPCL", "TATASTEEL"))
    rd = train(config, base / "runs", "r", cache_dir=str(base / "cache"))
    write_annotations(rd, name="report <test>", tags="a,b", note="a note")
    return rd


def test_tearsheet_agrees_with_the_backtest_files(run_dir):
    sheet = report.load_tearsheet(run_dir)
    assert sheet.synthetic is True and sheet.days == 90 and sheet.symbols == ["BPCL", "TATASTEEL"]
    for sym in sheet.symbols:
        stats = tearsheet.trade_summary(report.symbol_trades(sheet, sym))
        win_rate = sheet.metrics[sym]["win_rate"]
        if stats["round_trips"]:
            assert stats["win_rate"] == pytest.approx(win_rate)
        table = report.symbol_summary(sheet, sym)
        assert table.loc["round trips", "Agent"] == str(stats["round_trips"])
    assert sheet.value.iloc[0] == pytest.approx(make_config("quick").initial_capital)


def test_html_report_is_self_contained_with_every_chart(run_dir, tmp_path):
    out = tmp_path / "r.html"
    assert report.main(["--run", str(run_dir.path), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert html.count("Plotly.newPlot") == 3 + 2  # portfolio, monthly, rolling, one per symbol
    assert html.count("plotly.js v") == 1  # the library inlined once, no CDN
    assert not re.search(r"<script[^>]+src=", html)  # nothing loaded from elsewhere
    assert "report &lt;test&gt;" in html and "<test>" not in html  # user text is escaped
    assert "Synthetic data" in html and "Round trips" in html and "position changes" in html
    assert report.main(["--run", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_linked_axes_and_units(run_dir):
    sheet = report.load_tearsheet(run_dir)
    figs = report.tearsheet_figures(sheet)
    sym = figs["symbol:BPCL"].to_dict()["layout"]
    assert sym["xaxis"]["matches"] == "x3" and sym["xaxis2"]["matches"] == "x3"  # zoom one, zoom all
    assert [sym[k]["title"]["text"] for k in ("yaxis", "yaxis2", "yaxis3")] == [
        "equity (currency)", "drawdown", "close (currency)"]
    pf = figs["portfolio"].to_dict()["layout"]
    assert pf["yaxis3"]["title"]["text"] == "exposure" and pf["yaxis3"]["tickformat"] == ".0%"


def test_live_figures_clip_explained_variance_and_draw_throughput_once():
    n = 50
    rows = [{"env_steps": (i + 1) * 100, "update": i + 1, "steps_per_sec": 1000.0 + i, "updates_per_sec": 0.1,
             "explained_variance": -25.0 if i < 5 else 0.5, "entropy": 1.0, "policy_loss": -0.005,
             "value_loss": 20.0, "train_seconds": float(i)} for i in range(n)]
    figs = dict(live_figures(metric_arrays(rows, LIVE_METRIC_KEYS)))
    tput = figs["live_tput"].to_dict()
    assert [t["name"] for t in tput["data"]] == ["env steps / s"]  # updates/s is the same curve: not drawn
    assert tput["layout"]["yaxis"]["tickformat"] == ".3~s"
    ent = figs["live_ent"].to_dict()["layout"]
    low, high = ent["yaxis2"]["range"]
    assert -1.2 < low < 0 and 1.0 < high < 1.2  # early -25 does not flatten the 0..1 range
    assert "yaxis2" in figs["live_loss"].to_dict()["layout"]  # value loss on its own panel, not a right axis
    assert all(t.get("yaxis") != "y2" or "overlaying" not in figs["live_loss"].to_dict()["layout"].get("yaxis2", {})
               for t in figs["live_loss"].to_dict()["data"])


def test_overlay_draws_raw_and_smoothed_per_run():
    x = np.arange(10.0)
    fig = overlay_figure({"a": (x, x), "b": (x, -x)}, "t", "y", smoothing=0.5)
    names = [t.name for t in fig.data]
    assert names == ["a (raw)", "a", "b (raw)", "b"]
    assert np.allclose(fig.data[1].y, ema(x, 0.5))
    assert [t.name for t in overlay_figure({"a": (x, x)}, "t", "y").data] == ["a"]
