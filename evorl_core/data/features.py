"""Causal features: row t uses rows <= t only.

`raw_features` turns a validated frame into unnormalised [T, F] features; `normalisation_stats`
measures them over the training rows; `features_for_inference` normalises one frame with given
statistics (a trained run's, or `build_market`'s own).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evorl_core.data import feature_registry as registry
from evorl_core.data.validate import OHLCV, DataError, validate_ohlcv

STD_FLOOR = 1e-8
FEATURE_CLIP = 10.0
VOLUME_LOOKBACK = 20

FEATURE_NAMES = (
    "log_return",       # log(close_t / close_{t-1})
    "overnight_gap",    # log(open_t / close_{t-1})
    "intraday_return",  # log(close_t / open_t)
    "high_to_close",    # log(high_t / close_t)  >= 0
    "low_to_close",     # log(low_t / close_t)   <= 0
    "volume_surprise",  # log1p(volume_t) - mean log1p(volume) over the previous 20 days (fewer early)
)
NUM_FEATURES = len(FEATURE_NAMES)

# The feature registry (feature_registry.py) declares every other feature and the named sets; a
# run's feature count and names come from `num_features` / `feature_names`, never from an array
# shape or a constant elsewhere. `default` is the six features above, built by `raw_features`'s
# own code path below (bit-for-bit today's runs).
DEFAULT_FEATURE_SET = registry.LEGACY_SET
FEATURE_SETS: dict[str, str] = dict(registry.FEATURE_SETS_SPEC)


def _spec(config_or_spec: object) -> str:
    if config_or_spec is None or isinstance(config_or_spec, str):
        return config_or_spec or DEFAULT_FEATURE_SET
    return getattr(config_or_spec, "features", DEFAULT_FEATURE_SET)


def feature_names(config: object = None) -> tuple[str, ...]:
    """The features a run's agent sees, in observation order (`config` may be a spec string)."""
    return registry.resolve(_spec(config), FEATURE_NAMES)


def num_features(config: object = None) -> int:
    """How many features per day a run's observation holds."""
    return len(feature_names(config))


def canonical_features(spec: str) -> str:
    """The one spelling of a feature spec (what config.json and a bundle record)."""
    return registry.canonical(spec)


def raw_features(df: pd.DataFrame, features: object = None) -> np.ndarray:
    """[T, F] float64 unnormalised features of a validated frame for a feature spec (default:
    the six legacy features, `_legacy_features`). Registered features are NaN on rows without
    enough history (`normalisation_stats` skips them, normalisation sets them to 0)."""
    spec = _spec(features)
    if spec == DEFAULT_FEATURE_SET:
        return _legacy_features(df)
    bars = registry.Bars(*(df[col].to_numpy(dtype=np.float64) for col in OHLCV))
    parts = [_legacy_features(df) if name == DEFAULT_FEATURE_SET else registry.compute(name, args, bars)
             for name, args in registry.blocks(spec)]
    registry.resolve(spec, FEATURE_NAMES)  # refuses duplicates
    return np.concatenate(parts, axis=1)


def _legacy_features(df: pd.DataFrame) -> np.ndarray:
    """[T, F] float64 unnormalised features of a validated frame. Row 0 is all zero: it has no
    previous close, and no observation window ever includes it (first_index = window >= 1)."""
    o, h, low, c, v = (df[col].to_numpy(dtype=np.float64) for col in OHLCV)
    n = len(c)
    out = np.zeros((n, NUM_FEATURES))
    if n < 2:
        return out
    prev_close = c[:-1]
    out[1:, 0] = np.log(c[1:] / prev_close)
    out[1:, 1] = np.log(o[1:] / prev_close)
    out[1:, 2] = np.log(c[1:] / o[1:])
    out[1:, 3] = np.log(h[1:] / c[1:])
    out[1:, 4] = np.log(low[1:] / c[1:])
    log_volume = np.log1p(v)
    prefix = np.concatenate([[0.0], np.cumsum(log_volume)])  # prefix[t] = sum of rows < t
    t = np.arange(1, n)
    lo = np.maximum(0, t - VOLUME_LOOKBACK)
    out[1:, 5] = log_volume[1:] - (prefix[t] - prefix[lo]) / (t - lo)
    return out


def normalisation_stats(raw: np.ndarray, train_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (floored at 1e-8) of each feature over the training rows 1 .. train_end-1."""
    return pooled_stats(raw[1:train_end])


def pooled_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (floored) of [rows, F] training values; NaN (warm-up) rows of a feature are
    left out, and a feature with no value at all gets mean 0, std 1."""
    if not np.isnan(train).any():  # the legacy set: exactly today's arithmetic
        return train.mean(axis=0), np.maximum(train.std(axis=0), STD_FLOOR)
    counts = (~np.isnan(train)).sum(axis=0)
    filled = np.where(np.isnan(train), 0.0, train)
    mean = np.where(counts > 0, filled.sum(axis=0) / np.maximum(counts, 1), 0.0)
    var = np.where(np.isnan(train), 0.0, (train - mean) ** 2).sum(axis=0) / np.maximum(counts, 1)
    std = np.where(counts > 0, np.sqrt(var), 1.0)
    return mean, np.maximum(std, STD_FLOOR)


def _normalise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = np.clip((raw - mean) / std, -FEATURE_CLIP, FEATURE_CLIP)
    out[np.isnan(out)] = 0.0  # warm-up rows of registered features: the training mean
    out[:1] = 0.0  # row 0 carries no information (see raw_features)
    return out.astype(np.float32)


def features_for_inference(
    df: pd.DataFrame, mean: np.ndarray, std: np.ndarray, window: int, *, name: str = "frame",
    features: object = None,
) -> np.ndarray:
    """[T, F] float32 normalised features of one frame with given statistics (e.g. a trained
    run's). Needs at least window + 1 rows so the last day has a full window; the observation
    for the last day uses rows T-window .. T-1. `build_market` uses this same function."""
    frame = validate_ohlcv(df, name)
    if len(frame) < window + 1:
        raise DataError(f"{name}: {len(frame)} rows present, need at least {window + 1} (window {window} + 1)")
    mean = np.asarray(mean, dtype=np.float64)
    std = np.maximum(np.asarray(std, dtype=np.float64), STD_FLOOR)
    names = feature_names(features)
    if mean.shape != (len(names),) or std.shape != (len(names),):
        raise DataError(
            f"{name}: normalisation statistics must have shape ({len(names)},) for feature set "
            f"{_spec(features)!r} ({', '.join(names)}); got {mean.shape} and {std.shape}"
        )
    return _normalise(raw_features(frame, features), mean, std)
