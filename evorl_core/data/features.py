"""Causal features: row t uses rows <= t only.

`raw_features` turns a validated frame into unnormalised [T, F] features; `normalisation_stats`
measures them over the training rows; `features_for_inference` normalises one frame with given
statistics (a trained run's, or `build_market`'s own).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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

# The feature registry: feature sets by name. A run's feature count and names come from here
# (`num_features`, `feature_names`), never from an array shape or a constant elsewhere. Every run
# uses `default` (the six features above) until a config names another set.
DEFAULT_FEATURE_SET = "default"
FEATURE_SETS: dict[str, tuple[str, ...]] = {DEFAULT_FEATURE_SET: FEATURE_NAMES}


def feature_names(config: object = None) -> tuple[str, ...]:
    """The features a run's agent sees, in observation order."""
    return FEATURE_SETS[getattr(config, "features", DEFAULT_FEATURE_SET)]


def num_features(config: object = None) -> int:
    """How many features per day a run's observation holds."""
    return len(feature_names(config))


def raw_features(df: pd.DataFrame) -> np.ndarray:
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
    train = raw[1:train_end]
    return train.mean(axis=0), np.maximum(train.std(axis=0), STD_FLOOR)


def _normalise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = np.clip((raw - mean) / std, -FEATURE_CLIP, FEATURE_CLIP)
    out[:1] = 0.0  # row 0 carries no information (see raw_features)
    return out.astype(np.float32)


def features_for_inference(
    df: pd.DataFrame, mean: np.ndarray, std: np.ndarray, window: int, *, name: str = "frame"
) -> np.ndarray:
    """[T, F] float32 normalised features of one frame with given statistics (e.g. a trained
    run's). Needs at least window + 1 rows so the last day has a full window; the observation
    for the last day uses rows T-window .. T-1. `build_market` uses this same function."""
    frame = validate_ohlcv(df, name)
    if len(frame) < window + 1:
        raise DataError(f"{name}: {len(frame)} rows present, need at least {window + 1} (window {window} + 1)")
    mean = np.asarray(mean, dtype=np.float64)
    std = np.maximum(np.asarray(std, dtype=np.float64), STD_FLOOR)
    if mean.shape != (NUM_FEATURES,) or std.shape != (NUM_FEATURES,):
        raise DataError(
            f"{name}: normalisation statistics must have shape ({NUM_FEATURES},) for features "
            f"{', '.join(FEATURE_NAMES)}; got {mean.shape} and {std.shape}"
        )
    return _normalise(raw_features(frame), mean, std)
