"""The dashboard's views of several agents through Streamlit's AppTest, over runs made by real tiny
training (tests/population_runs.py): Live and Backtest of a population and of a seeds run, the
Walk-forward page, and the Train form and Home quick start with seeds and populations. Figures and
tables are checked against the run files, recomputed here."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from population_runs import PBT_RUN, WALKFORWARD, copy_into
from test_app import assert_clean, dirs, errors, fake_train, finished_run, open_page  # noqa: F401 - fixtures

from evorl_core.store.rundir import RunDir
from evorl_core.training import jobs
from evorl_ui import report
from evorl_ui.presenters.format import format_metric


@pytest.fixture
def pop_runs(dirs):  # noqa: F811 - the fixture imported above
    copy_into(dirs["runs"])
    return dirs["runs"]


def _decoded(obj):
    """A plotly spec with its typed arrays ({"dtype", "bdata"}, base64) as lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            return np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"])).tolist()
        return {k: _decoded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decoded(v) for v in obj]
    return obj


def specs(at) -> dict[str, dict]:
    """Plotly figures of a page by title."""
    out = {}
    for el in at.get("plotly_chart"):
        spec = _decoded(json.loads(el.proto.spec))
        out[((spec.get("layout") or {}).get("title") or {}).get("text", "")] = spec
    return out


def captions(at) -> str:
    return " ".join(c.value for c in at.caption)


def column_errors(at, key: str) -> list[str]:
    for col in at.columns:
        if any(w.key == key for w in [*col.number_input, *col.text_input, *col.multiselect]):
            return [e.value for e in col.error]
    raise AssertionError(f"no column holds {key}")


# Live -------------------------------------------------------------------------------------
def test_live_population_members_fitness_hyperparameters_and_lineage(pop_runs):
    run = RunDir(pop_runs / PBT_RUN)
    at = open_page("live", selected_run=PBT_RUN)
    assert_clean(at, "live")
    assert errors(at) == []
    assert any(s.value == "Population: 4 members" for s in at.subheader)
    figs = specs(at)
    # every member's reward curve and their mean
    members = figs["Reward per step — every member"]["data"]
    rows = run.read_metrics()
    assert [t["name"] for t in members][-1] == "mean of members" and len(members) == 5
    for trace in members[:-1]:
        m = int(trace["name"].split()[1])
        mine = sorted((r for r in rows if r["member"] == m), key=lambda r: r["update"])
        np.testing.assert_allclose(trace["y"], [r["reward_mean"] for r in mine])
    by_update = pd.DataFrame(rows).groupby("update")["reward_mean"].mean()
    np.testing.assert_allclose(members[-1]["y"], by_update.to_numpy())
    chosen = run.read_selection()["chosen_member"]
    assert f"member {chosen} (chosen)" in [t["name"] for t in members]
    # validation fitness per round: the star is each round's best member in hyperparams.jsonl
    hyper = pd.DataFrame(run.read_population("hyperparams"))
    best = next(t for t in figs["Validation fitness per round (★ best member of the round)"]["data"]
                if t["name"] == "best of the round")
    scored = hyper.dropna(subset=["fitness"])
    expected = scored.loc[scored.groupby("round")["fitness"].idxmax()]
    assert best["x"] == expected["round"].tolist() and best["text"] == [str(m) for m in expected["member"]]
    np.testing.assert_allclose(best["y"], expected["fitness"])
    # hyperparameter trajectories: lr and ent_coef on log axes, values as recorded
    spec = figs["Hyperparameters per member (after each round)"]
    assert spec["layout"]["yaxis"]["type"] == "log" and spec["layout"]["yaxis2"]["type"] == "log"
    assert spec["layout"]["yaxis3"].get("type") != "log"
    lr0 = next(t for t in spec["data"] if t["name"] == "member 0" and t.get("yaxis", "y") == "y")
    np.testing.assert_allclose(lr0["y"], hyper[hyper.member == 0].sort_values("round")["lr"])
    # lineage: one arrow and one table row per exploit event
    events = run.read_population("lineage")
    assert events, "the tiny population had no exploit event"
    arrows = figs["Lineage: exploit events (arrow: donor → member that copied it)"]["layout"]["annotations"]
    assert sorted((a["ay"], a["y"], a["x"]) for a in arrows) == sorted(
        (e["donor"], e["member"], e["round"]) for e in events)
    table = next(df.value for df in at.dataframe if "member ← donor" in df.value.columns)
    assert sorted(table["member ← donor"]) == sorted(f"{e['member']} ← {e['donor']}" for e in events)
    # aggregate and per-member throughput
    sps = np.median([r["steps_per_sec"] for r in rows if r["member"] == 0])
    assert f"all 4 members together · {sps / 4:,.0f} per member" in captions(at)
    assert any(t.endswith("(mean over members)") for t in (s.value for s in at.subheader))


