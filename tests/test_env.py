"""The pure-JAX env against the NumPy reference, causality, episode boundaries, vmap/jit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evorl_core import costs
from evorl_core.config import TrainConfig
from evorl_core.data.arrays import MarketData
from evorl_core.modes.single import accounting as backtest
from evorl_core.modes.single import env
from evorl_core.modes.single import reference as reference_env

# Fixed shapes for the property tests, so each jitted function compiles once per execution mode.
S, T, F, W = 3, 48, 3, 5
EPISODE_LEN = 9
NUM_STEPS = 40
LONG_ONLY = (0.0, 0.5, 1.0)
LONG_SHORT = (-1.0, 0.0, 1.0)


def synthetic_arrays(seed: int, vol: float = 0.02, num_symbols=S, num_days=T, num_features=F,
                     window=W, min_length=30, max_test_days=8):
    """Random prices/features padded after each symbol's length by repeating the last value."""
    rng = np.random.default_rng(seed)
    length = rng.integers(min_length, num_days + 1, size=num_symbols)
    test_days = rng.integers(2, max_test_days + 1, size=num_symbols)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, (num_symbols, num_days)), axis=1))
    prev_close = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    open_ = prev_close * np.exp(rng.normal(0.0, vol / 2, (num_symbols, num_days)))
    features = rng.normal(size=(num_symbols, num_days, num_features))
    for s in range(num_symbols):
        n = length[s]
        open_[s, n:] = open_[s, n - 1]
        close[s, n:] = close[s, n - 1]
        features[s, n:] = features[s, n - 1]
    return dict(
        open_=open_.astype(np.float32),
        close=close.astype(np.float32),
        features=features.astype(np.float32),
        length=length.astype(np.int32),
        first_index=np.full(num_symbols, window, dtype=np.int32),
        test_start=(length - test_days).astype(np.int32),
    )


def to_market_data(a: dict) -> MarketData:
    return MarketData(
        open=jnp.asarray(a["open_"]),
        close=jnp.asarray(a["close"]),
        features=jnp.asarray(a["features"]),
        length=jnp.asarray(a["length"]),
        first_index=jnp.asarray(a["first_index"]),
        # no validation window here: training may run up to the test days
        train_end=jnp.asarray(a["test_start"]),
        val_start=jnp.asarray(a["test_start"]),
        test_start=jnp.asarray(a["test_start"]),
    )


def make_params(positions, cost, execution, window=W, episode_len=EPISODE_LEN, c_sell=None,
                sell_charge=0.0) -> env.EnvParams:
    """`cost` per unit bought (and sold, unless `c_sell` is given); `sell_charge`: flat charge of a sell
    day as a fraction of the initial capital."""
    return env.EnvParams(
        positions=jnp.asarray(positions, dtype=jnp.float32),
        c_buy=jnp.float32(cost),
        c_sell=jnp.float32(cost if c_sell is None else c_sell),
        sell_charge=jnp.float32(sell_charge),
        execution=execution,
        window=window,
        episode_len=episode_len,
    )


@jax.jit
def rollout(key, state, actions, params, data):
    def body(carry, action):
        key, state = carry
        key, sub = jax.random.split(key)
        obs, next_state, reward, done, info = env.step(sub, state, action, params, data)
        return (key, next_state), (obs, next_state, reward, done, info)

    _, out = jax.lax.scan(body, (key, state), actions)
    return out


jit_reset = jax.jit(env.reset)


