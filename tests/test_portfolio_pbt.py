"""A portfolio population with PBT, end to end through `evorl train --portfolio --population K`:
each member's recorded fitness is the portfolio mode's validation fitness of its parameters (the
same figure as the NumPy float64 account of its greedy weights on the validation days), a replaced
member holds its donor's parameters with perturbed hyperparameters, and the chosen member's
backtest is written as for any portfolio run."""

from __future__ import annotations

import json

import jax
import numpy as np
import pandas as pd
import pytest

from evorl_core import modes
from evorl_core.agents.build import make_ppo
from evorl_core.agents.checkpoints import load_params
from evorl_core.agents.ppo import Hyper
from evorl_core.cli import main
from evorl_core.config import SEARCH_SPACE, TrainConfig
from evorl_core.data import load_market
from evorl_core.evaluation import portfolio as pe
from evorl_core.store.rundir import RunDir

MEMBERS, INTERVAL, UPDATES = 3, 2, 4
TINY = ["--num-envs", "8", "--num-steps", "16", "--minibatch-size", "32", "--epochs", "1", "--hidden", "16",
        "--window", "8", "--test-days", "30", "--val-days", "30"]


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    root = tmp_path_factory.mktemp("portfolio-pbt")
    code = main(["train", "--portfolio", "--symbols", "all", "--data", "synthetic", "--universe-size", "4",
                 "--preset", "quick", *TINY, "--timesteps", str(8 * 16 * UPDATES), "--population", str(MEMBERS),
                 "--pbt-interval", str(INTERVAL), "--pbt-fraction", "0.34", "--seed", "5",
                 "--runs-dir", str(root / "runs"), "--run-id", "ppbt", "--cache-dir", str(root / "cache"), "--quiet"])
    assert code == 0
    run = RunDir(root / "runs" / "ppbt")
    config = TrainConfig.from_dict(run.load_config())
    market = load_market(config, cache_dir=root / "cache")
    return run, config, market


def _member(params, m):
    return jax.tree.map(lambda x: x[m], params)


