"""Model bundles: `models/<name>/` holds a trained policy and everything needed to act on new data.

A bundle is copied from a finished run (the member chosen on validation days, or the top-k
ensemble): params.msgpack (flax msgpack, float32) and bundle.json (config, feature names,
normalisation statistics, date ranges, test metrics, versions).

A bundle's name is its folder's name. bundle.json carries `checksum` (SHA-256 of params.msgpack
and of the rest of bundle.json, written at deploy) and `version` (the first 12 hex digits of the
parameters' checksum); `load_bundle` refuses an edited bundle unless forced, and checks the
parameter shapes and the feature names against the recorded configuration in any case.

A forward ledger (ledger.jsonl) is the one record that cannot be rebuilt: deploying over a model
that has one is refused unless `replace=True`, and then the old bundle (bundle.json,
params.msgpack, ledger.jsonl) is kept under `archive/<old version>/` of the new bundle, so every
archived entry stays beside the bundle version that produced it (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import os
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
from evorl_core.data.features import feature_names
from evorl_core.evaluation.evaluate import chosen_member
from evorl_core.evaluation.portfolio import ONE_N, PORTFOLIO
from evorl_core.store.atomic import RunDirError, atomic_write_bytes, atomic_write_json, load_json, read_json
from evorl_core.store.rundir import RunDir
from evorl_core.system.provenance import library_versions

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = ".ledger.lock"
ARCHIVE_DIR = "archive"
LOCK_TIMEOUT_S = 10.0
STALE_LOCK_S = 120.0


class DeployError(ValueError):
    pass


class ModelLock:
    """An exclusive lock file in a model folder: one writer of its ledger (or one redeploy) at a
    time; a lock older than STALE_LOCK_S is broken."""

    error: type[Exception] = DeployError

    def __init__(self, model_dir: Path):
        self.path = Path(model_dir) / LOCK_FILE

    def __enter__(self) -> ModelLock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return self
            except FileExistsError:
                try:
                    if time.time() - self.path.stat().st_mtime > STALE_LOCK_S:
                        self.path.unlink()
                        continue
                except FileNotFoundError:
                    continue
                if time.monotonic() > deadline:
                    raise self.error(f"{self.path}: another paper update or deploy is running; try again") from None
                time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of bundle.json's content without its `checksum` field (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8"))


def ledger_entries(model_dir: Path) -> int:
    """Lines in a model folder's forward ledger, archived ones included (0: none)."""
    model_dir = Path(model_dir)
    files = [model_dir / LEDGER_FILE, *sorted((model_dir / ARCHIVE_DIR).glob(f"*/{LEDGER_FILE}"))]
    count = 0
    for f in files:
        try:
            count += sum(1 for line in f.read_bytes().splitlines() if line.strip())
        except (FileNotFoundError, NotADirectoryError):
            continue
    return count


def check_replace(models_dir: str | Path, name: str, replace: bool) -> None:
    """Refuse to deploy over a model that holds a forward ledger unless `replace` (the ledger is
    then archived, never deleted). Called before training by `train --deploy` too."""
    out = Path(models_dir) / name
    if out.exists() and not out.is_dir():
        raise DeployError(f"{out}: exists and is not a model folder")
    entries = ledger_entries(out) if out.is_dir() else 0
    if entries and not replace:
        raise DeployError(f"{out}: the model has a forward ledger ({entries} entries in {out / LEDGER_FILE} and "
                          f"{out / ARCHIVE_DIR}); deploy under another --model-name, or pass --replace to deploy "
                          f"over it (the old bundle and its ledger are kept in {out / ARCHIVE_DIR}/<version>/)")


def _version_of(model_dir: Path) -> str:
    meta = read_json(model_dir / "bundle.json", {}, kind=dict) or {}
    version = meta.get("version")
    if isinstance(version, str) and re.fullmatch(r"[0-9a-f]{6,64}", version):
        return version
    try:  # a bundle from before versions: its parameters' checksum
        return sha256((model_dir / "params.msgpack").read_bytes())[:12]
    except OSError:
        return f"unknown-{time.time_ns()}"


