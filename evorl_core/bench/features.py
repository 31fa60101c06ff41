"""The features section of the bench: the time to build every feature of a feature set (default:
`technical`) for many symbols over many days, the way `build_market` builds them (one
`raw_features` call per symbol), beside the legacy `default` six on the same frames."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.bench.plan import stat
from evorl_core.data.features import feature_names, raw_features


def random_frames(symbols: int, days: int, seed: int = 0) -> list[pd.DataFrame]:
    """Valid OHLCV frames of random-walk prices (what the timing needs: real-valued bars)."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2000-01-03", periods=days, name="date")
    frames = []
    for _ in range(symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, days)))
        open_ = close * np.exp(rng.normal(0, 0.01, days))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, days)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, days)))
        volume = np.round(rng.lognormal(12, 1, days))
        frames.append(pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume},
                                   index=index))
    return frames


def _time(frames: list[pd.DataFrame], spec: str) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a shared machine the CPU time is the figure
    the other processes disturb least."""
    start, cpu = time.perf_counter(), time.process_time()
    for frame in frames:
        raw_features(frame, spec)
    return time.perf_counter() - start, time.process_time() - cpu


def bench_features(p: dict[str, Any], log) -> dict[str, Any]:
    spec, symbols, days = p["features"]["set"], p["features"]["symbols"], p["features"]["days"]
    frames = random_frames(symbols, days)
    _time(frames[:2], spec)  # warm-up: imports, first calls
    timed = [_time(frames, spec) for _ in range(p["repeats"])]
    legacy = [_time(frames, "default") for _ in range(p["repeats"])]
    out = {"set": spec, "features": len(feature_names(spec)), "symbols": symbols, "days": days,
           "seconds": stat([w for w, _ in timed]), "cpu_seconds": stat([c for _, c in timed]),
           "default_seconds": stat([w for w, _ in legacy]), "default_cpu_seconds": stat([c for _, c in legacy]),
           "what": "raw_features per symbol (a DataFrame of OHLCV in, [days, features] float64 out), "
                   "validation and normalisation excluded; median of repeats"}
    out["symbol_days_per_s"] = symbols * days / out["seconds"]["median"]
    log(f"  {spec} ({out['features']} features) for {symbols} symbols x {days:,} days: "
        f"{out['seconds']['median']:.3f} s wall, {out['cpu_seconds']['median']:.3f} s CPU "
        f"({out['symbol_days_per_s']:,.0f} symbol-days/s); "
        f"default six: {out['default_seconds']['median']:.3f} s")
    return out