def test_live_seeds_run_shows_members_without_evolution(pop_runs):
    at = open_page("live", selected_run=f"{WALKFORWARD}-fold1")
    assert_clean(at, "live")
    assert any(s.value == "Seeds: 2 independent agents" for s in at.subheader)
    figs = specs(at)
    assert "Reward per step — every member" in figs and "Reward per step (mean ± std)" in figs
    assert not any(t.startswith(("Validation fitness", "Hyperparameters", "Lineage")) for t in figs)


def test_live_single_agent_has_no_member_section(pop_runs, finished_run):  # noqa: F811
    shutil.copytree(finished_run.path, pop_runs / finished_run.run_id)
    at = open_page("live", selected_run=finished_run.run_id)
    assert_clean(at, "live")
    assert [s.value for s in at.subheader] == ["Compare runs"]
    assert "Reward per step — every member" not in specs(at) and "Reward per step (mean ± std)" in specs(at)


# Backtest ---------------------------------------------------------------------------------
def test_backtest_population_fan_members_and_spread(pop_runs):
    run = RunDir(pop_runs / PBT_RUN)
    selection = run.read_selection()
    chosen = selection["chosen_member"]
    members = pd.read_csv(run.backtest_dir / "members.csv", parse_dates=["date"])
    member_metrics = json.loads((run.backtest_dir / "members.json").read_text())
    at = open_page("backtest", selected_run=PBT_RUN)
    assert_clean(at, "backtest")
    assert errors(at) == []
    info = " ".join(i.value for i in at.info)
    assert f"Member {chosen}" in info and "picked on the validation days" in info and "one draw from the spread" in info
    figs = specs(at)
    equity = run.read_equity()
    for symbol in ("AAA", "BBB"):
        fan = figs[f"{symbol} — every member's test equity (fan)"]["data"]
        bold = next(t for t in fan if t["name"] == f"member {chosen} (chosen)")
        mine = members[(members.member == chosen) & (members.symbol == symbol)].sort_values("date")
        np.testing.assert_allclose(bold["y"], mine["equity"])
        # the headline equity.csv is the chosen member's
        np.testing.assert_allclose(bold["y"], equity[equity.symbol == symbol].sort_values("date")["equity"])
        assert sum(t.get("legendgroup") == "others" for t in fan) == 3
        assert any(t["name"] == "buy & hold" for t in fan)
        # the chosen symbol figure (equity vs buy & hold) is still there
        assert f"{symbol} — equity vs buy & hold" in figs
    tables = [df.value for df in at.dataframe]
    per_member = next(t for t in tables if "validation log return" in t.columns)
    assert list(per_member.index) == [0, 1, 2, 3] and per_member.loc[chosen, "chosen"] == "✓ chosen"
    scores = {m: np.mean(list(v.values())) for m, v in selection["validation_log_return"].items()}
    assert per_member.loc[0, "validation log return"] == f"{scores['0']:+.4f}"
    spread = next(t for t in tables if "mean ± sd" in t.columns)
    for symbol in ("AAA", "BBB"):
        values = np.array([member_metrics[str(m)][symbol]["total_return"] for m in range(4)])
        fmt = lambda v: format_metric("total_return", v)  # noqa: E731
        row = spread.loc[(symbol, "total return")]
        sd = format_metric("total_return_sd", values.std(ddof=1))  # a spread is written without a sign
        assert row["mean ± sd"] == f"{fmt(values.mean())} ± {sd}"
        assert row["min … max"] == f"{fmt(values.min())} … {fmt(values.max())}"
        assert row["chosen member"] == fmt(values[chosen])