def _swap_in(tmp: Path, out: Path, replace: bool) -> None:
    """Put the staged bundle `tmp` at `out`. An old bundle without a ledger is removed; one with a
    ledger (refused unless `replace`) moves, with its ledger and earlier archive, under
    tmp/archive/<its version>/ first. Under the model's ledger lock, so no paper update is lost."""
    if not out.exists():
        tmp.rename(out)
        return
    with ModelLock(out):
        check_replace(out.parent, out.name, replace)
        if ledger_entries(out):
            archive = tmp / ARCHIVE_DIR
            archive.mkdir(exist_ok=True)
            for old in sorted((out / ARCHIVE_DIR).iterdir()) if (out / ARCHIVE_DIR).is_dir() else []:
                old.rename(archive / old.name)
            slot = archive / _version_of(out)
            if slot.exists():
                slot = archive / f"{slot.name}-{time.time_ns()}"
            slot.mkdir()
            for entry in out.iterdir():
                if entry.name not in (LOCK_FILE, ARCHIVE_DIR):
                    entry.rename(slot / entry.name)
        trash = out.parent / f".{out.name}.old-{time.time_ns()}"
        out.rename(trash)
        tmp.rename(out)
    shutil.rmtree(trash, ignore_errors=True)


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


def evidence_line(test_metrics: dict[str, Any], data_info: dict[str, Any]) -> str:
    """What the held-out test says about a model, in one line: how many symbols beat buy & hold,
    each symbol's verdict, and whether the prices were synthetic (shown at deploy and with the model)."""
    data = "SYNTHETIC prices" if data_info.get("synthetic") else f"real data ({data_info.get('source', '?')})"
    account = (test_metrics or {}).get(PORTFOLIO)
    if isinstance(account, dict):  # a portfolio run: one account, judged against 1/N
        ours, theirs = account.get("total_return"), ((account.get("baselines") or {}).get(ONE_N) or {}).get("total_return")
        if not isinstance(ours, (int, float)) or not isinstance(theirs, (int, float)):
            return f"no held-out comparison with {ONE_N}; trained on {data}"
        beat = ours > theirs
        return (f"{'' if beat else 'CAUTION: '}{'beat' if beat else 'lost to'} {ONE_N} in the held-out test "
                f"({ours:+.2%} against {theirs:+.2%}), trained on {data}; {account.get('verdict') or 'no verdict'}")
    per_symbol = {s: m for s, m in (test_metrics or {}).items() if isinstance(m, dict)}
    if not per_symbol:
        return f"no held-out test results; trained on {data}"
    beat = sum(1 for m in per_symbol.values() if isinstance(m.get("total_return"), (int, float))
               and isinstance(m.get("bh_total_return"), (int, float)) and m["total_return"] > m["bh_total_return"])
    verdicts = "; ".join(f"{s}: {m.get('verdict') or 'no verdict'}" for s, m in per_symbol.items())
    caution = "CAUTION: lost to buy & hold on every symbol; " if beat == 0 else ""
    return (f"{caution}beat buy & hold on {beat} of {len(per_symbol)} symbol(s) in the held-out test, "
            f"trained on {data}; {verdicts}")


