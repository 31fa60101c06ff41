"""Where the dashboard reads and writes, and the resources every page shares.

Directories: the sidebar value for this session, else the environment variable, else the default.
Shared resources (one per server process): the job registry and the backend description.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from evorl_core.data import DataError
from evorl_core.store.catalogue import list_runs_annotated
from evorl_core.store.rundir import RUN_ID_RE, RunDir
from evorl_core.system import provenance
from evorl_core.training import jobs

# setting -> (environment variable, default)
SETTINGS = {
    "runs_dir": ("EVORL_RUNS_DIR", "runs"),
    "models_dir": ("EVORL_MODELS_DIR", "models"),
    "data_cache": ("EVORL_DATA_CACHE", "data_cache"),
}
LABELS = {"runs_dir": "Runs directory", "models_dir": "Models directory", "data_cache": "Data cache"}


def session_key(name: str) -> str:
    return f"setting_{name}"


def default(name: str) -> str:
    env, fallback = SETTINGS[name]
    return os.environ.get(env, fallback)


def setting(name: str) -> str:
    """A directory setting: the sidebar value for this session, else env var, else default."""
    value = st.session_state.get(session_key(name))
    return str(value).strip() if value else default(name)


def runs_dir() -> Path:
    return Path(setting("runs_dir"))


def models_dir() -> Path:
    return Path(setting("models_dir"))


def data_cache() -> Path:
    return Path(setting("data_cache"))


def uploads_dir(name: str) -> Path:
    """<data cache>/uploads/<name>/: where uploaded CSVs are kept (one folder per run or page).

    `name` must be a plain folder name (the rules of a run id): a DataError otherwise, so no upload
    folder is ever outside <data cache>/uploads/."""
    if not RUN_ID_RE.fullmatch(name or "") or ".." in name:
        raise DataError(f"upload folder name {name!r} is invalid: use letters, digits, '_', '-', '.'")
    return data_cache() / "uploads" / name


def all_runs(include_archived: bool = False) -> list[dict[str, Any]]:
    """Every run with its annotations and data provenance (store.catalogue.list_runs_annotated), newest
    first; archived runs only when asked for."""
    return list_runs_annotated(runs_dir(), include_archived=include_archived)


def open_run(run_id: str) -> RunDir:
    return RunDir.open(runs_dir(), run_id)


@st.cache_resource
def registry() -> jobs.JobRegistry:
    """The process-wide job registry (the same object as evorl_core.training.jobs.get_registry())."""
    return jobs.get_registry()


UNAVAILABLE = {"backend": "unavailable", "jax_platform": "unavailable", "device_count": 0, "device_kind": "",
               "device_kinds": [], "devices": [], "jax": "?", "host": {}}


@st.cache_resource
def backend() -> dict[str, Any]:
    """provenance.describe() plus ``error`` (None when JAX is usable), once per process: JAX is
    initialised here, not on every rerun. A failure is kept as text for the pages to show; the
    dashboard still works for everything that does not need JAX."""
    try:
        return {**provenance.describe(), "error": None}
    except Exception as exc:  # noqa: BLE001 - shown on screen, the app still works without it
        return {**UNAVAILABLE, "error": f"{type(exc).__name__}: {exc}"}


def host_memory() -> dict[str, float]:
    """Host memory now (GiB) and this dashboard process's resident memory (MiB)."""
    host = provenance.host()
    return {"total_gb": host["memory_gb"], "available_gb": host["available_gb"],
            "process_rss_mb": provenance.host_rss_mb()}
