"""Mixed precision: bf16 runs the network's matmuls and activations in bfloat16 and everything else
in float32 (docs/internals.md). One bf16 PPO update stays close to the float32 update from the same
state; network outputs, parameters and optimiser state are float32; a bf16 run trains, backtests
and deploys a float32 bundle recorded as bf16; seeds and a PBT population train in bf16."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from evorl_core.agents import precision
from evorl_core.agents.build import make_ppo
from evorl_core.agents.networks import ActorCritic, PortfolioActorCritic
from evorl_core.arguments import build_parser
from evorl_core.cli import config_from_args, main
from evorl_core.config import ConfigError, TrainConfig, make_config
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.deploy import bundle as deploy
from evorl_core.deploy import signal
from evorl_core.training import pipeline
from evorl_ui import forms

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,), window=8, test_days=20,
            val_days=30, total_timesteps=8 * 16 * 4, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic")
# bfloat16 keeps 8 significant bits: one rounding is off by at most 2**-9 relative (unit roundoff)
BF16_ROUNDOFF = 2.0 ** -9


@pytest.fixture(scope="module")
def market():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in ("AAA", "BBB")}
    return build_market(frames, window=8, test_days=20, val_days=30, embargo_days=8,
                        info={"source": "synthetic", "synthetic": True})


def _dtypes(tree) -> set:
    return {np.dtype(x.dtype) for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def _dots(fn, *args) -> list:
    """Every matrix product (dot_general equation) in fn's program."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn)
            for value in eqn.params.values():  # the bodies of pjit, scan, custom_jvp ...
                for item in value if isinstance(value, (tuple, list)) else (value,):
                    inner = getattr(item, "jaxpr", item)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def _dot_operand_dtypes(fn, *args) -> set:
    """Element types of the operands of every matrix product in fn's program."""
    return {np.dtype(v.aval.dtype) for eqn in _dots(fn, *args) for v in eqn.invars}


# -- the setting ---------------------------------------------------------------------------------
def test_precision_is_validated_parsed_and_resolved():
    with pytest.raises(ConfigError, match=r"precision: must be one of auto, fp32, tf32, bf16 \(got 'fp16'\)"):
        make_config("quick", precision="fp16")
    args = build_parser().parse_args(["train", "--preset", "quick", "--precision", "bf16"])
    assert config_from_args(args).precision == "bf16"
    assert config_from_args(build_parser().parse_args(["train", "--preset", "quick"])).precision == "auto"
    with pytest.raises(SystemExit):  # argparse refuses a choice that does not exist
        build_parser().parse_args(["train", "--precision", "fp8"])
    # auto is fp32 on every backend until GPU figures show bf16 faster (docs/benchmarks.md)
    assert {precision.resolve("auto", b) for b in ("cpu", "gpu", "metal")} == {"fp32"}
    assert precision.resolve("bf16", "cpu") == "bf16"
    assert precision.resolved(make_config("quick")).precision == "fp32"
    # a config recorded before precision existed was trained in float32, and stays so on any backend
    old = {k: v for k, v in make_config("quick").to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict(old).precision == "fp32"


def test_the_train_form_offers_precision_and_keeps_it_on_a_preset_change():
    values = forms.preset_form_values("quick")
    assert values["precision"] == "auto" and "precision" not in forms.PRESET_FIELDS
    config, errors = forms.config_from_form({**values, "precision": "bf16", "preset": "quick", "symbols": "AAA",
                                             "data": "synthetic"})
    assert errors == [] and config.precision == "bf16"
    config, errors = forms.config_from_form({**values, "precision": "fp16", "preset": "quick", "symbols": "AAA",
                                             "data": "synthetic"})
    assert config is None and forms.field_errors(errors)["precision"][0].startswith("precision: must be one of")


# -- the network -----------------------------------------------------------------------------------
def test_bf16_network_multiplies_in_bfloat16_and_returns_float32():
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 40))
    nets = {p: ActorCritic(num_actions=3, hidden=(64, 64), init_scheme="orthogonal",
                           dtype=precision.compute_dtype(p)) for p in ("fp32", "bf16")}
    params = nets["fp32"].init(jax.random.PRNGKey(0), obs)
    assert _dtypes(nets["bf16"].init(jax.random.PRNGKey(0), obs)) == {np.dtype("float32")}  # float32 parameters
    assert _dot_operand_dtypes(lambda p, x: nets["bf16"].apply(p, x), params, obs) == {np.dtype("bfloat16")}
    assert _dot_operand_dtypes(lambda p, x: nets["fp32"].apply(p, x), params, obs) == {np.dtype("float32")}
    (logits16, value16), (logits32, value32) = nets["bf16"].apply(params, obs), nets["fp32"].apply(params, obs)
    assert logits16.dtype == value16.dtype == jnp.float32
    # close to float32 (three layers of bf16 rounding), yet not float32: bf16 is really in effect
    for a, b in ((logits16, logits32), (value16, value32)):
        rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
        assert 0 < rel < 40 * BF16_ROUNDOFF, rel