# ---------------------------------------------------------------- JAX env == NumPy reference
@pytest.mark.parametrize("positions", [LONG_ONLY, LONG_SHORT], ids=["long_only", "long_short"])
@pytest.mark.parametrize("execution", ["next_open", "close"])
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    vol=st.floats(0.001, 0.08),
    c_buy=st.one_of(st.just(0.0), st.floats(1e-4, 0.01)),
    c_sell=st.one_of(st.just(0.0), st.floats(1e-4, 0.01)),
    charge=st.one_of(st.just(0.0), st.floats(1.0, 5000.0)),
)
def test_env_matches_reference(positions, execution, seed, vol, c_buy, c_sell, charge):
    """Per-side costs and a flat sell-day charge (rupees, on an initial capital of Rs 100,000 the
    reference keeps in rupees; the JAX env as a fraction of it times its relative equity)."""
    arrays = synthetic_arrays(seed, vol)
    data = to_market_data(arrays)
    initial_capital = 100_000.0
    c_buy32, c_sell32 = float(np.float32(c_buy)), float(np.float32(c_sell))
    sell_charge32 = float(np.float32(charge / initial_capital))
    params = make_params(positions, c_buy32, execution, c_sell=c_sell32, sell_charge=sell_charge32)
    ref = reference_env.ReferenceTradingEnv(
        arrays["open_"], arrays["close"], arrays["features"], arrays["length"], arrays["first_index"],
        arrays["test_start"], positions, c_buy32, c_sell32, execution, W, EPISODE_LEN,
        sell_day_charge=sell_charge32 * initial_capital, initial_capital=initial_capital,
    )
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed % (2**31))
    key, reset_key = jax.random.split(key)
    obs0, state0 = jit_reset(reset_key, params, data)
    ref_obs = ref.reset_to(int(state0.symbol), int(state0.t))
    np.testing.assert_array_equal(np.asarray(obs0, np.float64), ref_obs)

    actions = jnp.asarray(rng.integers(0, len(positions), NUM_STEPS), dtype=jnp.int32)
    obs, states, rewards, dones, infos = jax.device_get(rollout(key, state0, actions, params, data))
    episodes_done = 0
    for i in range(NUM_STEPS):
        p_prev = ref.position
        ref_obs, ref_reward, ref_done = ref.step(int(actions[i]))
        assert bool(dones[i]) == ref_done, f"step {i}"
        np.testing.assert_allclose(rewards[i], ref_reward, rtol=1e-5, atol=2e-6, err_msg=f"reward, step {i}")
        np.testing.assert_allclose(infos["equity"][i], ref.equity, rtol=2e-5, err_msg=f"equity, step {i}")
        np.testing.assert_allclose(infos["episode_return"][i], ref.episode_return, rtol=1e-5, atol=1e-5)
        assert infos["position"][i] == ref.position
        assert infos["turnover"][i] == pytest.approx(abs(ref.position - p_prev))
        assert bool(infos["returned_episode"][i]) == ref_done
        if ref_done:  # the JAX env auto-resets; place the reference at the same fresh start
            episodes_done += 1
            ref_obs = ref.reset_to(int(states.symbol[i]), int(states.t[i]))
        assert int(states.symbol[i]) == ref.symbol and int(states.t[i]) == ref.t
        assert int(states.steps[i]) == ref.steps
        assert states.position[i] == ref.position
        np.testing.assert_allclose(states.equity[i], ref.equity, rtol=2e-5)
        np.testing.assert_array_equal(np.asarray(obs[i], np.float64), ref_obs, err_msg=f"obs, step {i}")
    # 40 steps with episodes of at most 9 steps: the auto-reset path is always exercised.
    assert episodes_done >= 4


def test_hand_computed_steps():
    """Two steps with literal prices: buy (0 -> 1), then reduce (1 -> 0.5), cost 10 bps."""
    open_ = np.full((1, 8), 100.0)
    close = np.full((1, 8), 100.0)
    close[0, 3], open_[0, 4], close[0, 4], open_[0, 5], close[0, 5] = 100.0, 102.0, 104.0, 99.0, 110.0
    arrays = dict(open_=open_, close=close, features=np.zeros((1, 8, 1)), length=[8], first_index=[2],
                  train_end=[8], val_start=[8], test_start=[8])
    data = MarketData(*(jnp.asarray(np.asarray(arrays[k]), dtype=d) for k, d in [
        ("open_", jnp.float32), ("close", jnp.float32), ("features", jnp.float32),
        ("length", jnp.int32), ("first_index", jnp.int32), ("train_end", jnp.int32), ("val_start", jnp.int32),
        ("test_start", jnp.int32)]))
    expected = {
        # E1 = 1 * (1 - 0.001 * 1) * 104 / 102; E2 = E1 * 99/104 * (1 - 0.001 * 0.5) * (1 + 0.5 * (110/99 - 1))
        "next_open": (1.0185882352941176, 1.0229735514705882),
        # E1 = (1 - 0.001) * 104/100; E2 = E1 * (1 - 0.0005) * (1 + 0.5 * (110/104 - 1))
        "close": (1.03896, 1.068395535),
    }
    for execution, (e1, e2) in expected.items():
        params = make_params(LONG_ONLY, 0.001, execution, window=2, episode_len=10)
        state = env.EnvState(jnp.int32(0), jnp.int32(3), jnp.float32(0.0), jnp.float32(1.0), jnp.int32(0),
                             jnp.float32(0.0))
        _, state, r1, done1, _ = env.step_env(state, 2, params, data)
        _, state, r2, done2, _ = env.step_env(state, 1, params, data)
        assert float(r1) == pytest.approx(math.log(e1), abs=1e-6)
        assert float(r2) == pytest.approx(math.log(e2 / e1), abs=1e-6)
        assert float(state.equity) == pytest.approx(e2, rel=1e-6)
        assert float(state.position) == 0.5 and int(state.t) == 5 and not bool(done1 | done2)
        # The same numbers from the NumPy backtest accounting.
        eq = backtest.equity_curve(open_[0, 3:6], close[0, 3:6], [1.0, 0.5, 0.0], 0.001, execution)
        np.testing.assert_allclose(eq, [1.0, e1, e2], rtol=1e-12)


