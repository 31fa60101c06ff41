"""Several processes, one run: JAX's own multi-process runtime (`jax.distributed`), docs/scaling.md.

Every process runs the same program. `initialize` joins the processes into one JAX runtime before
anything touches a device; from then on `jax.devices()` lists every process's devices, the loop's
mesh (`sharding.layout`) spans them, and XLA's collectives (gloo on CPU, NCCL on GPU) run between
processes. Nothing here moves training data by hand.

Where the settings come from, first match wins:
1. flags `--coordinator-address HOST:PORT --num-processes N --process-id I`;
2. the environment `EVORL_COORDINATOR_ADDRESS`, `EVORL_NUM_PROCESSES`, `EVORL_PROCESS_ID`;
3. JAX's cluster detection (SLURM, Open MPI, Kubernetes with `jax[k8s]`, Cloud TPU), used when a
   detected cluster has more than one process. `--num-processes 1` turns detection off.

Exactly one process writes: process 0, the *writer*. `run_dir` gives it the run directory and
every other process a `PeerRunDir`, whose writers do nothing and whose path is a private place
under the temporary directory that nothing creates. The few things a peer needs from the run
directory (a resumed run's config and checkpoint, a stop request, the time to checkpoint) come
from process 0 over the runtime (`from_writer`, `agreed`), so only process 0 needs to see the
run directory at all.

Failures: each process publishes a heartbeat (a counter, once a second) in the key-value store
of JAX's coordination service. A thread watches the others (process 0 watches everyone, the
others watch process 0). A process that publishes a failure, or whose heartbeat stops for
`peer_timeout` seconds while this process is stuck (a collective with a dead peer can wait
forever on GPUs), ends this one: process 0 writes status `failed` naming it, and every process
exits with code 1. When a collective fails outright (gloo reports a closed connection at once),
`failure_message` names the process that failed or went silent. JAX's own heartbeat timeout,
set longer than ours, is the last resort.
"""

from __future__ import annotations

import atexit
import hashlib
import inspect
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from evorl_core.config import ConfigError
from evorl_core.store.rundir import FINAL_STATES, RunDir, validate_run_id

try:  # JAX's cluster detection and its coordination client: private, so optional
    from jax._src import clusters as _jax_clusters
    from jax._src import distributed as _jax_distributed
except ImportError:  # pragma: no cover - moved in a future JAX: flags and environment still work
    _jax_clusters = _jax_distributed = None

ENV_ADDRESS = "EVORL_COORDINATOR_ADDRESS"
ENV_COUNT = "EVORL_NUM_PROCESSES"
ENV_ID = "EVORL_PROCESS_ID"
ENV_PEER_TIMEOUT = "EVORL_PEER_TIMEOUT"
DEFAULT_PEER_TIMEOUT_S = 60.0
HEARTBEAT_S = 1.0
PROBE_S = 3.0  # after a failed collective: how long a peer may stay silent before it is named
GRACE_S = 2.0  # how long the watcher leaves a failure to the main thread before ending the process
_ADDRESS_RE = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")


class DistributedError(RuntimeError):
    """The process group failed: a process died, stopped responding or disagrees with the others."""


