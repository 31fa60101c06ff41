"""Deployed model bundles and next-session signals.

models/<name>/
  params.msgpack   network parameters (flax msgpack; never pickle)
  bundle.json      config, symbols, feature names, per-symbol normalisation, train/test date
                   ranges, test metrics, source run, library versions

A bundle is self-contained: `evorl signal` and the dashboard load it without the run directory.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import serialization

from . import env as trading_env
from .checkpoints import load_params, params_template
from .config import TrainConfig
from .data import features_for_inference, load_frames
from .evaluation import chosen_member
from .market_data import MarketData
from .ppo import PPO
from .provenance import library_versions
from .rundir import RunDir, RunDirError, atomic_write_bytes, atomic_write_json, load_json, read_json

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DeployError(ValueError):
    pass


def validate_model_name(name: str) -> str:
    if not MODEL_NAME_RE.match(name or "") or ".." in name:
        raise DeployError(f"model name {name!r} is invalid: use letters, digits, '_', '-', '.'")
    return name


def params_finite(params: Any) -> bool:
    """Whether every network parameter is a finite number (a diverged run's are not)."""
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree_util.tree_leaves(params))


@dataclass
class Bundle:
    name: str
    path: Path
    meta: dict[str, Any]
    config: TrainConfig
    params: Any

    @property
    def symbols(self) -> list[str]:
        return list(self.meta["symbols"])

    @property
    def ensemble(self) -> bool:
        """Several agents whose action probabilities are averaged (a top-k ensemble)."""
        return len(self.meta.get("ensemble") or []) > 1


def ensemble_members(run: RunDir, k: int) -> list[int]:
    """The k members with the best validation scores (mean over symbols), best first."""
    selection = read_json(run.backtest_dir / "selection.json", {})
    scores = selection.get("validation_log_return")
    members = int(selection.get("members", 1))
    if k > members:
        raise DeployError(f"ensemble: the run has {members} member(s); cannot take the top {k}")
    if not scores:
        raise DeployError("ensemble: the run has no validation scores to rank its members (trained with --val-days 0?)")
    mean = {int(m): float(np.mean(list(by_symbol.values()))) for m, by_symbol in scores.items()}
    return sorted(mean, key=lambda m: (-mean[m], m))[:k]


