"""The tearsheet (evorl_ui.report) and its figures: a self-contained HTML report with every chart,
linked axes, explained variance never cut off, overlays with smoothing, tick labels inside their
charts in Chromium."""

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


def test_evorl_report_command(run_dir, tmp_path, capsys, monkeypatch):
    """`evorl report RUN` (the installed command) by run id in --runs-dir or by folder; the engine's
    own module points to it; a run that does not exist is one error line naming both places."""
    from evorl_core.cli import main as engine_main
    from evorl_ui.cli import main

    out = tmp_path / "by-id.html"
    assert main(["report", "r", "--runs-dir", str(run_dir.path.parent), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count("Plotly.newPlot") == 5
    assert f"report written to {out}" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run_dir.path)]) == 0 and (tmp_path / "r-report.html").exists()
    capsys.readouterr()
    assert main(["report", "nope", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evorl report: error: nope: no run there") and str(tmp_path / "nope") in err
    assert engine_main(["report", "r"]) == 2 and "`evorl report RUN`" in capsys.readouterr().err
    assert main(["runs", "--runs-dir", str(run_dir.path.parent)]) == 0  # every other command: the engine's
    assert "r" in capsys.readouterr().out


def test_linked_axes_and_units(run_dir):
    sheet = report.load_tearsheet(run_dir)
    figs = report.tearsheet_figures(sheet)
    sym = figs["symbol:BPCL"].to_dict()["layout"]
    assert sym["xaxis"]["matches"] == "x3" and sym["xaxis2"]["matches"] == "x3"  # zoom one, zoom all
    assert [sym[k]["title"]["text"] for k in ("yaxis", "yaxis2", "yaxis3")] == [
        "equity (currency)", "drawdown", "close (currency)"]
    pf = figs["portfolio"].to_dict()["layout"]
    assert pf["yaxis3"]["title"]["text"] == "exposure" and pf["yaxis3"]["tickformat"] == ".0%"


def test_live_figures_show_all_of_explained_variance_and_draw_throughput_once():
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
    assert low < -25.0 and 1.0 < high < 3.0  # the early -25 is on the chart, not cut off
    assert [s["y0"] for s in ent["shapes"]] == [-1.0]  # the usual range's crossed bound is marked
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


CLIPPED_TICKS_JS = """() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const box = plot.getBoundingClientRect();
    const title = (plot.querySelector('.gtitle') || {}).textContent || '?';
    for (const t of plot.querySelectorAll('.xaxislayer-above text, .yaxislayer-above text')) {
      const r = t.getBoundingClientRect();
      if (!t.textContent || r.width === 0) continue;
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        out.push(`${title}: '${t.textContent}' at [${r.left.toFixed(0)}, ${r.top.toFixed(0)}] outside the chart`);
    }
  }
  return out;
}"""


@pytest.mark.browser
def test_the_html_report_renders_every_tick_label_inside_its_chart_in_chromium(run_dir, tmp_path):
    """What a user sends to someone else: no y tick label cut at the left ('M' for '1.05M'), no
    date tick cut at the bottom, at the 1,400 px of the dashboard's browser tests and on a narrow window."""
    from test_browser import ARTIFACTS, chromium_page

    path = tmp_path / "report.html"
    path.write_text(report.report_html(run_dir), encoding="utf-8")
    with chromium_page() as pg:
        for width in (1400, 800):
            pg.set_viewport_size({"width": width, "height": 1100})
            pg.goto(path.as_uri())
            pg.wait_for_selector(".js-plotly-plot .main-svg")
            pg.wait_for_function("document.querySelectorAll('.js-plotly-plot .xaxislayer-above text').length > 0")
            pg.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)
            assert pg.evaluate("document.querySelectorAll('.js-plotly-plot').length") >= 5
            assert pg.evaluate(CLIPPED_TICKS_JS) == [], width
