"""PPO and the training loop: GAE, determinism, resume, checkpoints, the run-directory contract."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from evorl_core.agents import checkpoints
from evorl_core.agents.build import make_ppo
from evorl_core.agents.ppo import gae
from evorl_core.config import make_config
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.store.rundir import EQUITY_COLUMNS, RunDir
from evorl_core.training import pipeline

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,), window=8, test_days=20,
            total_timesteps=8 * 16 * 6, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic")


def tiny_config(**overrides):
    return make_config("quick", **{**TINY, **overrides})


@pytest.fixture(scope="module")
def tiny_market():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in ("AAA", "BBB")}
    return build_market(frames, window=8, test_days=20, info={"source": "synthetic", "synthetic": True})


def test_gae_matches_plain_loop():
    rng = np.random.default_rng(0)
    T, N = 7, 3
    reward, value = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    done = (rng.random((T, N)) < 0.3).astype(np.float64)
    last_value = rng.normal(size=N)
    gamma, lam = 0.97, 0.9
    expected = np.zeros((T, N))
    for n in range(N):
        running, next_v = 0.0, last_value[n]
        for t in reversed(range(T)):
            nonterminal = 1.0 - done[t, n]
            delta = reward[t, n] + gamma * next_v * nonterminal - value[t, n]
            running = delta + gamma * lam * nonterminal * running
            expected[t, n] = running
            next_v = value[t, n]
    adv, targets = gae(jnp.asarray(reward), jnp.asarray(value), jnp.asarray(done), jnp.asarray(last_value),
                       gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(targets), expected + value, rtol=1e-5, atol=1e-6)


def test_update_returns_reduced_scalars(tiny_market):
    config = tiny_config()
    ppo = make_ppo(config)
    runner = ppo.init(jax.random.PRNGKey(0), tiny_market.data)
    runner2, metrics = jax.jit(ppo.update)(runner, tiny_market.data)
    assert all(np.ndim(v) == 0 for v in metrics.values())
    assert int(runner2.update_step) == 1
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), runner.params, runner2.params)
    assert any(jax.tree_util.tree_leaves(changed)), "an update must change the parameters"
    assert 0.0 <= float(metrics["clip_fraction"]) <= 1.0
    assert float(metrics["entropy"]) <= np.log(len(config.positions)) + 1e-5


def _learning_metrics(run: RunDir):
    keep = ("update", "env_steps", "policy_loss", "value_loss", "entropy", "approx_kl", "reward_mean",
            "explained_variance")
    return [{k: r[k] for k in keep} for r in run.read_metrics()]


def test_run_directory_contract_and_determinism(tmp_path, tiny_market):
    config = tiny_config()
    a = pipeline.run(config, tmp_path, "a", market=tiny_market)
    b = pipeline.run(config, tmp_path, "b", market=tiny_market)
    status = a.read_status()
    assert status["state"] == "done" and status["env_steps"] == config.num_updates * config.batch_size
    assert status["compile_seconds"] > 0
    rows = a.read_metrics()
    assert [r["update"] for r in rows] == list(range(1, config.num_updates + 1))
    for key in ("env_steps", "wall_time", "steps_per_sec", "updates_per_sec", "reward_mean", "reward_std",
                "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance",
                "host_rss_mb", "device_mem_mb", "device_peak_mb"):
        assert key in rows[0]
    assert all(r["steps_per_sec"] > 0 for r in rows)
    cfg = a.read_config()
    assert cfg["seed"] == 0 and cfg["data_hash"] == tiny_market.data_hash and "jax" in cfg["versions"]
    assert set(cfg["normalization"]) == {"AAA", "BBB"}
    # same seed + config + data = identical learning metrics
    assert _learning_metrics(a) == _learning_metrics(b)
    # backtest files per the contract
    equity = pd.read_csv(a.equity_path)
    assert list(equity.columns) == EQUITY_COLUMNS
    assert len(equity) == 2 * config.test_days
    for symbol, g in equity.groupby("symbol"):
        assert g["equity"].iloc[0] == pytest.approx(config.initial_capital)
        assert g["benchmark_equity"].iloc[0] == pytest.approx(config.initial_capital)
        assert set(g["position"].unique()) <= set(config.positions)
        s = tiny_market.symbols.index(symbol)
        expected_dates = [str(d) for d in tiny_market.dates[s][-config.test_days:]]
        assert list(g["date"]) == expected_dates
    metrics = json.loads(a.backtest_metrics_path.read_text())
    assert set(metrics) == {"AAA", "BBB"}
    for symbol, m in metrics.items():
        rows = equity[equity.symbol == symbol]
        frame = tiny_market.frames[symbol].iloc[-config.test_days:]
        assert np.allclose(rows["open"], frame["open"]) and np.allclose(rows["close"], frame["close"])
        # every symbol's equity recomputed from the accounting formulas, step by step, in plain Python,
        # with the default NSE delivery costs typed in by hand: per side and Rs 13.5 + 18% GST per sell day
        positions = rows["position"].tolist()
        opens, closes = frame["open"].tolist(), frame["close"].tolist()
        statutory = 0.001 + 0.0000297 + 0.000001 + 0.18 * (0.0000297 + 0.000001)
        c_buy, c_sell = statutory + 0.00015 + 0.0005, statutory + 0.0005  # stamp duty on buys; 5 bps slippage
        expected, held = [config.initial_capital], 0.0
        for t in range(config.test_days - 1):
            new = positions[t]
            e_open = expected[-1] * (1 + held * (opens[t + 1] / closes[t] - 1))
            charge = 13.5 * 1.18 / e_open if new < held else 0.0
            e_fill = e_open * (1 - c_buy * max(new - held, 0) - c_sell * max(held - new, 0) - charge)
            expected.append(e_fill * (1 + new * (closes[t + 1] / opens[t + 1] - 1)))
            held = new
        np.testing.assert_allclose(rows["equity"], expected, rtol=1e-10)
        assert m["total_return"] == pytest.approx(expected[-1] / config.initial_capital - 1, rel=1e-9)
        # trades: position changes of the filled sequence 0, p_0, ..., p_{N-2} (the last one is the signal)
        changes = sum(1 for t in range(config.test_days - 1) if positions[t] != (positions[t - 1] if t else 0.0))
        assert m["trades"] == changes
        assert m["exposure"] == pytest.approx(np.mean(np.abs(positions[:-1])), rel=1e-9)
        assert m["days"] == config.test_days and m["significant"] in (True, False)
        # churn and cost drag are reported beside the net numbers
        assert m["gross_return"] - m["total_return"] == pytest.approx(m["cost_drag"], abs=1e-12)
        assert m["cost_drag"] >= 0 and set(m["cost_sensitivity"]) == {"0", "10", "25", "50"}
        assert m["trades_per_year"] == pytest.approx(changes * 252 / (config.test_days - 1))
        assert m["sharpe_ci_low"] is None or m["sharpe_ci_low"] <= m["sharpe"] <= m["sharpe_ci_high"]


def test_different_seed_changes_learning(tmp_path, tiny_market):
    a = pipeline.run(tiny_config(seed=0, total_timesteps=256), tmp_path, "s0", market=tiny_market)
    b = pipeline.run(tiny_config(seed=1, total_timesteps=256), tmp_path, "s1", market=tiny_market)
    assert _learning_metrics(a) != _learning_metrics(b)


def test_stop_then_resume_equals_uninterrupted(tmp_path, tiny_market):
    config = tiny_config(updates_per_chunk=1)
    full = pipeline.run(config, tmp_path, "full", market=tiny_market)

    seen = []

    class StopAfterThree:
        def is_set(self):
            return len(seen) >= 3

    part = pipeline.run(config, tmp_path, "part", market=tiny_market, progress=seen.append,
                      stop_event=StopAfterThree())
    status = part.read_status()
    assert status["state"] == "stopped" and status["env_steps"] == 3 * config.batch_size
    assert part.has_checkpoint() and not part.equity_path.exists()
    resumed = pipeline.run(config, tmp_path, "part", market=tiny_market, resume=True)
    assert resumed.read_status()["state"] == "done"
    np.testing.assert_allclose(
        [list(r.values()) for r in _learning_metrics(resumed)],
        [list(r.values()) for r in _learning_metrics(full)], rtol=1e-5, atol=1e-6,
    )
    assert resumed.equity_path.read_text() == full.equity_path.read_text()


def test_stop_file_stops_a_run(tmp_path, tiny_market):
    config = tiny_config(updates_per_chunk=1)
    run = RunDir.create(tmp_path, "filestop")

    def request_stop(info):
        if info["updates_done"] == 2:
            run.request_stop()

    pipeline.run(config, tmp_path, "filestop", market=tiny_market, progress=request_stop)
    status = run.read_status()
    assert status["state"] == "stopped" and status["updates_done"] == 2
    assert not run.stop_path.exists()


def test_checkpoint_round_trip(tmp_path, tiny_market):
    config = tiny_config()
    ppo = make_ppo(config)
    runner = ppo.init(jax.random.PRNGKey(7), tiny_market.data)
    runner, _ = jax.jit(ppo.update)(runner, tiny_market.data)
    run = RunDir.create(tmp_path, "ckpt")
    checkpoints.save_checkpoint(run, runner, 128, 1)
    restored, meta = checkpoints.load_checkpoint(run, ppo.init(jax.random.PRNGKey(0), tiny_market.data))
    assert meta["env_steps"] == 128 and meta["updates_done"] == 1
    for x, y in zip(jax.tree_util.tree_leaves(runner), jax.tree_util.tree_leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not list(run.checkpoint_dir.glob("*.pkl")) and not list(run.checkpoint_dir.glob("*.pickle"))


def test_failure_is_recorded_in_status(tmp_path, monkeypatch):
    config = tiny_config(data="csv:/nonexistent/dir")
    from evorl_core.data import DataError

    # a data error is refused before the run directory exists (round 3, case 10)
    with pytest.raises(DataError, match="nonexistent"):
        pipeline.run(config, tmp_path, "broken")
    assert not (tmp_path / "broken").exists()
    # a failure once the run has started is recorded in its status
    config = tiny_config(data="synthetic")

    def explode(*args, **kwargs):
        raise RuntimeError("the trainer broke")

    monkeypatch.setattr(pipeline.loop, "train", explode)
    with pytest.raises(RuntimeError):
        pipeline.run(config, tmp_path, "broken2")
    status = RunDir.open(tmp_path, "broken2").read_status()
    assert status["state"] == "failed" and "the trainer broke" in status["error"]


def test_vmapped_update_member_k_equals_a_single_update(tiny_market):
    """`PPO.update` vmaps over a leading population axis with the market data shared: member k of a
    vmapped update equals one update of a runner with k's key and hyperparameters."""
    config = tiny_config()
    ppo = make_ppo(config)
    members = [ppo.init(jax.random.PRNGKey(seed), tiny_market.data) for seed in (0, 1, 2)]
    # different hyperparameters per member (the evolvable pytree leaves)
    members = [m._replace(hyper=m.hyper._replace(lr=jnp.float32(lr), ent_coef=jnp.float32(ent)))
               for m, lr, ent in zip(members, (1e-3, 3e-4, 3e-3), (0.0, 0.01, 0.05), strict=True)]
    population = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *members)
    vmapped, pop_metrics = jax.jit(jax.vmap(ppo.update, in_axes=(0, None)))(population, tiny_market.data)
    single = jax.jit(ppo.update)
    for k, member in enumerate(members):
        solo, solo_metrics = single(member, tiny_market.data)
        picked = jax.tree_util.tree_map(lambda x, k=k: x[k], vmapped)
        for a, b in zip(jax.tree_util.tree_leaves(picked.params), jax.tree_util.tree_leaves(solo.params),
                        strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
        for name, value in solo_metrics.items():
            np.testing.assert_allclose(float(pop_metrics[name][k]), float(value), rtol=1e-4, atol=1e-5,
                                       err_msg=name)
    # and the members really differ (different keys and learning rates)
    first = [np.asarray(jax.tree_util.tree_leaves(vmapped.params)[0][k]) for k in range(3)]
    assert not np.allclose(first[0], first[1])
