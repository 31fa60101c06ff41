"""Next-session signals of a deployed model, and the data it acts on.

The market arrays of one symbol built with the bundle's normalisation, the greedy decision of the
policy on the latest bar, the data source the model was trained on, and stale-data warnings.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from evorl_core import modes
from evorl_core.agents.build import make_ppo
from evorl_core.agents.precision import EVALUATION_PRECISION
from evorl_core.data import calendar, features_for_inference, load_frames
from evorl_core.data.arrays import MarketData
from evorl_core.deploy.bundle import LEDGER_FILE, Bundle, DeployError


def symbol_data(frame: Any, norm: dict[str, Any], window: int, start: int, features: str = "default") -> MarketData:
    """Device arrays of one symbol for inference (features normalised with the model's training
    statistics and the bundle's feature set); `start` marks the first day replayed."""
    feats = features_for_inference(frame, np.asarray(norm["mean"]), np.asarray(norm["std"]), window,
                                   features=features)
    first = jnp.array([start], jnp.int32)
    return MarketData(
        open=jnp.asarray(frame["open"].to_numpy()[None], jnp.float32),
        close=jnp.asarray(frame["close"].to_numpy()[None], jnp.float32),
        features=jnp.asarray(feats[None], jnp.float32),
        length=jnp.array([len(frame)], jnp.int32),
        first_index=jnp.array([window], jnp.int32),
        train_end=first, val_start=first, test_start=first,
    )


def decider(bundle: Bundle, precision: str = EVALUATION_PRECISION):
    """(ppo, mode, probabilities, decide): the one computation of a model's action probabilities,
    shared by signals, the paper ledger and the pages; decide(params, data, t, held) is jitted. The
    network computes in `precision` (float32 unless told otherwise, whatever the model trained in)."""
    config = bundle.config
    ppo = make_ppo(config, precision=precision)
    mode = modes.get(config)
    probabilities = partial(ppo.action_probabilities, ensemble=bundle.ensemble)

    @jax.jit
    def decide(params, data, t, held):
        return mode.decision(probabilities, params, data, t, held, ppo.env)

    return ppo, mode, probabilities, decide


def ledger_position(bundle: Bundle, symbol: str, dates: list[str]) -> tuple[float, str] | None:
    """The position the paper account holds over the latest bar (dates[-1]), from the model's
    ledger: that bar's entry's `held`, or the previous bar's `target` (filled at this bar's open).
    None when the ledger has no entry for the symbol on either bar."""
    try:
        lines = (Path(bundle.path) / LEDGER_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    last = None
    for line in lines:
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and row.get("symbol") == symbol:
            last = row
    if last is None:
        return None
    if last.get("date") == dates[-1]:
        return float(last["held"]), f"the paper ledger's entry for {dates[-1]}"
    if len(dates) >= 2 and last.get("date") == dates[-2]:
        return float(last["target"]), f"the paper ledger's target of {dates[-2]}"
    return None


def signals(bundle: Bundle, frames: dict[str, Any], replay_days: int | None = None) -> list[dict[str, Any]]:
    """Target position for the next session per symbol, from each frame's latest bar.

    The policy sees the position it holds. One definition of it: what the model's paper ledger
    holds over the latest bar (`ledger_position`), so signal, paper and the Models page agree;
    without a ledger entry for that bar, the greedy policy replayed from flat over the last
    `replay_days` bars (default: the bundle's test length), as the backtest does. `held_from` says
    which. The probabilities are `decider`'s, the ledger's own computation.
    """
    config = bundle.config
    ppo, mode, probabilities, decide = decider(bundle)
    norm = bundle.meta["normalization"]
    replay_days = replay_days or config.test_days
    positions = np.asarray(config.positions, np.float64)
    out = []
    for symbol, frame in frames.items():
        if symbol not in norm:
            raise DeployError(f"model {bundle.name!r} was not trained on {symbol}; it knows {', '.join(norm)}")
        length = len(frame)
        if length < config.window + 1:
            raise DeployError(f"{symbol}: needs at least {config.window + 1} bars for a signal, has {length}")
        days = min(replay_days, length - config.window)
        start = length - days
        data = symbol_data(frame, norm[symbol], config.window, start, config.features)
        from_ledger = ledger_position(bundle, symbol, [str(d.date()) for d in frame.index[-2:]])
        if from_ledger is not None:
            held, held_from = from_ledger
        else:
            path = np.asarray(mode.greedy_positions(probabilities, bundle.params, data, data.test_start, days,
                                                    ppo.env)[0], np.float64)
            held = float(path[-2]) if days >= 2 else 0.0
            held_from = (f"replayed from flat over the last {days} bars (no paper ledger entry for this bar; "
                         "a new paper ledger starts flat)")
        probs = np.asarray(decide(bundle.params, data, jnp.int32(length - 1), jnp.float32(held)), np.float64)
        if not np.isfinite(probs).all():
            raise DeployError(f"model {bundle.name!r} gives non-finite action probabilities for {symbol} on "
                              f"{frame.index[-1].date()}; no signal")
        out.append({
            "symbol": symbol,
            "date": str(frame.index[-1].date()),
            "close": float(frame["close"].iloc[-1]),
            "held_position": held,
            "held_from": held_from,
            "position": float(positions[int(np.argmax(probs))]),
            "probabilities": {str(p): float(q) for p, q in zip(config.positions, probs, strict=True)},
            "execution": config.execution,
            "next_session": next_session(frame.index[-1]),
            "replayed_days": days if from_ledger is None else 0,
        })
    return out


# the data a deployed model acts on ------------------------------------------------------------
# Signals and the paper ledger read the source the model was trained on unless told otherwise,
# and `auto` never falls back to synthetic prices for them: a user asks for synthetic data
# explicitly (or trained the model on it explicitly). A last bar older than STALE_AFTER_DAYS
# business days is flagged as stale.
STALE_AFTER_DAYS = 3


def training_source(bundle: Bundle) -> str:
    """The data source the model was trained on, as requested (auto | synthetic | yahoo | csv:DIR)."""
    return str(bundle.meta.get("config", {}).get("data") or bundle.config.data)


def load_signal_frames(bundle: Bundle, source: str | None = None, *, symbols: list[str] | None = None,
                       cache_dir: str | Path = "data_cache") -> tuple[dict[str, Any], dict[str, Any]]:
    """Frames for a signal or a ledger entry: ``source`` (default: the training source) for the
    model's symbols. Raises DataError naming the symbol when ``auto`` finds no real data for it."""
    return load_frames(source or training_source(bundle), symbols or bundle.symbols, cache_dir=cache_dir,
                       seed=bundle.config.seed, synthetic_fallback=False,
                       price_adjustment=bundle.config.price_adjustment)


def business_days_since(date: Any, today: Any = None) -> int:
    """Business days (Mon-Fri) after ``date`` up to and including ``today`` (default: today)."""
    start = np.datetime64(pd.Timestamp(date).date(), "D")
    end = np.datetime64(pd.Timestamp(today if today is not None else time.strftime("%Y-%m-%d")).date(), "D")
    if end <= start:
        return 0
    return int(np.busday_count(start + 1, end + 1))


def sessions_since(date: Any, today: Any = None) -> int:
    """The exchange's sessions (data.calendar) after ``date`` up to and including ``today``."""
    start = pd.Timestamp(date).normalize() + pd.Timedelta(days=1)
    end = pd.Timestamp(today if today is not None else time.strftime("%Y-%m-%d")).normalize()
    return 0 if end < start else len(calendar.sessions(start, end)[0])


def next_session(date: Any) -> str:
    """The first session of the exchange after ``date`` (the one a signal's target is for)."""
    start = pd.Timestamp(date).normalize() + pd.Timedelta(days=1)
    days = calendar.sessions(start, start + pd.Timedelta(days=30))[0]
    return str(days[0].date()) if len(days) else str(start.date())


def stale_warnings(frames: dict[str, Any], today: Any = None, after: int = STALE_AFTER_DAYS) -> list[str]:
    """One message per symbol whose last bar is more than ``after`` sessions old (the exchange's
    sessions for real data, business days for synthetic prices)."""
    out = []
    for symbol, frame in frames.items():
        last = frame.index[-1]
        synthetic = frame.attrs.get("source") == "synthetic"
        age = business_days_since(last, today) if synthetic else sessions_since(last, today)
        if age > after:
            unit = "business days" if synthetic else "sessions"
            out.append(f"{symbol}: stale data: the last bar is {last.date()}, {age} {unit} ago")
    return out