def test_tf32_asks_for_tensorfloat32_products_and_is_fp32_on_cpu():
    obs = jax.random.normal(jax.random.PRNGKey(1), (32, 40))
    config = make_config("quick", hidden=(64, 64), precision="tf32")
    tf32, fp32 = make_ppo(config), make_ppo(config.replace(precision="fp32"))
    params = fp32.network.init(jax.random.PRNGKey(0), obs)
    dots = _dots(lambda p: tf32.network.apply(p, obs), params)
    assert dots and all(eqn.params["precision"] == (jax.lax.Precision.HIGH,) * 2 for eqn in dots)
    assert all(eqn.params["precision"] is None for eqn in _dots(lambda p: fp32.network.apply(p, obs), params))
    assert _dot_operand_dtypes(lambda p: tf32.network.apply(p, obs), params) == {np.dtype("float32")}
    if jax.default_backend() == "cpu":  # XLA on CPU ignores the precision of a product
        for a, b in zip(jax.tree_util.tree_leaves(tf32.network.apply(params, obs)),
                        jax.tree_util.tree_leaves(fp32.network.apply(params, obs)), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bf16_portfolio_network_returns_float32_scores_std_and_value():
    b, n, d = 4, 7, 12
    features = jax.random.normal(jax.random.PRNGKey(2), (b, n, d))
    weights = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(3), (b, n + 1)))
    mask = jnp.arange(n)[None, :] < jnp.array([[7], [5], [3], [1]])
    net16 = PortfolioActorCritic(hidden=(32, 32), dtype=jnp.bfloat16)
    net32 = PortfolioActorCritic(hidden=(32, 32))
    params = net32.init(jax.random.PRNGKey(0), (features, weights, mask))
    assert _dtypes(net16.init(jax.random.PRNGKey(0), (features, weights, mask))) == {np.dtype("float32")}
    assert _dot_operand_dtypes(lambda p: net16.apply(p, (features, weights, mask)), params) == {np.dtype("bfloat16")}
    (mean, log_std, valid), value = net16.apply(params, (features, weights, mask))
    assert mean.dtype == log_std.dtype == value.dtype == jnp.float32 and valid.dtype == jnp.bool_
    (mean32, _, _), value32 = net32.apply(params, (features, weights, mask))
    assert 0 < float(jnp.abs(mean - mean32).max()) < 40 * BF16_ROUNDOFF * float(jnp.abs(mean32).max())
    np.testing.assert_allclose(value, value32, rtol=0.05, atol=40 * BF16_ROUNDOFF * float(jnp.abs(value32).max()))


# -- one PPO update --------------------------------------------------------------------------------
def test_one_bf16_update_stays_close_to_the_float32_update(market):
    """Same state, same randomness; the only difference is the network's arithmetic.

    Tolerances: bf16 rounds each matmul input and activation to 2**-9 relative. Through two hidden
    layers and the heads that is a few 1e-3 in the outputs (measured ~1e-3), and the update's
    gradient steps (Adam divides by sqrt(v), so small gradient entries move by a full step
    whatever their size) carry it to ~1-6% of the parameter change (measured <= 5.7% per leaf at
    64x64). Allowed: 15% of each leaf's change and 2% of the parameters' size, 2% on value loss and entropy
    (both averages of many float32 terms, measured 0.1% and 1e-6), 5% + 1e-5 on the small policy
    loss and KL. A loss or an update computed wrongly (or bf16 not in effect) is far outside."""
    config = make_config("quick", **{**TINY, "hidden": (64, 64), "num_envs": 16, "num_steps": 32,
                                     "minibatch_size": 128}, precision="fp32")
    fp32, bf16 = make_ppo(config), make_ppo(config.replace(precision="bf16"))
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    runner = fp32.init(jax.random.PRNGKey(0), market.data)
    r32, m32 = jax.jit(fp32.update)(runner, market.data)
    r16, m16 = jax.jit(bf16.update)(runner, market.data)
    assert _dtypes((r16.params, r16.opt_state)) == {np.dtype("float32")}  # parameters and Adam's moments
    assert all(np.dtype(v.dtype) == np.float32 for v in m16.values())
    for p0, p32, p16 in zip(*(jax.tree_util.tree_leaves(r.params) for r in (runner, r32, r16)), strict=True):
        change, gap = float(jnp.linalg.norm(p32 - p0)), float(jnp.linalg.norm(p16 - p32))
        assert gap <= 0.15 * change, (p32.shape, gap, change)
    flat = {k: jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(r.params)])
            for k, r in (("0", runner), ("32", r32), ("16", r16))}
    gap = float(jnp.linalg.norm(flat["16"] - flat["32"]))
    assert 0 < gap <= 0.02 * float(jnp.linalg.norm(flat["32"]))  # > 0: bf16 really was in effect
    for key in ("value_loss", "entropy"):
        assert float(m16[key]) == pytest.approx(float(m32[key]), rel=0.02), key
    for key in ("policy_loss", "approx_kl"):
        assert abs(float(m16[key]) - float(m32[key])) <= 0.05 * abs(float(m32[key])) + 1e-5, key


