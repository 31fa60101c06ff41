"""Every figure says what it is about: whose figure each row and verdict is (chosen member, members'
average, best member, members' spread, pooled folds), registry labels and formats (integers as
integers, '—' for buy & hold's undefined win rate), on a seeds run and a population run, in the CLI
and the page tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evorl_core.cli import main
from evorl_core.config import make_config
from evorl_core.console import format_metrics_table
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.metrics import (
    AGENT,
    AVERAGE,
    BEST,
    CHOSEN,
    MISSING,
    POOLED,
    SPREAD,
    buy_and_hold_metrics,
    format_value,
    label,
    subject_of,
    verdict_with_subject,
)
from evorl_core.training import pipeline
from evorl_ui.presenters.backtest import notes_text, overview_table, symbol_metrics_table

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=1, hidden=(16,), window=8, test_days=20,
            val_days=30, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic", total_timesteps=8 * 16 * 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in TINY["symbols"]}
    market = build_market(frames, window=8, test_days=20, val_days=30, embargo_days=8,
                          info={"source": "synthetic", "synthetic": True})
    root = tmp_path_factory.mktemp("labels") / "runs"
    seeds = pipeline.run(make_config("quick", **TINY, seeds=3), root, "seeds", market=market,
                         use_compile_cache=False)
    population = pipeline.run(make_config("quick", **TINY, population=2, pbt_interval=2), root, "pop",
                              market=market, use_compile_cache=False)
    return {"seeds": seeds, "pop": population}


def test_the_registry_names_the_subject_of_each_key():
    assert subject_of("total_return") == AGENT and subject_of("verdict") == AGENT
    assert subject_of("total_return", members=4) == CHOSEN
    assert subject_of("excess_p_value", members=4) == AVERAGE == subject_of("timing_p_all_shifts", members=4)
    assert subject_of("verdict", members=4) == AVERAGE
    assert subject_of("deflated_sharpe_threshold", members=4) == BEST == subject_of("best_member_sharpe", members=4)
    assert subject_of("sharpe_sd", members=4) == SPREAD
    assert subject_of("chosen_member", members=4) == "run" == subject_of("members", members=4)
    assert subject_of("sharpe", pooled=True) == POOLED
    assert verdict_with_subject("beats buy & hold (p = 0.01)", members=4) == \
        "members' average of 4: beats buy & hold (p = 0.01)"
    assert verdict_with_subject("beats buy & hold (p = 0.01)") == "beats buy & hold (p = 0.01)"


def test_labels_and_formats_come_from_the_registry():
    assert label("timing_p_all_shifts") == "timing p-value (all shifts)"
    assert label("deflated_sharpe_threshold") == "deflated Sharpe threshold"
    assert label("trades") == "position changes"
    assert format_value("chosen_member", 0.0) == "0" and format_value("deflated_sharpe_trials", 4.0) == "4"
    assert format_value("bh_win_rate", float("nan")) == MISSING


def test_buy_and_hold_has_no_round_trip_so_no_win_rate():
    equity = np.array([100.0, 99.0, 97.0, 95.0])  # a losing hold: not a '0.00%' win rate
    bh = buy_and_hold_metrics(equity)
    assert math.isnan(bh["win_rate"]) and bh["total_return"] == pytest.approx(-0.05) and bh["exposure"] == 1.0


@pytest.mark.parametrize("kind, members", [("seeds", 3), ("pop", 2)])
def test_page_tables_name_the_subject_of_every_row(runs, kind, members):
    metrics = runs[kind].read_backtest_metrics()
    table = symbol_metrics_table(metrics["AAA"])
    subjects = dict(zip(table.index, table["subject"], strict=True))
    assert subjects[label("total_return")] == CHOSEN and subjects[label("sharpe")] == CHOSEN
    assert subjects[label("excess_p_value")] == AVERAGE and subjects[label("timing_p_value")] == AVERAGE
    assert subjects[label("deflated_sharpe")] == BEST
    assert subjects[label("sharpe_sd")] == SPREAD
    assert table.loc[label("chosen_member"), "Agent"] == str(metrics["AAA"]["chosen_member"])  # no '0.000'
    assert table.loc[label("members"), "Agent"] == str(members)
    assert table.loc[label("win_rate"), "Buy & hold"] == MISSING
    overview = overview_table(metrics)
    assert "verdict (members' average)" in overview.columns
    assert notes_text(metrics["AAA"]).startswith(f"Verdict of the members' average of {members}: ")


def test_one_agent_needs_no_subject_column():
    table = symbol_metrics_table({"total_return": 0.1, "sharpe": 1.0, "excess_p_value": 0.3, "verdict": "x"})
    assert "subject" not in table.columns
    assert "verdict" in overview_table({"AAA": {"total_return": 0.1, "verdict": "x"}}).columns


@pytest.mark.parametrize("kind", ["seeds", "pop"])
def test_the_cli_table_says_whose_figures_and_verdict_it_shows(runs, kind, tmp_path, capsys):
    run = runs[kind]
    chosen, members = run.read_selection()["chosen_member"], run.read_selection()["members"]
    out = format_metrics_table(run.read_backtest_metrics())  # what `evorl train` prints after training
    assert out.splitlines()[0] == (f"subject: figures of the chosen member (member {chosen} of {members}, picked on "
                                   f"validation days); the verdict is of the members' average (all {members}, their "
                                   "returns pooled day by day)")
    header = next(line for line in out.splitlines() if line.startswith("symbol "))
    assert header.endswith("verdict (members' average)") and "position changes" in header
    # a re-backtest runs the chosen member alone: its verdict is its own
    assert main(["backtest", "--run", kind, "--runs-dir", str(run.path.parent), "--out", str(tmp_path / "bt")]) == 0
    out = capsys.readouterr().out
    assert f"subject: the chosen member alone (member {chosen} of {members}): its figures and its verdict" in out
    header = next(line for line in out.splitlines() if line.startswith("symbol "))
    assert header.endswith("  verdict")


def test_the_pooled_walkforward_table_says_it_is_pooled():
    text = format_metrics_table({"AAA": {"total_return": 0.1, "verdict": "n/a"}}, pooled=True)
    assert text.splitlines()[0].startswith("subject: pooled folds")
    assert "verdict (pooled folds)" in text


def test_the_symbol_table_shows_a_curated_set_first_and_the_rest_apart(runs):
    from evorl_ui.presenters.backtest import CURATED_KEYS

    metrics = runs["seeds"].read_backtest_metrics()["AAA"]
    full = symbol_metrics_table(metrics)
    curated = symbol_metrics_table(metrics, part="curated")
    rest = symbol_metrics_table(metrics, part="rest")
    shown = [i for i in curated.index if not i.startswith("CAGR")]  # 'CAGR ⚠ from 19 days' on a short test
    assert shown == [label(k) for k in CURATED_KEYS if label(k) in full.index and k != "cagr"]
    assert len(curated) <= len(CURATED_KEYS) < len(full) and set(curated.index) | set(rest.index) == set(full.index)
    assert not set(curated.index) & set(rest.index)
    assert label("excess_resamples") in rest.index and label("total_return") in curated.index
    assert curated.loc[label("exposure"), "Agent"].endswith("%")  # units, through the registry
    assert rest.loc[label("exposure_mean"), "Agent"].endswith("%")


def test_the_verdicts_point_to_their_explanation(capsys):
    text = format_metrics_table({"AAA": {"total_return": 0.1, "verdict": "beats buy & hold (p = 0.01)"}})
    assert text.splitlines()[-1].endswith("explained in docs/evaluation.md")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "docs/evaluation.md" in capsys.readouterr().out
