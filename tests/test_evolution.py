"""Population-based training: the operators on made-up fitness arrays (no training), fitness on
validation days against the NumPy accounting, member k == a solo run before any exploit, the
lineage record, exact resume."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evorl_core import modes
from evorl_core.agents import checkpoints, pbt
from evorl_core.agents.build import make_ppo
from evorl_core.agents.ppo import Hyper
from evorl_core.config import SEARCH_SPACE, ConfigError, make_config, parse_space
from evorl_core.costs import cost_model
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.modes.single.accounting import equity_curve
from evorl_core.training import loop, pipeline, sizing

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,), window=8, test_days=20,
            val_days=30, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic")
LEARNING = ("policy_loss", "value_loss", "entropy", "approx_kl", "reward_mean", "explained_variance")


def hyper(values: dict[str, list[float]]) -> Hyper:
    m = len(next(iter(values.values())))
    base = {"lr": 3e-4, "ent_coef": 0.01, "clip_eps": 0.2, "vf_coef": 0.5, "gamma": 0.99, "gae_lambda": 0.95}
    return Hyper(**{k: jnp.asarray(values.get(k, [v] * m), jnp.float32) for k, v in base.items()})


# ----------------------------------------------------------------------- operators, no training
def test_select_replaces_the_bottom_fraction_from_the_top():
    fitness = jnp.array([0.3, -1.0, 2.0, 0.1, 5.0, -3.0, 0.2, 1.0])
    for seed in range(20):
        donor, replaced = pbt.select(fitness, 0.25, jax.random.PRNGKey(seed))
        donor, replaced = np.asarray(donor), np.asarray(replaced)
        assert set(np.flatnonzero(replaced)) == {1, 5}  # the two worst
        assert set(donor[[1, 5]]) <= {2, 4}  # copied from the two best
        kept = np.flatnonzero(~replaced)
        np.testing.assert_array_equal(donor[kept], kept)  # a kept member is its own donor
    # every top member gets picked sometimes
    picks = {int(pbt.select(fitness, 0.25, jax.random.PRNGKey(s))[0][1]) for s in range(50)}
    assert picks == {2, 4}


def test_select_treats_nan_as_worst_and_replaces_at_least_one():
    donor, replaced = pbt.select(jnp.array([1.0, jnp.nan, 0.5]), 0.1, jax.random.PRNGKey(0))
    assert np.asarray(replaced).tolist() == [False, True, False] and int(donor[1]) == 0


def test_exploit_copies_params_optimiser_state_and_hyperparameters_only():
    m = 4
    runner = make_ppo(make_config("quick", **TINY))
    data = build_market({s: synthetic_ohlcv(s, n_days=200, seed=1) for s in ("AAA", "BBB")}, 8, 20).data
    pop = jax.vmap(runner.init, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), m), data)
    pop = pop._replace(hyper=hyper({"lr": [1e-4, 2e-4, 3e-4, 4e-4]}))
    donor = jnp.array([0, 3, 2, 3])
    replaced = jnp.array([False, True, False, False])
    out = pbt.exploit(pop, donor, replaced)
    first = lambda tree: np.asarray(jax.tree_util.tree_leaves(tree)[0])  # noqa: E731
    np.testing.assert_array_equal(first(out.params)[1], first(pop.params)[3])
    np.testing.assert_array_equal(first(out.params)[0], first(pop.params)[0])
    np.testing.assert_array_equal(first(out.opt_state)[1], first(pop.opt_state)[3])
    assert np.asarray(out.hyper.lr).tolist() == pytest.approx([1e-4, 4e-4, 3e-4, 4e-4])
    np.testing.assert_array_equal(np.asarray(out.obs), np.asarray(pop.obs))  # own envs
    np.testing.assert_array_equal(np.asarray(out.key), np.asarray(pop.key))  # own randomness


def test_explore_perturbs_by_the_factors_within_range():
    space = pbt.space_arrays(SEARCH_SPACE, ("lr", "clip_eps", "gamma"))
    h = hyper({"lr": [1e-3] * 6, "clip_eps": [0.2] * 6, "gamma": [0.99] * 6, "ent_coef": [0.01] * 6})
    replaced = jnp.array([True, True, True, False, False, True])
    ratios = set()
    for seed in range(30):
        new = pbt.explore(h, replaced, jax.random.PRNGKey(seed), space, resample_prob=0.0)
        lr, clip, gamma = (np.asarray(x, np.float64) for x in (new.lr, new.clip_eps, new.gamma))
        assert np.allclose(lr[[3, 4]], 1e-3) and np.allclose(clip[[3, 4]], 0.2)  # kept members unchanged
        assert np.allclose(np.asarray(new.ent_coef), 0.01)  # not evolved
        ratios |= {round(float(r), 4) for r in lr[replaced] / 1e-3}
        ratios |= {round(float(r), 4) for r in clip[replaced] / 0.2}
        g = -np.log1p(-gamma[replaced])  # discount: the factor acts on -log(1 - gamma) ...
        assert set(np.round(g / -np.log1p(-0.99), 3)) <= {0.8, 1.25}
        assert np.all((gamma > 0.9 - 1e-6) & (gamma < 0.999 + 1e-6))  # ... and stays in range
    assert ratios == {0.8, 1.25}


def test_explore_resampling_covers_the_range_and_clips():
    space = pbt.space_arrays(parse_space("clip_eps=0.1:0.3", "search_space"), ("clip_eps",))
    h = hyper({"clip_eps": [0.3] * 2000})
    new = np.asarray(pbt.explore(h, jnp.ones(2000, bool), jax.random.PRNGKey(1), space, 1.0).clip_eps)
    assert new.min() >= 0.1 - 1e-6 and new.max() <= 0.3 + 1e-6
    assert abs(new.mean() - 0.2) < 0.01  # uniform on [0.1, 0.3]
    perturbed = np.asarray(pbt.explore(h, jnp.ones(2000, bool), jax.random.PRNGKey(2), space, 0.0).clip_eps)
    assert set(np.round(perturbed.astype(np.float64), 5).tolist()) == {0.24, 0.3}  # x1.25 clips to the top


def test_first_generation_is_drawn_from_the_init_space():
    space = pbt.space_arrays(parse_space("lr=1e-6:3e-6", "init_space"), ("lr", "ent_coef"))
    base = Hyper(*(jnp.float32(v) for v in (3e-4, 0.01, 0.2, 0.5, 0.99, 0.95)))
    h = pbt.sample(jax.random.PRNGKey(0), base, space, 500)
    lr = np.asarray(h.lr)
    assert lr.min() >= 1e-6 * (1 - 1e-5) and lr.max() <= 3e-6 * (1 + 1e-5)
    assert np.median(lr) == pytest.approx(np.sqrt(3) * 1e-6, rel=0.1)  # log-uniform
    ent = np.asarray(h.ent_coef)
    assert ent.min() >= 1e-4 * 0.999 and ent.max() <= 0.1 * 1.001 and np.unique(ent).size > 400
    assert np.all(np.asarray(h.clip_eps) == np.float32(0.2))  # not evolved: the base value


def test_search_space_errors_name_the_field():
    with pytest.raises(ConfigError, match="search_space: 'lr=0:1e-3'"):
        make_config("quick", population=4, search_space="lr=0:1e-3")
    with pytest.raises(ConfigError, match="evolve: unknown hyperparameter"):
        make_config("quick", population=4, evolve=("momentum",))
    with pytest.raises(ConfigError, match="either --seeds"):
        make_config("quick", population=4, seeds=2)


# ----------------------------------------------------------------------- with a market
@pytest.fixture(scope="module")
def market():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in ("AAA", "BBB")}
    return build_market(frames, window=8, test_days=20, val_days=30, embargo_days=8,
                        info={"source": "synthetic", "synthetic": True})


def test_validation_fitness_equals_the_numpy_accounting(market):
    config = make_config("quick", **TINY)
    ppo = make_ppo(config)
    params = ppo.init(jax.random.PRNGKey(4), market.data).params
    config = dataclasses.replace(config, val_days=30)
    fitness = float(jax.jit(loop.fitness_program(ppo, config))(params, market.data))
    positions = np.asarray(modes.get(config).greedy_positions(ppo.action_probabilities, params, market.data,
                                                             market.data.val_start, 30, ppo.env), np.float64)
    expected = []
    for s, symbol in enumerate(market.symbols):
        start = int(market.data.val_start[s])
        frame = market.frames[symbol].iloc[start:start + 30]
        equity = equity_curve(frame["open"].to_numpy(), frame["close"].to_numpy(), positions[s],
                              cost_model(config), config.execution, config.initial_capital)
        expected.append(np.log(equity[-1] / config.initial_capital))
    assert fitness == pytest.approx(np.mean(expected), abs=2e-5)


def test_member_k_equals_a_solo_run_before_any_exploit(tmp_path, market):
    # interval beyond the run: no round happens, so members are independent runs with their own
    # seed and first-generation hyperparameters
    config = make_config("quick", **TINY, total_timesteps=8 * 16 * 4, population=3, pbt_interval=100, seed=2)
    run = pipeline.run(config, tmp_path, "pop", market=market)
    first = run.read_population("hyperparams")
    assert [r["member"] for r in first] == [0, 1, 2] and run.read_population("lineage") == []
    rows = run.read_metrics()
    for k in (0, 2):
        h = first[k]
        solo_config = make_config("quick", **TINY, total_timesteps=8 * 16 * 4, seed=2 + k,
                                  **{n: h[n] for n in Hyper._fields})
        solo = pipeline.run(solo_config, tmp_path, f"solo{k}", market=market).read_metrics()
        mine = [r for r in rows if r["member"] == k]
        for a, b in zip(mine, solo, strict=True):
            for key in LEARNING:
                assert a[key] == pytest.approx(b[key], rel=2e-3, abs=2e-5), (k, key)


def test_rounds_record_lineage_and_copy_the_donor(tmp_path, market):
    config = make_config("quick", **TINY, total_timesteps=8 * 16 * 6, population=4, pbt_interval=2,
                         pbt_fraction=0.25, seed=1)
    run = pipeline.run(config, tmp_path, "pbt", market=market)
    hyper_rows = run.read_population("hyperparams")
    lineage = run.read_population("lineage")
    rounds = sorted({r["round"] for r in hyper_rows})
    assert rounds == [0, 1, 2, 3] and len(hyper_rows) == 4 * 4  # initial + one per 2 updates
    assert len(lineage) == 3 and {e["update"] for e in lineage} == {2, 4, 6}  # one replaced per round
    for event in lineage:
        same_round = [r for r in hyper_rows if r["round"] == event["round"]]
        assert event["fitness"] == min(r["fitness"] for r in same_round)  # the worst was replaced
        assert event["donor_fitness"] == max(r["fitness"] for r in same_round)  # by the best (top 1 of 4)
        for name in config.evolve:  # new = donor's value perturbed or resampled, within range
            lo, hi = SEARCH_SPACE[name].low, SEARCH_SPACE[name].high
            assert lo * 0.999 <= event["new"][name] <= hi * 1.001
        for name in set(Hyper._fields) - set(config.evolve):
            assert event["new"][name] == event["donor_hyper"][name]
    # the checkpoint holds the whole population and the PBT key
    state = loop.init_state(make_ppo(config), config, market.data)
    saved, meta = checkpoints.load_checkpoint(run, state)
    assert int(saved.round) == 3 and np.asarray(saved.runner.update_step).tolist() == [6] * 4
    assert meta["updates_done"] == 6


def test_stop_and_resume_of_a_population_is_exact(tmp_path, market):
    config = make_config("quick", **TINY, total_timesteps=8 * 16 * 6, population=3, pbt_interval=2, seed=3)
    full = pipeline.run(config, tmp_path, "full", market=market)

    def stop_after_first_chunk(info):
        if info["update"] >= 2:
            part.request_stop()

    part = checkpoints.RunDir(tmp_path / "part")
    pipeline.run(config, tmp_path, "part", market=market, progress=stop_after_first_chunk)
    assert part.read_status()["state"] == "stopped"
    pipeline.run(config, tmp_path, "part", market=market, resume=True)
    assert part.read_status()["state"] == "done"
    strip = lambda rows: [{k: r[k] for k in ("update", "member", *LEARNING)} for r in rows]  # noqa: E731
    a, b = strip(full.read_metrics()), strip(part.read_metrics())
    assert len(a) == len(b) == 6 * 3
    for x, y in zip(a, b, strict=True):
        assert x["update"] == y["update"] and x["member"] == y["member"]
        for key in LEARNING:
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-6), key
    assert full.read_population("lineage") == part.read_population("lineage")
    assert full.read_equity().equals(part.read_equity())


def test_memory_estimate_tracks_xla_and_a_too_large_population_is_refused(market):
    config = make_config("quick", **TINY, population=4, pbt_interval=2)
    ppo = make_ppo(config)
    state = loop.init_state(ppo, config, market.data)
    compiled = jax.jit(loop.chunk_program(ppo, config, 1)).lower(state, market.data).compile()
    analysis = compiled.memory_analysis()
    xla = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    estimate = sizing.memory_estimate(config)
    assert 0.5 * xla <= estimate <= 2.0 * xla, (estimate, xla)
    # refused before compiling, naming the population that fits
    per_member = estimate / 4
    with pytest.raises(ConfigError, match=r"population: 4 members need about .* GiB.*at most 2 members fit"):
        sizing.check_fits(config, available=2.5 * per_member)
    sizing.check_fits(config, available=4.5 * per_member)  # fits: no error
    single = make_config("quick", **TINY)
    with pytest.raises(ConfigError, match="hidden: one agent needs about"):
        sizing.check_fits(single, available=1.0)


def test_first_generation_ranges_default_to_the_search_space_overrides(market):
    # --search-space narrows lr; --init-space names only ent_coef: lr is drawn from the narrowed range
    config = make_config("quick", **TINY, population=64, evolve=("lr", "ent_coef"),
                         search_space="lr=1e-4:2e-4", init_space="ent_coef=0.001:0.002")
    runner = loop.init_runner(make_ppo(config), config, market.data)
    hyper = pbt.init_population(runner, config).runner.hyper
    lr, ent = np.asarray(hyper.lr), np.asarray(hyper.ent_coef)
    assert lr.min() >= 1e-4 * 0.9999 and lr.max() <= 2e-4 * 1.0001
    assert ent.min() >= 0.001 * 0.9999 and ent.max() <= 0.002 * 1.0001


@pytest.mark.parametrize("evolving", [True, False])
def test_groups_of_members_compute_what_one_vmap_computes(market, evolving):
    # 5 members in groups of 2 (2 + 2 + a remainder of 1, run one after another) against all 5
    # side by side: the same updates, fitness and PBT round, up to float reduction order
    size = dict(population=5, pbt_interval=2) if evolving else dict(seeds=5)
    outs = []
    for group in (2, 5):
        config = make_config("quick", **TINY, **size, member_group=group, seed=4)
        assert pbt.member_group(config) == group
        ppo = make_ppo(config)
        state = loop.init_state(ppo, config, market.data)
        fn = jax.jit(loop.chunk_program(ppo, config, 2, with_round=evolving))
        state, metrics, report = fn(state, market.data)
        state, metrics, report = fn(state, market.data)
        outs.append((state, metrics, report))
    (a, ma, ra), (b, mb, rb) = outs
    assert np.asarray(ma["policy_loss"]).shape == (5, 2)
    for key in LEARNING:
        np.testing.assert_allclose(np.asarray(ma[key]), np.asarray(mb[key]), rtol=2e-4, atol=1e-6, err_msg=key)
    runner_a, runner_b = (getattr(x, "runner", x) for x in (a, b))
    for x, y in zip(jax.tree_util.tree_leaves(runner_a.params), jax.tree_util.tree_leaves(runner_b.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=1e-5)
    if evolving:
        np.testing.assert_allclose(np.asarray(ra.fitness), np.asarray(rb.fitness), rtol=1e-4, atol=1e-6)
        assert np.asarray(ra.donor).tolist() == np.asarray(rb.donor).tolist()


def test_member_group_is_automatic_per_backend_and_checked():
    config = make_config("quick", **TINY, population=16)
    assert pbt.member_group(config) == (pbt.CPU_MEMBER_GROUP if jax.default_backend() == "cpu" else 16)
    assert pbt.member_group(make_config("quick", **TINY, seeds=3)) == min(3, pbt.member_group(config))
    with pytest.raises(ConfigError, match="member_group: must be >= 0"):
        make_config("quick", **TINY, member_group=-1)


def test_a_population_of_one_is_a_plain_run(tmp_path, market):
    # --population 1 runs no PBT: the same program, metrics and checkpoint as a plain PPO run
    plain = make_config("quick", **TINY, total_timesteps=8 * 16 * 4, seed=6)
    one = make_config("quick", **TINY, total_timesteps=8 * 16 * 4, seed=6, population=1)
    assert not one.evolving and one.members == 1
    a = pipeline.run(plain, tmp_path, "plain", market=market)
    b = pipeline.run(one, tmp_path, "one", market=market)
    strip = lambda rows: [{k: r[k] for k in ("update", *LEARNING)} for r in rows]  # noqa: E731
    assert strip(a.read_metrics()) == strip(b.read_metrics())
    assert b.read_population("hyperparams") == [] and b.read_population("lineage") == []
    assert a.read_equity().equals(b.read_equity())


def test_members_in_groups_need_working_memory_for_one_group_only(market):
    # 8 members in groups of 2: every member's parameters, optimiser and env state are held, but
    # only 2 rollouts and minibatch passes exist at a time (XLA's own analysis agrees)
    grouped = make_config("quick", **TINY, population=8, pbt_interval=2, member_group=2)
    together = make_config("quick", **TINY, population=8, pbt_interval=2, member_group=8)
    ppo = make_ppo(grouped)
    held, working = sizing.memory_parts(grouped)
    assert sizing.memory_estimate(grouped, group=2) == pytest.approx(8 * held + 2 * working)
    assert sizing.memory_estimate(together) == pytest.approx(8 * (held + working))
    for config, group in ((grouped, 2), (together, None)):
        state = loop.init_state(ppo, config, market.data)
        analysis = jax.jit(loop.chunk_program(ppo, config, 1)).lower(state, market.data).compile().memory_analysis()
        xla = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
        estimate = sizing.memory_estimate(config, group=group)
        assert 0.5 * xla <= estimate <= 2.0 * xla, (group, estimate, xla)
    # memory for the grouped run but not for all 8 side by side: only the latter is refused, and the
    # number that fits counts the groups
    available = 8 * held + 4 * working
    sizing.check_fits(grouped, available=available)
    with pytest.raises(ConfigError, match=r"population: 8 members need .* at most 4 members fit"):
        sizing.check_fits(together, available=available)