def test_html_report_holds_the_members(pop_runs):
    html = report.report_html(RunDir(pop_runs / PBT_RUN))
    assert "All 4 members" in html and "one draw from the spread" in html and "mean ± sd" in html
    assert html.count("every member") == 2  # a fan per symbol (titles inside the figures' JSON)


def test_backtest_seeds_run_has_a_fan_and_no_population(pop_runs):
    at = open_page("backtest", selected_run=f"{WALKFORWARD}-fold2")
    assert_clean(at, "backtest")
    assert any(s.value == "All 2 members (seeds)" for s in at.subheader)
    assert "AAA — every member's test equity (fan)" in specs(at)
    assert "independently seeded agents" in " ".join(i.value for i in at.info)


# Walk-forward -----------------------------------------------------------------------------
def test_walkforward_page_lists_folds_pooled_and_opens_a_fold(pop_runs):
    summary = json.loads((pop_runs / "walkforward" / WALKFORWARD / "summary.json").read_text())
    at = open_page("walkforward")
    assert_clean(at, "walkforward")
    assert errors(at) == []
    listing, pooled, folds = (df.value for df in at.dataframe[:3])
    assert listing["walk-forward"].tolist() == [WALKFORWARD] and listing.loc[0, "state"] == "done"
    assert list(folds.index) == [(1, "AAA"), (1, "BBB"), (2, "AAA"), (2, "BBB")]
    assert set(folds["run"]) == {f"{WALKFORWARD}-fold1", f"{WALKFORWARD}-fold2"}
    for symbol in ("AAA", "BBB"):
        # pooled = the folds' test returns chained: (1 + r1)(1 + r2) - 1, each fold's from its own run
        chained = np.prod([1 + RunDir(pop_runs / f"{WALKFORWARD}-fold{k}").read_backtest_metrics()[symbol]["total_return"]
                           for k in (1, 2)]) - 1
        assert pooled.loc[symbol, "total return"] == format_metric("total_return", chained)
        assert summary["pooled"][symbol]["total_return"] == pytest.approx(chained, rel=1e-9)
        assert pooled.loc[symbol, "daily returns"] == 2 * (summary["config"]["test_days"] - 1)
    at.button(key=f"wf_open_{WALKFORWARD}-fold2").click().run()
    assert [t.value for t in at.title] == ["Backtest"]
    assert at.selectbox(key="bt_run").value == f"{WALKFORWARD}-fold2"


def test_walkforward_page_without_any(dirs):  # noqa: F811
    at = open_page("walkforward")
    assert_clean(at, "walkforward")
    assert any("No walk-forward" in i.value for i in at.info)


# Train form and quick start --------------------------------------------------------------------
def test_train_defaults_to_four_seeds(dirs, fake_train):  # noqa: F811
    at = open_page("train")
    assert at.radio(key="train_agents").value == "seeds" and at.number_input(key="train_seeds").value == 4
    at.selectbox(key="train_source").set_value("synthetic").run()
    at.number_input(key="train_total_timesteps").set_value(4096)
    at.button(key="train_start").click().run()
    assert not at.exception and errors(at) == []
    config = fake_train[0]["config"]
    assert config.seeds == 4 and config.population == 1
    assert jobs.get_registry().join(fake_train[0]["run_id"], dirs["runs"], timeout=10)