def deploy_run(run: RunDir | str | Path, name: str | None = None, models_dir: str | Path = "models",
               ensemble: int = 1) -> Path:
    """Copy a finished run's trained parameters and metadata into models/<name>/: the member chosen
    on validation days, or (ensemble=k) the top k members by validation score, whose action
    probabilities the signal averages."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    name = validate_model_name(name or run.run_id)
    if not run.is_trained():
        raise DeployError(f"{run.path}: not a trained run (needs config.json and checkpoint/state.msgpack)")
    stored = run.load_config()
    config = TrainConfig.from_dict(stored)
    if not isinstance(stored.get("feature_names"), list) or not isinstance(stored.get("normalization"), dict):
        raise DeployError(f"{run.config_path}: no feature names or normalisation recorded; the run never "
                          "got past loading its data")

    member = chosen_member(run)
    if ensemble > 1:
        members = ensemble_members(run, ensemble)
        everyone = load_params(run, config, len(stored["feature_names"]))
        params = jax.tree_util.tree_map(lambda x: x[np.asarray(members)], everyone)
        policy = f"average of the action probabilities of members {members} (top {ensemble} on validation days)"
    else:
        members = [member]
        params = load_params(run, config, len(stored["feature_names"]), member=member)
        policy = f"member {member} (chosen on validation days)" if config.members > 1 else "the trained agent"
    if not params_finite(params):
        raise DeployError(f"{run.path}: the model's parameters are not finite numbers (training diverged); "
                          "refusing to deploy it")

    out = Path(models_dir) / name
    tmp = Path(models_dir) / f".{name}.tmp-{time.time_ns()}"
    tmp.mkdir(parents=True)
    try:
        atomic_write_bytes(tmp / "params.msgpack", serialization.to_bytes(jax.device_get(params)))
        atomic_write_json(tmp / "bundle.json", {
            "name": name,
            "created_at": time.time(),
            "source_run": run.run_id,
            "source_run_path": str(run.path),
            "member": members[0],
            "member_seed": config.seed + members[0],
            "ensemble": members,
            "policy": policy,
            "symbols": list(config.symbols),
            "config": config.to_dict(),
            "feature_names": stored["feature_names"],
            "window": config.window,
            "positions": list(config.positions),
            "normalization": stored["normalization"],
            "date_ranges": stored.get("date_ranges", {}),
            "data_info": stored.get("data_info", {}),
            "data_hash": stored.get("data_hash"),
            # the run's held-out results are those of its chosen member; an ensemble was not backtested
            "test_metrics": run.read_backtest_metrics() or {},
            "test_metrics_of": f"member {member}",
            "versions": library_versions(),
        })
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def list_models(models_dir: str | Path = "models") -> list[dict[str, Any]]:
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    out = []
    for p in sorted(models_dir.iterdir()):
        meta = read_json(p / "bundle.json", kind=dict) if p.is_dir() and not p.name.startswith(".") else None
        if meta is None:
            continue
        out.append({
            "name": meta.get("name", p.name), "path": str(p), "symbols": meta.get("symbols", []),
            "created_at": meta.get("created_at"), "source_run": meta.get("source_run"),
            "positions": meta.get("positions"), "execution": meta.get("config", {}).get("execution"),
            "date_ranges": meta.get("date_ranges", {}), "test_metrics": meta.get("test_metrics", {}),
            "synthetic": bool(meta.get("data_info", {}).get("synthetic")),
        })
    out.sort(key=lambda m: m["created_at"] or 0, reverse=True)
    return out


def load_bundle(name_or_dir: str | Path, models_dir: str | Path = "models") -> Bundle:
    candidate = Path(name_or_dir)
    path = candidate if (candidate / "bundle.json").exists() else Path(models_dir) / str(name_or_dir)
    try:
        meta = load_json(path / "bundle.json")
    except RunDirError as exc:
        raise DeployError(str(exc)) from None
    if meta is None:
        raise DeployError(f"no model bundle at {path} (expected {path / 'bundle.json'})")
    try:
        config = TrainConfig.from_dict(meta["config"])
        template = params_template(config, len(meta["feature_names"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DeployError(f"{path / 'bundle.json'}: damaged ({type(exc).__name__}: {exc})") from None
    size = len(meta.get("ensemble") or [])
    if size > 1:
        template = jax.tree_util.tree_map(lambda x: np.stack([x] * size), template)
    try:
        params = serialization.from_bytes(template, (path / "params.msgpack").read_bytes())
    except Exception as exc:  # noqa: BLE001 - msgpack and flax raise many types for a bad file
        raise DeployError(f"{path / 'params.msgpack'}: cannot read parameters ({' '.join(str(exc).split())})") from None
    if not params_finite(params):
        raise DeployError(f"{path / 'params.msgpack'}: the parameters are not finite numbers (a diverged "
                          "model); redeploy a run that trained normally")
    return Bundle(meta.get("name", path.name), path, meta, config, params)


def symbol_data(frame: Any, norm: dict[str, Any], window: int, start: int) -> MarketData:
    """Device arrays of one symbol for inference (features normalised with the model's training
    statistics); `start` marks the first day replayed. No training happens on them."""
    feats = features_for_inference(frame, np.asarray(norm["mean"]), np.asarray(norm["std"]), window)
    first = jnp.array([start], jnp.int32)
    return MarketData(
        open=jnp.asarray(frame["open"].to_numpy()[None], jnp.float32),
        close=jnp.asarray(frame["close"].to_numpy()[None], jnp.float32),
        features=jnp.asarray(feats[None], jnp.float32),
        length=jnp.array([len(frame)], jnp.int32),
        first_index=jnp.array([window], jnp.int32),
        train_end=first, val_start=first, test_start=first,
    )


def signals(bundle: Bundle, frames: dict[str, Any], replay_days: int | None = None) -> list[dict[str, Any]]:
    """Target position for the next session per symbol, from each frame's latest bar.

    The policy sees the position it holds, so the held position comes from replaying the greedy
    policy from flat over the last `replay_days` bars (default: the bundle's test length), exactly
    like the backtest: it is what a user who followed the model would hold.
    """
    config = bundle.config
    ppo = PPO(config, len(bundle.meta["feature_names"]))
    norm = bundle.meta["normalization"]
    replay_days = replay_days or config.test_days
    out = []
    for symbol, frame in frames.items():
        if symbol not in norm:
            raise DeployError(f"model {bundle.name!r} was not trained on {symbol}; it knows {', '.join(norm)}")
        length = len(frame)
        if length < config.window + 1:
            raise DeployError(f"{symbol}: needs at least {config.window + 1} bars for a signal, has {length}")
        days = min(replay_days, length - config.window)
        start = length - days
        data = symbol_data(frame, norm[symbol], config.window, start)
        path = np.asarray(ppo.greedy_positions(bundle.params, data, data.test_start, days, bundle.ensemble)[0],
                          np.float64)
        held = float(path[-2]) if days >= 2 else 0.0
        obs = trading_env.observe(data, 0, length - 1, jnp.float32(held), ppo.env_params)
        probs = np.asarray(ppo.action_probabilities(bundle.params, obs[None], bundle.ensemble)[0], np.float64)
        if not np.isfinite(probs).all():
            raise DeployError(f"model {bundle.name!r} gives non-finite action probabilities for {symbol} on "
                              f"{frame.index[-1].date()}; no signal")
        out.append({
            "symbol": symbol,
            "date": str(frame.index[-1].date()),
            "close": float(frame["close"].iloc[-1]),
            "held_position": held,
            "position": float(path[-1]),
            "probabilities": {str(p): float(q) for p, q in zip(config.positions, probs, strict=True)},
            "execution": config.execution,
            "replayed_days": days,
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


def stale_warnings(frames: dict[str, Any], today: Any = None, after: int = STALE_AFTER_DAYS) -> list[str]:
    """One message per symbol whose last bar is more than ``after`` business days old."""
    out = []
    for symbol, frame in frames.items():
        last = frame.index[-1]
        age = business_days_since(last, today)
        if age > after:
            out.append(f"{symbol}: stale data: the last bar is {last.date()}, {age} business days ago")
    return out
