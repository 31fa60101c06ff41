"""The run directory: the one contract between the trainer and every reader.

runs/<run_id>/
  config.json            full config + data provenance + versions + seed
  status.json            state, env_steps, total_steps, timestamps, error (atomic)
  metrics.jsonl          one JSON object per update
  checkpoint/            latest full training state (flax msgpack)
  backtest/equity.csv    date,symbol,open,close,position,equity,benchmark_equity
  backtest/metrics.json  {symbol: {metric: value}}

Every write goes to a temporary name in the same directory and is renamed into place, so a
reader never sees half a file. Readers tolerate a missing or torn last metrics line.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

# The states of a run (docs/architecture.md). Active: a process owns the run and works on it.
# Final: nothing works on it; `stopped`, `interrupted` and `failed` runs resume from a checkpoint.
ACTIVE_STATES = ("queued", "compiling", "running", "stopping")
FINAL_STATES = ("stopped", "done", "failed", "interrupted")
RESUMABLE_STATES = ("stopped", "interrupted", "failed")
STATES = ACTIVE_STATES + FINAL_STATES
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
EQUITY_COLUMNS = ["date", "symbol", "open", "close", "position", "equity", "benchmark_equity"]


class RunDirError(ValueError):
    pass


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise RunDirError(
            f"run id {run_id!r} is invalid: use letters, digits, '_', '-', '.', no path separators"
        )
    return run_id


def new_run_id(prefix: str = "run") -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{os.urandom(2).hex()}"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clean_json(obj: Any) -> Any:
    """Replace NaN/inf (invalid JSON) by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return clean_json(obj.item())
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(clean_json(obj), indent=2, default=_json_default) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


