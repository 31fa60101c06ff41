"""The Live page: progress and ETA, whether a run is live, state icons and status lines, alerts,
the headline figures (throughput, memory, training time), EMA smoothing, means and throughput
of runs with several members.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evorl_core.store.rundir import ACTIVE_STATES
from evorl_core.timefmt import format_duration, format_phases
from evorl_ui.presenters.format import last_finite


# progress -------------------------------------------------------------------------
def progress(status: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Fraction done, ETA seconds (status's own, else from the latest throughput) and env steps."""
    status = status or {}
    done = status.get("env_steps") or (rows[-1].get("env_steps") if rows else 0) or 0
    total = status.get("total_steps") or 0
    fraction = min(1.0, max(0.0, done / total)) if total else 0.0
    if status.get("state") == "done":
        fraction = 1.0
    eta = status.get("eta_seconds")
    if eta is None and status.get("state") in ACTIVE_STATES and rows and total:
        sps = rows[-1].get("steps_per_sec")
        if sps and sps > 0:
            eta = max(0.0, (total - done) / sps)
    return {"fraction": fraction, "env_steps": int(done), "total_steps": int(total),
            "eta_seconds": None if eta is None else float(eta)}


STALE_SECONDS = 15 * 60


def is_live(status: Mapping[str, Any] | None, *, owned: bool = False, now: float | None = None,
            stale_after: float = STALE_SECONDS) -> bool:
    """Whether a reader should keep polling a run.

    Active states count, except a run this process does not own whose status has not been
    updated for ``stale_after`` seconds (its process most likely died).
    """
    if not status or status.get("state") not in ACTIVE_STATES:
        return False
    if owned:
        return True
    now = time.time() if now is None else now
    updated = status.get("updated_at") or 0.0
    return now - updated < stale_after


# run states and the Live page -----------------------------------------------------
# Material icons (markdown only; emoji fonts are often missing on Linux browsers).
STATE_ICONS = {
    "queued": ":material/schedule:", "compiling": ":material/settings:", "running": ":material/play_circle:",
    "stopping": ":material/stop_circle:", "stopped": ":material/pause_circle:",
    "done": ":material/check_circle:", "failed": ":material/error:", "interrupted": ":material/warning:",
    "damaged": ":material/broken_image:",
}
# Active states in which a stop request still has an effect (a stopping run is already ending).
STOPPABLE_STATES = tuple(s for s in ACTIVE_STATES if s != "stopping")
# The metrics.jsonl columns the Live page reads.
LIVE_METRIC_KEYS = ("env_steps", "update", "wall_time", "train_seconds", "steps_per_sec", "updates_per_sec",
                    "reward_mean", "reward_std", "episode_return_mean", "policy_loss", "value_loss", "entropy", "approx_kl",
                    "clip_fraction", "explained_variance", "host_rss_mb", "device_mem_mb", "device_peak_mb",
                    "mean_abs_position", "turnover")


def age_text(ts: float | None, now: float | None = None) -> str:
    """'3m 05s ago' for a timestamp ('—' when unknown)."""
    if not ts:
        return "—"
    now = time.time() if now is None else now
    return format_duration(now - ts) + " ago"


def status_line(status: Mapping[str, Any], prog: Mapping[str, Any], stop_requested: bool = False) -> str:
    """The text of a run's progress bar: state (and phase), env steps, ETA while active."""
    state = status.get("state", "?")
    phase = status.get("phase")
    line = (f"{STATE_ICONS.get(state, '')} **{state}**" + (f" ({phase})" if phase and phase != state else "")
            + f" · {prog['env_steps']:,} / {prog['total_steps']:,} env steps")
    if state in ACTIVE_STATES:
        line += f" · ETA {format_duration(prog['eta_seconds'])}"
    if stop_requested and state in STOPPABLE_STATES:
        line += " · stop requested"
    return line


def phases_caption(status: Mapping[str, Any], now: float | None = None) -> str:
    """'Phases: loading data 1.2 s · features 0.3 s · compiling 4.0 s so far': where the time before
    (and after) training went, from status.json ('' for a run that recorded none)."""
    text = format_phases(status.get("phases"), now)
    return f"Phases: {text}" if text else ""


def status_alert(status: Mapping[str, Any], still_live: bool,
                 now: float | None = None) -> tuple[str, str] | None:
    """('error' | 'warning', message) for a failed, interrupted or silent run, else None."""
    state = status.get("state")
    if state == "failed":
        return "error", f"Run failed: {status.get('error') or 'no error message recorded'}"
    if state == "interrupted":
        return "warning", f"Run interrupted: {status.get('error') or ''}"
    if state == "damaged":
        return "error", f"Run damaged: {status.get('error') or 'its status.json cannot be read'}"
    if state in ACTIVE_STATES and not still_live:
        return "warning", (f"No update for {age_text(status.get('updated_at'), now)}: the training process "
                           "probably ended without writing a final status.")
    return None


def no_metrics_text(state: str | None) -> str:
    if state in STOPPABLE_STATES:
        return "Waiting for the first metrics (JAX compiles the training step first; this can take a minute)."
    return "This run has no metrics."


