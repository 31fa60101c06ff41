"""Portfolio runs end to end (train, backtest, deploy, signal, orders on a folder of ragged CSVs with
a bad file), the evaluation's figures against independent computations, and its statistics."""

from __future__ import annotations

import html
import json
import re
import time

import numpy as np
import pandas as pd
import pytest
from market_csv import write_csv, write_csv_dir

from evorl_core.cli import main
from evorl_core.config import make_config
from evorl_core.data.synthetic import factor_universe_frames
from evorl_core.evaluation import portfolio as pe
from evorl_core.modes.portfolio import accounting
from evorl_core.store.rundir import RunDir
from evorl_ui.presenters.format import format_metric

ZERO_COST = ["--cost-model", "flat", "--fee-bps", "0", "--slippage-bps", "0", "--rebalance-band", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small portfolio run on csv:DIR with `--symbols all`: 7 good files (one listed late, one
    delisted) and one that fails validation; 2 seeds; deployed as model `pm`."""
    root = tmp_path_factory.mktemp("portfolio")
    symbols = [f"NS{i}" for i in range(7)]
    frames = factor_universe_frames(symbols, n_days=420, seed=4, ragged=False)
    frames["NS1"] = frames["NS1"].iloc[100:]
    frames["NS2"] = frames["NS2"].iloc[:380]
    write_csv_dir(root / "csv", frames)
    bad = frames["NS3"].copy()
    bad.iloc[5, bad.columns.get_loc("high")] = bad["low"].iloc[5] / 2  # high below low
    write_csv(root / "csv" / "BROKEN.csv", bad)
    code = main(["train", "--portfolio", "--symbols", "all", "--data", f"csv:{root / 'csv'}", "--preset", "quick",
                 "--timesteps", "4096", "--seeds", "2", "--test-days", "40", "--val-days", "30", "--window", "8",
                 *ZERO_COST, "--runs-dir", str(root / "runs"), "--run-id", "p", "--cache-dir", str(root / "cache"),
                 "--deploy", "--model-name", "pm", "--models-dir", str(root / "models"), "--quiet"])
    assert code == 0
    return root, frames


def test_all_trains_on_the_files_that_pass_and_records_the_rest(trained):
    root, frames = trained
    config = json.loads((root / "runs" / "p" / "config.json").read_text())
    assert config["mode"] == "portfolio"
    assert sorted(config["symbols"]) == sorted(frames)
    universe = config["data_info"]["universe"]
    assert universe["requested"] == "all" and list(universe["skipped"]) == ["BROKEN"]
    assert "survivorship" in universe["note"]
    assert config["date_ranges"]["NS1"]["symbol_first"] == str(frames["NS1"].index[0].date())
    assert config["date_ranges"]["NS2"]["symbol_last"] == str(frames["NS2"].index[-1].date())
    assert config["data_info"]["calendar"]["rows"] == 420
    status = json.loads((root / "runs" / "p" / "status.json").read_text())
    assert status["state"] == "done"


def _prices(frames, dates):
    close = pd.DataFrame({s: f["close"] for s, f in frames.items()}).reindex(pd.to_datetime(dates))
    open_ = pd.DataFrame({s: f["open"] for s, f in frames.items()}).reindex(pd.to_datetime(dates))
    return open_, close


def test_backtest_equity_follows_from_the_weights_and_prices(trained):
    """At zero cost and no band the account's equity is the product of the day's growth of the
    weights it held; recomputed here from weights.csv and the CSV prices alone."""
    root, frames = trained
    bt = root / "runs" / "p" / "backtest"
    equity = pd.read_csv(bt / "equity.csv")
    weights = pd.read_csv(bt / "weights.csv").pivot(index="date", columns="symbol", values="weight")
    dates = list(equity["date"])
    weights = weights.loc[dates]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    assert (weights.to_numpy() >= -1e-12).all()
    symbols = [s for s in weights.columns if s != "CASH"]
    open_, close = _prices({s: frames[s] for s in symbols}, dates)
    held = weights[symbols].to_numpy()
    cash = weights["CASH"].to_numpy()
    o, c = open_.to_numpy(), close.to_numpy()
    value = float(equity["equity"].iloc[0])
    drifted_assets, drifted_cash = np.zeros(len(symbols)), 1.0
    for k in range(len(dates) - 1):
        overnight = np.nansum(drifted_assets * o[k + 1] / c[k]) + drifted_cash
        day = np.nansum(held[k] * c[k + 1] / o[k + 1]) + cash[k]
        value *= overnight * day
        grown = np.where(held[k] > 0, held[k] * c[k + 1] / o[k + 1], 0.0)
        drifted_assets, drifted_cash = grown / day, cash[k] / day
        assert value == pytest.approx(equity["equity"].iloc[k + 1], rel=1e-9)
    metrics = json.loads((bt / "metrics.json").read_text())["PORTFOLIO"]
    assert metrics["total_return"] == pytest.approx(value / equity["equity"].iloc[0] - 1, rel=1e-9)
    # the delisted name holds nothing once it cannot be traded to the end
    assert (weights["NS2"].to_numpy() == 0).all()


def test_baselines_against_closed_forms(trained):
    """Cash earns nothing; equal-weight buy & hold at zero cost is the mean of the price relatives
    from the first fill (the next open) of the names tradable on day 0."""
    root, frames = trained
    bt = root / "runs" / "p" / "backtest"
    metrics = json.loads((bt / "metrics.json").read_text())["PORTFOLIO"]
    dates = list(pd.read_csv(bt / "equity.csv")["date"])
    assert metrics["baselines"]["cash"]["total_return"] == 0.0
    open_, close = _prices(frames, dates)
    first = [s for s in frames if np.isfinite(open_[s].iloc[1]) and np.isfinite(close[s].iloc[-1])
             and s != "NS2" and frames[s].index[0] <= pd.Timestamp(dates[0]) - pd.Timedelta(days=20)]
    relative = np.mean([close[s].iloc[-1] / open_[s].iloc[1] for s in first])
    assert metrics["baselines"]["equal-weight buy & hold"]["total_return"] == pytest.approx(relative - 1, rel=1e-9)
    for key in ("verdict", "excess_1n_p_value", "selection_p_value", "distance_from_1n", "effective_assets",
                "turnover_annual", "contribution", "deflated_sharpe"):
        assert key in metrics, key
    assert metrics["verdict_subject"] == "members' average" and metrics["members"] == 2
    assert sum(metrics["contribution"].values()) == pytest.approx(metrics["total_return"], abs=1e-9)


def test_signal_and_orders_of_the_deployed_model(trained, capsys, tmp_path):
    root, frames = trained
    models = str(root / "models")
    assert main(["signal", "--model", "pm", "--models-dir", models, "--cache-dir", str(root / "cache"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    weights = {w["symbol"]: w for w in out["weights"]}
    assert set(weights) == set(frames)
    total = sum(w["target"] for w in out["weights"]) + out["cash_target"]
    assert total == pytest.approx(1.0, abs=1e-9)
    assert weights["NS2"]["target"] == 0.0 and not weights["NS2"]["tradable"]
    holdings = tmp_path / "hold.csv"
    holdings.write_text("symbol,shares\nNS0,40\nNS4,3\n")
    orders_csv = tmp_path / "orders.csv"
    assert main(["orders", "--model", "pm", "--models-dir", models, "--cache-dir", str(root / "cache"),
                 "--capital", "500000", "--holdings", str(holdings), "--out", str(orders_csv)]) == 0
    orders = pd.read_csv(orders_csv)
    assert set(orders["side"]) <= {"BUY", "SELL"}
    assert (orders["shares"] == orders["shares"].round()).all() and (orders["shares"] > 0).all()
    np.testing.assert_allclose(orders["value"], orders["shares"] * orders["price"], atol=0.01)
    held = {"NS0": 40, "NS4": 3}
    for _, row in orders.iterrows():
        sign = 1 if row["side"] == "BUY" else -1
        assert row["target_shares"] == held.get(row["symbol"], 0) + sign * row["shares"]
    account = 500000 + sum(n * weights[s]["close"] for s, n in held.items())
    bought = orders.loc[orders.side == "BUY", "value"].sum()
    sold = orders.loc[orders.side == "SELL", "value"].sum()
    assert 500000 + sold - bought - orders["estimated_cost"].sum() >= -0.01
    assert bought <= account
    err = capsys.readouterr().err
    assert "cash left" in err
    # The model's evidence judges the account against 1/N, not 'buy & hold per symbol'.
    evidence = json.loads((root / "models" / "pm" / "bundle.json").read_text())["evidence"]
    account = json.loads((root / "runs" / "p" / "backtest" / "metrics.json").read_text())["PORTFOLIO"]
    beat = account["total_return"] > account["baselines"]["1/N rebalanced"]["total_return"]
    assert ("beat 1/N rebalanced" if beat else "CAUTION: lost to 1/N rebalanced") in evidence
    assert f"{account['total_return']:+.2%}" in evidence and "symbol(s)" not in evidence


def test_orders_refuse_bad_holdings(trained, tmp_path, capsys):
    root, _ = trained
    bad = tmp_path / "h.csv"
    bad.write_text("symbol,shares\nNS0,1.5\n")
    code = main(["orders", "--model", "pm", "--models-dir", str(root / "models"), "--cache-dir", str(root / "cache"),
                 "--capital", "1000", "--holdings", str(bad)])
    assert code != 0
    assert "row 2" in capsys.readouterr().err


# -- the evaluation's statistics ------------------------------------------------------------------
def _config():
    return make_config("quick", mode="portfolio", symbols=tuple(f"A{i}" for i in range(8)), cost_model="flat",
                       fee_bps=5.0, slippage_bps=0.0, rebalance_band=0.0)


def _walk(rng, n=8, days=60, tilt=None):
    r = 0.015 * rng.standard_normal((n, days))
    if tilt is not None:
        r += tilt
    close = 100 * np.exp(np.cumsum(r, axis=1))
    open_ = np.concatenate([close[:, :1], close[:, :-1]], axis=1)  # opens at the previous close
    return open_, close, np.ones((n, days), bool)


def test_diagnostics_name_1n_in_disguise_and_a_policy_that_never_moves():
    config = _config()
    rng = np.random.default_rng(0)
    prices = _walk(rng)
    targets = pe.baseline_targets(prices)
    equal = pe._run(config, prices, targets["1/N rebalanced"])
    d = pe.diagnostics(equal, equal)
    assert d["distance_from_1n"] == pytest.approx(0.0, abs=1e-12)
    assert d["effective_assets"] == pytest.approx(8.0)
    assert any("1/N in disguise" in f for f in d["flags"])
    hold = pe._run(config, prices, targets["equal-weight buy & hold"])
    assert any("never moves" in f for f in pe.diagnostics(hold, equal)["flags"])
    concentrated = np.zeros((60, 9))
    concentrated[::2, 0] = 1.0
    concentrated[1::2, 1] = 1.0
    mover = pe._run(config, prices, concentrated)
    d = pe.diagnostics(mover, equal)
    assert d["flags"] == [] and d["effective_assets"] == pytest.approx(1.0)
    assert d["distance_from_1n"] == pytest.approx(1 - 1 / 8)
    assert d["turnover_daily"] == pytest.approx(2.0, rel=1e-3)


def test_allocation_null_holds_its_level_on_random_weights_and_finds_an_oracle():
    """Random daily weights on random walks: 'allocation skill' (p < 0.025) in at most a few of 60
    trials (binomial: expected 1.5, P(>= 6) < 0.5%); an allocator that knows tomorrow's best asset
    is found every time."""
    config = _config()
    rng = np.random.default_rng(1)
    false = 0
    for trial in range(60):
        prices = _walk(rng)
        targets = rng.dirichlet(np.ones(9) * 0.5, size=60)
        path = pe._run(config, prices, targets)
        p = pe.allocation_null(config, path, prices, draws=79, seed=trial)["selection_p_value"]
        false += p < 0.025
    assert false <= 5
    for trial in range(5):
        prices = _walk(rng)
        open_, close, _ = prices
        best = np.argmax(close[:, 1:] / open_[:, 1:], axis=0)
        oracle = np.zeros((60, 9))
        oracle[np.arange(59), best] = 1.0
        oracle[-1, -1] = 1.0
        path = pe._run(config, prices, oracle)
        assert pe.allocation_null(config, path, prices, draws=79, seed=trial)["selection_p_value"] < 0.025


def test_costs_only_in_the_net_account():
    config = _config()
    prices = _walk(np.random.default_rng(2))
    targets = np.random.default_rng(3).dirichlet(np.ones(9), size=60)
    path = pe._run(config, prices, targets)
    m = pe.path_metrics(config, path, prices, targets)
    gross = accounting.simulate(*prices, targets, 0.0, band=0.0, initial=config.initial_capital)
    assert m["gross_return"] == pytest.approx(gross.equity[-1] / gross.equity[0] - 1, rel=1e-12)
    assert m["cost_drag"] == pytest.approx(m["gross_return"] - m["total_return"])
    assert m["cost_drag"] > 0 and m["costs_rupees"] == pytest.approx(path.costs.sum())


# -- the dashboard in Chromium --------------------------------------------------------------------
def test_backtest_page_shows_the_portfolio_run_in_chromium(trained):
    """The Backtest page of a portfolio run in a real browser: the account against its baselines,
    the stacked weights, contributions and concentration, the universe with the file left out as
    plain text, no exception, and no request leaving 127.0.0.1. Then the Train form's portfolio
    switch and universe picker start a portfolio run over every CSV of the folder."""
    from test_browser import choose, chromium_page, no_exceptions, plot_titles, streamlit_server, wait_idle

    root, _ = trained
    base = root / "browser"
    base.mkdir()
    with streamlit_server(base, root / "runs", root / "models", root / "cache") as url, chromium_page() as pg:
        outside: list[str] = []
        pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:",
                                                                                     "blob:")) else None)
        pg.goto(f"{url}/backtest")
        pg.wait_for_selector("h1")
        wait_idle(pg)
        pg.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)
        no_exceptions(pg)
        titles = plot_titles(pg)
        for title in ("Account equity against 1/N, buy & hold and cash", "Weights over time (after each fill)",
                      "Contribution per asset (price P&L / initial capital)",
                      "Concentration: effective number of assets"):
            assert title in titles, titles
        text = pg.locator('[data-testid="stMain"]').inner_text()
        assert "Left out BROKEN" in text and "Survivorship bias" in text
        assert "1/N rebalanced" in text and "equal-weight buy & hold" in text
        assert "Verdict (members' average)" in text
        legend = pg.locator(".js-plotly-plot").first.locator(".legendtext").all_text_contents()
        assert {"agent", "1/N rebalanced", "equal-weight buy & hold", "cash"} <= set(legend)
        assert outside == [], outside

        # Train: the portfolio switch, a CSV folder's whole universe, the band; single-asset fields hidden
        pg.goto(f"{url}/train")
        pg.get_by_role("button", name="Start training").wait_for()
        wait_idle(pg)
        pg.get_by_text("Portfolio: one account over a universe, with cash").click()
        wait_idle(pg)
        choose(pg, "Data source", "CSV directory")
        number = {label: pg.locator('[data-testid="stNumberInput"]').filter(has_text=label).locator("input")
                  for label in ("Timesteps", "Test days", "Validation days", "Rebalance band")}
        box = pg.locator('[data-testid="stTextInput"]').filter(has_text="CSV directory").locator("input")
        box.fill(str(root / "csv"))
        box.press("Enter")
        wait_idle(pg)
        assert pg.get_by_text("Every symbol of the source").count() == 1
        assert pg.locator('[data-testid="stTextInput"]').filter(has_text="Symbols").count() == 0
        assert number["Rebalance band"].count() == 1
        assert "survivorship bias" in pg.locator('[data-testid="stMain"]').inner_text().lower()
        for label, v in (("Timesteps", "2048"), ("Test days", "40"), ("Validation days", "30")):
            number[label].fill(v)
            number[label].press("Enter")
            wait_idle(pg)
        pg.get_by_text("Advanced").click()
        wait_idle(pg)
        assert pg.locator('[data-testid="stTextInput"]').filter(has_text="Target positions").count() == 0
        no_exceptions(pg)
        pg.get_by_role("button", name="Start training").click()
        pg.wait_for_url(re.compile(r".*/live\?run=run-.*"), timeout=60_000)
        run_id = re.search(r"run=([^&]+)", pg.url).group(1)
        config_path = root / "runs" / run_id / "config.json"
        deadline, config = time.monotonic() + 90, {}
        while not config.get("data_info") and time.monotonic() < deadline:  # written again once the data loads
            time.sleep(0.5)
            config = json.loads(config_path.read_text()) if config_path.exists() else {}
        assert config["mode"] == "portfolio" and config["data"] == f"csv:{root / 'csv'}"
        assert sorted(config["symbols"]) == [f"NS{i}" for i in range(7)]  # BROKEN.csv left out, recorded
        assert "BROKEN" in config["data_info"]["universe"]["skipped"]
        assert config["rebalance_band"] == pytest.approx(0.002) and config["test_days"] == 40
        assert outside == [], outside

        # The portfolio run's HTML report in the same browser: every chart drawn, no tick label cut off
        from test_report import CLIPPED_TICKS_JS

        from evorl_ui import report

        path = base / "report.html"
        path.write_text(report.report_html(RunDir(root / "runs" / "p")), encoding="utf-8")
        pg.goto(path.as_uri())
        pg.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5")
        assert pg.evaluate("document.querySelectorAll('.js-plotly-plot').length") == 5
        assert pg.evaluate(CLIPPED_TICKS_JS) == []


def test_html_report_of_a_portfolio_run(trained):
    """The exported report of a portfolio run holds the same account view as the Backtest page: the
    universe with the file left out, the verdict, the account table against the baselines (the
    figures of metrics.json) and the four portfolio charts, with plotly.js inlined once."""
    from evorl_ui import report
    from evorl_ui.presenters.portfolio import account_table

    root, _ = trained
    run = RunDir(root / "runs" / "p")
    page = report.report_html(run)
    account = run.read_backtest_metrics()["PORTFOLIO"]
    assert "portfolio of 7 symbols" in page and "Left out BROKEN" in page
    assert "Account (one account over the universe, with cash)" in page
    assert html.escape(f"Verdict (members' average): {account['verdict']}.") in page
    table = account_table(account)
    assert list(table.index) == ["agent", "1/N rebalanced", "equal-weight buy & hold", "cash"]
    assert table.loc["agent", "total return"] in page and table.loc["1/N rebalanced", "total return"] in page
    for title in ("Account equity against 1/N, buy & hold and cash", "Weights over time (after each fill)",
                  "Contribution per asset (price P&L / initial capital)", "Concentration: effective number of assets"):
        assert title.replace("/", "\\u002f") in page  # inside the figures' JSON, "/" escaped
    assert page.count("Plotly.newPlot") == 5  # and the members' PBO logits (2 seeds)
    assert f"probability of backtest overfitting {account['pbo']:.2f}" in page
    assert page.count("plotly.js v") == 1  # inlined once
    assert "<h2>Round trips</h2>" not in page  # the single-asset tearsheet is not drawn for an account


def test_paper_ledger_of_a_portfolio_model(trained, capsys):
    """`evorl paper` on a portfolio model: one line per new session for the account, appended day by
    day, never rewritten, idempotent; its equity and 1/N's, chained through the ledger's JSON one day
    at a time, equal one run of the accounting over the same days from cash with the same targets."""
    from evorl_core.costs import cost_model
    from evorl_core.data.panel import build_panel
    from evorl_core.deploy.bundle import load_bundle
    from evorl_core.deploy.ledger import ledger_path, read_ledger
    from evorl_core.deploy.paper_portfolio import record_portfolio
    from evorl_core.deploy.portfolio import load_portfolio_frames, pooled_norm

    root, _ = trained
    bundle = load_bundle("pm", models_dir=root / "models")
    good, info = load_portfolio_frames(bundle, cache_dir=root / "cache")  # as `evorl paper` loads them
    assert sorted(good) == [f"NS{i}" for i in range(7)]
    calendar = sorted({d for f in good.values() for d in f.index})
    sizes = []
    for cut in (calendar[-6], calendar[-4], calendar[-1], calendar[-1]):
        before = ledger_path(bundle.path).read_bytes() if ledger_path(bundle.path).exists() else b""
        record_portfolio(bundle, {s: f[f.index <= cut] for s, f in good.items()}, info, today=cut)
        assert ledger_path(bundle.path).read_bytes().startswith(before)  # append-only
        sizes.append(len(read_ledger(bundle.path)))
    assert sizes == [1, 3, 6, 6]
    rows = read_ledger(bundle.path)
    assert [r["date"] for r in rows] == [str(d.date()) for d in calendar[-6:]]
    assert rows[0]["equity"] == rows[0]["benchmark_equity"] == bundle.config.initial_capital
    assert rows[0]["weights"]["CASH"] == 1.0
    symbols = list(good)
    market = build_panel(good, bundle.config.window, 2, execution=bundle.config.execution,
                         norm=pooled_norm(bundle, symbols))
    start = len(market.calendar) - 6
    open_, close, tradable = market.prices(start, 6)
    targets = np.array([[r["target"][s] for s in symbols] + [r["target"]["CASH"]] for r in rows])
    costs = cost_model(bundle.config)
    path = accounting.simulate(open_, close, tradable, targets, costs, band=bundle.config.rebalance_band,
                               execution=bundle.config.execution, initial=bundle.config.initial_capital)
    np.testing.assert_allclose([r["equity"] for r in rows], path.equity, rtol=1e-9)
    one_n = accounting.simulate(open_, close, tradable, accounting.equal_weight_targets(tradable), costs,
                                band=bundle.config.rebalance_band, execution=bundle.config.execution,
                                initial=bundle.config.initial_capital)
    np.testing.assert_allclose([r["benchmark_equity"] for r in rows], one_n.equity, rtol=1e-9)
    for r in rows:
        assert sum(r["target"].values()) == pytest.approx(1.0, abs=1e-9)
        assert r["target"]["NS2"] == 0.0  # delisted before these days: never a target
    assert main(["paper", "--model", "pm", "--models-dir", str(root / "models"), "--cache-dir",
                 str(root / "cache")]) == 0
    assert "nothing appended" in capsys.readouterr().out
    assert len(read_ledger(bundle.path)) == 6


def test_models_page_signals_and_paper_of_a_portfolio_model(trained, monkeypatch):
    """The Models page on a portfolio model: the signal is the weights table (cash included, the
    weights of `portfolio_signal`), Record paper trade extends the account's ledger, and the forward
    chart and table name 1/N as the benchmark."""
    from streamlit.testing.v1 import AppTest
    from test_app import ROOT as APP_ROOT

    from evorl_core.deploy.bundle import load_bundle
    from evorl_core.deploy.ledger import read_ledger
    from evorl_core.deploy.portfolio import load_portfolio_frames, portfolio_signal

    root, _ = trained
    for name, sub in (("RUNS", "runs"), ("MODELS", "models"), ("DATA_CACHE", "cache")):
        monkeypatch.setenv(f"EVORL_{name}_DIR" if name != "DATA_CACHE" else "EVORL_DATA_CACHE", str(root / sub))
    at = AppTest.from_file(str(APP_ROOT / "dashboard.py"), default_timeout=180)
    at.run()
    at.switch_page("pages/models.py").run()
    at.selectbox(key="models_pick").set_value("pm").run()
    at.button(key="models_signal").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "tradable" in d.value.columns)
    bundle = load_bundle("pm", models_dir=root / "models")
    expected = portfolio_signal(bundle, load_portfolio_frames(bundle, cache_dir=root / "cache")[0])
    assert list(table["symbol"])[-1] == "CASH" and len(table) == len(expected["weights"]) + 1
    shown = dict(zip(table["symbol"], table["target (next session)"], strict=True))
    for w in expected["weights"]:
        assert shown[w["symbol"]] == f"{w['target']:.2%}"
    before = len(read_ledger(bundle.path))
    at.button(key="models_paper").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == []
    rows = read_ledger(bundle.path)
    assert len(rows) >= max(before, 1) and all(r["symbol"] == "PORTFOLIO" for r in rows)
    ledger = next(d.value for d in at.dataframe if "cash held" in d.value.columns)
    assert "1/N rebalanced" in ledger.columns and list(ledger["date"])[0] == rows[-1]["date"]


def test_walkforward_in_portfolio_mode(trained, capsys):
    """`evorl walkforward --portfolio`: the folds' test blocks are the last blocks of the universe's
    calendar, no fold's data reaches past its own test block, and the pooled account chains the
    folds' accounts and 1/N's, judged against 1/N."""
    root, frames = trained
    code = main(["walkforward", "--portfolio", "--symbols", "all", "--data", f"csv:{root / 'csv'}", "--preset", "quick",
                 "--timesteps", "2048", "--folds", "2", "--test-days", "40", "--val-days", "30", "--window", "8",
                 *ZERO_COST, "--runs-dir", str(root / "runs"), "--id", "pwf", "--cache-dir", str(root / "cache"),
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((root / "runs" / "walkforward" / "pwf" / "summary.json").read_text())
    assert summary["state"] == "done" and summary["benchmark"] == "1/N rebalanced"
    calendar = sorted({str(d.date()) for f in frames.values() for d in f.index})
    ends = [fold["date_ranges"]["PORTFOLIO"]["last"] for fold in summary["per_fold"]]
    starts = [fold["date_ranges"]["PORTFOLIO"]["test_start"] for fold in summary["per_fold"]]
    assert ends == [calendar[-41], calendar[-1]] and starts == [calendar[-80], calendar[-40]]
    growth, bench = 1.0, 1.0
    for fold in summary["per_fold"]:
        m = fold["metrics"]["PORTFOLIO"]
        growth *= 1 + m["total_return"]
        bench *= 1 + m["baselines"]["1/N rebalanced"]["total_return"]
        run_config = json.loads((root / "runs" / fold["run_id"] / "config.json").read_text())
        assert run_config["data_info"]["calendar"]["last"] == fold["date_ranges"]["PORTFOLIO"]["last"]
    pooled = summary["pooled"]["PORTFOLIO"]
    assert pooled["total_return"] == pytest.approx(growth - 1, rel=1e-9)
    assert pooled["bh_total_return"] == pytest.approx(bench - 1, rel=1e-9)
    assert pooled["days"] == 2 * 39
    assert "1/N rebalanced" in pooled["verdict"] and "allocation skill" in pooled["verdict"]
    assert "1/N rebalanced  total return" in out and "verdict:" in out
    # the Walkforward page's tables name 1/N as the benchmark and take its figures from the folds
    from evorl_ui.presenters.walkforward import fold_table, pooled_table

    folds, pooled_rows = fold_table(summary), pooled_table(summary)
    assert "total return (1/N)" in folds.columns and "total return (B&H)" not in folds.columns
    one_n = summary["per_fold"][0]["metrics"]["PORTFOLIO"]["baselines"]["1/N rebalanced"]["total_return"]
    assert folds.iloc[0]["total return (1/N)"] == format_metric("total_return", one_n)
    assert pooled_rows.loc["PORTFOLIO", "total return (1/N)"] == format_metric("total_return", pooled["bh_total_return"])
