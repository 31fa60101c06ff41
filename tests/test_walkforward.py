"""Walk-forward: folds never see their own test days (or anything after), test blocks tile the end
of the history, pooled figures chain the folds' test days."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from evorl_core.cli import main
from evorl_core.config import make_config
from evorl_core.data import DataError, synthetic_ohlcv
from evorl_core.training import walkforward

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=1, hidden=(16,), window=8, test_days=20,
            val_days=20, total_timesteps=8 * 16 * 2, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic",
            cost_model="flat")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    frames = {s: synthetic_ohlcv(s, n_days=260, seed=4) for s in ("AAA", "BBB")}
    config = make_config("quick", **TINY)
    runs = tmp_path_factory.mktemp("runs")
    summary = walkforward.run_walkforward(config, 3, runs, "wf", frames=frames,
                                          info={"source": "synthetic", "synthetic": True})
    return frames, config, runs, summary


def test_folds_never_see_their_test_days_and_tile_the_end(done):
    frames, config, runs, summary = done
    assert summary["state"] == "done" and summary["runs"] == ["wf-fold1", "wf-fold2", "wf-fold3"]
    for symbol, df in frames.items():
        dates = [str(d.date()) for d in df.index]
        blocks = []
        for k, fold in enumerate(summary["per_fold"]):
            r = fold["date_ranges"][symbol]
            assert r["train_end"] < r["val_start"] <= r["val_end"] < r["test_start"] <= r["last"]
            # embargo days lie between the ranges
            assert dates.index(r["val_start"]) - dates.index(r["train_end"]) - 1 == config.embargo
            assert dates.index(r["test_start"]) - dates.index(r["val_end"]) - 1 == config.embargo
            # the fold knows nothing after its test block
            end = len(df) - (2 - k) * config.test_days
            assert r["last"] == dates[end - 1] and r["test_start"] == dates[end - config.test_days]
            blocks.append((dates.index(r["test_start"]), dates.index(r["last"])))
            equity = pd.read_csv(runs / fold["run_id"] / "backtest" / "equity.csv")
            assert equity[equity.symbol == symbol]["date"].tolist() == dates[end - config.test_days:end]
        # consecutive, disjoint test blocks ending on the last day
        assert blocks[-1][1] == len(df) - 1
        for (a0, a1), (b0, _) in zip(blocks, blocks[1:], strict=False):
            assert b0 == a1 + 1 and a1 - a0 + 1 == config.test_days


def test_pooled_result_chains_the_folds(done):
    frames, config, runs, summary = done
    stored = json.loads((runs / "walkforward" / "wf" / "summary.json").read_text())
    assert stored["pooled"].keys() == summary["pooled"].keys() and stored["state"] == "done"
    for symbol in ("AAA", "BBB"):
        growth, bench = 1.0, 1.0
        for fold in summary["per_fold"]:
            m = fold["metrics"][symbol]
            growth *= 1 + m["total_return"]
            bench *= 1 + m["bh_total_return"]
        pooled = summary["pooled"][symbol]
        assert pooled["total_return"] == pytest.approx(growth - 1, rel=1e-9)
        assert pooled["bh_total_return"] == pytest.approx(bench - 1, rel=1e-9)
        assert pooled["days"] == 3 * (config.test_days - 1)


def test_too_short_for_the_folds_and_cli_errors(tmp_path, capsys):
    frames = {"AAA": synthetic_ohlcv("AAA", n_days=120, seed=0)}
    with pytest.raises(DataError, match=r"folds: 4 folds of 20 test days need \d+ rows per symbol; AAA has 120 rows"):
        walkforward.check_folds(frames, make_config("quick", **{**TINY, "symbols": ("AAA",)}), 4)
    assert main(["walkforward", "--folds", "1", "--preset", "quick", "--data", "synthetic",
                 "--runs-dir", str(tmp_path)]) == 2
    assert "folds: give at least 2" in capsys.readouterr().err


def test_the_pooled_folds_carry_a_sharpe_interval_an_excess_test_and_a_verdict(done):
    _, _, _, summary = done
    from evorl_core.console import format_metrics_table

    for symbol in ("AAA", "BBB"):
        pooled = summary["pooled"][symbol]
        assert pooled["sharpe_ci_low"] <= pooled["sharpe"] <= pooled["sharpe_ci_high"]
        assert 0 < pooled["excess_p_value"] <= 1 and pooled["excess_ci_low"] <= pooled["excess_mean_annual"]
        words = ("beats buy & hold", "worse than buy & hold", "not distinguishable from buy & hold")
        assert pooled["verdict"].startswith(words) and pooled["verdict"].endswith(
            "timing: see each fold (pooled folds are no one continuous run)")
    table = format_metrics_table(summary["pooled"], pooled=True)
    row = next(line for line in table.splitlines() if line.startswith("AAA"))
    assert re.search(r"\[-?\d+\.\d\d, -?\d+\.\d\d\]", row)  # the interval under 'Sharpe [95% CI]'
    assert "n/a" not in row
