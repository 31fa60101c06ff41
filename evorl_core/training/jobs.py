"""Background training jobs for the dashboard: one process-wide registry of training threads.

The registry owns nothing but threads and stop events. Everything a reader needs (state, progress,
errors) goes through the run directory, so a run started here looks exactly like a CLI run and a
CLI run can be stopped from here (through its STOP file).

A training thread never lets an exception escape: the loop writes ``failed`` with its message
itself; when it could not (an error before the loop took over, or a non-conforming train function),
the registry writes it.

Ownership: the registry runs `pipeline.preflight`, then takes the run's LOCK before it writes
``queued`` and hands the lock to the thread (`pipeline.run(lock=...)`); it releases the lock once
the thread has recorded a final state. When the process exits (the server stops), `shutdown` asks
every thread to checkpoint and end ``interrupted`` (an atexit hook of the process-wide registry).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evorl_core.config import TrainConfig
from evorl_core.store.atomic import RunDirError
from evorl_core.store.rundir import ACTIVE_STATES, FINAL_STATES, RunDir, RunLock, owner_text
from evorl_core.training import pipeline

# How long the server waits at exit for its training threads to checkpoint and end.
SHUTDOWN_TIMEOUT_S = 60.0
SHUTDOWN_REASON = "the dashboard server stopped"

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]


class JobError(RuntimeError):
    """A job request the registry refuses (unknown run, already running, nothing to resume)."""


@dataclass
class Job:
    run_id: str
    runs_dir: Path
    config: TrainConfig
    stop_event: pipeline.StopSignal = field(default_factory=pipeline.StopSignal)
    thread: threading.Thread | None = None
    resume: bool = False
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    lock: RunLock | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.runs_dir / self.run_id)


def _key(runs_dir: Path | str, run_id: str) -> str:
    return str((Path(runs_dir) / run_id).resolve())


class JobRegistry:
    """Thread-safe set of training threads, keyed by run directory."""

    def __init__(self, train_fn: TrainFn | None = None) -> None:
        self.train_fn: TrainFn = train_fn or pipeline.run
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    # starting ------------------------------------------------------------------
    def start(
        self,
        config: TrainConfig,
        runs_dir: Path | str = "runs",
        run_id: str | None = None,
        *,
        deploy: bool = False,
        model_name: str | None = None,
        models_dir: Path | str = "models",
        cache_dir: Path | str | None = None,
        market: Any = None,
        tensorboard: bool = False,
    ) -> str:
        """Create the run directory with status ``queued`` and start training in a daemon thread
        (`tensorboard`: also write TensorBoard event files, as `evorl train --tensorboard`).

        Returns once the run is visible to readers; raises ConfigError for an invalid config and
        JobError when the run id is taken.
        """
        runs_dir = Path(runs_dir)
        try:
            config, run_dir = pipeline.preflight(config, runs_dir, run_id, deploy=deploy, model_name=model_name,
                                            models_dir=models_dir)
            lock = pipeline.acquire(run_dir, resume=False)
        except RunDirError as exc:  # id taken, run in use, runs directory unusable
            raise JobError(str(exc)) from None
        try:
            # A provisional config so readers see symbols/preset at once; the pipeline rewrites it
            # with the data actually used and library versions.
            run_dir.write_config({**config.to_dict(), "data_info": None})
            run_dir.write_status("queued", env_steps=0, total_steps=config.total_env_steps,
                            error=None)
        except BaseException:
            lock.release()
            raise
        job = Job(run_id=run_dir.run_id, runs_dir=runs_dir, config=config, lock=lock)
        kwargs = dict(stop_event=job.stop_event, resume=False, deploy=deploy,
                      model_name=model_name, models_dir=str(models_dir), lock=lock)
        if cache_dir is not None:
            kwargs["cache_dir"] = str(cache_dir)
        if market is not None:
            kwargs["market"] = market
        if tensorboard:
            kwargs["tensorboard"] = True
        self._launch(job, kwargs)
        return run_dir.run_id

    def resume(self, run_id: str, runs_dir: Path | str = "runs", *, models_dir: Path | str = "models",
               cache_dir: Path | str | None = None) -> str:
        """Continue a stopped/interrupted/failed run from its checkpoint in a new thread."""
        runs_dir = Path(runs_dir)
        run_dir = RunDir.open(runs_dir, run_id)
        status = run_dir.read_status()  # the state in effect: a run whose owner is gone is interrupted
        if status is None:
            raise JobError(f"run {run_id!r} not found in {runs_dir}")
        if self.is_active(run_id, runs_dir):
            raise JobError(f"run {run_id!r} is still running in this process")
        if status.get("state") in ACTIVE_STATES:
            raise JobError(f"run {run_id!r} is {status.get('state')} ({owner_text(run_dir.owner())}); "
                           "stop it first")
        if not run_dir.has_checkpoint():
            raise JobError(f"run {run_id!r} has no checkpoint to resume from")
        try:
            config, run_dir = pipeline.preflight(TrainConfig(), runs_dir, run_id, resume=True, models_dir=models_dir)
            lock = pipeline.acquire(run_dir, resume=True)
        except RunDirError as exc:
            raise JobError(str(exc)) from None
        try:
            run_dir.clear_stop()  # a stale STOP file would end the resumed run at once
            run_dir.write_status("queued", error=None, finished_at=None)
        except BaseException:
            lock.release()
            raise
        job = Job(run_id=run_id, runs_dir=runs_dir, config=config, resume=True, lock=lock)
        kwargs: dict[str, Any] = dict(stop_event=job.stop_event, resume=True, models_dir=str(models_dir),
                                      lock=lock)
        if cache_dir is not None:
            kwargs["cache_dir"] = str(cache_dir)
        self._launch(job, kwargs)
        return run_id

    def _launch(self, job: Job, kwargs: dict[str, Any]) -> None:
        key = _key(job.runs_dir, job.run_id)
        with self._lock:
            old = self._jobs.get(key)
            if old is not None and old.alive:
                if job.lock is not None:
                    job.lock.release()
                raise JobError(f"run {job.run_id!r} is already running")
            job.thread = threading.Thread(
                target=self._run, args=(job, kwargs), name=f"evorl-train-{job.run_id}", daemon=True
            )
            self._jobs[key] = job
            job.thread.start()

    def _run(self, job: Job, kwargs: dict[str, Any]) -> None:
        try:
            self.train_fn(job.config, str(job.runs_dir), job.run_id, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - a training thread must never die with an exception
            job.error = pipeline.describe_error(exc)
            log.error("training thread for %s failed:\n%s", job.run_id, traceback.format_exc())
            self._ensure_final(job, "failed", job.error)
        else:
            # The loop writes a final state; if a train function returned without one, say so
            # rather than leave a run that looks alive forever.
            self._ensure_final(job, "interrupted", "training returned without writing a final status")
        finally:
            job.finished_at = time.time()
            if job.lock is not None:
                job.lock.release()  # after the final state: readers never see a gap

    @staticmethod
    def _ensure_final(job: Job, state: str, message: str) -> None:
        try:
            run_dir = job.run_dir
            try:
                status = run_dir.recorded_status() or {}
            except RunDirError:
                status = {}
            if job.stop_event.reason and status.get("state") == "stopped":
                state, message = "interrupted", f"{job.stop_event.reason}; checkpoint saved, resume to continue"
            elif status.get("state") in FINAL_STATES:
                return
            run_dir.write_status(state, error=message, finished_at=time.time())
        except Exception:  # noqa: BLE001 - e.g. the run directory was deleted under us
            log.exception("could not record final status of %s", job.run_id)

    # control -------------------------------------------------------------------
    def stop(self, run_id: str, runs_dir: Path | str = "runs") -> bool:
        """Ask a run to stop at its next chunk boundary.

        Sets the thread's stop event when the run belongs to this process and writes the STOP file
        while the run is active, so CLI runs stop too. Returns True when a live run was asked to
        stop; False for an unknown run or one nothing works on (its owner is gone, or it ended).
        """
        run_dir = RunDir.open(runs_dir, run_id)
        job = self.get(run_id, runs_dir)
        if job is not None and job.alive:
            job.stop_event.set()
        status = run_dir.read_status()
        if status is None or status.get("state") not in ACTIVE_STATES:
            return job is not None and job.alive
        run_dir.request_stop()
        return True

    # queries -------------------------------------------------------------------
    def get(self, run_id: str, runs_dir: Path | str = "runs") -> Job | None:
        with self._lock:
            return self._jobs.get(_key(runs_dir, run_id))

    def is_active(self, run_id: str, runs_dir: Path | str = "runs") -> bool:
        job = self.get(run_id, runs_dir)
        return job is not None and job.alive

    def active_run_ids(self, runs_dir: Path | str | None = None) -> list[str]:
        """Runs whose training thread is alive in this process (optionally in one runs_dir)."""
        root = Path(runs_dir).resolve() if runs_dir is not None else None
        with self._lock:
            jobs = list(self._jobs.values())
        return [j.run_id for j in jobs
                if j.alive and (root is None or j.runs_dir.resolve() == root)]

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT_S, reason: str = SHUTDOWN_REASON) -> list[str]:
        """Ask every training thread of this process to checkpoint and end ``interrupted``, and wait
        for them (at most `timeout` seconds in all). Returns the run ids that did not end in time;
        their LOCK goes with the process, so readers show them interrupted too."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.alive]
        for job in jobs:
            job.stop_event.interrupt(reason)
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        left = [j.run_id for j in jobs if j.alive]
        if left:
            log.warning("training threads still running at shutdown: %s", ", ".join(left))
        return left

    def join(self, run_id: str, runs_dir: Path | str = "runs", timeout: float | None = None) -> bool:
        """Wait for a run's thread; True when it has finished."""
        job = self.get(run_id, runs_dir)
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()


_registry: JobRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> JobRegistry:
    """The process-wide registry (the dashboard caches this same object)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = JobRegistry()
            atexit.register(_registry.shutdown)
        return _registry
