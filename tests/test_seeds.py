"""Several seeds as one vmapped program: member k trains exactly like a solo run of seed+k; the
run reports every member's test results and chooses on validation days only."""

from __future__ import annotations

import json

import jax
import numpy as np
import pandas as pd
import pytest

from evorl_core.agents import checkpoints
from evorl_core.agents.build import make_ppo
from evorl_core.config import make_config
from evorl_core.costs import cost_model
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.deploy import bundle as deploy
from evorl_core.deploy import signal
from evorl_core.evaluation import evaluate as evaluation
from evorl_core.metrics import compute_metrics
from evorl_core.modes.single.accounting import equity_curve
from evorl_core.store import catalogue
from evorl_core.training import pipeline

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,), window=8, test_days=20,
            val_days=30, total_timesteps=8 * 16 * 4, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic")
LEARNING = ("policy_loss", "value_loss", "entropy", "approx_kl", "reward_mean", "explained_variance")


@pytest.fixture(scope="module")
def market():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in ("AAA", "BBB")}
    return build_market(frames, window=8, test_days=20, val_days=30, embargo_days=8,
                        info={"source": "synthetic", "synthetic": True})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, market):
    config = make_config("quick", **TINY, seeds=3, seed=5)
    return config, pipeline.run(config, tmp_path_factory.mktemp("runs"), "seeds", market=market)


def test_member_k_equals_a_solo_run_of_seed_k(tmp_path, market, seeded):
    config, run = seeded
    rows = run.read_metrics()
    assert len(rows) == config.num_updates * 3 and {r["member"] for r in rows} == {0, 1, 2}
    status = run.read_status()
    assert status["state"] == "done" and status["env_steps"] == config.total_env_steps == 3 * 512
    for k in (0, 2):
        solo = pipeline.run(make_config("quick", **TINY, seed=5 + k), tmp_path, f"solo{k}", market=market)
        mine = [r for r in rows if r["member"] == k]
        for a, b in zip(mine, solo.read_metrics(), strict=True):
            assert a["update"] == b["update"] and a["env_steps"] == b["env_steps"]
            for key in LEARNING:
                assert a[key] == pytest.approx(b[key], rel=2e-3, abs=2e-5), (k, key)
    # different seeds learn differently
    by_member = {m: [r["policy_loss"] for r in rows if r["member"] == m] for m in range(3)}
    assert by_member[0] != by_member[1]


def test_every_member_reported_and_the_choice_is_on_validation(market, seeded):
    config, run = seeded
    selection = json.loads((run.backtest_dir / "selection.json").read_text())
    scores = np.array([[selection["validation_log_return"][str(m)][s] for s in ("AAA", "BBB")] for m in range(3)])
    assert selection["chosen_member"] == int(np.argmax(scores.mean(axis=1)))
    assert selection["seeds"] == [5, 6, 7]
    members = pd.read_csv(run.backtest_dir / "members.csv")
    member_metrics = json.loads((run.backtest_dir / "members.json").read_text())
    assert sorted(members["member"].unique()) == [0, 1, 2] and len(members) == 3 * 2 * config.test_days
    for m in range(3):
        for symbol in market.symbols:
            rows = members[(members.member == m) & (members.symbol == symbol)]
            test = market.frames[symbol].iloc[-config.test_days:]
            # each member's test equity recomputed from its positions under the accounting
            equity = equity_curve(test["open"].to_numpy(), test["close"].to_numpy(), rows["position"].to_numpy(),
                                  cost_model(config), config.execution, config.initial_capital)
            np.testing.assert_allclose(rows["equity"], equity, rtol=1e-12)
            assert member_metrics[str(m)][symbol]["total_return"] == pytest.approx(
                compute_metrics(equity, rows["position"].to_numpy())["total_return"], rel=1e-12)
    chosen = selection["chosen_member"]
    headline = run.read_backtest_metrics()
    equity = run.read_equity()
    for symbol in market.symbols:
        values = [member_metrics[str(m)][symbol]["sharpe"] for m in range(3)]
        assert headline[symbol]["members"] == 3 and headline[symbol]["chosen_member"] == chosen
        assert headline[symbol]["sharpe"] == member_metrics[str(chosen)][symbol]["sharpe"]
        assert headline[symbol]["sharpe_mean"] == pytest.approx(np.mean(values))
        assert headline[symbol]["sharpe_sd"] == pytest.approx(np.std(values, ddof=1))
        chosen_rows = members[(members.member == chosen) & (members.symbol == symbol)]
        np.testing.assert_allclose(equity[equity.symbol == symbol]["equity"], chosen_rows["equity"])