def test_train_population_checks_each_field_then_starts(dirs, fake_train):  # noqa: F811
    at = open_page("train")
    at.selectbox(key="train_source").set_value("synthetic").run()
    at.radio(key="train_agents").set_value("population").run()
    assert at.number_input(key="train_population").value == 8
    assert at.multiselect(key="train_evolve").value == ["lr", "ent_coef", "clip_eps"]
    assert at.text_input(key="train_range_lr").value == "1e-05:0.003"  # the declared range, shown
    at.number_input(key="train_population").set_value(1)
    at.number_input(key="train_pbt_fraction").set_value(0.9)
    at.text_input(key="train_range_lr").set_value("0:1e-2")
    at.text_input(key="train_init_ent_coef").set_value("abc")
    at.button(key="train_start").click().run()
    assert not at.exception and fake_train == []
    assert [m[:11] for m in column_errors(at, "train_population")] == ["population:"]
    assert [m[:13] for m in column_errors(at, "train_pbt_fraction")] == ["pbt_fraction:"]
    assert "LOW must be > 0" in column_errors(at, "train_range_lr")[0]
    assert column_errors(at, "train_init_ent_coef")[0].startswith("init_space: 'ent_coef=abc'")
    # fixed: the run starts with the population and its search space
    at.number_input(key="train_population").set_value(4)
    at.number_input(key="train_pbt_fraction").set_value(0.5)
    at.text_input(key="train_range_lr").set_value("1e-5:1e-2")
    at.text_input(key="train_init_ent_coef").set_value("")
    at.multiselect(key="train_evolve").set_value(["lr", "ent_coef"])
    at.number_input(key="train_total_timesteps").set_value(4096)
    at.button(key="train_start").click().run()
    assert not at.exception and errors(at) == [], errors(at)
    config = fake_train[0]["config"]
    assert (config.population, config.seeds, config.pbt_fraction) == (4, 1, 0.5)
    assert config.evolve == ("lr", "ent_coef") and config.search_space == "lr=1e-05:0.01" and config.init_space == ""
    assert jobs.get_registry().join(fake_train[0]["run_id"], dirs["runs"], timeout=10)
    # the mode and the population survive a new session (the draft)
    fresh = open_page("train")
    assert fresh.radio(key="train_agents").value == "population"
    assert fresh.multiselect(key="train_evolve").value == ["lr", "ent_coef"]


def test_home_quick_start_trains_several_seeds(dirs, fake_train):  # noqa: F811
    at = open_page("home")
    assert any("4 seeds" in m.value for m in at.markdown)
    at.button(key="quick_start").click().run()
    assert not at.exception
    assert fake_train[0]["config"].seeds == 4 and fake_train[0]["config"].preset == "quick"
    jobs.get_registry().join(fake_train[0]["run_id"], dirs["runs"], timeout=10)


@pytest.mark.parametrize("run_id, members", [(PBT_RUN, 4), (f"{WALKFORWARD}-fold2", 2)])
def test_backtest_rows_and_verdicts_name_their_subject(pop_runs, run_id, members):
    at = open_page("backtest", selected_run=run_id)
    assert_clean(at, "backtest")
    tables = [df.value for df in at.dataframe]
    symbol_tables = [t for t in tables if "subject" in t.columns and "Agent" in t.columns]
    assert symbol_tables, "no per-symbol table with a subject column"
    subjects = dict(zip(symbol_tables[0].index, symbol_tables[0]["subject"], strict=True))
    assert subjects["total return"] == "chosen member" and subjects["excess p-value"] == "members' average"
    overview = next(t for t in tables if "verdict (members' average)" in t.columns)
    assert list(overview.index) == ["AAA", "BBB"]
    assert f"Verdict of the members' average of {members}: " in captions(at)
    html = report.report_html(RunDir(pop_runs / run_id))
    assert "members&#x27; average" in html or "members' average" in html