# -- settings --------------------------------------------------------------------------------
def _int_setting(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a whole number") from None


def detect_cluster() -> tuple[str, int | None] | None:
    """The cluster JAX would detect here, as (name, process count or None if unknown), or None.

    Uses JAX's own detectors in JAX's order (opt-in ones such as mpi4py left out, as JAX does)."""
    if _jax_clusters is None:
        return None
    for env in getattr(_jax_clusters.ClusterEnv, "_cluster_types", []):
        if getattr(env, "opt_in_only_method", False):
            continue
        try:
            present = env.is_env_present()
        except Exception:  # noqa: BLE001 - a detector that cannot run means: not this cluster
            present = False
        if not present:
            continue
        try:
            count: int | None = int(env.get_process_count())
        except Exception:  # noqa: BLE001 - e.g. the Kubernetes API is not reachable: JAX will say so
            count = None
        return (getattr(env, "name", None) or env.__name__), count
    return None


def settings(coordinator_address: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The keyword arguments for `jax.distributed.initialize`, or None for a single process.

    Flags win over the EVORL_* environment; with neither, a detected cluster of more than one
    process lets JAX fill everything in (`{}` plus the cluster name under "cluster"). Cluster
    detection reads os.environ, as JAX does."""
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get(ENV_ADDRESS) or None
    count = num_processes if num_processes is not None else _int_setting(env.get(ENV_COUNT), ENV_COUNT)
    pid = process_id if process_id is not None else _int_setting(env.get(ENV_ID), ENV_ID)
    if count is not None and count < 1:
        raise ConfigError(f"num_processes: must be at least 1 (got {count})")
    if pid is not None and (pid < 0 or (count is not None and pid >= count)):
        raise ConfigError(f"process_id: {pid} is not in 0..{(count or 1) - 1} (--num-processes {count})")
    if address is not None and not _ADDRESS_RE.match(address):
        raise ConfigError(f"coordinator_address: {address!r} is not HOST:PORT (e.g. 10.0.0.1:7777)")
    if count == 1:
        return None
    if address is None and count is None and pid is None:
        detected = detect_cluster()
        if detected is None or detected[1] == 1:
            return None
        return {"cluster": detected[0]}
    if address is not None and count is not None and pid is not None:
        return {"coordinator_address": address, "num_processes": count, "process_id": pid}
    detected = detect_cluster()
    if detected is None:
        missing = [flag for flag, value in (("--coordinator-address", address), ("--num-processes", count),
                                             ("--process-id", pid)) if value is None]
        raise ConfigError(f"distributed: {', '.join(missing)} missing (or {ENV_ADDRESS}, {ENV_COUNT}, "
                          f"{ENV_ID}); no cluster (SLURM, MPI, Kubernetes) was detected to supply them")
    given = {"coordinator_address": address, "num_processes": count, "process_id": pid}
    return {**{k: v for k, v in given.items() if v is not None}, "cluster": detected[0]}


def peer_timeout(value: float | None = None) -> float:
    """Seconds a process may go without a heartbeat before the others give up on it."""
    raw = value if value is not None else os.environ.get(ENV_PEER_TIMEOUT)
    try:
        seconds = float(raw) if raw not in (None, "") else DEFAULT_PEER_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"peer_timeout: {raw!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ConfigError(f"peer_timeout: must be positive (got {raw})")
    return seconds


def _use_cpu_collectives() -> None:
    """CPU processes need gloo for cross-process collectives (JAX 0.4.x defaults to none)."""
    name = "jax_cpu_collectives_implementation"
    if name in jax.config.values and jax.config.values[name] in (None, "none"):
        jax.config.update(name, "gloo")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: float | None = None) -> bool:
    """Join this process to the others (`jax.distributed.initialize`) when settings say so.

    Call once, after `backends.select` and before anything uses JAX devices. Returns True when
    this is one of several processes. `timeout`: `peer_timeout` seconds (default EVORL_PEER_TIMEOUT
    or 60)."""
    plan = settings(coordinator_address, num_processes, process_id)
    if plan is None:
        return False
    seconds = peer_timeout(timeout)
    kwargs = {k: v for k, v in plan.items() if k != "cluster"}
    if "cluster" not in plan and detect_cluster() is not None:
        # everything given: JAX must not second-guess it inside a cluster (it would, for instance,
        # show a SLURM task only the GPU of its local rank); older JAX logs the value and ignores it
        kwargs["cluster_detection_method"] = "deactivate"
    accepted = inspect.signature(jax.distributed.initialize).parameters
    if "heartbeat_timeout_seconds" in accepted:  # JAX's own last resort: after ours
        kwargs["heartbeat_timeout_seconds"] = int(max(100, 3 * seconds))
    _use_cpu_collectives()
    jax.distributed.initialize(**kwargs)
    global _liveness
    client = _coordination_client()
    if client is not None and jax.process_count() > 1 and _liveness is None:
        _liveness = Liveness(client, jax.process_index(), jax.process_count(), seconds)
        atexit.register(_liveness.finish)  # runs before JAX's own shutdown barrier (LIFO)
    return jax.process_count() > 1


def _coordination_client() -> Any:
    """The client of JAX's coordination service (its key-value store), or None."""
    state = getattr(_jax_distributed, "global_state", None)
    return getattr(state, "client", None)


# -- who is who ----------------------------------------------------------------------------------
def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_writer() -> bool:
    """Process 0 writes the run directory, models and every other file; the others write nothing."""
    return jax.process_index() == 0


def describe() -> str:
    return f"process {jax.process_index()} of {jax.process_count()}"


# -- data between processes ----------------------------------------------------------------------
def gather(tree: Any) -> Any:
    """Host NumPy copies of the full arrays of `tree`, on every process (a collective when the
    arrays span several processes: every process must call it at the same point)."""
    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(one, tree)


def from_writer_tree(tree: Any) -> Any:
    """Process 0's values of a pytree of arrays, on every process (every process passes a tree of
    the same shapes; only process 0's values count)."""
    if jax.process_count() == 1:
        return tree
    return multihost_utils.broadcast_one_to_all(tree)


def from_writer(value: Any) -> Any:
    """Process 0's value of a JSON-able object (a run id, a stored config), on every process."""
    if jax.process_count() == 1:
        return value
    data = np.frombuffer(json.dumps(value).encode("utf-8"), np.uint8) if is_writer() else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buffer = np.zeros(size, np.int32)
    if is_writer():
        buffer[:] = data
    buffer = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    return json.loads(buffer.astype(np.uint8).tobytes().decode("utf-8"))


def agreed(flag: bool) -> bool:
    """Process 0's answer to a yes/no question every process asks at the same point (stop now?
    checkpoint now?), so all take the same branch before the next collective."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(multihost_utils.broadcast_one_to_all(np.int32(bool(flag))))


def check_same(values: dict[str, str]) -> None:
    """Refuse to start when processes differ in any of `values` (name -> text, e.g. the config and
    the data hash): each process must train on the same configuration and the same data."""
    if jax.process_count() == 1:
        return
    names = sorted(values)
    digests = np.stack([np.frombuffer(hashlib.sha256(values[n].encode("utf-8")).digest(), np.uint8)
                        for n in names])
    everyone = np.asarray(multihost_utils.process_allgather(digests))  # [processes, names, 32]
    for i, name in enumerate(names):
        differ = [p for p in range(everyone.shape[0]) if not np.array_equal(everyone[p, i], everyone[0, i])]
        if differ:
            raise DistributedError(
                f"processes disagree on the {name}: process {', '.join(map(str, differ))} differs from process 0 "
                "(every process needs the same flags and the same data files)")


# -- the run directory ---------------------------------------------------------------------------
class PeerRunDir(RunDir):
    """The run directory as a process other than 0 sees it: every writer is a no-op and readers
    find nothing. `path` is a private place under the temporary directory that nothing here
    creates, so a write that bypasses these methods cannot reach the real run directory either.
    A new writer on RunDir needs its no-op here (tests/test_distributed.py checks)."""

    def write_config(self, config: dict[str, Any]) -> None:
        pass

    def write_status(self, state: str, **fields: Any) -> dict[str, Any]:
        return {**fields, "state": state, "run_id": self.run_id, "updated_at": time.time()}

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        pass

    def truncate_metrics(self, max_env_steps: int) -> None:
        pass

    def append_population(self, name: str, rows: list[dict[str, Any]]) -> None:
        pass

    def truncate_population(self, max_update: int) -> None:
        pass

    def request_stop(self) -> None:
        pass

    def stop_requested(self) -> bool:
        return False  # process 0 decides (`agreed`)

    def clear_stop(self) -> None:
        pass


def run_dir(runs_dir: Path | str, run_id: str) -> RunDir:
    """The run directory of this process: the real one (created) on process 0, a `PeerRunDir`
    elsewhere. The run id must be the same on every process (`from_writer`)."""
    if is_writer():
        run = RunDir.create(runs_dir, run_id)
        if _liveness is not None:
            _liveness.run = run  # the watcher writes `failed` here when a peer dies
        return run
    private = Path(tempfile.gettempdir()) / "evorl-peer" / f"process-{jax.process_index()}" / validate_run_id(run_id)
    return PeerRunDir(private)


# -- failures ------------------------------------------------------------------------------------
class Liveness:
    """Heartbeats of this process and the watch over the others, through a key-value client with
    `key_value_set(key, value, allow_overwrite=True)` and `blocking_key_value_get(key, ms)`
    (the coordination service's). Values: a counter, "done" (left normally) or "failed: <why>"."""

    def __init__(self, client: Any, me: int, count: int, timeout: float, *, start: bool = True,
                 exit: Callable[[int], Any] = os._exit, interval: float = HEARTBEAT_S,
                 grace: float = GRACE_S) -> None:
        self.client, self.me, self.count, self.timeout = client, me, count, timeout
        self.exit, self.interval, self.grace = exit, interval, grace
        self.run: RunDir | None = None
        self.message: str | None = None  # the failure, once known
        self.blamed: list[int] = []  # the processes it names
        self.lock = threading.Lock()
        self.handled = threading.Event()  # the main thread deals with a failure itself
        self.finished = threading.Event()
        self.last: dict[int, tuple[str | None, float]] = {}
        self.beats = 0
        self._publish("0")
        self.thread = threading.Thread(target=self._loop, name="evorl-liveness", daemon=True)
        if start:
            self.thread.start()

    @staticmethod
    def key(process: int) -> str:
        return f"evorl/process/{process}"

    def _publish(self, value: str) -> None:
        try:
            self.client.key_value_set(self.key(self.me), value, allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the coordinator is gone: the watch below notices
            pass

    def read(self, process: int) -> str | None:
        try:
            return str(self.client.blocking_key_value_get(self.key(process), 200))
        except Exception:  # noqa: BLE001 - not yet published, or the coordinator is gone
            return None

    def watched(self) -> Iterable[int]:
        return range(1, self.count) if self.me == 0 else (0,)

    def _name(self, process: int) -> str:
        return f"process {process} of {self.count}"

    def observe(self, now: float | None = None) -> dict[int, str]:
        """Peers in trouble: {process: why} for a published failure or a heartbeat older than the
        timeout. A peer that left normally ("done") is never in trouble."""
        now = time.monotonic() if now is None else now
        trouble = {}
        for p in self.watched():
            value = self.read(p)
            old = self.last.get(p)
            if old is None or value != old[0]:
                self.last[p] = (value, now)
            silent = now - self.last[p][1]
            if value is not None and value.startswith("failed:"):
                trouble[p] = f"{self._name(p)} failed: {value[len('failed:'):].strip()}"
            elif value != "done" and silent > self.timeout:
                trouble[p] = f"{self._name(p)} stopped responding (no heartbeat for {silent:.0f} s)"
        return trouble

    def _loop(self) -> None:
        while not self.finished.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One heartbeat and one look at the others; gives up the process when one is in trouble."""
        self.beats += 1
        self._publish(str(self.beats))
        trouble = self.observe()
        if trouble:
            self.give_up(trouble)

    def give_up(self, trouble: dict[int, str]) -> None:
        """A peer failed or went silent: leave it to the main thread when it is handling a failure
        already, else record `failed` (process 0) and end this process, which may be stuck in a
        collective that never returns."""
        if self.handled.wait(self.grace):
            self.finished.set()
            return
        message = "; ".join(trouble.values())
        with self.lock:
            if self.message is not None:
                return
            self.message = message
            self.blamed = sorted(trouble)
        self.finished.set()
        self._publish(f"failed: {message}")
        if self.run is not None:
            try:
                # the status file as written (read_status would already call a lock-less run interrupted)
                if (self.run.recorded_status() or {}).get("state") not in FINAL_STATES:
                    self.run.write_status("failed", error=message, finished_at=time.time())
            except Exception:  # noqa: BLE001 - nothing more can be done for the run directory
                pass
        print(f"evorl: error: {message}; ending {self._name(self.me)}", file=sys.stderr, flush=True)
        self.exit(1)

    def explain(self, text: str, probe_s: float = PROBE_S) -> str:
        """The failure of this process as the run should report it: when a peer failed or went
        silent (a failed collective usually means one did), name it; else this process's error."""
        self.handled.set()
        with self.lock:
            if self.message is not None:
                return self.message
        others = [p for p in range(self.count) if p != self.me]
        first = {p: self.read(p) for p in others}
        failed = {p: v for p, v in first.items() if v is not None and v.startswith("failed:")}
        silent: list[int] = []
        if not failed:
            time.sleep(probe_s)
            second = {p: self.read(p) for p in others}
            failed = {p: v for p, v in second.items() if v is not None and v.startswith("failed:")}
            silent = [p for p in others if p not in failed and second[p] != "done" and second[p] == first[p]]
        parts = [f"{self._name(p)} failed: {v[len('failed:'):].strip()}" for p, v in failed.items()]
        parts += [f"{self._name(p)} stopped responding (no heartbeat for {probe_s:.0f} s)" for p in silent]
        message = f"{'; '.join(parts)} (seen by {self._name(self.me)}: {text})" if parts else text
        with self.lock:
            if self.message is None:
                self.message = message
                self.blamed = sorted([*failed, *silent])
            message = self.message
        self.finished.set()
        self._publish(f"failed: {message}")
        return message

    def finish(self) -> None:
        """Leaving normally: tell the others this process is done, stop the heartbeat."""
        if self.message is None:
            self._publish("done")
        self.finished.set()


_liveness: Liveness | None = None


def failure_message(exc: BaseException) -> str:
    """What a run's status says when `exc` ended it. With several processes this names the process
    that failed or went silent (and tells the others that this one failed)."""
    text = f"{type(exc).__name__}: {exc}"
    if _liveness is None:
        return text
    return _liveness.explain(text)


def peer_failed() -> bool:
    """Whether this process's failure was put down to another process (after `failure_message`)."""
    return _liveness is not None and bool(_liveness.blamed)


def exit_now(code: int) -> None:
    """End a process of a failed group at once. A normal exit would wait in JAX's shutdown
    barrier for the dead peer until JAX's heartbeat timeout aborts it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    if _liveness is not None:
        _liveness.finished.set()
    os._exit(code)