def test_validation_scores_are_recomputed_from_validation_days_only(market, seeded):
    config, run = seeded
    params = checkpoints.load_params(run, config)
    val_start = np.asarray(market.data.val_start)
    paths = evaluation.greedy_paths(config, params, market, val_start, 30, members=3)
    selection = json.loads((run.backtest_dir / "selection.json").read_text())
    for m in range(3):
        for s, symbol in enumerate(market.symbols):
            frame = market.frames[symbol].iloc[int(val_start[s]):int(val_start[s]) + 30]
            assert frame.index[-1] < market.frames[symbol].index[int(market.data.test_start[s]) - 8]  # embargo
            equity = equity_curve(frame["open"].to_numpy(), frame["close"].to_numpy(), paths[m, s],
                                  cost_model(config), config.execution, config.initial_capital)
            assert selection["validation_log_return"][str(m)][symbol] == pytest.approx(
                np.log(equity[-1] / config.initial_capital))


def test_deploy_takes_the_chosen_member(tmp_path, seeded):
    config, run = seeded
    path = deploy.deploy_run(run, name="seeded", models_dir=tmp_path)
    bundle = deploy.load_bundle(path)
    chosen = json.loads((run.backtest_dir / "selection.json").read_text())["chosen_member"]
    assert bundle.meta["member"] == chosen and bundle.meta["member_seed"] == 5 + chosen
    full = checkpoints.load_params(run, config)
    first_full = np.asarray(jax.tree_util.tree_leaves(full)[0][chosen])
    np.testing.assert_array_equal(np.asarray(jax.tree_util.tree_leaves(bundle.params)[0]), first_full)


def test_top_k_ensemble_averages_the_members_probabilities(tmp_path, market, seeded):
    config, run = seeded
    selection = json.loads((run.backtest_dir / "selection.json").read_text())
    scores = {int(m): np.mean(list(v.values())) for m, v in selection["validation_log_return"].items()}
    top2 = sorted(scores, key=lambda m: -scores[m])[:2]
    bundle = deploy.load_bundle(deploy.deploy_run(run, name="ens", models_dir=tmp_path, ensemble=2))
    assert bundle.ensemble and bundle.meta["ensemble"] == top2 and "average" in bundle.meta["policy"]
    # on any observation, the ensemble's probabilities are the mean of its members' own
    ppo = make_ppo(config)
    everyone = checkpoints.load_params(run, config)
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, ppo.obs_size))
    mean = np.mean([np.asarray(ppo.action_probabilities(jax.tree_util.tree_map(lambda x, m=m: x[m], everyone), obs))
                    for m in top2], axis=0)
    np.testing.assert_allclose(np.asarray(ppo.action_probabilities(bundle.params, obs, ensemble=True)), mean,
                               atol=1e-6)
    rows = signal.signals(bundle, {s: market.frames[s] for s in market.symbols})
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["position"] == float(max(row["probabilities"], key=row["probabilities"].get))
    with pytest.raises(deploy.DeployError, match="has 3 member"):
        deploy.deploy_run(run, name="too-many", models_dir=tmp_path, ensemble=4)


def test_run_list_counts_the_members(seeded):
    config, run = seeded
    (row,) = [r for r in catalogue.list_runs_annotated(run.path.parent) if r["run_id"] == run.run_id]
    assert (row["seeds"], row["population"], row["total_timesteps"]) == (3, 1, config.total_timesteps)