def member_mean(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a population run (each with a ``member``) averaged per update: one row per update,
    numeric fields as the mean over members. Rows without ``member`` pass through unchanged."""
    if not rows or not any("member" in r for r in rows):
        return [dict(r) for r in rows]
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("update", r.get("env_steps")), []).append(r)
    out = []
    for group in groups.values():
        merged: dict[str, Any] = {}
        for key in {k for r in group for k in r if k != "member"}:
            vals = [r.get(key) for r in group]
            nums = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
            merged[key] = (sum(nums) / len(nums)) if nums else next((v for v in vals if v is not None), None)
        merged["members"] = len(group)
        out.append(merged)
    return out


def cumulative(values: np.ndarray) -> np.ndarray:
    """A per-session clock (wall_time, train_seconds restart at 0 on resume) made cumulative:
    whenever the value drops, the previous session's last value is added to what follows."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    filled = np.where(np.isfinite(v), v, np.nan)
    out = filled.copy()
    offset, prev = 0.0, None
    for i, x in enumerate(filled):
        if not np.isfinite(x):
            continue
        if prev is not None and x < prev:
            offset += prev
        out[i] = x + offset
        prev = x
    return out


def throughput(steps_per_sec: np.ndarray) -> dict[str, float | None]:
    """Median env steps/s over updates (every update of a chunk carries its chunk's rate) and the
    last chunk's rate. The median is the headline: one slow chunk (a checkpoint, another run
    starting) moves the last value, not the typical one."""
    a = np.asarray(steps_per_sec, dtype=np.float64)
    finite = a[np.isfinite(a) & (a > 0)]
    return {"median": float(np.median(finite)) if finite.size else None,
            "last": float(finite[-1]) if finite.size else None}


def memory_kpi(m: Mapping[str, np.ndarray], backend: str | None) -> tuple[str, str, str]:
    """(label, value, help) of the Live page's memory figure: on an accelerator the device's peak
    (what the run needs; the memory held between chunks is only the training state), else the
    resident memory of the process that trains (labelled as the whole process)."""
    dev = last_finite(m.get("device_mem_mb", np.zeros(0)))
    peak = last_finite(m.get("device_peak_mb", np.zeros(0)))
    if backend not in (None, "cpu") and (peak is not None or dev is not None):
        shared = ("every array of the process on that device, so runs trained in one process share the "
                  "figure")
        if peak is None:  # runs written before the peak was recorded
            return ("Device memory", f"{dev:,.0f} MB",
                    f"Memory in use on the first accelerator device between chunks ({shared}).")
        held = f"; {dev:,.0f} MB held between chunks" if dev is not None else ""
        return ("Device memory (peak)", f"{peak:,.0f} MB",
                f"The most memory allocated on the first accelerator device at any moment since the "
                f"training process started ({shared}){held}.")
    rss = last_finite(m.get("host_rss_mb", np.zeros(0)))
    return ("Process RSS", f"{rss:,.0f} MB" if rss is not None else "—",
            "Resident memory of the whole process that trains this run. Runs started from the dashboard "
            "share its process, so they show the same figure; the CPU backend reports no per-run memory.")


def live_kpis(m: Mapping[str, np.ndarray], status: Mapping[str, Any]) -> dict[str, str]:
    """The headline figures of the Live page from metric_arrays(rows, LIVE_METRIC_KEYS):
    median and last-chunk throughput, updates, compile time (all compiles of the current session,
    done before its first chunk) and training time summed over sessions (resumes)."""
    tput = throughput(m["steps_per_sec"])
    updates = m["update"]
    comp = status.get("compile_seconds")
    train = last_finite(cumulative(m["train_seconds"])) if "train_seconds" in m else None
    return {
        "Env steps / s": f"{tput['median']:,.0f}" if tput["median"] is not None else "—",
        "Last chunk": f"{tput['last']:,.0f} steps/s" if tput["last"] is not None else "—",
        "Updates": f"{int(updates[-1]):,}" if updates.size and np.isfinite(updates[-1]) else "0",
        "Compile": f"{comp:.1f} s" if isinstance(comp, (int, float)) else "—",
        "Training time": format_duration(train) if train is not None else "—",
    }


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with weight in [0, 1), debiased at
    the start (the first point is not pulled toward 0); NaNs are skipped and kept."""
    v = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError("smoothing weight must lie in [0, 1)")
    out = np.full_like(v, np.nan)
    last, count = 0.0, 0
    for i, x in enumerate(v):
        if not np.isfinite(x):
            continue
        last = last * weight + (1.0 - weight) * x
        count += 1
        out[i] = last / (1.0 - weight ** count)
    return out


# several agents -------------------------------------------------------------------
def member_throughput(steps_per_sec: np.ndarray, members: int) -> dict[str, float | None]:
    """Median aggregate env steps/s of a run with ``members`` agents and the same per member."""
    median = throughput(steps_per_sec)["median"]
    return {"aggregate": median, "per_member": None if median is None or members < 1 else median / members}


def member_throughput_text(steps_per_sec: np.ndarray, members: int) -> str:
    """'all 4 members together · 1,234 per member' under the Live page's throughput figure."""
    t = member_throughput(steps_per_sec, members)
    if t["per_member"] is None:
        return f"all {members} members together"
    return f"all {members} members together · {t['per_member']:,.0f} per member"