def test_hand_computed_per_side_costs_and_sell_day_charge():
    """Buy 1 then sell half with c_buy 20 bps, c_sell 15 bps and Rs 50 per sell day on Rs 100,000."""
    open_ = np.full((1, 8), 100.0)
    close = np.full((1, 8), 100.0)
    close[0, 3], open_[0, 4], close[0, 4], open_[0, 5], close[0, 5] = 100.0, 102.0, 104.0, 99.0, 110.0
    data = MarketData(jnp.asarray(open_, jnp.float32), jnp.asarray(close, jnp.float32), jnp.zeros((1, 8, 1)),
                      jnp.array([8]), jnp.array([2]), jnp.array([8]), jnp.array([8]), jnp.array([8]))
    capital, charge = 100_000.0, 50.0
    # next_open, in rupees. Day 4: buy 1 at the open: E1 = 100000 * (1 - 0.002) * 104/102.
    e1 = 100_000.0 * 0.998 * 104.0 / 102.0
    # Day 5: E_open = E1 * 99/104; sell 0.5: fill = 1 - 0.0015 * 0.5 - 50 / E_open; then 0.5 of 99 -> 110.
    e_open = e1 * 99.0 / 104.0
    e2 = e_open * (1 - 0.00075 - charge / e_open) * (1 + 0.5 * (110.0 / 99.0 - 1))
    assert e2 == pytest.approx((e_open * 0.99925 - 50.0) * (1 + 0.5 * (110.0 / 99.0 - 1)), rel=1e-12)
    params = make_params(LONG_ONLY, 0.002, "next_open", window=2, episode_len=10, c_sell=0.0015,
                         sell_charge=charge / capital)
    state = env.EnvState(jnp.int32(0), jnp.int32(3), jnp.float32(0.0), jnp.float32(1.0), jnp.int32(0),
                         jnp.float32(0.0))
    _, state, r1, _, _ = env.step_env(state, 2, params, data)
    _, state, r2, _, _ = env.step_env(state, 1, params, data)
    assert float(r1) == pytest.approx(math.log(e1 / capital), abs=1e-6)
    assert float(r2) == pytest.approx(math.log(e2 / e1), abs=1e-6)
    assert float(state.equity) == pytest.approx(e2 / capital, rel=1e-6)
    # The backtest (rupees, a CostModel) and the reference env give the same numbers.
    model = costs.CostModel(0.002, 0.0015, charge)
    eq = backtest.equity_curve(open_[0, 3:6], close[0, 3:6], [1.0, 0.5, 0.0], model, "next_open", capital)
    np.testing.assert_allclose(eq, [capital, e1, e2], rtol=1e-12)
    ref = reference_env.ReferenceTradingEnv(open_, close, np.zeros((1, 8, 1)), [8], [2], [8], LONG_ONLY, 0.002,
                                            0.0015, "next_open", 2, 10, sell_day_charge=charge,
                                            initial_capital=capital)
    ref.reset_to(0, 3)
    ref.step(2)
    ref.step(1)
    assert ref.rupees == pytest.approx(e2, rel=1e-12) and ref.equity == pytest.approx(e2 / capital, rel=1e-12)
    # A buy day pays no flat charge: going 0 -> 1 costs the same with or without it.
    no_charge = backtest.equity_curve(open_[0, 3:5], close[0, 3:5], [1.0, 1.0], costs.CostModel(0.002, 0.0015),
                                      "next_open", capital)
    np.testing.assert_allclose(eq[:2], no_charge, rtol=1e-15)


