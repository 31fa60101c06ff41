"""Atomic file I/O and tolerant JSON reading: the one write path of every stored file.

Every file goes to a temporary name in the same directory and is renamed into place, so a reader
never sees half a file; a failed write (disk full, read-only, permissions) raises `StorageError`
naming the file and leaves the previous version intact. Files are 0644 (less the umask), so a
dashboard running as another user can read them. JSON is strict (NaN/inf become null).

Used by the run directory (`store.rundir`), the run catalogue, the data cache, model bundles and
the paper ledger.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RunDirError(ValueError):
    """A run directory (or a file in it) cannot be used; the message names the path."""


class StorageError(RunDirError):
    """A write failed (no space left, read-only file system, permissions); names the file."""


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
    data = b""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RunDirError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise RunDirError(f"{path}: permission denied reading it") from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RunDirError(f"{path}: not UTF-8 text (line {line}, byte {exc.start}); the file is damaged") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else f"not valid JSON (line {exc.lineno}, column {exc.colno})"
        raise RunDirError(f"{path}: {what}; the file is damaged or truncated") from None
    except RecursionError:  # e.g. 50,000 nested brackets: the decoder's stack, not ours, is the limit
        raise RunDirError(f"{path}: JSON nested too deeply to read; the file is damaged") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise RunDirError(f"{path}: cannot be decoded ({' '.join(str(exc).split())[:200]})") from None
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


def read_jsonl(path: Path) -> list[dict[str, Any]]:
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
        except (ValueError, RecursionError):  # not JSON, too deep, a number too long: skip the line
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
