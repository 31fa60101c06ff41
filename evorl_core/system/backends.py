"""Which accelerator JAX runs on: selection (`--backend auto|cpu|gpu|metal`) and a description of
the devices' memory. The description of the active backend for the CLI, the dashboard, run
directories and benchmarks lives in `provenance`.

`select(name)` must run before JAX initialises its backends (the first `jax.devices()`, array or
jit). `auto` leaves the choice to JAX, which takes the best installed platform: CUDA with the
[cuda] extra on an NVIDIA machine, Metal with the [metal] extra on Apple Silicon, else CPU.

Memory: on GPUs JAX pre-allocates 75% of device memory at start-up; set the documented
`XLA_PYTHON_CLIENT_MEM_FRACTION` (e.g. 0.5) or `XLA_PYTHON_CLIENT_PREALLOCATE=false` in the
environment to change that. evorl never sets them itself.
"""

from __future__ import annotations

import os
import sys
from typing import Any

BACKENDS = ("auto", "cpu", "gpu", "metal")
# evorl's backend name -> JAX platform name (JAX_PLATFORMS / jax_platforms)
JAX_PLATFORM = {"cpu": "cpu", "gpu": "cuda", "metal": "METAL"}
# JAX's platform name -> evorl's backend name
EVORL_NAME = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "metal": "metal", "METAL": "metal",
               "tpu": "tpu"}
MEMORY_ENV_VARS = ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_ALLOCATOR")


class BackendError(ValueError):
    """An unknown or unavailable backend was requested (the message says how to install it)."""


def _backends_initialised() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # private API moved: assume not initialised
        return False


def select(name: str | None) -> None:
    """Restrict JAX to one platform (`cpu`, `gpu`, `metal`); `auto`/None lets JAX choose.

    Call before JAX initialises its backends. Sets JAX_PLATFORMS for child processes too.
    """
    if name in (None, "auto"):
        return
    if name not in JAX_PLATFORM:
        raise BackendError(f"backend: {name!r} is not one of {', '.join(BACKENDS)}")
    value = JAX_PLATFORM[name]
    os.environ["JAX_PLATFORMS"] = value
    if "jax" in sys.modules:  # jax reads JAX_PLATFORMS at import; update its config as well
        import jax

        if _backends_initialised() and jax.default_backend() != value.lower() and \
                EVORL_NAME.get(jax.default_backend()) != name:
            raise BackendError(f"backend: JAX is already running on {jax.default_backend()}; "
                               f"select {name} before anything uses JAX")
        jax.config.update("jax_platforms", value)


def installed_plugins() -> dict[str, bool]:
    """Accelerator plugins importable in this environment (without initialising them)."""
    import importlib.util

    def has(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    return {
        "cuda": has("jax_cuda12_plugin") or has("jax_cuda13_plugin") or has("jax_plugins.xla_cuda12"),
        "metal": has("jax_plugins.metal_plugin") or has("jax_metal"),
    }


def check_available(name: str) -> None:
    """Raise BackendError with an install hint when `name` cannot work here. Initialises JAX."""
    if name in (None, "auto", "cpu"):
        return
    import jax

    platform_name = JAX_PLATFORM[name]
    try:
        devices = jax.devices(platform_name)
    except RuntimeError:
        devices = []
    if not devices:
        hint = {"gpu": 'pip install -e ".[cuda]" on a machine with an NVIDIA GPU and driver',
                "metal": 'pip install -e ".[metal]" on Apple Silicon (macOS 14+)'}[name]
        raise BackendError(f"backend: {name} is not available here ({hint})")


def device_memory(device: Any) -> dict[str, float] | None:
    """MiB in use / peak / limit of one device, or None where the backend reports none (CPU)."""
    try:
        stats = device.memory_stats()
    except Exception:  # CPU and some plugins do not report memory
        return None
    if not stats:
        return None
    mib = 2**20
    out = {}
    for key, name in (("bytes_in_use", "in_use_mb"), ("peak_bytes_in_use", "peak_mb"), ("bytes_limit", "limit_mb")):
        if stats.get(key) is not None:
            out[name] = stats[key] / mib
    return out or None