def test_step_log_return_guards_wipeout():
    # Short 1 through a +200% overnight gap: 1 + (-1) * 2 < 0, clamped to MIN_GROWTH.
    r = env.step_log_return(jnp.float32(-1.0), jnp.float32(-1.0), jnp.float32(300.0), jnp.float32(100.0),
                            jnp.float32(300.0), 0.0, 0.0, 0.0, 1.0, "next_open")
    assert np.isfinite(float(r))
    assert float(r) == pytest.approx(math.log(env.MIN_GROWTH), rel=1e-4)
    r = env.step_log_return(jnp.float32(0.0), jnp.float32(-1.0), 0.0, jnp.float32(100.0), jnp.float32(250.0),
                            jnp.float32(0.001), jnp.float32(0.001), jnp.float32(0.0), 1.0, "close")
    assert np.isfinite(float(r))
    # A flat charge larger than the account, or an account that underflowed to 0: floored, not NaN.
    for equity in (1e-3, 0.0):
        r = env.step_log_return(jnp.float32(1.0), jnp.float32(0.0), jnp.float32(100.0), jnp.float32(100.0),
                                jnp.float32(100.0), 0.0, 0.0, jnp.float32(0.01), jnp.float32(equity), "next_open")
        assert float(r) == pytest.approx(math.log(env.MIN_GROWTH), rel=1e-4)
    assert env.MIN_GROWTH == backtest.MIN_GROWTH == reference_env.MIN_GROWTH
    with pytest.raises(ValueError):
        env.step_log_return(0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, "vwap")


# ---------------------------------------------------------------- observations and causality
def test_observation_layout():
    num_days, num_features, window = 12, 2, 3
    features = np.arange(num_days * num_features, dtype=np.float32).reshape(1, num_days, num_features)
    data = MarketData(jnp.ones((1, num_days)), jnp.ones((1, num_days)), jnp.asarray(features),
                      jnp.array([num_days]), jnp.array([window]), jnp.array([num_days - 2]),
                      jnp.array([num_days - 2]), jnp.array([num_days - 2]))
    params = make_params(LONG_ONLY, 0.0, "next_open", window=window)
    obs = env.observe(data, jnp.int32(0), jnp.int32(6), jnp.float32(0.5), params)
    # Days 4, 5, 6 (oldest first), features in column order, then the held position.
    expected = np.concatenate([features[0, 4:7].reshape(-1), [0.5]])
    np.testing.assert_array_equal(np.asarray(obs), expected)
    assert obs.dtype == jnp.float32
    assert obs.shape == (env.observation_size(window, num_features),) == (7,)


@jax.jit
def all_observations(data, positions, params):
    """Observation of every (symbol, day) pair from first_index on; positions [S, T]."""
    days = jnp.arange(W, T, dtype=jnp.int32)
    symbols = jnp.arange(S, dtype=jnp.int32)

    def one(s, t):
        return env.observe(data, s, t, positions[s, t], params)

    return jax.vmap(lambda s: jax.vmap(lambda t: one(s, t))(days))(symbols)


@jax.jit
def all_rewards(data, p_prev, actions, params):
    """Reward of the transition t -> t+1 for every (symbol, t) with t in [W, T-2]."""
    days = jnp.arange(W, T - 1, dtype=jnp.int32)

    def one(s, t):
        state = env.EnvState(s, t, p_prev[s, t], jnp.float32(1.0), jnp.int32(0), jnp.float32(0.0))
        return env.step_env(state, actions[s, t], params, data)[2]

    return jax.vmap(lambda s: jax.vmap(lambda t: one(s, t))(days))(jnp.arange(S, dtype=jnp.int32))


