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
    train_end: jax.Array  # [S] int32: training transitions t -> t+1 need t+1 <= train_end - 1
    val_start: jax.Array  # [S] int32: first validation day (= val_end - val_days)
    test_start: jax.Array  # [S] int32: index of the first test day (= length - test_days)

    # Per symbol: train [first_index, train_end) | embargo | validation [val_start, val_end) | embargo |
    # test [test_start, length), with val_end = test_start - embargo (docs/evaluation.md).