def deploy_run(run: RunDir | str | Path, name: str | None = None, models_dir: str | Path = "models",
               ensemble: int = 1, replace: bool = False) -> Path:
    """Copy a finished run's trained parameters and metadata into models/<name>/: the member chosen
    on validation days, or (ensemble=k) the top k members by validation score, whose action
    probabilities the signal averages. Over a model with a forward ledger only with `replace`
    (its ledger is archived, see the module docstring)."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    name = validate_model_name(name or run.run_id)
    check_replace(models_dir, name, replace)
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
        param_bytes = serialization.to_bytes(jax.device_get(params))
        atomic_write_bytes(tmp / "params.msgpack", param_bytes)
        meta = {
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
            # what it trained in; params.msgpack is float32 whatever this says, and signals run fp32
            "precision": config.precision,
            "normalization": stored["normalization"],
            "date_ranges": stored.get("date_ranges", {}),
            "data_info": stored.get("data_info", {}),
            "data_hash": stored.get("data_hash"),
            # the run's held-out results are those of its chosen member; an ensemble was not backtested
            "test_metrics": run.read_backtest_metrics() or {},
            "evidence": evidence_line(run.read_backtest_metrics() or {}, stored.get("data_info") or {}),
            "test_metrics_of": f"member {member}",
            "versions": library_versions(),
            "version": sha256(param_bytes)[:12],
        }
        atomic_write_json(tmp / "bundle.json", meta)
        written = load_json(tmp / "bundle.json")  # the checksum covers what a reader will read
        written["checksum"] = {"params_sha256": sha256(param_bytes), "meta_sha256": meta_checksum(written)}
        atomic_write_json(tmp / "bundle.json", written)
        _swap_in(tmp, out, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _model_notes(path: Path, meta: dict[str, Any], recorded: Any) -> list[str]:
    notes = [f"evidence: {meta['evidence']}"] if isinstance(meta.get("evidence"), str) else []
    if entries := ledger_entries(path):
        notes.append(f"ledger: {entries} entries")
    if isinstance(recorded, str) and recorded != path.name:
        notes.append(f"(bundle.json names it {recorded!r}; the folder's name is the one that counts)")
    return notes


def list_models(models_dir: str | Path = "models") -> list[dict[str, Any]]:
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    out = []
    for p in sorted(models_dir.iterdir()):
        meta = read_json(p / "bundle.json", kind=dict) if p.is_dir() and not p.name.startswith(".") else None
        if meta is None:
            continue
        recorded = meta.get("name")
        out.append({  # a model's name is its folder's: that is what --model and the pages look up
            "name": p.name, "path": str(p), "symbols": meta.get("symbols", []),
            "recorded_name": recorded if isinstance(recorded, str) and recorded != p.name else None,
            "version": meta.get("version"), "ledger_entries": ledger_entries(p),
            "notes": _model_notes(p, meta, recorded), "evidence": meta.get("evidence"),
            "created_at": meta.get("created_at"), "source_run": meta.get("source_run"),
            "positions": meta.get("positions"), "execution": meta.get("config", {}).get("execution"),
            "date_ranges": meta.get("date_ranges", {}), "test_metrics": meta.get("test_metrics", {}),
            "synthetic": bool(meta.get("data_info", {}).get("synthetic")),
        })
    out.sort(key=lambda m: m["created_at"] or 0, reverse=True)
    return out


def _shape_mismatch(template: Any, raw: Any, prefix: str = "") -> str | None:
    """The first parameter whose stored shape differs from what the configuration builds."""
    if isinstance(template, dict):
        if not isinstance(raw, dict) or set(template) != set(raw):
            have = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            return f"{prefix or 'params'}: layers {sorted(template)} expected, the file holds {have}"
        for key in template:
            found = _shape_mismatch(template[key], raw[key], f"{prefix}/{key}" if prefix else str(key))
            if found:
                return found
        return None
    want, have = tuple(np.shape(template)), tuple(np.shape(raw))
    return None if want == have else f"{prefix}: shape {have} in the file, {want} from the configuration"


def _config_summary(config: TrainConfig) -> str:
    return (f"window {config.window}, hidden {','.join(map(str, config.hidden))}, "
            f"positions {','.join(f'{p:g}' for p in config.positions)}")


def verify_bundle(path: Path, meta: dict[str, Any], param_bytes: bytes, force: bool = False,
                  expect_features: str | None = None) -> list[str]:
    """Checksums (refused unless `force`; then a warning) and the recorded duplicates of the
    configuration. Returns warnings; raises DeployError naming the file."""
    meta_file = path / "bundle.json"
    warnings: list[str] = []
    checksum = meta.get("checksum")
    if not isinstance(checksum, dict):
        warnings.append(f"{meta_file}: no checksum (deployed by an older evorl); edits cannot be detected")
    else:
        edited = []
        if checksum.get("params_sha256") != sha256(param_bytes):
            edited.append(f"{path / 'params.msgpack'} does not match the checksum in {meta_file}")
        if checksum.get("meta_sha256") != meta_checksum(meta):
            edited.append(f"{meta_file} was edited after deploy (its checksum does not match)")
        if edited and not force:
            raise DeployError("; ".join(edited) + "; redeploy the run, or pass --force to use it anyway")
        warnings += [f"{e} (used anyway: --force)" for e in edited]
    config = meta["config"]
    for key in ("window", "positions"):
        if key in meta and key in config and meta[key] != config[key]:
            raise DeployError(f"{meta_file}: {key} is {meta[key]!r} but the recorded configuration says "
                              f"{config[key]!r}; the file was edited")
    check_feature_set(meta_file, meta, expect_features)
    return warnings


def check_feature_set(meta_file: Path, meta: dict[str, Any], expect_features: str | None = None) -> None:
    """The bundle's recorded feature set is what inference rebuilds: its names, its normalisation
    shape, and (when a caller asks for one) the set the caller expects; refused otherwise, naming both."""
    spec = meta["config"].get("features", "default")  # recorded before feature sets: the default six
    try:
        names = list(feature_names(spec))
    except ValueError as exc:
        raise DeployError(f"{meta_file}: the recorded feature set {spec!r} is unknown to this evorl ({exc})") from None
    if expect_features is not None:
        try:
            wanted = list(feature_names(expect_features))
        except ValueError as exc:
            raise DeployError(str(exc)) from None
        if wanted != names:
            raise DeployError(f"{meta_file}: the model was trained on feature set {spec!r} ({len(names)} features), "
                              f"not {expect_features!r} ({len(wanted)} features); use a model trained on "
                              f"{expect_features!r} or ask for {spec!r}")
    recorded = meta.get("feature_names")
    if isinstance(recorded, list) and list(recorded) != names:
        missing = [f for f in recorded if f not in names]
        raise DeployError(f"{meta_file}: the bundle's features {recorded} are not the ones inference builds "
                          f"for its feature set {spec!r} {names}"
                          + (f" (unknown: {', '.join(map(str, missing))})" if missing else "")
                          + "; redeploy the run with this version of evorl")
    for symbol, stats in (meta.get("normalization") or {}).items():
        shapes = {len(stats.get("mean") or []), len(stats.get("std") or [])} if isinstance(stats, dict) else {-1}
        if shapes != {len(names)}:
            raise DeployError(f"{meta_file}: the normalisation of {symbol} does not have {len(names)} values, one "
                              f"per feature of the recorded set {spec!r}; the file was edited or is damaged")


def load_bundle(name_or_dir: str | Path, models_dir: str | Path = "models", force: bool = False,
                expect_features: str | None = None) -> Bundle:
    """The bundle at a folder or models/<name>; checked (see `verify_bundle`) before the parameters
    are restored, so a tampered or mismatched bundle is one line naming the file, never a traceback.
    Warnings (an unchecked older bundle, a forced one) are in `bundle.meta['load_warnings']`."""
    candidate = Path(name_or_dir)
    path = candidate if (candidate / "bundle.json").exists() else Path(models_dir) / str(name_or_dir)
    try:
        meta = load_json(path / "bundle.json")
    except RunDirError as exc:
        raise DeployError(str(exc)) from None
    if meta is None:
        raise DeployError(f"no model bundle at {path} (expected {path / 'bundle.json'})")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise DeployError(f"{path / 'bundle.json'}: damaged (no recorded configuration)")
    try:
        param_bytes = (path / "params.msgpack").read_bytes()
    except OSError as exc:
        raise DeployError(f"{path / 'params.msgpack'}: cannot read ({exc.strerror or exc})") from None
    load_warnings = verify_bundle(path, meta, param_bytes, force, expect_features)
    try:
        config = TrainConfig.from_dict(meta["config"])
        template = params_template(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise DeployError(f"{path / 'bundle.json'}: damaged ({type(exc).__name__}: {exc})") from None
    size = len(meta.get("ensemble") or [])
    if size > 1:
        template = jax.tree_util.tree_map(lambda x: np.stack([x] * size), template)
    try:
        raw = serialization.msgpack_restore(param_bytes)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types for a bad file
        raise DeployError(f"{path / 'params.msgpack'}: cannot read parameters ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    mismatch = _shape_mismatch(serialization.to_state_dict(template), raw)
    if mismatch:
        raise DeployError(f"{path / 'params.msgpack'}: the parameters do not fit the configuration in "
                          f"{path / 'bundle.json'} ({_config_summary(config)}{f', ensemble of {size}' if size > 1 else ''}): "
                          f"{mismatch}")
    try:
        params = serialization.from_state_dict(template, raw)
    except Exception as exc:  # noqa: BLE001 - flax raises many types for a bad file
        raise DeployError(f"{path / 'params.msgpack'}: cannot read parameters ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    if not params_finite(params):
        raise DeployError(f"{path / 'params.msgpack'}: the parameters are not finite numbers (a diverged "
                          "model); redeploy a run that trained normally")
    recorded = meta.get("name")
    if isinstance(recorded, str) and recorded != path.name:
        load_warnings.append(f"{path}: bundle.json names the model {recorded!r}; its name is the folder's, "
                             f"{path.name!r}")
    meta["load_warnings"] = load_warnings
    return Bundle(path.name, path, meta, config, params)
