"""The paper ledger (evorl_core.deploy.ledger) against independent computations: day by day it takes the
greedy policy's decisions (the mode's greedy_positions on a market built by build_market) and the
backtest's equity (backtest.equity_curve / buy_and_hold); it is idempotent per day, append-only,
refuses gaps; `evorl paper` and `evorl signal` never fall back to synthetic prices for `auto`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from market_csv import write_csv_dir

from evorl_core import modes
from evorl_core.agents.build import make_ppo
from evorl_core.cli import main
from evorl_core.config import make_config
from evorl_core.costs import cost_model
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.data import yahoo as Y
from evorl_core.deploy import ledger
from evorl_core.deploy.bundle import deploy_run, load_bundle
from evorl_core.deploy.signal import business_days_since, stale_warnings
from evorl_core.modes.single.accounting import buy_and_hold, equity_curve
from evorl_core.training.pipeline import run as train

SYMBOLS = ["BPCL", "TATASTEEL"]
START = 300  # first ledger day (index into the frames)
DAYS = 8  # ledger days recorded in the tests


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ledger")
    frames = {s: synthetic_ohlcv(s, n_days=START + DAYS, seed=7) for s in SYMBOLS}
    write_csv_dir(root / "csv", {s: f.iloc[:START] for s, f in frames.items()})
    config = make_config("quick", symbols=tuple(SYMBOLS), data=f"csv:{root / 'csv'}", num_envs=8, num_steps=16,
                         minibatch_size=32, hidden=(16,), window=8, total_timesteps=512, test_days=30, seed=3)
    rd = train(config, root / "runs", "r", cache_dir=str(root / "cache"))
    deploy_run(rd, name="m", models_dir=root / "models")
    return root, frames


@pytest.fixture
def bundle(model, tmp_path):
    root, _ = model

    shutil.copytree(root / "models" / "m", tmp_path / "m")
    return load_bundle(tmp_path / "m")


def upto(frames, end):
    return {s: f.iloc[:end] for s, f in frames.items()}


def test_day_by_day_equals_greedy_policy_and_backtest_accounting(bundle, model):
    _, frames = model
    for day in range(DAYS):
        result = ledger.record(bundle, upto(frames, START + day + 1), today="2026-01-02")
        assert len(result.appended) == len(SYMBOLS)
    rows = ledger.ledger_frame(ledger.read_ledger(bundle.path))
    config = bundle.config
    # independent: the backtest's own greedy scan and accounting over the same days
    norm = bundle.meta["normalization"]
    mean = np.array([norm[s]["mean"] for s in SYMBOLS])
    std = np.array([norm[s]["std"] for s in SYMBOLS])
    market = build_market(upto(frames, START + DAYS), config.window, DAYS, norm=(mean, std))
    ppo = make_ppo(config)
    path = np.asarray(modes.get(config).greedy_positions(ppo.action_probabilities, bundle.params, market.data,
                                                         market.data.test_start, DAYS, ppo.env), np.float64)
    for s, symbol in enumerate(SYMBOLS):
        mine = rows[rows.symbol == symbol].reset_index(drop=True)
        frame = frames[symbol].iloc[START:START + DAYS]
        assert [str(d.date()) for d in mine["date"]] == [str(d.date()) for d in frame.index]
        np.testing.assert_array_equal(mine["target"].to_numpy(), path[s])
        np.testing.assert_array_equal(mine["held"].to_numpy(), np.concatenate([[0.0], path[s][:-1]]))
        open_, close = frame["open"].to_numpy(), frame["close"].to_numpy()
        expected = equity_curve(open_, close, path[s], cost_model(config), config.execution, config.initial_capital)
        np.testing.assert_allclose(mine["equity"].to_numpy(), expected, rtol=1e-12)
        bench = buy_and_hold(open_, close, cost_model(config), config.execution, config.initial_capital)
        np.testing.assert_allclose(mine["benchmark_equity"].to_numpy(), bench, rtol=1e-12)
        assert not mine["synthetic"].any()  # frames built by hand: "frames", not synthetic


def test_catch_up_equals_day_by_day_and_is_idempotent(bundle, model, tmp_path):
    _, frames = model
    ledger.record(bundle, upto(frames, START + 1), today="2026-01-02")
    result = ledger.record(bundle, upto(frames, START + DAYS), today="2026-01-02")
    assert len(result.appended) == (DAYS - 1) * len(SYMBOLS)
    before = ledger.ledger_path(bundle.path).read_bytes()
    again = ledger.record(bundle, upto(frames, START + DAYS), today="2026-01-02")
    assert again.appended == [] and ledger.ledger_path(bundle.path).read_bytes() == before
    last_date = str(frames[SYMBOLS[0]].index[START + DAYS - 1].date())
    assert again.latest == dict.fromkeys(SYMBOLS, last_date)


def test_history_is_never_rewritten_when_the_source_revises_old_bars(bundle, model):
    _, frames = model
    ledger.record(bundle, upto(frames, START + 2), today="2026-01-02")
    before = ledger.ledger_path(bundle.path).read_bytes()
    revised = {s: f.iloc[:START + 3].copy() for s, f in frames.items()}
    for f in revised.values():
        f.iloc[:START + 2, :4] *= 1.5  # every old price changes
    result = ledger.record(bundle, revised, today="2026-01-02")
    after = ledger.ledger_path(bundle.path).read_bytes()
    assert after.startswith(before) and len(result.appended) == len(SYMBOLS)
    # the new day's overnight move starts from the recorded close, not the revised one
    prev = {json.loads(x)["symbol"]: json.loads(x) for x in before.decode().splitlines()[-len(SYMBOLS):]}
    for entry in result.appended:
        assert entry["held"] == prev[entry["symbol"]]["target"]


def test_a_gap_in_the_data_is_refused(bundle, model):
    _, frames = model
    ledger.record(bundle, upto(frames, START + 2), today="2026-01-02")
    later = {s: f.iloc[START + 3:START + 5] for s, f in frames.items()}  # the last recorded bar is missing
    longer = {s: pd.concat([f.iloc[:START - 50], later[s]]) for s, f in frames.items()}
    with pytest.raises(ledger.LedgerError, match="has no bar for"):
        ledger.record(bundle, longer, today="2026-01-02")


def test_stale_data_is_flagged():
    frames = {"A": pd.DataFrame({"close": [1.0]}, index=pd.to_datetime(["2025-12-31"]))}
    assert business_days_since("2025-12-31", "2026-01-05") == 3  # Thu, Fri, Mon
    assert stale_warnings(frames, today="2026-01-05") == []
    assert stale_warnings(frames, today="2026-01-06") == [
        "A: stale data: the last bar is 2025-12-31, 4 sessions ago"]


def test_forward_curves_track_the_portfolio_and_the_expectation(bundle, model):
    _, frames = model
    ledger.record(bundle, upto(frames, START + DAYS), today="2026-01-02")  # deployment day only
    ledger.record(bundle, upto(frames, START + DAYS), today="2026-01-02")
    rows = ledger.read_ledger(bundle.path)
    curves = ledger.forward_curves(rows, bundle.meta)
    assert len(curves) == 1 and curves["paper"].iloc[0] == pytest.approx(bundle.config.initial_capital)
    assert curves["expected"].iloc[0] == pytest.approx(bundle.config.initial_capital)


def test_forward_curves_expected_growth_by_hand():
    rows = [{"date": d, "symbol": s, "target": 0.0, "equity": e, "benchmark_equity": 1.0}
            for s in ("A", "B") for d, e in (("2026-01-01", 1.0), ("2026-01-02", 1.1), ("2026-01-05", 1.2))]
    meta = {"test_metrics": {"A": {"days": 3, "total_return": 0.21, "annual_volatility": 0.0},
                             "B": {"days": 3, "total_return": 0.0, "annual_volatility": 0.0}}}
    curves = ledger.forward_curves(rows, meta)
    assert curves["paper"].tolist() == pytest.approx([1.0, 1.1, 1.2])
    assert curves["expected"].tolist() == pytest.approx([1.0, (1.1 + 1) / 2, (1.21 + 1) / 2])
    assert curves["expected_low"].tolist() == pytest.approx(curves["expected"].tolist())


# the command line ----------------------------------------------------------------------------
def test_paper_cli_appends_once_per_day_on_the_training_source(model, tmp_path, capsys):
    root, _ = model

    shutil.copytree(root / "models" / "m", tmp_path / "m")
    assert main(["paper", "--model", str(tmp_path / "m"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data_source"] == "csv" and len(out["appended"]) == len(SYMBOLS)
    assert main(["paper", "--model", str(tmp_path / "m")]) == 0
    text = capsys.readouterr()
    assert "already recorded up to" in text.out and "nothing appended" in text.out
    assert "stale data" in text.err  # the CSVs end in 2025
    assert len((tmp_path / "m" / "ledger.jsonl").read_text().splitlines()) == len(SYMBOLS)


@pytest.mark.parametrize("command", ["signal", "paper"])
def test_auto_refuses_to_fall_back_to_synthetic(model, tmp_path, capsys, monkeypatch, command):
    root, _ = model

    def offline(*args, **kwargs):
        raise Y._NetworkUnavailable("no network (test)")

    monkeypatch.setattr(Y, "_download", offline)
    code = main([command, "--model", "m", "--models-dir", str(root / "models"), "--data", "auto",
                 "--cache-dir", str(tmp_path / "empty-cache")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"evorl {command}: error: BPCL: no real data (") and "synthetic" in lines[0]
    assert not (root / "models" / "m" / "ledger.jsonl").exists()


def test_signal_defaults_to_the_training_source(model, capsys):
    root, _ = model
    assert main(["signal", "--model", "m", "--models-dir", str(root / "models")]) == 0
    out = capsys.readouterr().out
    assert "data: csv (as trained: csv:" in out and "SYNTHETIC" not in out
