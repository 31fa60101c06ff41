"""The dashboard's views of several agents without training: presenters and charts of seeds and
populations (member curves, fitness per round, hyperparameters, lineage, member fan, spread), the
walk-forward tables, and the Train form's population fields. Each checked against a computation
of its own on made-up run files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evorl_core.config import PRESETS, SEARCH_SPACE, TrainConfig
from evorl_ui import forms, population_form
from evorl_ui.charts.population import (
    fitness_figure,
    hyperparameter_figure,
    lineage_figure,
    log_ticks,
    member_lines_figure,
    members_fan_figure,
)
from evorl_ui.presenters.format import format_metric, metric_arrays
from evorl_ui.presenters.live import member_mean, member_throughput, member_throughput_text
from evorl_ui.presenters.population import (
    best_per_round,
    config_members,
    hyper_text,
    lineage_table,
    member_arrays,
    member_curves,
    member_table,
    members_of,
    population_caption,
    population_table,
    selection_text,
    spread_table,
    validation_scores,
)
from evorl_ui.presenters.walkforward import fold_table, pooled_table, walkforwards_table

HYPER = {"lr": 3e-4, "ent_coef": 0.01, "clip_eps": 0.2, "vf_coef": 0.5, "gamma": 0.99, "gae_lambda": 0.95}


def metrics_rows(members=3, updates=4):
    """metrics.jsonl of a run with members, written out of order (as a reader may meet them)."""
    rng = np.random.default_rng(0)
    rows = [{"update": u, "env_steps": 128 * u, "steps_per_sec": 1000.0 * u, "member": m,
             "reward_mean": float(rng.normal()), "train_seconds": 0.5 * u}
            for u in range(1, updates + 1) for m in range(members)]
    return rows[::-1]


def hyper_rows():
    """Three members, round 0 (no fitness) and two rounds; member 2 replaced by 0 in round 1,
    member 1 by 0 in round 2; a NaN fitness never wins."""
    rows = [{"update": 0, "round": 0, "member": m, **HYPER, "lr": lr} for m, lr in enumerate((1e-4, 1e-3, 1e-5))]
    fitness = {1: [0.3, -0.1, -0.5], 2: [float("nan"), -0.2, 0.4]}
    for r, fit in fitness.items():
        for m in range(3):
            replaced = (r, m) in ((1, 2), (2, 1))
            rows.append({"update": 2 * r, "round": r, "member": m, **HYPER, "lr": 1e-4 * (m + 1) * r,
                         "fitness": fit[m], "replaced": replaced, "donor": 0 if replaced else m})
    return rows


EVENTS = [
    {"update": 2, "round": 1, "member": 2, "donor": 0, "fitness": -0.5, "donor_fitness": 0.3,
     "old": {**HYPER, "lr": 1e-5}, "donor_hyper": {**HYPER, "lr": 1e-4}, "new": {**HYPER, "lr": 1.25e-4}},
    {"update": 4, "round": 2, "member": 1, "donor": 2, "fitness": -0.2, "donor_fitness": 0.4,
     "old": {**HYPER, "lr": 2e-4, "clip_eps": 0.3}, "donor_hyper": {**HYPER, "lr": 3e-4},
     "new": {**HYPER, "lr": 2.4e-4, "clip_eps": 0.16}},
]


# Live: members ----------------------------------------------------------------------------
def test_member_arrays_split_and_order_each_members_rows():
    rows = metrics_rows()
    assert members_of(rows) == [0, 1, 2]
    assert members_of([{"update": 1}]) == []  # a single agent
    per = member_arrays(rows, ("update", "reward_mean"))
    assert list(per) == [0, 1, 2]
    for m, arrays in per.items():
        mine = sorted((r for r in rows if r["member"] == m), key=lambda r: r["update"])
        np.testing.assert_array_equal(arrays["update"], [1, 2, 3, 4])
        np.testing.assert_array_equal(arrays["reward_mean"], [r["reward_mean"] for r in mine])


def test_member_throughput_is_the_aggregate_shared_by_members():
    sps = np.array([1000.0, 3000.0, np.nan, 2000.0])
    t = member_throughput(sps, 4)
    assert t["aggregate"] == np.nanmedian(sps) and t["per_member"] == np.nanmedian(sps) / 4
    assert member_throughput_text(sps, 4) == "all 4 members together · 500 per member"
    assert config_members({"population": 8, "seeds": 1}) == 8
    assert config_members({"population": 1, "seeds": 3}) == 3 and config_members({}) == 1


def test_population_table_and_best_per_round():
    table = population_table(hyper_rows())
    assert list(table["round"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2] and list(table["member"]) == [0, 1, 2] * 3
    assert table.loc[table["round"] == 0, "fitness"].isna().all()  # the first generation has no fitness
    assert table.loc[table["round"] == 0, "donor"].tolist() == [0, 1, 2]
    best = best_per_round(table)
    # independent: per round with fitness, argmax ignoring NaN
    for r in (1, 2):
        fit = np.array([row["fitness"] for row in hyper_rows() if row["round"] == r])
        fit = np.where(np.isfinite(fit), fit, -np.inf)
        got = best[best["round"] == r].iloc[0]
        assert got["member"] == int(np.argmax(fit)) and got["fitness"] == fit.max() and got["update"] == 2 * r
    assert list(best["round"]) == [1, 2]
    assert best_per_round(population_table([])).empty


def test_lineage_table_reads_old_new_and_donor_values():
    table = lineage_table(EVENTS, ["lr", "clip_eps"])
    assert list(table["round"]) == [2, 1]  # newest first
    assert list(table["member ← donor"]) == ["1 ← 2", "2 ← 0"]
    assert table["fitness (replaced)"].tolist() == ["-0.2000", "-0.5000"]
    assert table["fitness (donor)"].tolist() == ["+0.4000", "+0.3000"]
    change = table.iloc[0]["hyperparameters: old → new (donor's)"]
    assert change == "lr 2.00e-04 → 2.40e-04 (3.00e-04) · clip_eps 0.3 → 0.16 (0.2)"
    assert hyper_text("gamma", 0.99) == "0.9900" and hyper_text("lr", None) == "—"
    assert lineage_table([], ["lr"]).empty


def test_population_caption_counts_rounds_and_events():
    config = {"population": 3, "pbt_interval": 2, "pbt_fraction": 0.25, "pbt_resample": 0.25,
              "evolve": ["clip_eps", "lr"]}
    text = population_caption(config, population_table(hyper_rows()), EVENTS)
    assert "3 members" in text and "every 2 update(s)" in text and "2 round(s) so far" in text
    assert "2 exploit event(s)" in text and "evolving lr, clip_eps" in text  # SEARCH_SPACE order


def test_member_lines_figure_draws_every_member_the_mean_and_the_highlight():
    per = member_arrays(metrics_rows(), ("env_steps", "reward_mean"))
    mean_rows = member_mean(sorted(metrics_rows(), key=lambda r: r["update"]))  # as the file holds them
    mean = metric_arrays(mean_rows, ("env_steps", "reward_mean"))
    fig = member_lines_figure({m: (a["env_steps"], a["reward_mean"]) for m, a in per.items()}, "t", "r",
                              mean=(mean["env_steps"], mean["reward_mean"]), highlight=1)
    names = [t.name for t in fig.data]
    assert names == ["member 0", "member 1 (chosen)", "member 2", "mean of members"]
    expected = np.mean([per[m]["reward_mean"] for m in range(3)], axis=0)
    np.testing.assert_allclose(fig.data[-1].y, expected)
    np.testing.assert_array_equal(fig.data[-1].x, [128, 256, 384, 512])
    assert fig.data[1].line.width == 3 and fig.data[0].line.width == 1


def test_fitness_figure_stars_the_best_member_of_each_round():
    table = population_table(hyper_rows())
    fig = fitness_figure(table)
    best = next(t for t in fig.data if t.name == "best of the round")
    assert list(best.x) == [1, 2] and list(best.y) == [0.3, 0.4] and list(best.text) == ["0", "2"]
    per_member = [t for t in fig.data if t.name.startswith("member")]
    assert len(per_member) == 3 and all(0 not in list(t.x) for t in per_member)  # round 0 has no fitness


def test_hyperparameter_figure_uses_log_axes_for_log_scales():
    table = population_table(hyper_rows())
    fig = hyperparameter_figure(table, ["lr", "ent_coef", "clip_eps"])
    layout = fig.layout
    assert layout.yaxis.type == "log" and layout.yaxis2.type == "log" and layout.yaxis3.type != "log"
    assert [SEARCH_SPACE[n].scale for n in ("lr", "ent_coef", "clip_eps")] == ["log", "log", "linear"]
    lr_member0 = next(t for t in fig.data if t.name == "member 0" and t.yaxis == "y")
    assert list(lr_member0.x) == [0, 2, 4] and list(lr_member0.y) == pytest.approx([1e-4, 1e-4, 2e-4])
    assert lr_member0.line.shape == "hv"  # a value holds until the next round changes it
    assert sum(t.showlegend is not False for t in fig.data) == 3  # one legend entry per member


def test_log_ticks_cover_the_values():
    ticks = log_ticks(np.array([2.8e-4, 5e-3]))
    assert ticks == pytest.approx([2e-4, 5e-4, 1e-3, 2e-3, 5e-3])
    wide = log_ticks(np.array([1e-6, 1e-1]))
    assert wide == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    assert log_ticks(np.array([np.nan])) == []


def test_lineage_figure_has_an_arrow_from_each_donor_to_its_member():
    table = population_table(hyper_rows())
    fig = lineage_figure(table, EVENTS)
    arrows = [(a.ay, a.y, a.x) for a in fig.layout.annotations]
    assert arrows == [(0, 2, 1), (2, 1, 2)]  # (donor, member, round)
    marks = next(t for t in fig.data if t.name == "validation fitness")
    assert list(marks.marker.symbol).count("x") == 2  # the replaced members


# Backtest: members ------------------------------------------------------------------------
SELECTION = {"members": 3, "chosen_member": 2, "criterion": "highest mean net log return over 30 validation days",
             "seeds": [5, 6, 7], "validation_log_return": {"0": {"AAA": 0.1, "BBB": -0.3},
                                                          "1": {"AAA": 0.0, "BBB": 0.0},
                                                          "2": {"AAA": 0.2, "BBB": 0.1}}}
MEMBER_METRICS = {str(m): {s: {"total_return": r, "sharpe": 10 * r, "max_drawdown": -abs(r)}
                           for s, r in (("AAA", 0.01 * (m + 1)), ("BBB", -0.02 * m))} for m in range(3)}


def test_member_table_marks_the_choice_and_its_validation_score():
    table = member_table(MEMBER_METRICS, SELECTION)
    assert list(table.index) == [0, 1, 2] and table.loc[2, "chosen"] == "✓ chosen" and table.loc[0, "chosen"] == ""
    assert table["seed"].tolist() == [5, 6, 7]
    scores = validation_scores(SELECTION)
    assert scores == {0: pytest.approx(-0.1), 1: 0.0, 2: pytest.approx(0.15)}
    assert max(scores, key=scores.get) == SELECTION["chosen_member"]  # the criterion the choice maximised
    assert table.loc[0, "validation log return"] == "-0.1000"
    assert table.loc[1, "AAA total return"] == "+2.00%" and table.loc[2, "BBB Sharpe"] == "-0.400"
    text = selection_text(SELECTION, population=True)
    assert "Member 2 (seed 7)" in text and "validation days" in text and "one draw from the spread" in text


def test_spread_table_formats_the_engines_spread():
    values = [MEMBER_METRICS[str(m)]["AAA"]["total_return"] for m in range(3)]
    metrics = {"AAA": {"total_return": values[2], "members": 3, "total_return_mean": float(np.mean(values)),
                       "total_return_sd": float(np.std(values, ddof=1)), "total_return_min": min(values),
                       "total_return_max": max(values)},
               "BBB": {"total_return": 0.0}}  # no spread recorded: left out
    table = spread_table(metrics)
    assert list(table.index) == [("AAA", "total return")]
    row = table.loc[("AAA", "total return")]
    assert row["chosen member"] == "+3.00%" and row["mean ± sd"] == "+2.00% ± 1.00%"
    assert row["min … max"] == "+1.00% … +3.00%" and row["members"] == 3


def test_member_fan_draws_every_member_the_band_and_the_chosen_one():
    dates = pd.bdate_range("2024-01-01", periods=5)
    frame = pd.DataFrame([{"date": d, "symbol": s, "member": m, "position": 1.0, "equity": 100.0 + m * i + (s == "BBB")}
                          for s in ("AAA", "BBB") for m in range(3) for i, d in enumerate(dates)])
    curves = member_curves(frame.sample(frac=1.0, random_state=1), "AAA")  # any row order
    assert list(curves) == [0, 1, 2] and list(curves[2][1]) == [100, 102, 104, 106, 108]
    bench = (dates.to_numpy(), np.linspace(100, 90, 5))
    fig = members_fan_figure(curves, "AAA — fan", chosen=1, bench=bench)
    chosen = [t for t in fig.data if t.name == "member 1 (chosen)"]
    assert len(chosen) == 1 and chosen[0].line.width == 3
    assert sum(t.legendgroup == "others" for t in fig.data) == 2
    upper, lower = fig.data[0], fig.data[1]
    np.testing.assert_allclose(upper.y, np.max([curves[m][1] for m in range(3)], axis=0))
    np.testing.assert_allclose(lower.y, np.min([curves[m][1] for m in range(3)], axis=0))
    assert any(t.name == "buy & hold" for t in fig.data)
    assert member_curves(None, "AAA") == {}


# Walk-forward -----------------------------------------------------------------------------
def summary():
    def m(ret, bh):
        return {"total_return": ret, "sharpe": 10 * ret, "max_drawdown": -0.05, "bh_total_return": bh,
                "bh_sharpe": 10 * bh, "bh_max_drawdown": -0.08}

    return {"id": "wf-x", "folds": 2, "state": "done", "created_at": 0.0,
            "config": {"symbols": ["AAA", "BBB"], "test_days": 20},
            "per_fold": [{"fold": k + 1, "run_id": f"wf-x-fold{k + 1}",
                          "date_ranges": {"AAA": {"test_start": f"2024-0{k + 1}-01", "last": f"2024-0{k + 1}-28"}},
                          "metrics": {"AAA": m(0.01 * (k + 1), 0.02), "BBB": m(-0.01, 0.0)}} for k in range(2)],
            "pooled": {"AAA": {**m(0.0302, 0.0404), "days": 38, "first_test_day": "2024-01-01",
                               "last_test_day": "2024-02-28"},
                       "BBB": {**m(-0.0199, 0.0), "days": 38}}}


def test_walkforward_tables():
    s = summary()
    listing = walkforwards_table([s])
    assert listing.loc[0, "walk-forward"] == "wf-x" and listing.loc[0, "folds"] == "2 / 2"
    assert listing.loc[0, "pooled return"] == format_metric("total_return", np.mean([0.0302, -0.0199]))
    assert listing.loc[0, "pooled B&H return"] == "+2.02%"
    folds = fold_table(s)
    assert list(folds.index) == [(1, "AAA"), (1, "BBB"), (2, "AAA"), (2, "BBB")]
    assert folds.loc[(2, "AAA"), "total return"] == "+2.00%" and folds.loc[(2, "AAA"), "total return (B&H)"] == "+2.00%"
    assert folds.loc[(1, "AAA"), "test days"] == "2024-01-01 → 2024-01-28" and folds.loc[(1, "BBB"), "run"] == "wf-x-fold1"
    pooled = pooled_table(s)
    assert pooled.loc["AAA", "total return"] == "+3.02%" and pooled.loc["AAA", "daily returns"] == 38
    assert pooled.loc["AAA", "test days"] == "2024-01-01 → 2024-02-28"
    running = {**s, "state": "running", "per_fold": s["per_fold"][:1], "pooled": None}
    assert pooled_table(running).empty and len(fold_table(running)) == 2


# the Train form: seeds and populations -------------------------------------------------------
def form(**changes):
    values = {**forms.preset_form_values("quick"), **population_form.space_form_values()}
    values.update(symbols="AAA", preset="quick", data="synthetic")
    values.update(changes)
    return values


def test_seeds_by_default_and_population_on_request():
    config, errors = forms.config_from_form(form())
    assert errors == [] and config.seeds == 4 and config.population == 1
    # the seeds mode ignores the population fields, even unusable ones
    config, errors = forms.config_from_form(form(pbt_fraction="x", population=0))
    assert errors == [] and config.population == 1
    config, errors = forms.config_from_form(form(agents="population", seeds="x", pbt_interval=3, pbt_fraction=0.5,
                                                 pbt_resample=1.0, evolve=["ent_coef", "lr"]))
    assert errors == [], errors
    assert (config.seeds, config.population, config.pbt_interval) == (1, 8, 3)
    assert config.evolve == ("lr", "ent_coef") and config.search_space == "" and config.init_space == ""
    assert config.pbt_fraction == 0.5 and config.pbt_resample == 1.0 and config.evolving


def test_ranges_become_search_and_init_space_strings():
    evolve, search, init, errors = population_form.space_from_form(form(evolve=["lr", "clip_eps"], range_lr="1e-5 : 1e-2",
                                                              range_clip_eps="0.05:0.4", init_lr="1e-6..3e-6"))
    assert errors == [] and evolve == ("lr", "clip_eps")
    assert search == "lr=1e-05:0.01"  # only the changed range
    # one first-generation range given: every evolved name gets one (the others their search range)
    assert init == "lr=1e-06:3e-06,clip_eps=0.05:0.4"
    config, errors = forms.config_from_form(form(agents="population", evolve=["lr", "clip_eps"],
                                                 range_lr="1e-5:1e-2", init_lr="1e-6:3e-6"))
    assert errors == [] and config.search_space == search and config.init_space == init
    # empty range fields mean the declared ranges; names not evolved are ignored
    assert population_form.space_from_form(form(evolve=["lr"], range_lr="", range_gamma="junk")) == (("lr",), "", "", [])


@pytest.mark.parametrize("changes,field,needle", [
    ({"range_lr": "0:1e-2"}, "range_lr", "LOW must be > 0"),
    ({"range_lr": "1e-2"}, "range_lr", "must look like LOW:HIGH"),
    ({"range_clip_eps": "0.4:0.1"}, "range_clip_eps", "LOW <= HIGH"),
    ({"init_ent_coef": "a:b"}, "init_ent_coef", "must be numbers"),
    ({"evolve": ["gamma"], "range_gamma": "0.9:1.0"}, "range_gamma", "strictly between 0 and 1"),
    ({"evolve": []}, "evolve", "at least one hyperparameter"),
    ({"population": 1}, "population", "at least 2 members"),
    ({"pbt_fraction": 0.7}, "pbt_fraction", "(0, 0.5]"),
    ({"pbt_interval": 0}, "pbt_interval", "at least 1 update"),
    ({"val_days": 0}, "population", "validation days"),
])
def test_population_problems_land_at_their_fields(changes, field, needle):
    base = {"agents": "population", "evolve": ["lr", "ent_coef", "clip_eps"]}
    config, errors = forms.config_from_form(form(**{**base, **changes}))
    assert config is None
    grouped = forms.field_errors(errors)
    assert field in grouped and any(needle in m for m in grouped[field]), errors


def test_every_population_field_has_a_slot_or_is_general():
    for name in SEARCH_SPACE:
        assert forms.field_of(f"search_space: '{name}=x' must look like LOW:HIGH") == f"range_{name}"
        assert forms.field_of(f"init_space: '{name}=1:2': need finite LOW <= HIGH") == f"init_{name}"
    assert forms.field_of("seeds: must lie in 1 .. 4096 (got 0)") == "seeds"
    assert forms.field_of("evolve: name at least one hyperparameter for PBT to evolve") == "evolve"


def test_memory_check_refuses_a_population_that_cannot_fit():
    huge = TrainConfig(**{**PRESETS["production"], "preset": "production", "population": 4096})
    errors = forms.memory_errors(huge)
    assert len(errors) == 1 and forms.field_of(errors[0]) == "population" and "members fit" in errors[0]
    assert forms.memory_errors(TrainConfig(**{**PRESETS["quick"], "preset": "quick", "seeds": 4})) == []


def test_runtime_estimate_counts_every_member():
    one = TrainConfig(**{**PRESETS["quick"], "preset": "quick"})
    four = one.replace(seeds=4)
    assert forms.runtime_estimate(four, [], "cpu")["seconds"] == pytest.approx(
        4 * forms.runtime_estimate(one, [], "cpu")["seconds"])
    assert "× 4 members" in forms.runtime_estimate(four, [], "cpu")["basis"]
    assert math.isclose(four.total_env_steps, 4 * one.total_env_steps)


def test_population_values_survive_a_preset_change_and_seeds_follow_it():
    for name in ("population", "pbt_interval", "pbt_fraction", "pbt_resample", "val_days"):
        assert name not in forms.PRESET_FIELDS
    assert "seeds" in forms.PRESET_FIELDS
    assert forms.preset_form_values("production")["population"] == 8 == forms.preset_form_values("quick")["population"]