@dataclass
class RunDir:
    """Paths and I/O of one run directory. Cheap to construct; touches nothing until asked."""

    path: Path

    @classmethod
    def create(cls, runs_dir: Path | str, run_id: str) -> RunDir:
        validate_run_id(run_id)
        path = Path(runs_dir) / run_id
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, runs_dir: Path | str, run_id: str) -> RunDir:
        validate_run_id(run_id)
        return cls(Path(runs_dir) / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_dir = property(lambda self: self.path / "checkpoint")
    backtest_dir = property(lambda self: self.path / "backtest")
    equity_path = property(lambda self: self.path / "backtest" / "equity.csv")
    backtest_metrics_path = property(lambda self: self.path / "backtest" / "metrics.json")
    stop_path = property(lambda self: self.path / "STOP")

    # writers -----------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def write_status(self, state: str, **fields: Any) -> dict[str, Any]:
        if state not in STATES:
            raise RunDirError(f"unknown run state {state!r}")
        status = self.read_status() or {"created_at": time.time()}
        status.update(fields)
        status["state"] = state
        status["run_id"] = self.run_id
        status["updated_at"] = time.time()
        atomic_write_json(self.status_path, status)
        return status

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Append whole lines; one write call per batch so readers see complete lines."""
        if not rows:
            return
        text = "".join(json.dumps(clean_json(r), default=_json_default) + "\n" for r in rows)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()

    def truncate_metrics(self, max_env_steps: int) -> None:
        """On resume: drop metric lines past the checkpoint so the file has no duplicates."""
        rows = [r for r in self.read_metrics() if r.get("env_steps", 0) <= max_env_steps]
        atomic_write_text(
            self.metrics_path,
            "".join(json.dumps(clean_json(r), default=_json_default) + "\n" for r in rows),
        )

    # population files (PBT) -----------------------------------------------------
    def population_path(self, name: str) -> Path:
        return self.path / "population" / f"{name}.jsonl"

    def append_population(self, name: str, rows: list[dict[str, Any]]) -> None:
        """population/<name>.jsonl: hyperparams (per member per round) or lineage (exploit events)."""
        if not rows:
            return
        path = self.population_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(clean_json(r), default=_json_default) + "\n" for r in rows))

    def read_population(self, name: str) -> list[dict[str, Any]]:
        return _read_jsonl(self.population_path(name))

    def truncate_population(self, max_update: int) -> None:
        """On resume: drop population rows written after the checkpoint."""
        for name in ("hyperparams", "lineage"):
            path = self.population_path(name)
            if path.exists():
                rows = [r for r in self.read_population(name) if r.get("update", 0) <= max_update]
                atomic_write_text(path, "".join(json.dumps(clean_json(r), default=_json_default) + "\n"
                                                for r in rows))

    def request_stop(self) -> None:
        atomic_write_text(self.stop_path, str(time.time()))

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def clear_stop(self) -> None:
        """Remove a STOP request (a stale one would end the next session of the run at once)."""
        try:
            self.stop_path.unlink()
        except FileNotFoundError:
            pass

    # readers -----------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        return read_json(self.config_path)

    def read_status(self) -> dict[str, Any] | None:
        return read_json(self.status_path)

    def read_metrics(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.metrics_path)

    def read_backtest_metrics(self) -> dict[str, dict[str, Any]] | None:
        return read_json(self.backtest_metrics_path)

    def read_equity(self) -> pd.DataFrame | None:
        if not self.equity_path.exists():
            return None
        return pd.read_csv(self.equity_path, parse_dates=["date"])

    # several agents (--seeds / --population): how the reported one was chosen, every member's test
    def read_selection(self) -> dict[str, Any] | None:
        """backtest/selection.json: members, chosen_member, criterion, seeds, validation scores."""
        return read_json(self.backtest_dir / "selection.json")

    def read_member_equity(self) -> pd.DataFrame | None:
        """backtest/members.csv (date,symbol,member,position,equity), None for a single agent."""
        path = self.backtest_dir / "members.csv"
        if not path.exists():
            return None
        return pd.read_csv(path, parse_dates=["date"])

    def read_member_metrics(self) -> dict[str, dict[str, dict[str, Any]]] | None:
        """backtest/members.json: {member: {symbol: {metric: value}}}, None for a single agent."""
        return read_json(self.backtest_dir / "members.json")

    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / "state.msgpack").exists()

    def is_trained(self) -> bool:
        """config.json and a checkpoint are present: the run can be backtested, deployed, resumed."""
        return self.config_path.exists() and self.has_checkpoint()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Whole JSON-object lines of a file; a torn last line (a writer appending) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def list_runs(runs_dir: Path | str) -> list[dict[str, Any]]:
    """Every run under runs_dir with its status and headline backtest metrics, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    out = []
    for p in runs_dir.iterdir():
        if not p.is_dir() or not RUN_ID_RE.match(p.name):
            continue
        rd = RunDir(p)
        status = rd.read_status()
        if status is None:
            continue
        config = rd.read_config() or {}
        out.append({
            "run_id": p.name,
            "path": str(p),
            "state": status.get("state"),
            "env_steps": status.get("env_steps", 0),
            "total_steps": status.get("total_steps"),
            "created_at": status.get("created_at", 0.0),
            "updated_at": status.get("updated_at", 0.0),
            "error": status.get("error"),
            "symbols": config.get("symbols", []),
            "preset": config.get("preset"),
            "data_source": (config.get("data_info") or {}).get("source", config.get("data")),
            "backtest": rd.read_backtest_metrics(),
        })
    out.sort(key=lambda r: r["created_at"] or 0.0, reverse=True)
    return out


# run annotations and management ----------------------------------------------------------------
# A run's name, tags, note and archived flag live in runs/<run_id>/annotations.json, written by
# the user (dashboard) and never by training, so they survive a resume. Deleting a run removes its
# folder, only when no process works on it (a final state).
ANNOTATIONS_FILE = "annotations.json"
ANNOTATION_FIELDS = ("name", "tags", "note", "archived")
MAX_NAME_CHARS = 80
MAX_NOTE_CHARS = 2000
MAX_TAGS = 20


def parse_tags(text: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """'baseline, long-only;  sweep ' -> ['baseline', 'long-only', 'sweep'] (unique, order kept)."""
    if text is None:
        return []
    items = text if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    out: list[str] = []
    for item in items:
        tag = " ".join(str(item).split())
        if tag and tag not in out:
            out.append(tag)
    return out


def read_annotations(run: RunDir) -> dict[str, Any]:
    """{'name': str, 'tags': [str], 'note': str, 'archived': bool} (empty values when never set)."""
    raw = read_json(run.path / ANNOTATIONS_FILE, {}) or {}
    if not isinstance(raw, dict):
        raw = {}
    return {
        "name": str(raw.get("name") or ""),
        "tags": parse_tags(raw.get("tags") if isinstance(raw.get("tags"), list) else None),
        "note": str(raw.get("note") or ""),
        "archived": bool(raw.get("archived", False)),
    }


def write_annotations(run: RunDir, **changes: Any) -> dict[str, Any]:
    """Change some of name / tags / note / archived and write the file atomically; returns all four.

    Raises RunDirError for an unknown field, a run directory that does not exist, or a value
    too long to be a label.
    """
    unknown = sorted(set(changes) - set(ANNOTATION_FIELDS))
    if unknown:
        raise RunDirError(f"unknown annotation field(s): {', '.join(unknown)}")
    if not run.path.is_dir():
        raise RunDirError(f"run {run.run_id!r} not found in {run.path.parent}")
    values = read_annotations(run)
    if "name" in changes:
        name = " ".join(str(changes["name"] or "").split())
        if len(name) > MAX_NAME_CHARS:
            raise RunDirError(f"name: at most {MAX_NAME_CHARS} characters (got {len(name)})")
        values["name"] = name
    if "tags" in changes:
        tags = parse_tags(changes["tags"])
        if len(tags) > MAX_TAGS or any(len(t) > MAX_NAME_CHARS for t in tags):
            raise RunDirError(f"tags: at most {MAX_TAGS} tags of at most {MAX_NAME_CHARS} characters each")
        values["tags"] = tags
    if "note" in changes:
        note = str(changes["note"] or "").strip()
        if len(note) > MAX_NOTE_CHARS:
            raise RunDirError(f"note: at most {MAX_NOTE_CHARS} characters (got {len(note)})")
        values["note"] = note
    if "archived" in changes:
        values["archived"] = bool(changes["archived"])
    atomic_write_json(run.path / ANNOTATIONS_FILE, {**values, "updated_at": time.time()})
    return values


def delete_run(run: RunDir) -> None:
    """Remove a run's folder. Refused (RunDirError) while its state is active: a process may be
    writing to it; stop it first. A folder without status.json is not a run and is left alone."""
    status = run.read_status()
    if status is None:
        raise RunDirError(f"{run.path}: no status.json; not a run directory, nothing deleted")
    if status.get("state") in ACTIVE_STATES:
        raise RunDirError(f"run {run.run_id!r} is {status.get('state')}; stop it before deleting it")
    # Rename first so that readers never list a half-deleted run, then remove.
    doomed = run.path.with_name(f".deleting-{run.run_id}-{os.urandom(3).hex()}")
    os.replace(run.path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


# Config fields that fix the work of one update (for runtime estimates from earlier runs).
RUN_SIZE_KEYS = ("num_envs", "num_steps", "minibatch_size", "epochs", "hidden", "window", "positions")


def run_overview(run: dict[str, Any]) -> dict[str, Any]:
    """A list_runs entry with its annotations and what a picker needs to tell runs apart: whether
    its data was synthetic (None while unknown, before the data is loaded), the config's size."""
    rd = RunDir(Path(run["path"]))
    config = rd.read_config() or {}
    status = rd.read_status() or {}
    data_info = config.get("data_info")
    synthetic = None if not data_info else bool(data_info.get("synthetic"))
    if synthetic is None and config.get("data") == "synthetic":
        synthetic = True
    return {
        **run,
        **read_annotations(rd),
        "synthetic": synthetic,
        "data_requested": config.get("data"),
        "data_hash": config.get("data_hash"),
        "total_timesteps": config.get("total_timesteps"),
        "hidden": config.get("hidden"),
        "test_days": config.get("test_days"),
        "backend": status.get("backend"),
        "steps_per_sec": status.get("steps_per_sec"),
        "compile_seconds": status.get("compile_seconds"),
        "sizes": {k: config.get(k) for k in RUN_SIZE_KEYS if k in config},
    }


def list_runs_annotated(runs_dir: Path | str, include_archived: bool = True) -> list[dict[str, Any]]:
    """list_runs entries passed through run_overview, newest first; archived runs only on request."""
    runs = [run_overview(r) for r in list_runs(runs_dir)]
    return runs if include_archived else [r for r in runs if not r["archived"]]
