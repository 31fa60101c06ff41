"""`build_market`: padded device arrays, train/test split indices, training-range normalisation,
data hash. `load_market` = `load_frames` + `build_market` for a `TrainConfig`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd

from evorl_core.market_data import MarketData  # one class shared with env, ppo, deploy

from .features import NUM_FEATURES, STD_FLOOR, features_for_inference, normalisation_stats, raw_features
from .sources import data_info, load_frames
from .validate import OHLCV, DataError, validate_ohlcv

MIN_TRAIN_STEPS = 20  # training transitions a symbol must offer besides window and test days


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


def rows_needed(window: int, test_days: int) -> int:
    """Fewest rows a symbol needs: window + MIN_TRAIN_STEPS training transitions + test days."""
    return window + MIN_TRAIN_STEPS + 1 + test_days


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
) -> Market:
    """Stack symbols of different lengths into padded [S, T] arrays with their split indices.

    Training transitions of symbol s go from t to t+1 with window <= t and t+1 <= test_start-1;
    test days are test_start .. length-1. `norm=(mean, std)` ([S, F] or [F]) replaces the
    training-range statistics, e.g. to re-backtest a trained run on new data.
    """
    if not frames:
        raise DataError("no symbols given")
    if window < 1 or test_days < 1:
        raise DataError(f"window and test_days must be >= 1 (got window={window}, test_days={test_days})")
    symbols = list(frames)
    valid = {s: validate_ohlcv(frames[s], s) for s in symbols}
    lengths = np.array([len(valid[s]) for s in symbols], dtype=np.int64)
    need = rows_needed(window, test_days)
    for s, length in zip(symbols, lengths, strict=True):
        if length < need:
            raise DataError(
                f"{s}: {length} rows present, need at least {need} (window {window} + "
                f"{MIN_TRAIN_STEPS + 1} for {MIN_TRAIN_STEPS} training steps + test_days {test_days})"
            )
    test_start = lengths - test_days
    raws = [raw_features(valid[s]) for s in symbols]

    if norm is None:
        stats = [normalisation_stats(raw, ts) for raw, ts in zip(raws, test_start, strict=True)]
        mean = np.stack([m for m, _ in stats])
        std = np.stack([sd for _, sd in stats])
    else:
        shape = (len(symbols), NUM_FEATURES)
        try:
            mean = np.broadcast_to(np.asarray(norm[0], dtype=np.float64), shape).copy()
            std = np.maximum(np.broadcast_to(np.asarray(norm[1], dtype=np.float64), shape), STD_FLOOR)
        except ValueError:
            raise DataError(
                f"norm: statistics must have shape {shape} or ({NUM_FEATURES},); "
                f"got {np.shape(norm[0])} and {np.shape(norm[1])}"
            ) from None

    horizon = int(lengths.max())
    open_ = np.empty((len(symbols), horizon), dtype=np.float32)
    close = np.empty((len(symbols), horizon), dtype=np.float32)
    features = np.zeros((len(symbols), horizon, NUM_FEATURES), dtype=np.float32)
    for i, s in enumerate(symbols):
        n = lengths[i]
        open_[i, :n], open_[i, n:] = valid[s]["open"].to_numpy(), valid[s]["open"].iloc[-1]
        close[i, :n], close[i, n:] = valid[s]["close"].to_numpy(), valid[s]["close"].iloc[-1]
        features[i, :n] = features_for_inference(valid[s], mean[i], std[i], window, name=s)

    data = MarketData(
        open=jnp.asarray(open_),
        close=jnp.asarray(close),
        features=jnp.asarray(features),
        length=jnp.asarray(lengths, dtype=jnp.int32),
        first_index=jnp.full((len(symbols),), window, dtype=jnp.int32),
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
    )


def load_market(config: Any, cache_dir: str | os.PathLike = "data_cache", norm=None) -> Market:
    """`load_frames` + `build_market` for a TrainConfig (data, symbols, window, test_days, seed,
    price_adjustment)."""
    frames, info = load_frames(config.data, config.symbols, cache_dir=cache_dir, seed=config.seed,
                               price_adjustment=getattr(config, "price_adjustment", "none"))
    return build_market(frames, config.window, config.test_days, norm=norm, info=info)