@pytest.mark.parametrize("execution", ["next_open", "close"])
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(W, T - 2))
def test_no_look_ahead(execution, seed, k):
    """Changing any price or feature after day k leaves every observation up to day k (and every
    reward of a transition that ends by day k) unchanged."""
    arrays = synthetic_arrays(seed)
    rng = np.random.default_rng(seed + 1)
    changed = {name: arrays[name].copy() for name in ("open_", "close", "features")}
    changed["open_"][:, k + 1 :] *= rng.uniform(0.5, 1.5, changed["open_"][:, k + 1 :].shape).astype(np.float32)
    changed["close"][:, k + 1 :] *= rng.uniform(0.5, 1.5, changed["close"][:, k + 1 :].shape).astype(np.float32)
    changed["features"][:, k + 1 :] += rng.normal(size=changed["features"][:, k + 1 :].shape).astype(np.float32)
    data_a = to_market_data(arrays)
    data_b = to_market_data({**arrays, **changed})
    params = make_params(LONG_SHORT, 0.001, execution)
    held = jnp.asarray(rng.choice(LONG_SHORT, size=(S, T)), dtype=jnp.float32)
    actions = jnp.asarray(rng.integers(0, 3, size=(S, T)), dtype=jnp.int32)

    obs_a = np.asarray(all_observations(data_a, held, params))
    obs_b = np.asarray(all_observations(data_b, held, params))
    upto_k = k - W + 1  # observation rows for days W .. k
    np.testing.assert_array_equal(obs_a[:, :upto_k], obs_b[:, :upto_k])
    # Sanity: the change is visible from day k+1 on, so the comparison above is not vacuous.
    assert not np.array_equal(obs_a[:, upto_k:], obs_b[:, upto_k:]) or k + 1 >= T

    rew_a = np.asarray(all_rewards(data_a, held, actions, params))
    rew_b = np.asarray(all_rewards(data_b, held, actions, params))
    ends_by_k = k - W  # transitions t -> t+1 with t+1 <= k
    np.testing.assert_array_equal(rew_a[:, :ends_by_k], rew_b[:, :ends_by_k])


def test_observation_includes_day_t():
    """The window ends at day t itself (the decision uses the close of day t), not at t-1."""
    arrays = synthetic_arrays(7)
    params = make_params(LONG_ONLY, 0.0, "next_open")
    t = 20
    obs_a = env.observe(to_market_data(arrays), jnp.int32(1), jnp.int32(t), jnp.float32(0.0), params)
    bumped = arrays["features"].copy()
    bumped[1, t, 0] += 1.0
    obs_b = env.observe(to_market_data({**arrays, "features": bumped}), jnp.int32(1), jnp.int32(t),
                        jnp.float32(0.0), params)
    diff = np.flatnonzero(np.asarray(obs_a) != np.asarray(obs_b))
    np.testing.assert_array_equal(diff, [(W - 1) * F])


# ---------------------------------------------------------------- episode boundaries, vmap, jit
NUM_ENVS = 256


@jax.jit
def vmapped_run(key, params, data):
    reset_keys = jax.random.split(key, NUM_ENVS)
    obs, state = jax.vmap(env.reset, in_axes=(0, None, None))(reset_keys, params, data)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None, None))

    def body(carry, key):
        state, _ = carry
        k_act, k_step = jax.random.split(key)
        actions = jax.random.randint(k_act, (NUM_ENVS,), 0, params.positions.shape[0])
        obs, next_state, reward, done, info = step(jax.random.split(k_step, NUM_ENVS), state, actions,
                                                    params, data)
        return (next_state, obs), (state, reward, done, info)

    (last_state, last_obs), (states, rewards, dones, infos) = jax.lax.scan(
        body, (state, obs), jax.random.split(jax.random.PRNGKey(1), 150))
    return last_obs, states, rewards, dones, infos


