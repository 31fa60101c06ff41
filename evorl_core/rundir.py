"""The run directory: the one contract between the trainer and every reader.

runs/<run_id>/
  config.json            full config + data provenance + versions + seed
  status.json            state, env_steps, total_steps, timestamps, error (atomic)
  metrics.jsonl          one JSON object per update
  checkpoint/            latest full training state (flax msgpack)
  backtest/equity.csv    date,symbol,open,close,position,equity,benchmark_equity
  backtest/metrics.json  {symbol: {metric: value}}
  LOCK                   held (flock) by the one process that owns the run; pid/host inside

Writers: every file goes to a temporary name in the same directory and is renamed into place, so a
reader never sees half a file; a failed write (disk full, read-only, permissions) raises
`StorageError` naming the file and leaves the previous version intact. Files are 0644 (less the
umask), so a dashboard running as another user can read them.

Readers tolerate damage: a missing or torn last metrics line, a status.json that is not a JSON
object (the run reads as ``damaged``), a run whose owner is gone (an active state whose LOCK no
process holds reads as ``interrupted``). docs/reliability.md lists the states and what leads to
each.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

# The states of a run (docs/reliability.md). Active: a process owns the run and works on it.
# Final: nothing works on it; `stopped`, `interrupted` and `failed` runs resume from a checkpoint.
ACTIVE_STATES = ("queued", "compiling", "running", "stopping")
FINAL_STATES = ("stopped", "done", "failed", "interrupted")
RESUMABLE_STATES = ("stopped", "interrupted", "failed")
STATES = ACTIVE_STATES + FINAL_STATES  # what a writer may record in status.json
# Reader-only: status.json is missing or not a JSON object. Never written; `error` names the file.
DAMAGED = "damaged"
READ_STATES = STATES + (DAMAGED,)
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
EQUITY_COLUMNS = ["date", "symbol", "open", "close", "position", "equity", "benchmark_equity"]
LOCK_FILE = "LOCK"
# Without a way to test the lock (LOCK unreadable for this user), an active run whose status has
# not changed for this long counts as abandoned.
STALE_SECONDS = 15 * 60
# How long an owner waits for a lock a reader is probing at that instant.
LOCK_WAIT_SECONDS = 1.0


class RunDirError(ValueError):
    """A run directory (or a file in it) cannot be used; the message names the path."""


class StorageError(RunDirError):
    """A write failed (no space left, read-only file system, permissions); names the file."""


class RunInUse(RunDirError):
    """Another process (or thread) owns the run: its LOCK is held."""


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


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of obj: NaN/inf become null, so the text is always valid JSON."""
    return json.dumps(clean_json(obj), indent=indent, default=_json_default, allow_nan=False)


# writing -------------------------------------------------------------------------------------
def _current_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # import time: no other thread of ours runs yet
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


def storage_error(path: Path | str, exc: OSError) -> StorageError:
    """The one-line message of a failed write of `path`."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"no space left on device writing {path}")
    if code == errno.EROFS:
        return StorageError(f"read-only file system writing {path}")
    if code in (errno.EACCES, errno.EPERM):
        return StorageError(f"permission denied writing {path}")
    if code in (errno.ENOTDIR, errno.EEXIST):
        return StorageError(f"cannot write {path}: a parent is not a directory")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


def atomic_write_many(files: Mapping[Path | str, bytes]) -> None:
    """Write several files so that either all are replaced or none is.

    Every file is first written in full to a temporary name beside it (this is where a full disk
    fails, and then every temporary is removed and every old file is left as it was); only then
    are they renamed into place, which needs no space.
    """
    staged: list[tuple[str, Path]] = []
    current: Path | None = None
    try:
        for path, data in files.items():
            current = path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, FILE_MODE)
        for tmp, path in staged:
            current = path
            os.replace(tmp, path)
    except OSError as exc:
        _remove_staged(staged)
        raise storage_error(current or "?", exc) from None
    except BaseException:
        _remove_staged(staged)
        raise


def _remove_staged(staged: list[tuple[str, Path]]) -> None:
    for tmp, _ in staged:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_many({Path(path): data})


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj) + "\n")


# reading -------------------------------------------------------------------------------------
_KIND_NAMES = {dict: "a JSON object", list: "a JSON list"}


def load_json(path: Path | str, kind: type | None = dict) -> Any:
    """The JSON value in `path`, None when the file does not exist.

    Raises RunDirError naming the file when it cannot be read, is not UTF-8, is not JSON, or
    (with `kind`) holds another type of value.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RunDirError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise RunDirError(f"{path}: permission denied reading it") from None
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path}: not UTF-8 text (byte {exc.start}); the file is damaged") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else f"not valid JSON (line {exc.lineno}, column {exc.colno})"
        raise RunDirError(f"{path}: {what}; the file is damaged or truncated") from None
    if kind is not None and not isinstance(value, kind):
        found = type(value).__name__ if value is not None else "null"
        raise RunDirError(f"{path}: expected {_KIND_NAMES.get(kind, kind.__name__)}, found {found}")
    return value