def test_rounds_exploit_the_best_and_explore_its_hyperparameters(population):
    run, config, market = population
    assert config.mode == "portfolio" and config.members == MEMBERS and config.evolving
    assert json.loads((run.path / "status.json").read_text())["state"] == "done"
    rows = run.read_population("hyperparams")
    lineage = run.read_population("lineage")
    rounds = UPDATES // INTERVAL
    assert sorted({r["round"] for r in rows}) == list(range(rounds + 1)) and len(rows) == MEMBERS * (rounds + 1)
    assert len(lineage) == rounds and [e["update"] for e in lineage] == [INTERVAL * (k + 1) for k in range(rounds)]
    for event in lineage:
        same = {r["member"]: r for r in rows if r["round"] == event["round"]}
        assert event["member"] != event["donor"]
        assert event["fitness"] == min(r["fitness"] for r in same.values())
        assert event["donor_fitness"] == max(r["fitness"] for r in same.values())
        assert same[event["member"]]["replaced"] and same[event["member"]]["donor"] == event["donor"]
        after = same[event["member"]]
        for name in config.evolve:  # explored from the donor's values, within range, recorded as the member's
            assert after[name] == pytest.approx(event["new"][name])
            lo, hi = SEARCH_SPACE[name].low, SEARCH_SPACE[name].high
            assert lo * 0.999 <= event["new"][name] <= hi * 1.001
        # perturbed: a value may sit clipped at a bound, but not every evolved one stays the donor's
        assert any(event["new"][n] != pytest.approx(event["donor_hyper"][n], rel=1e-3) for n in config.evolve)
        for name in set(Hyper._fields) - set(config.evolve):
            assert event["new"][name] == event["donor_hyper"][name]
    # the last round comes after the last update, so the checkpoint holds its outcome: the replaced
    # member's network is its donor's, bit for bit, while the kept members still differ from each other
    last = lineage[-1]
    params = load_params(run, config)
    copied, donor = _member(params, last["member"]), _member(params, last["donor"])
    for a, b in zip(jax.tree.leaves(copied), jax.tree.leaves(donor), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    others = [m for m in range(MEMBERS) if m != last["member"]]
    assert any(not np.array_equal(np.asarray(jax.tree.leaves(_member(params, a))[0]),
                                  np.asarray(jax.tree.leaves(_member(params, b))[0]))
               for a in others for b in others if a < b)


def test_fitness_is_the_mode_validation_fitness_of_each_member(population):
    """The fitness recorded at the last round, recomputed from the checkpoint: on the device by the
    mode's `validation_fitness`, and on the host by the NumPy float64 account of the greedy weights
    (what the evaluation's selection scores are). The replaced member now scores its donor's fitness."""
    run, config, market = population
    params = load_params(run, config)
    ppo = make_ppo(config)
    mode = modes.get(config)
    fitness = jax.jit(jax.vmap(lambda p: mode.validation_fitness(ppo.action_probabilities, p, market.data,
                                                                 config.val_days, ppo.env)))
    device = np.asarray(fitness(params), np.float64)
    rows = {r["member"]: r for r in run.read_population("hyperparams") if r["round"] == UPDATES // INTERVAL}
    last = run.read_population("lineage")[-1]
    for m in range(MEMBERS):
        expected = last["donor_fitness"] if m == last["member"] else rows[m]["fitness"]
        assert device[m] == pytest.approx(expected, abs=1e-6), m
    start, days = int(market.data.val_start), market.val_days
    prices = pe.window_prices(market, start, days)
    targets = pe.greedy_targets(config, params, market, start, days, MEMBERS)
    host = [np.log(pe._run(config, prices, targets[m]).equity[-1] / config.initial_capital) for m in range(MEMBERS)]
    np.testing.assert_allclose(device, host, atol=2e-5)
    selection = json.loads((run.backtest_dir / "selection.json").read_text())
    scores = [selection["validation_log_return"][str(m)][pe.PORTFOLIO] for m in range(MEMBERS)]
    np.testing.assert_allclose(scores, host, rtol=0, atol=1e-12)
    assert selection["members"] == MEMBERS and selection["chosen_member"] == int(np.argmax(host))


def test_the_chosen_member_is_backtested_as_a_portfolio_run(population):
    run, config, market = population
    bt = run.backtest_dir
    selection = json.loads((bt / "selection.json").read_text())
    chosen = selection["chosen_member"]
    metrics = json.loads((bt / "metrics.json").read_text())[pe.PORTFOLIO]
    assert metrics["chosen_member"] == chosen and metrics["members"] == MEMBERS
    assert metrics["assets"] == len(config.symbols) == 4 and metrics["days"] == config.test_days
    assert {"1/N rebalanced", "equal-weight buy & hold", "cash"} <= set(metrics["baselines"])
    equity = pd.read_csv(bt / "equity.csv")
    weights = pd.read_csv(bt / "weights.csv")
    assert len(equity) == config.test_days and set(equity["symbol"]) == {pe.PORTFOLIO}
    assert set(weights["symbol"]) == {*config.symbols, pe.CASH}
    np.testing.assert_allclose(weights.groupby("date")["weight"].sum(), 1.0, atol=1e-9)
    members = pd.read_csv(bt / "members.csv")
    assert sorted(members["member"].unique()) == list(range(MEMBERS))
    mine = members[members["member"] == chosen]["equity"].to_numpy()
    np.testing.assert_allclose(mine, equity["equity"].to_numpy(), rtol=1e-12)
    assert metrics["total_return"] == pytest.approx(equity["equity"].iloc[-1] / equity["equity"].iloc[0] - 1,
                                                    rel=1e-9)
    metric_members = {r["member"] for r in run.read_metrics()}
    assert metric_members == set(range(MEMBERS))
