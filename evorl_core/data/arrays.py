"""The device-side market arrays shared by data, env, ppo and backtest."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


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


class PanelData(NamedTuple):
    """A universe on one trading calendar (portfolio mode); always a jit argument.

    Day t of every array is the same calendar day for every symbol. A symbol without a bar on a
    day has `present[s, t]` False and a placeholder price of 1.0 there (never read: a weight is
    forced to 0 wherever a price would be needed, see `tradable`).
    """

    open: jax.Array  # [N, T] float32
    close: jax.Array  # [N, T] float32
    features: jax.Array  # [N, T, F] float32, 0 on days without a bar
    present: jax.Array  # [N, T] bool: the symbol has a bar on day t
    # [N, T] bool: at the close of day t the symbol may be held into day t+1: it has a full window
    # of bars up to t and bars on the days the next fills need (t+1, and t+2 with next_open so a
    # holding can always be sold at the next decision's fill).
    tradable: jax.Array
    length: jax.Array  # scalar int32: calendar days T
    first_index: jax.Array  # scalar int32: first day any symbol is tradable
    train_end: jax.Array  # scalar int32: training transitions t -> t+1 need t+1 <= train_end - 1
    val_start: jax.Array  # scalar int32
    test_start: jax.Array  # scalar int32
    # [T, 3, N] float32: open, close and tradable (1.0 / 0.0) by day, the same values as the [N, T]
    # arrays above; an env step reads the day's prices as one contiguous block (`day_major`)
    # instead of N strided column reads, which were most of a step at N = 500.
    by_day: jax.Array


def day_major(open_, close, tradable) -> jax.Array:
    """`PanelData.by_day` from the [N, T] open, close and tradable arrays."""
    return jnp.stack([jnp.asarray(open_, jnp.float32).T, jnp.asarray(close, jnp.float32).T,
                      jnp.asarray(tradable).T.astype(jnp.float32)], axis=1)