def read_json(path: Path | str, default: Any = None, kind: type | None = None) -> Any:
    """Like load_json, but `default` for a missing or damaged file (for display, never for logic)."""
    try:
        value = load_json(path, kind)
    except RunDirError:
        return default
    return default if value is None else value


def _lock_held(path: Path) -> bool | None:
    """True: a process holds the lock file; False: none does (or there is none); None: unknown."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases the shared lock just taken
    return False


@dataclass
class RunDir:
    """Paths and I/O of one run directory. Cheap to construct; touches nothing until asked."""

    path: Path

    @classmethod
    def create(cls, runs_dir: Path | str, run_id: str) -> RunDir:
        validate_run_id(run_id)
        path = Path(runs_dir) / run_id
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RunDirError(f"{path}: exists and is not a directory") from None
        except OSError as exc:
            raise storage_error(path, exc) from None
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
    lock_path = property(lambda self: self.path / LOCK_FILE)

    # writers (only the owner of the run: the holder of its RunLock) ---------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def write_status(self, state: str, **fields: Any) -> dict[str, Any]:
        if state not in STATES:
            raise RunDirError(f"unknown run state {state!r}")
        try:
            status = self.recorded_status() or {"created_at": time.time()}
        except RunDirError:  # a damaged status.json is replaced by a good one
            status = {"created_at": time.time()}
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
        text = "".join(dumps(r, indent=None) + "\n" for r in rows)
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
        except OSError as exc:
            raise storage_error(self.metrics_path, exc) from None

    def truncate_metrics(self, max_env_steps: int) -> None:
        """On resume: drop metric lines past the checkpoint so the file has no duplicates."""
        rows = [r for r in self.read_metrics() if _number(r.get("env_steps"), math.inf) <= max_env_steps]
        atomic_write_text(self.metrics_path, "".join(dumps(r, indent=None) + "\n" for r in rows))

    # population files (PBT) -----------------------------------------------------
    def population_path(self, name: str) -> Path:
        return self.path / "population" / f"{name}.jsonl"

    def append_population(self, name: str, rows: list[dict[str, Any]]) -> None:
        """population/<name>.jsonl: hyperparams (per member per round) or lineage (exploit events)."""
        if not rows:
            return
        path = self.population_path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(dumps(r, indent=None) + "\n" for r in rows))
        except OSError as exc:
            raise storage_error(path, exc) from None

    def read_population(self, name: str) -> list[dict[str, Any]]:
        return _read_jsonl(self.population_path(name))

    def truncate_population(self, max_update: int) -> None:
        """On resume: drop population rows written after the checkpoint."""
        for name in ("hyperparams", "lineage"):
            path = self.population_path(name)
            if path.exists():
                rows = [r for r in self.read_population(name) if _number(r.get("update"), math.inf) <= max_update]
                atomic_write_text(path, "".join(dumps(r, indent=None) + "\n" for r in rows))

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

    # readers ---------------------------------------------------------------------------------
    def load_config(self) -> dict[str, Any]:
        """config.json for logic (resume, backtest, deploy): RunDirError naming the file when it
        is missing or damaged."""
        config = load_json(self.config_path)
        if config is None:
            raise RunDirError(f"{self.path}: no config.json; is this a run directory?")
        return config

    def read_config(self) -> dict[str, Any] | None:
        """config.json for display: None when missing or damaged."""
        return read_json(self.config_path, kind=dict)

    def recorded_status(self) -> dict[str, Any] | None:
        """status.json as written (None when missing); RunDirError naming the file when damaged."""
        return load_json(self.status_path)

    def read_status(self) -> dict[str, Any] | None:
        """The status a reader shows: status.json with the state in effect.

        None when the directory holds no run. A damaged or missing status.json of a run reads as
        state ``damaged`` with ``error`` naming the file; an active state whose owner is gone (no
        process holds LOCK) reads as ``interrupted`` (``recorded_state`` keeps what the file says).
        """
        try:
            status = self.recorded_status()
        except RunDirError as exc:
            return self._damaged(str(exc))
        if status is None:
            if not self._has_run_files():
                return None
            if self.lock_held():
                return {"state": "queued", "run_id": self.run_id, "created_at": _mtime(self.path),
                        "updated_at": _mtime(self.lock_path)}
            return self._damaged(f"{self.status_path}: missing (the run never recorded a state)")
        return effective_status(self, status)

    def _damaged(self, error: str) -> dict[str, Any]:
        return {"state": DAMAGED, "run_id": self.run_id, "error": error,
                "created_at": _mtime(self.path), "updated_at": _mtime(self.status_path) or _mtime(self.path)}

    def _has_run_files(self) -> bool:
        return any(p.exists() for p in (self.status_path, self.config_path, self.metrics_path,
                                        self.checkpoint_dir, self.lock_path))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The metric rows (JSON objects); torn, undecodable or non-object lines are skipped."""
        return _read_jsonl(self.metrics_path)

    def read_backtest_metrics(self) -> dict[str, dict[str, Any]] | None:
        metrics = read_json(self.backtest_metrics_path, kind=dict)
        if not metrics:
            return None
        return {k: v for k, v in metrics.items() if isinstance(v, dict)} or None

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

    # ownership -------------------------------------------------------------------------------
    def lock_held(self) -> bool | None:
        """Whether a live process owns this run (holds LOCK); None when that cannot be tested."""
        return _lock_held(self.lock_path)

    def owner(self) -> dict[str, Any]:
        """What the owner wrote into LOCK (pid, host, since); {} when unknown."""
        return read_json(self.lock_path, {}, kind=dict)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _number(value: Any, default: float) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def owner_text(owner: Mapping[str, Any]) -> str:
    """'pid 1234 on host x' for a LOCK's contents."""
    if not owner.get("pid"):
        return "another process"
    return f"pid {owner['pid']}" + (f" on {owner['host']}" if owner.get("host") else "")


