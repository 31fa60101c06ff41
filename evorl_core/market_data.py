"""The device-side market arrays shared by data, env, ppo and backtest."""

from __future__ import annotations

from typing import NamedTuple

import jax


class MarketData(NamedTuple):
    """Padded per-symbol arrays; always passed to jitted code as an argument."""

    open: jax.Array  # [S, T] float32, padded after `length` by repeating the last value
    close: jax.Array  # [S, T] float32
    features: jax.Array  # [S, T, F] float32, normalised with training-range statistics
    length: jax.Array  # [S] int32: real days of each symbol
    first_index: jax.Array  # [S] int32: first day with a full feature window (= window)
    test_start: jax.Array  # [S] int32: index of the first test day (= length - test_days)
