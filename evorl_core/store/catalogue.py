"""The run catalogue: every run of a runs directory, its summary and the user's annotations.

Listing (`list_runs`, `list_runs_annotated`), one-row summaries for tables, annotations written by
the user (name, tags, note, archived; never by training) and deleting a finished run. Readers only
read; a run that cannot be read shows as ``damaged`` rather than hiding the others.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from evorl_core.store.atomic import RunDirError, atomic_write_json, load_json, read_json, storage_error
from evorl_core.store.rundir import ACTIVE_STATES, RUN_ID_RE, RunDir, as_number


def check_runs_dir(runs_dir: Path | str) -> Path:
    """Create the runs directory if needed and check that runs can be written there."""
    path = Path(runs_dir)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"runs directory {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"runs directory {path}: a parent is not a directory") from None
    except OSError as exc:
        raise storage_error(path, exc) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"runs directory {path}: not writable by this user")
    return path


def list_runs(runs_dir: Path | str) -> list[dict[str, Any]]:
    """Every run under runs_dir with its state in effect and headline backtest metrics, newest
    first. A damaged run is one row in state ``damaged`` whose error names the file; it never
    hides the others."""
    runs_dir = Path(runs_dir)
    try:
        entries = list(runs_dir.iterdir()) if runs_dir.is_dir() else []
    except OSError:
        return []
    out = []
    for p in entries:
        try:
            if not p.is_dir() or not RUN_ID_RE.match(p.name):
                continue
            out.append(run_summary(RunDir(p)))
        except OSError:
            continue
        except Exception as exc:  # noqa: BLE001 - whatever one run's files hold, it is one row
            out.append(_damaged_row(RunDir(p), f"{p}: cannot be read ({type(exc).__name__}: "
                                               f"{' '.join(str(exc).split())[:200]})"))
    out = [r for r in out if r is not None]
    out.sort(key=lambda r: as_number(r["created_at"], 0.0), reverse=True)
    return out


def _damaged_row(run_dir: RunDir, error: str, recorded_state: str | None = None) -> dict[str, Any]:
    status = run_dir.damaged_status(error)
    return {"run_id": run_dir.run_id, "path": str(run_dir.path), "state": status["state"],
            "recorded_state": recorded_state, "env_steps": 0, "total_steps": None,
            "created_at": as_number(status.get("created_at"), 0.0), "updated_at": as_number(status.get("updated_at"), 0.0),
            "error": error, "symbols": [], "preset": None, "data_source": None, "synthetic": False, "backtest": None,
            "has_checkpoint": False}


def run_summary(run_dir: RunDir) -> dict[str, Any] | None:
    """One row of list_runs (None when the directory holds no run)."""
    status = run_dir.read_status()
    if status is None:
        return None
    try:
        config = load_json(run_dir.config_path) or {}
    except RunDirError as exc:  # one damaged row naming the file; the other runs are listed
        return _damaged_row(run_dir, str(exc), recorded_state=status.get("state"))
    data_info = config.get("data_info") if isinstance(config.get("data_info"), dict) else {}
    symbols = config.get("symbols")
    return {
        "run_id": run_dir.run_id,
        "path": str(run_dir.path),
        "state": status.get("state"),
        "recorded_state": status.get("recorded_state"),
        "env_steps": as_number(status.get("env_steps"), 0),
        "total_steps": as_number(status.get("total_steps"), None),
        "created_at": as_number(status.get("created_at"), 0.0),
        "updated_at": as_number(status.get("updated_at"), 0.0),
        "error": status.get("error"),
        "symbols": [str(s) for s in symbols] if isinstance(symbols, list) else [],
        "preset": config.get("preset"),
        "data_source": data_info.get("source", config.get("data")),
        "synthetic": bool(data_info.get("synthetic")),
        "backtest": run_dir.read_backtest_metrics(),
        "has_checkpoint": run_dir.has_checkpoint(),
    }


# run annotations and management ----------------------------------------------------------------
# A run's name, tags, note and archived flag live in runs/<run_id>/annotations.json, written by
# the user (dashboard) and never by training, so they survive a resume. Deleting a run removes its
# folder, only when no process works on it (a final state).
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
    raw = read_json(run.annotations_path, {}) or {}
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
    atomic_write_json(run.annotations_path, {**values, "updated_at": time.time()})
    return values


def delete_run(run: RunDir) -> str:
    """Remove a run's folder; returns what was removed. Refused (RunDirError) while its state is
    active: a process may be writing to it; stop it first. A folder without status.json is not a
    run and is left alone. A run that is a symbolic link loses the link only: its target (which may
    lie outside the runs folder) is never followed. Whatever cannot be removed is an error naming it."""
    status = run.read_status()
    if status is None:
        raise RunDirError(f"{run.path}: no status.json; not a run directory, nothing deleted")
    if status.get("state") in ACTIVE_STATES:
        raise RunDirError(f"run {run.run_id!r} is {status.get('state')}; stop it before deleting it")
    if run.path.is_symlink():
        target = os.path.realpath(run.path)
        run.path.unlink()
        return f"removed the link {run.path}; its target {target} was kept"
    # Rename first so that readers never list a half-deleted run, then remove.
    doomed = run.path.with_name(f".deleting-{run.run_id}-{os.urandom(3).hex()}")
    os.replace(run.path, doomed)
    left: list[str] = []
    shutil.rmtree(doomed, onerror=lambda _f, path, _e: left.append(str(path)))  # Python 3.11: no onexc
    if left or doomed.exists():
        raise RunDirError(f"{run.path}: could not delete {left[0] if left else doomed} ({len(left)} left); "
                          f"what remains is in {doomed}")
    return f"deleted {run.path}"


# Config fields that fix the work of one update (for runtime estimates from earlier runs).
RUN_SIZE_KEYS = ("num_envs", "num_steps", "minibatch_size", "epochs", "hidden", "window", "positions")


def run_overview(run: dict[str, Any]) -> dict[str, Any]:
    """A list_runs entry with its annotations and what a picker needs to tell runs apart: whether
    its data was synthetic (None while unknown, before the data is loaded), the config's size."""
    run_dir = RunDir(Path(run["path"]))
    config = run_dir.read_config() or {}
    status = run_dir.read_status() or {}
    data_info = config.get("data_info")
    synthetic = None if not data_info else bool(data_info.get("synthetic"))
    if synthetic is None and config.get("data") == "synthetic":
        synthetic = True
    return {
        **run,
        **read_annotations(run_dir),
        "synthetic": synthetic,
        "data_requested": config.get("data"),
        "data_hash": config.get("data_hash"),
        "total_timesteps": config.get("total_timesteps"),
        "seeds": config.get("seeds"),
        "population": config.get("population"),
        "hidden": config.get("hidden"),
        "test_days": config.get("test_days"),
        "backend": status.get("backend"),
        # the median over updates (what the Live page shows), not the last chunk's rate
        "steps_per_sec": status.get("median_steps_per_sec") or status.get("steps_per_sec"),
        "compile_seconds": status.get("compile_seconds"),
        "sizes": {k: config.get(k) for k in RUN_SIZE_KEYS if k in config},
    }


def list_runs_annotated(runs_dir: Path | str, include_archived: bool = True) -> list[dict[str, Any]]:
    """list_runs entries passed through run_overview, newest first; archived runs only on request."""
    runs = [run_overview(r) for r in list_runs(runs_dir)]
    return runs if include_archived else [r for r in runs if not r["archived"]]
