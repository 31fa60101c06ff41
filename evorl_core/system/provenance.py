"""Provenance: library versions, the active backend and its devices, the host.

The one place that describes where a run ran. `config.json` of a run records
`library_versions()` and `backend_record()`; the CLI, the dashboard and the benchmarks show
`describe()` / `summary()`. Everything that initialises JAX says so.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import flax
import jax
import jaxlib
import numpy as np
import optax
import pandas
import psutil

from evorl_core import __version__
from evorl_core.system.backends import EVORL_NAME, MEMORY_ENV_VARS, device_memory, installed_plugins


def library_versions() -> dict[str, str]:
    """Versions of evorl and the libraries whose behaviour shapes results."""

    return {
        "evorl": __version__, "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "numpy": np.__version__, "pandas": pandas.__version__, "python": platform.python_version(),
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> dict[str, Any]:
    """The machine: OS, CPU, cores, memory (no JAX)."""

    vm = psutil.virtual_memory()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": vm.total / 2**30,
        "available_gb": vm.available / 2**30,
    }


def describe() -> dict[str, Any]:
    """The active backend, its devices and memory, host facts and the settings that chose them.

    Initialises JAX (on the platform chosen by `backends.select` / JAX_PLATFORMS).
    """

    devices = jax.devices()
    jax_backend = jax.default_backend()
    return {
        "backend": EVORL_NAME.get(jax_backend, jax_backend),
        "jax_platform": jax_backend,
        "requested": os.environ.get("JAX_PLATFORMS") or "auto",
        "device_count": len(devices),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "device_kind": devices[0].device_kind if devices else "",
        "device_kinds": sorted({getattr(d, "device_kind", d.platform) for d in devices}),
        "devices": [
            {"id": d.id, "kind": d.device_kind, "platform": d.platform, "process": d.process_index,
             "memory": device_memory(d)}
            for d in devices
        ],
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "plugins": installed_plugins(),
        "host": host(),
        "env": {k: os.environ[k] for k in ("JAX_PLATFORMS", "XLA_FLAGS", *MEMORY_ENV_VARS) if k in os.environ},
    }


def backend_record(info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The short backend record stored in a run's config.json (`backend_info`)."""
    info = info or describe()
    return {
        "backend": info["jax_platform"],
        "device_count": info["device_count"],
        "device_kind": info["device_kind"],
        "platform": info["host"]["platform"],
        "process_count": info["process_count"],
    }


def summary(info: dict[str, Any] | None = None) -> str:
    """One line, e.g. 'gpu: 1 x NVIDIA H100 80GB HBM3, 0.4/79.1 GiB in use (jax 0.10.2)'."""
    info = info or describe()
    line = f"{info['backend']}: {info['device_count']} x {info['device_kind']}"
    mem = info["devices"][0]["memory"] if info["devices"] else None
    if mem and "in_use_mb" in mem and "limit_mb" in mem:
        line += f", {mem['in_use_mb'] / 1024:.1f}/{mem['limit_mb'] / 1024:.1f} GiB in use"
    elif info["backend"] == "cpu":
        line += f" ({info['host']['cpu_count']} cores, {info['host']['memory_gb']:.0f} GiB host memory)"
    if info["process_count"] > 1:
        line += f", {info['process_count']} processes"
    return line + f" (jax {info['jax']})"


def host_rss_mb() -> float:
    """Resident memory of this process in MiB."""

    return psutil.Process().memory_info().rss / 2**20


def device_memory_mb(which: str = "in_use_mb") -> float | None:
    """MiB on this process's first device, when the backend reports it (GPU does, CPU does not):
    `in_use_mb` (arrays alive now; between chunks that is the training state alone) or `peak_mb`
    (the most allocated at any moment since the process started, the figure that says what fits)."""

    return (device_memory(jax.local_devices()[0]) or {}).get(which)