def test_episodes_never_touch_test_days():
    arrays = synthetic_arrays(3, num_days=60, min_length=40, max_test_days=20)
    data = to_market_data(arrays)
    params = make_params(LONG_SHORT, 0.001, "next_open", episode_len=40)
    last_obs, states, rewards, dones, infos = jax.device_get(vmapped_run(jax.random.PRNGKey(0), params, data))
    symbol, t = states.symbol, states.t  # the state each transition started from, [steps, envs]
    assert np.all(t >= arrays["first_index"][symbol])
    assert np.all(t + 1 < arrays["test_start"][symbol])  # the transition reads day t+1 <= test_start-1
    # The last training transition of each symbol is actually reached, and ends the episode.
    for s in range(S):
        last_t = arrays["test_start"][s] - 2
        at_last = (symbol == s) & (t == last_t)
        assert at_last.any()
        assert dones[at_last].all()
    assert dones.any() and np.isfinite(rewards).all()
    assert last_obs.shape == (NUM_ENVS, W * F + 1) and last_obs.dtype == np.float32
    assert np.all(states.steps < params.episode_len)


def test_reset_covers_training_starts():
    arrays = synthetic_arrays(11)
    data = to_market_data(arrays)
    params = make_params(LONG_ONLY, 0.0, "close")
    _, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None, None)))(jax.random.split(jax.random.PRNGKey(2), 4096),
                                                                       params, data)
    symbol, t = np.asarray(states.symbol), np.asarray(states.t)
    assert set(symbol.tolist()) == set(range(S))
    for s in range(S):
        ts = t[symbol == s]
        assert ts.min() == arrays["first_index"][s] and ts.max() == arrays["test_start"][s] - 2
    assert np.all(np.asarray(states.position) == 0.0) and np.all(np.asarray(states.equity) == 1.0)
    assert np.all(np.asarray(states.steps) == 0)


def test_vmapped_jit_256_envs():
    arrays = synthetic_arrays(5)
    data = to_market_data(arrays)
    params = make_params(LONG_ONLY, 0.001, "next_open")
    keys = jax.random.split(jax.random.PRNGKey(0), NUM_ENVS)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None, None)))(keys, params, data)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None, None)))
    actions = jnp.full((NUM_ENVS,), 2, dtype=jnp.int32)
    obs, state, reward, done, info = step(keys, state, actions, params, data)
    assert obs.shape == (NUM_ENVS, W * F + 1) and obs.dtype == jnp.float32
    assert reward.shape == (NUM_ENVS,) and reward.dtype == jnp.float32
    assert done.dtype == jnp.bool_
    for leaf in (state.position, state.equity, state.episode_return):
        assert leaf.dtype == jnp.float32
    for leaf in (state.symbol, state.t, state.steps):
        assert leaf.dtype == jnp.int32
    assert set(info) >= {"episode_return", "returned_episode", "equity", "position", "turnover"}
    assert np.all(np.asarray(info["position"]) == 1.0)


def test_make_params_from_config():
    config = TrainConfig(positions=(-1.0, 0.0, 1.0), cost_model="flat", fee_bps=3.0, slippage_bps=2.0,
                         execution="close", window=16, episode_len=100)
    params = env.make_params(config)
    np.testing.assert_array_equal(np.asarray(params.positions), [-1.0, 0.0, 1.0])
    assert float(params.c_buy) == float(params.c_sell) == pytest.approx(5e-4)
    assert float(params.sell_charge) == 0.0
    assert (params.execution, params.window, params.episode_len) == ("close", 16, 100)
    # Static fields are not pytree leaves: positions and the three cost numbers are traced.
    assert len(jax.tree.leaves(params)) == 4
    # The default NSE delivery model: per-side rates and the depository charge (with GST) per sell
    # day as a fraction of the initial capital.
    nse = env.make_params(TrainConfig(initial_capital=500_000.0))
    model = costs.nse_delivery()
    assert float(nse.c_buy) == pytest.approx(model.c_buy, rel=1e-6)
    assert float(nse.c_sell) == pytest.approx(model.c_sell, rel=1e-6)
    assert float(nse.sell_charge) == pytest.approx(13.5 * 1.18 / 500_000.0, rel=1e-6)


def test_check_data():
    arrays = synthetic_arrays(1)
    env.check_data(to_market_data(arrays), W)
    with pytest.raises(ValueError, match="symbol 1"):
        env.check_data(to_market_data({**arrays, "test_start": np.array([30, W + 1, 30], np.int32)}), W)
    with pytest.raises(ValueError, match="window"):
        env.check_data(to_market_data(arrays), 10)
