"""Model bundles: `models/<name>/` holds a trained policy and everything needed to act on new data.

A bundle is copied from a finished run (the member chosen on validation days, or the top-k
ensemble): params.msgpack (flax msgpack, float32) and bundle.json (config, feature names,
normalisation statistics, date ranges, test metrics, versions).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from evorl_core.agents.checkpoints import load_params, params_template
from evorl_core.config import TrainConfig
from evorl_core.evaluation.evaluate import chosen_member
from evorl_core.store.atomic import RunDirError, atomic_write_bytes, atomic_write_json, load_json, read_json
from evorl_core.store.rundir import RunDir
from evorl_core.system.provenance import library_versions

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
    selection = read_json(run.selection_path, {})
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
        everyone = load_params(run, config)
        params = jax.tree_util.tree_map(lambda x: x[np.asarray(members)], everyone)
        policy = f"average of the action probabilities of members {members} (top {ensemble} on validation days)"
    else:
        members = [member]
        params = load_params(run, config, member=member)
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
        template = params_template(config)
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
