"""The run directory: the one contract between the trainer and every reader.

`LAYOUT` below is the one description of what a run directory holds (the docs point at it);
`RunDir` gives each entry's path and its readers and writers, `RunLock` the ownership of a run.

Readers tolerate damage: a missing or torn last metrics line, a status.json that is not a JSON
object (the run reads as ``damaged``), a run whose owner is gone (an active state whose LOCK no
process holds reads as ``interrupted``). docs/reliability.md lists the states and what leads to
each. Writes go through `store.atomic`.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.store.atomic import (
    FILE_MODE,
    RunDirError,
    atomic_write_json,
    atomic_write_text,
    dumps,
    load_json,
    read_json,
    read_jsonl,
    storage_error,
)

# What a run directory holds: the one description in code (README's "Run directory" block lists
# the same entries, checked by a test). Every path below is a `RunDir` property.
LAYOUT: dict[str, str] = {
    "config.json": "full config, data source actually used, data hash, versions, seed",
    "status.json": "state (queued|compiling|running|stopping|stopped|done|failed|interrupted), progress, error",
    "LOCK": "held by the one process that owns the run (pid, host inside); a run whose owner is gone reads as "
            "interrupted",
    "STOP": "present while a stop is requested",
    "error.log": "the traceback of a run that failed after it started",
    "annotations.json": "name, tags, note, archived: written by the user, never by training",
    "metrics.jsonl": "one line per PPO update (per member, with a `member` field, for seeds and populations)",
    "checkpoint/": "latest training state (flax msgpack; the whole population when there are members)",
    "backtest/equity.csv": "date,symbol,open,close,position,equity,benchmark_equity (the chosen member)",
    "backtest/metrics.json": "{symbol: {metric: value}} (bh_* = buy & hold; with members, their spread)",
    "backtest/selection.json": "how the reported member was chosen: validation scores of every member",
    "backtest/members.csv": "every member's test equity (--seeds / --population)",
    "backtest/members.json": "every member's test metrics (--seeds / --population)",
    "population/hyperparams.jsonl": "PBT: hyperparameters and fitness of every member per round",
    "population/lineage.jsonl": "PBT: exploit events (member, donor, old and new hyperparameters)",
    "rebacktests/": "one folder per `evorl backtest` (equity.csv, metrics.json, rebacktest.json)",
    "tensorboard/": "TensorBoard events (`--tensorboard`, `evorl export tensorboard`; member-<k>/ per member)",
}



def layout_text() -> str:
    """LAYOUT as the README's block: one line per entry, descriptions aligned."""
    width = max(map(len, LAYOUT)) + 2
    return "\n".join(["runs/<run_id>/", *(f"  {entry:<{width}}{what}" for entry, what in LAYOUT.items())])


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


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path` (not removed or replaced)."""
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


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
    error_log_path = property(lambda self: self.path / "error.log")
    annotations_path = property(lambda self: self.path / "annotations.json")
    selection_path = property(lambda self: self.path / "backtest" / "selection.json")
    member_equity_path = property(lambda self: self.path / "backtest" / "members.csv")
    member_metrics_path = property(lambda self: self.path / "backtest" / "members.json")
    rebacktests_dir = property(lambda self: self.path / "rebacktests")

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
        rows = [r for r in self.read_metrics() if as_number(r.get("env_steps"), math.inf) <= max_env_steps]
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
        return read_jsonl(self.population_path(name))

    def truncate_population(self, max_update: int) -> None:
        """On resume: drop population rows written after the checkpoint."""
        for name in ("hyperparams", "lineage"):
            path = self.population_path(name)
            if path.exists():
                rows = [r for r in self.read_population(name) if as_number(r.get("update"), math.inf) <= max_update]
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

    def damaged_status(self, error: str) -> dict[str, Any]:
        """The status a reader shows for a run one of whose files cannot be read (`error` names it)."""
        return self._damaged(error)

    def _damaged(self, error: str) -> dict[str, Any]:
        return {"state": DAMAGED, "run_id": self.run_id, "error": error,
                "created_at": _mtime(self.path), "updated_at": _mtime(self.status_path) or _mtime(self.path)}

    def _has_run_files(self) -> bool:
        return any(p.exists() for p in (self.status_path, self.config_path, self.metrics_path,
                                        self.checkpoint_dir, self.lock_path))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The metric rows (JSON objects); torn, undecodable or non-object lines are skipped."""
        return read_jsonl(self.metrics_path)

    def read_backtest_metrics(self) -> dict[str, dict[str, Any]] | None:
        metrics = read_json(self.backtest_metrics_path, kind=dict)
        if not metrics:
            return None
        return {k: v for k, v in metrics.items() if isinstance(v, dict)} or None

    def read_equity(self) -> pd.DataFrame | None:
        """backtest/equity.csv; RunDirError naming the file and row when it is damaged or replaced."""
        return read_results_csv(self.equity_path, EQUITY_COLUMNS)

    # several agents (--seeds / --population): how the reported one was chosen, every member's test
    def read_selection(self) -> dict[str, Any] | None:
        """backtest/selection.json: members, chosen_member, criterion, seeds, validation scores."""
        return read_json(self.selection_path)

    def read_member_equity(self) -> pd.DataFrame | None:
        """backtest/members.csv (date,symbol,member,position,equity), None for a single agent."""
        return read_results_csv(self.member_equity_path, ["date", "symbol", "member", "position", "equity"])

    def read_member_metrics(self) -> dict[str, dict[str, dict[str, Any]]] | None:
        """backtest/members.json: {member: {symbol: {metric: value}}}, None for a single agent."""
        return read_json(self.member_metrics_path)

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


def as_number(value: Any, default: float) -> float:
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
        held = now - as_number(status.get("updated_at"), 0.0) < STALE_SECONDS
    if held:
        return status
    resumable = "resume it from its checkpoint" if run.has_checkpoint() else "it has no checkpoint to resume from"
    return {**status, "state": "interrupted", "recorded_state": state, "owner_gone": True,
            "error": f"the process that ran it is gone (it was {state}); {resumable}"}


def read_results_csv(path: Path, required: list[str]) -> pd.DataFrame | None:
    """A results table the trainer wrote (None when missing), checked: a damaged, truncated or
    replaced file is a RunDirError naming the file (and the row), never a parser traceback."""
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype={"symbol": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise RunDirError(f"{path}: not a readable results table ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:160]}); the file is damaged") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RunDirError(f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(map(str, frame.columns))}); "
                          "the file is damaged or was replaced")
    dates = pd.to_datetime(frame["date"], errors="coerce", format="ISO8601")
    for column in [c for c in required if c not in ("date", "symbol")]:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & frame[column].notna().to_numpy())
        if bad.size:
            raise RunDirError(f"{path}: row {bad[0] + 2}, column '{column}': {frame[column].iloc[bad[0]]!r} is not a number")
        frame[column] = values
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise RunDirError(f"{path}: row {row + 2}, column 'date': {frame['date'].iloc[row]!r} is not a date")
    frame["date"] = dates
    return frame


def clean_temporaries(run: RunDir) -> list[Path]:
    """Remove the temporaries (`.<name>.<random>.tmp`, see atomic_write_many) a writer killed
    mid-write left in the run directory; called by a new owner once it holds the lock, so no
    writer of this run can be using them. Returns what was removed."""
    removed = []
    for tmp in run.path.rglob(".*.tmp"):
        try:
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


class RunLock:
    """Exclusive ownership of a run directory: ``flock`` on ``<run>/LOCK`` for the owner's lifetime.

    The kernel releases it when the owner exits in any way (kill -9 included), which is how readers
    tell a live run from an abandoned one. The owner's pid and host are written inside for display.
    A clean release removes LOCK (while still holding it), so a finished run keeps no lock file; an
    acquirer whose file was removed under it (it locked an unlinked file) opens the new one and tries again.
    """

    def __init__(self, run: RunDir, fd: int) -> None:
        self.run = run
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run: RunDir, wait: float = LOCK_WAIT_SECONDS) -> RunLock:
        """Take the lock or raise RunInUse naming the owner (StorageError if LOCK cannot be made)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                fd = os.open(run.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            except OSError as exc:
                raise storage_error(run.lock_path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:  # a reader probes for microseconds; an owner stays
                    raise RunInUse(f"run {run.run_id!r} is in use by {owner_text(run.owner())}; "
                                   "stop it first (or wait for it to end)") from None
                time.sleep(0.02)
                continue
            if _same_file(fd, run.lock_path):
                break
            os.close(fd)  # the previous owner removed this LOCK on release: take the current one
        try:
            os.fchmod(fd, FILE_MODE)
            os.ftruncate(fd, 0)
            os.write(fd, dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "since": time.time()}).encode())
        except OSError:
            pass  # only for display; the lock itself is what counts
        clean_temporaries(run)
        return cls(run, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if _same_file(fd, self.run.lock_path):
                    self.run.lock_path.unlink()  # still held: nobody can own a file about to vanish
            except OSError:
                pass  # a read-only folder keeps its LOCK; the kernel lock is what counts
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
