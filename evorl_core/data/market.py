"""`build_market`: padded device arrays, train | validation | test split indices (with embargoes),
training-range normalisation, data hash. `load_market` = `load_frames` + `build_market` for a `TrainConfig`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd

from evorl_core.data.arrays import MarketData  # one class shared with env, ppo, deploy
from evorl_core.data.features import (
    STD_FLOOR,
    features_for_inference,
    normalisation_stats,
    num_features,
    raw_features,
)
from evorl_core.data.sources import data_info, load_frames
from evorl_core.data.validate import OHLCV, DataError, validate_ohlcv

MIN_TRAIN_STEPS = 20  # training transitions a symbol must offer besides window, validation and test days


@dataclass
class Market:
    """Host-side companion of MarketData."""

    symbols: list[str]
    frames: dict[str, pd.DataFrame]
    dates: list[np.ndarray]  # per symbol, datetime64[D], length[s] entries
    data: MarketData
    norm_mean: np.ndarray    # [S, F] statistics over the training range only
    norm_std: np.ndarray     # [S, F]
    window: int
    test_days: int
    info: dict
    data_hash: str
    val_days: int = 0
    embargo_days: int = 0

    def split_dates(self, s: int) -> dict[str, str]:
        """The split of symbol s as dates (first/last day of each range; the config.json record)."""
        d, data = self.dates[s], self.data
        train_end, val_start, test_start = (int(data.train_end[s]), int(data.val_start[s]),
                                            int(data.test_start[s]))
        out = {"first": str(d[0]), "train_end": str(d[train_end - 1])}
        if self.val_days:
            out.update(val_start=str(d[val_start]), val_end=str(d[val_start + self.val_days - 1]))
        out.update(test_start=str(d[test_start]), last=str(d[-1]), rows=int(data.length[s]),
                   embargo_days=self.embargo_days)
        return out


def split_indices(length: np.ndarray, test_days: int, val_days: int = 0, embargo_days: int = 0):
    """(train_end, val_start, test_start) per symbol: train [.., train_end) | embargo |
    validation [val_start, val_start + val_days) | embargo | test [test_start, length).
    Without validation days: train | embargo | test."""
    test_start = length - test_days
    val_end = test_start - embargo_days
    val_start = val_end - val_days
    train_end = val_start - embargo_days if val_days else test_start - embargo_days
    return train_end, val_start, test_start


def rows_needed(window: int, test_days: int, val_days: int = 0, embargo_days: int = 0) -> int:
    """Fewest rows a symbol needs: window + MIN_TRAIN_STEPS training transitions + embargoes +
    validation + test days."""
    embargoes = embargo_days * (2 if val_days else 1)
    return window + MIN_TRAIN_STEPS + 1 + embargoes + val_days + test_days


def hash_frames(frames: Mapping[str, pd.DataFrame]) -> str:
    """sha256 over symbols, dates and OHLCV values (float64 little-endian): stable across runs."""
    digest = hashlib.sha256()
    for symbol, frame in frames.items():
        days = frame.index.values.astype("datetime64[D]").astype("<i8")
        values = np.ascontiguousarray(frame[list(OHLCV)].to_numpy(dtype="<f8"))
        digest.update(f"{symbol}\0{len(frame)}\0".encode())
        digest.update(days.tobytes())
        digest.update(values.tobytes())
    return digest.hexdigest()


def build_market(
    frames: Mapping[str, pd.DataFrame],
    window: int,
    test_days: int,
    norm: tuple[np.ndarray, np.ndarray] | None = None,
    info: dict | None = None,
    val_days: int = 0,
    embargo_days: int = 0,
    feature_set: str = "default",
) -> Market:
    """Stack symbols of different lengths into padded [S, T] arrays with their split indices.

    Training transitions of symbol s go from t to t+1 with window <= t and t+1 <= train_end-1;
    validation days are val_start .. val_start+val_days-1, test days test_start .. length-1, with
    `embargo_days` unused days before each of them (`split_indices`). `norm=(mean, std)` ([S, F] or
    [F]) replaces the training-range statistics, e.g. to re-backtest a trained run on new data.
    `feature_set`: the feature spec (feature_registry.py) the features are built from.
    """
    if not frames:
        raise DataError("no symbols given")
    if window < 1 or test_days < 1:
        raise DataError(f"window and test_days must be >= 1 (got window={window}, test_days={test_days})")
    if val_days < 0 or embargo_days < 0:
        raise DataError(f"val_days and embargo_days must be >= 0 (got {val_days}, {embargo_days})")
    symbols = list(frames)
    valid = {s: validate_ohlcv(frames[s], s) for s in symbols}
    lengths = np.array([len(valid[s]) for s in symbols], dtype=np.int64)
    need = rows_needed(window, test_days, val_days, embargo_days)
    for s, length in zip(symbols, lengths, strict=True):
        if length < need:
            split = f" + val_days {val_days}" if val_days else ""
            embargoes = embargo_days * (2 if val_days else 1)
            raise DataError(
                f"{s}: {length} rows present, need at least {need} (window {window} + "
                f"{MIN_TRAIN_STEPS + 1} for {MIN_TRAIN_STEPS} training steps + embargo {embargoes}"
                f"{split} + test_days {test_days})"
            )
    train_end, val_start, test_start = split_indices(lengths, test_days, val_days, embargo_days)
    raws = [raw_features(valid[s], feature_set) for s in symbols]
    nf = num_features(feature_set)

    if norm is None:
        stats = [normalisation_stats(raw, end) for raw, end in zip(raws, train_end, strict=True)]
        mean = np.stack([m for m, _ in stats])
        std = np.stack([sd for _, sd in stats])
    else:
        shape = (len(symbols), nf)
        try:
            mean = np.broadcast_to(np.asarray(norm[0], dtype=np.float64), shape).copy()
            std = np.maximum(np.broadcast_to(np.asarray(norm[1], dtype=np.float64), shape), STD_FLOOR)
        except ValueError:
            raise DataError(
                f"norm: statistics must have shape {shape} or ({nf},); "
                f"got {np.shape(norm[0])} and {np.shape(norm[1])}"
            ) from None

    horizon = int(lengths.max())
    open_ = np.empty((len(symbols), horizon), dtype=np.float32)
    close = np.empty((len(symbols), horizon), dtype=np.float32)
    features = np.zeros((len(symbols), horizon, nf), dtype=np.float32)
    for i, s in enumerate(symbols):
        n = lengths[i]
        open_[i, :n], open_[i, n:] = valid[s]["open"].to_numpy(), valid[s]["open"].iloc[-1]
        close[i, :n], close[i, n:] = valid[s]["close"].to_numpy(), valid[s]["close"].iloc[-1]
        features[i, :n] = features_for_inference(valid[s], mean[i], std[i], window, name=s,
                                                  features=feature_set)

    data = MarketData(
        open=jnp.asarray(open_),
        close=jnp.asarray(close),
        features=jnp.asarray(features),
        length=jnp.asarray(lengths, dtype=jnp.int32),
        first_index=jnp.full((len(symbols),), window, dtype=jnp.int32),
        train_end=jnp.asarray(train_end, dtype=jnp.int32),
        val_start=jnp.asarray(val_start, dtype=jnp.int32),
        test_start=jnp.asarray(test_start, dtype=jnp.int32),
    )
    if info is None:  # frames built by hand: record what the frames say about themselves
        info = data_info(valid, "frames")
    return Market(
        symbols=symbols,
        frames=valid,
        dates=[valid[s].index.values.astype("datetime64[D]") for s in symbols],
        data=data,
        norm_mean=mean,
        norm_std=std,
        window=int(window),
        test_days=int(test_days),
        info=info,
        data_hash=hash_frames(valid),
        val_days=int(val_days),
        embargo_days=int(embargo_days),
    )


def load_market(config: Any, cache_dir: str | os.PathLike = "data_cache", norm=None,
                on_features: Callable[[], Any] | None = None) -> Market:
    """`load_frames` + `build_market` for a single-asset TrainConfig (data, symbols, window,
    splits, seed, price_adjustment); `panel.load_market` is the entry point of every mode.
    `on_features` is called between the two (the run's phases: loading data, then features)."""
    frames, info = load_frames(config.data, config.symbols, cache_dir=cache_dir, seed=config.seed,
                               price_adjustment=getattr(config, "price_adjustment", "none"))
    if on_features is not None:
        on_features()
    return build_market(frames, config.window, config.test_days, norm=norm, info=info,
                        val_days=config.val_days, embargo_days=config.embargo,
                        feature_set=getattr(config, "features", "default"))
