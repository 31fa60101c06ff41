"""train | embargo | validation | embargo | test: the ranges never overlap, training never reads a
validation or test day, normalisation looks at training days only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evorl_core.config import ConfigError, make_config
from evorl_core.data import (
    DataError,
    build_market,
    normalisation_stats,
    raw_features,
    split_indices,
    synthetic_ohlcv,
)
from evorl_core.modes.single import env


@settings(max_examples=200, deadline=None)
@given(length=st.integers(200, 3000), test_days=st.integers(2, 120), val_days=st.one_of(st.just(0), st.integers(2, 120)),
       embargo=st.integers(0, 64))
def test_split_ranges_are_disjoint_and_ordered(length, test_days, val_days, embargo):
    train_end, val_start, test_start = (int(x[0]) for x in split_indices(np.array([length]), test_days, val_days, embargo))
    assert test_start == length - test_days
    if val_days:
        val_end = val_start + val_days
        assert train_end + embargo == val_start  # embargo days between the last training day and validation
        assert val_end + embargo == test_start   # and between the last validation day and test
    else:
        assert train_end + embargo == test_start


def test_market_splits_dates_and_training_range():
    frames = {s: synthetic_ohlcv(s, n_days=400, seed=1) for s in ("AAA", "BBB")}
    market = build_market(frames, window=8, test_days=30, val_days=40, embargo_days=10)
    d = market.data
    for s, symbol in enumerate(market.symbols):
        length = int(d.length[s])
        assert int(d.test_start[s]) == length - 30
        assert int(d.val_start[s]) == length - 30 - 10 - 40
        assert int(d.train_end[s]) == int(d.val_start[s]) - 10
        split = market.split_dates(s)
        dates = market.dates[s]
        assert split["train_end"] < split["val_start"] <= split["val_end"] < split["test_start"]
        assert split["val_end"] == str(dates[int(d.val_start[s]) + 39])
        # normalisation statistics: the training rows only (1 .. train_end - 1)
        mean, std = normalisation_stats(raw_features(frames[symbol]), int(d.train_end[s]))
        np.testing.assert_allclose(market.norm_mean[s], mean)
        np.testing.assert_allclose(market.norm_std[s], std)


def test_training_never_reads_validation_or_test_days():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=2) for s in ("AAA", "BBB")}
    market = build_market(frames, window=8, test_days=25, val_days=30, embargo_days=8)
    config = make_config("quick", window=8, episode_len=50)
    params = env.make_params(config)
    keys = jax.random.split(jax.random.PRNGKey(0), 512)
    _, state = jax.vmap(env.reset, in_axes=(0, None, None))(keys, params, market.data)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None, None)))
    latest = np.zeros(2, dtype=int)
    for i in range(200):
        actions = jnp.full((512,), i % 3, dtype=jnp.int32)
        symbol, t = np.asarray(state.symbol), np.asarray(state.t)
        np.maximum.at(latest, symbol, t + 1)  # the day each transition reads
        _, state, _, _, _ = step(jax.random.split(jax.random.PRNGKey(i + 1), 512), state, actions, params, market.data)
    train_end = np.asarray(market.data.train_end)
    assert np.all(latest <= train_end - 1)
    assert np.all(latest == train_end - 1)  # and the last training day is reached


def test_too_short_history_names_the_parts():
    frames = {"AAA": synthetic_ohlcv("AAA", n_days=150, seed=0)}
    with pytest.raises(DataError, match=r"AAA: 150 rows present.*embargo 64.*val_days 60.*test_days 60"):
        build_market(frames, window=32, test_days=60, val_days=60, embargo_days=32)


def test_embargo_must_cover_the_feature_window():
    with pytest.raises(ConfigError, match="embargo_days: must be at least the feature window"):
        make_config("quick", window=16, embargo_days=8)
    assert make_config("quick", window=16).embargo == 16