def test_evaluation_builds_a_float32_network_for_a_bf16_config():
    config = make_config("quick", **TINY, precision="bf16")
    assert make_ppo(config).precision == "bf16"
    assert make_ppo(config, precision=precision.EVALUATION_PRECISION).precision == "fp32"


# -- whole runs ------------------------------------------------------------------------------------
def test_bf16_run_trains_backtests_and_deploys_a_float32_bundle(tmp_path, market):
    config = make_config("quick", **{**TINY, "total_timesteps": 8 * 16 * 2}, precision="bf16", seed=4)
    run = pipeline.run(config, tmp_path / "runs", "bf16", market=market, deploy=True, model_name="bf16-model",
                       models_dir=tmp_path / "models")
    assert run.read_status()["state"] == "done"
    assert json.loads(run.config_path.read_text())["precision"] == "bf16"
    rows = run.read_metrics()
    assert len(rows) == config.num_updates and all(np.isfinite(r["policy_loss"]) for r in rows)
    assert set(run.read_backtest_metrics()) == {"AAA", "BBB"}
    raw = serialization.msgpack_restore((run.checkpoint_dir / "state.msgpack").read_bytes())
    assert _dtypes(jax.tree_util.tree_map(np.asarray, raw["params"])) == {np.dtype("float32")}
    model = tmp_path / "models" / "bf16-model"
    meta = json.loads((model / "bundle.json").read_text())
    assert meta["precision"] == meta["config"]["precision"] == "bf16"
    stored = serialization.msgpack_restore((model / "params.msgpack").read_bytes())
    assert _dtypes(jax.tree_util.tree_map(np.asarray, stored)) == {np.dtype("float32")}
    bundle = deploy.load_bundle(model)
    assert bundle.config.precision == "bf16" and signal.decider(bundle)[0].precision == "fp32"
    rows = signal.signals(bundle, {s: market.frames[s] for s in market.symbols})
    assert [r["symbol"] for r in rows] == ["AAA", "BBB"]
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_auto_records_the_resolved_precision(tmp_path, market):
    run = pipeline.run(make_config("quick", **{**TINY, "total_timesteps": 8 * 16}), tmp_path, "auto",
                       market=market)
    assert json.loads(run.config_path.read_text())["precision"] == precision.resolve("auto") == "fp32"


@pytest.mark.parametrize("members", [dict(seeds=2), dict(population=3, pbt_interval=2)], ids=["seeds", "pbt"])
def test_seeds_and_a_pbt_population_train_in_bf16(tmp_path, market, members):
    config = make_config("quick", **{**TINY, "total_timesteps": 8 * 16 * 2}, precision="bf16", seed=1, **members)
    run = pipeline.run(config, tmp_path, "members", market=market)
    assert run.read_status()["state"] == "done"
    rows = run.read_metrics()
    assert {r["member"] for r in rows} == set(range(config.members))
    assert all(np.isfinite(r["policy_loss"]) and np.isfinite(r["value_loss"]) for r in rows)
    if config.evolving:
        assert (run.path / "population" / "lineage.jsonl").exists()
    raw = serialization.msgpack_restore((run.checkpoint_dir / "state.msgpack").read_bytes())
    state = raw["runner"] if "runner" in raw else raw
    assert _dtypes(jax.tree_util.tree_map(np.asarray, (state["params"], state["opt_state"]))) == {np.dtype("float32")}


def test_a_bf16_portfolio_run_trains_and_deploys_a_float32_model(tmp_path, capsys):
    code = main(["train", "--portfolio", "--symbols", "all", "--data", "synthetic", "--universe-size", "6",
                 "--preset", "quick", "--timesteps", "2048", "--test-days", "40", "--val-days", "30", "--window", "8",
                 "--precision", "bf16", "--runs-dir", str(tmp_path / "runs"), "--run-id", "pf",
                 "--cache-dir", str(tmp_path / "cache"), "--deploy", "--model-name", "pf",
                 "--models-dir", str(tmp_path / "models"), "--quiet"])
    assert code == 0
    assert json.loads((tmp_path / "runs" / "pf" / "config.json").read_text())["precision"] == "bf16"
    model = deploy.load_bundle(tmp_path / "models" / "pf")
    assert model.meta["precision"] == "bf16" and _dtypes(model.params) == {np.dtype("float32")}
    stored = serialization.msgpack_restore((tmp_path / "models" / "pf" / "params.msgpack").read_bytes())
    assert _dtypes(jax.tree_util.tree_map(np.asarray, stored)) == {np.dtype("float32")}
    capsys.readouterr()
    assert main(["signal", "--model", "pf", "--models-dir", str(tmp_path / "models"),
                 "--cache-dir", str(tmp_path / "cache"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    weights = [w["target"] for w in out["weights"]] + [out["cash_target"]]
    assert len(weights) == 7 and sum(weights) == pytest.approx(1.0, abs=1e-9) and min(weights) >= 0