def effective_status(run: RunDir, status: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """`status` with the state in effect: an active state whose owner is gone is ``interrupted``.

    The owner is gone when no process holds the run's LOCK (the kernel drops the lock of a process
    that dies, even by kill -9); where the lock cannot be tested, when status.json has not been
    updated for STALE_SECONDS. The file is not rewritten: readers never write.
    """
    state = status.get("state")
    if state not in READ_STATES:
        return {**status, "state": DAMAGED, "error": f"{run.status_path}: unknown state {state!r}"}
    if state not in ACTIVE_STATES:
        return status
    held = run.lock_held()
    if held is None:
        now = time.time() if now is None else now
        held = now - _number(status.get("updated_at"), 0.0) < STALE_SECONDS
    if held:
        return status
    resumable = "resume it from its checkpoint" if run.has_checkpoint() else "it has no checkpoint to resume from"
    return {**status, "state": "interrupted", "recorded_state": state, "owner_gone": True,
            "error": f"the process that ran it is gone (it was {state}); {resumable}"}


class RunLock:
    """Exclusive ownership of a run directory: ``flock`` on ``<run>/LOCK`` for the owner's lifetime.

    The kernel releases it when the owner exits in any way (kill -9 included), which is how readers
    tell a live run from an abandoned one. The owner's pid and host are written inside for display.
    """

    def __init__(self, run: RunDir, fd: int) -> None:
        self.run = run
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run: RunDir, wait: float = LOCK_WAIT_SECONDS) -> RunLock:
        """Take the lock or raise RunInUse naming the owner (StorageError if LOCK cannot be made)."""
        try:
            fd = os.open(run.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise storage_error(run.lock_path, exc) from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:  # a reader probes for microseconds; an owner stays
                    os.close(fd)
                    raise RunInUse(f"run {run.run_id!r} is in use by {owner_text(run.owner())}; "
                                   "stop it first (or wait for it to end)") from None
                time.sleep(0.02)
        try:
            os.fchmod(fd, FILE_MODE)
            os.ftruncate(fd, 0)
            os.write(fd, dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "since": time.time()}).encode())
        except OSError:
            pass  # only for display; the lock itself is what counts
        return cls(run, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


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


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Whole JSON-object lines of a file; a torn last line (a writer appending), undecodable bytes
    and lines that are not JSON objects are skipped."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
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
    out = [r for r in out if r is not None]
    out.sort(key=lambda r: _number(r["created_at"], 0.0), reverse=True)
    return out


def run_summary(rd: RunDir) -> dict[str, Any] | None:
    """One row of list_runs (None when the directory holds no run)."""
    status = rd.read_status()
    if status is None:
        return None
    config = rd.read_config() or {}
    data_info = config.get("data_info") if isinstance(config.get("data_info"), dict) else {}
    symbols = config.get("symbols")
    return {
        "run_id": rd.run_id,
        "path": str(rd.path),
        "state": status.get("state"),
        "recorded_state": status.get("recorded_state"),
        "env_steps": _number(status.get("env_steps"), 0),
        "total_steps": _number(status.get("total_steps"), None),
        "created_at": _number(status.get("created_at"), 0.0),
        "updated_at": _number(status.get("updated_at"), 0.0),
        "error": status.get("error"),
        "symbols": [str(s) for s in symbols] if isinstance(symbols, list) else [],
        "preset": config.get("preset"),
        "data_source": data_info.get("source", config.get("data")),
        "backtest": rd.read_backtest_metrics(),
        "has_checkpoint": rd.has_checkpoint(),
    }


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
        "seeds": config.get("seeds"),
        "population": config.get("population"),
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
