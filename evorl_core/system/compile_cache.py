"""JAX's persistent compilation cache, in a folder beside the runs: the second run of the same
shapes loads its compiled programs instead of compiling them again.

On by default. `EVORL_COMPILE_CACHE=off` (or `0`, `false`, `no`), `evorl train --no-compile-cache`
or `enable(..., enabled=False)` turn it off; `EVORL_COMPILE_CACHE=/some/dir` puts it elsewhere.
Entries live in a subfolder per JAX version and backend (`compile_cache/jax-0.10.2-cpu/`), so one
folder is safe to share across upgrades and machines; JAX's own cache key covers the program, the
compile options and the devices. Not used with jax-metal, whose plugin does not serialise
executables, nor below JAX 0.5 (the [metal] extra's pinned stack, where CPU caching is not one we
test). A cache folder that cannot be created is reported once and training goes on
without it. One folder per process: JAX reads the setting when it first compiles.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from evorl_core.system import backends

ENV_CACHE = "EVORL_COMPILE_CACHE"
CACHE_DIR_NAME = "compile_cache"
OFF_WORDS = ("0", "off", "false", "no", "none")
MIN_JAX = (0, 5)
# Programs that compile faster than this are not worth a disk round trip.
MIN_COMPILE_SECONDS = 0.2

log = logging.getLogger(__name__)
_active: Path | None = None


def cache_root(runs_dir: str | os.PathLike) -> Path:
    """The folder beside the runs folder (`runs/` -> `compile_cache/`), or EVORL_COMPILE_CACHE's path."""
    configured = os.environ.get(ENV_CACHE, "").strip()
    if configured and configured.lower() not in OFF_WORDS:
        return Path(configured).expanduser()
    return Path(runs_dir).expanduser().absolute().parent / CACHE_DIR_NAME


def enabled_by_default() -> bool:
    return os.environ.get(ENV_CACHE, "").strip().lower() not in OFF_WORDS


def cache_dir(runs_dir: str | os.PathLike, backend: str | None = None) -> Path:
    """The subfolder for this JAX version and backend."""
    backend = backend or backends.EVORL_NAME.get(jax.default_backend(), jax.default_backend())
    return cache_root(runs_dir) / f"jax-{jax.__version__}-{backend}"


def enable(runs_dir: str | os.PathLike, enabled: bool | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at the folder of `runs_dir` (None: the default,
    on unless EVORL_COMPILE_CACHE turns it off). Returns the folder in use, or None when off."""
    global _active
    if enabled is None:
        enabled = enabled_by_default()
    backend = backends.EVORL_NAME.get(jax.default_backend(), jax.default_backend())
    if not enabled or backend == "metal" or jax_version() < MIN_JAX:
        if _active is not None:
            disable()
        return None
    path = cache_dir(runs_dir, backend)
    if path == _active:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("compile cache %s: cannot create it (%s); compiling without a cache", path, exc.strerror or exc)
        return None
    for name, value in (("jax_enable_compilation_cache", True),
                        ("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS),
                        ("jax_persistent_cache_min_entry_size_bytes", 0)):
        try:
            jax.config.update(name, value)
        except AttributeError:  # an option this JAX does not have: its default stands
            pass
    jax.config.update("jax_compilation_cache_dir", str(path))
    _reset()
    _active = path
    return path


def jax_version() -> tuple[int, ...]:
    return tuple(int(part) for part in jax.__version__.split(".")[:2] if part.isdigit())


def disable() -> None:
    """Stop using the persistent cache in this process."""
    global _active
    jax.config.update("jax_compilation_cache_dir", None)
    _reset()
    _active = None


def active() -> Path | None:
    return _active


def entries(path: Path | None) -> int:
    """Files in a cache folder (0 when there is none)."""
    if path is None or not path.is_dir():
        return 0
    return sum(1 for p in path.rglob("*") if p.is_file())


def _reset() -> None:
    """JAX initialises its cache once, at the first compile; a new folder needs a fresh start."""
    compilation_cache.reset_cache()
