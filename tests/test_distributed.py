"""Several processes, one run (docs/scaling.md): settings, the peer's run directory, the liveness
watch, and real two-process runs on localhost (two CPU subprocesses joined by jax.distributed)
that must train exactly like one process, resume across process counts, and fail in bounded time
when a process is killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from evorl_core.config import ConfigError, make_config
from evorl_core.store.rundir import RunDir
from evorl_core.system import distributed
from evorl_core.system.distributed import Liveness, PeerRunDir
from evorl_core.training import sizing

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
                "OMPI_MCA_orte_hnp_uri", "KUBERNETES_SERVICE_HOST", "JAX_COORDINATOR_ADDRESS",
                distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_ID)


@pytest.fixture
def no_cluster(monkeypatch):
    for name in CLUSTER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- settings --------------------------------------------------------------------------------
def test_settings_come_from_flags_then_environment_then_cluster_detection(no_cluster):
    assert distributed.settings() is None  # nothing given, no cluster: one process
    explicit = {"coordinator_address": "10.0.0.1:7777", "num_processes": 4, "process_id": 3}
    assert distributed.settings("10.0.0.1:7777", 4, 3) == explicit
    env = {distributed.ENV_ADDRESS: "10.0.0.1:7777", distributed.ENV_COUNT: "4", distributed.ENV_ID: "3"}
    assert distributed.settings(environ=env) == explicit
    assert distributed.settings(process_id=1, environ=env)["process_id"] == 1  # a flag wins
    assert distributed.settings("h:1", 1, 0) is None  # one process: nothing to join
    # SLURM, as JAX detects it: several tasks join; one task stays a single process
    slurm = {"SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "node[001-002]", "SLURM_NTASKS": "2",
             "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
    for name, value in slurm.items():
        no_cluster.setenv(name, value)
    assert distributed.detect_cluster() == ("slurm", 2)
    assert distributed.settings() == {"cluster": "slurm"}
    assert distributed.settings(num_processes=1) is None  # --num-processes 1 turns detection off
    no_cluster.setenv("SLURM_NTASKS", "1")
    assert distributed.settings() is None


@pytest.mark.parametrize("kwargs, message", [
    ({"num_processes": 2}, "--coordinator-address, --process-id missing"),
    ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, "process_id: 2 is not in 0..1"),
    ({"coordinator_address": "no-port", "num_processes": 2, "process_id": 0}, "is not HOST:PORT"),
    ({"num_processes": 0}, "num_processes: must be at least 1"),
    ({"environ": {distributed.ENV_COUNT: "two"}}, "EVORL_NUM_PROCESSES: 'two' is not a whole number"),
])
def test_incomplete_or_wrong_settings_are_one_clear_line(no_cluster, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        distributed.settings(**kwargs)


def test_peer_timeout_from_flag_or_environment(no_cluster):
    assert distributed.peer_timeout() == distributed.DEFAULT_PEER_TIMEOUT_S
    no_cluster.setenv(distributed.ENV_PEER_TIMEOUT, "12.5")
    assert distributed.peer_timeout() == 12.5 and distributed.peer_timeout(3) == 3
    with pytest.raises(ConfigError, match="peer_timeout: must be positive"):
        distributed.peer_timeout(0)


# -- the peer's run directory ----------------------------------------------------------------
def test_a_peer_run_directory_writes_nothing(tmp_path):
    peer = PeerRunDir(tmp_path / "private" / "run-1")
    peer.write_config({"a": 1})
    assert peer.write_status("running", env_steps=5)["env_steps"] == 5
    peer.append_metrics([{"env_steps": 1}])
    peer.truncate_metrics(0)
    peer.append_population("hyperparams", [{"update": 1}])
    peer.truncate_population(0)
    peer.request_stop()
    peer.clear_stop()
    assert not peer.stop_requested() and peer.read_status() is None and peer.read_config() is None
    assert not (tmp_path / "private").exists()
    # Every RunDir method that is not a reader must be a no-op here: a new writer on RunDir
    # (a lock, a heartbeat file...) has to be added to PeerRunDir, or process 1 would write.
    readers = ("read_", "has_", "is_", "load_", "recorded_", "population_path", "lock_held", "owner",
               "damaged_status")
    methods = {n for n, v in vars(RunDir).items() if callable(v) and not n.startswith("_")
               and not isinstance(v, classmethod)}
    writers = {n for n in methods if not n.startswith(readers)}
    assert writers - set(vars(PeerRunDir)) == set()


# -- the liveness watch, with a stand-in for the coordination service's key-value store --------
class FakeStore:
    def __init__(self):
        self.values: dict[str, str] = {}

    def key_value_set(self, key, value, allow_overwrite=False):
        self.values[key] = value

    def blocking_key_value_get(self, key, timeout_ms):
        if key not in self.values:
            raise RuntimeError("DEADLINE_EXCEEDED")
        return self.values[key]


def test_a_silent_or_failed_peer_is_named_and_the_run_fails(tmp_path):
    store, exits = FakeStore(), []
    run = RunDir.create(tmp_path, "run")
    run.write_status("running")
    watch = Liveness(store, 0, 3, timeout=10.0, start=False, exit=exits.append, grace=0.0)
    watch.run = run
    assert store.values[Liveness.key(0)] == "0" and list(watch.watched()) == [1, 2]
    store.key_value_set(Liveness.key(1), "5")
    store.key_value_set(Liveness.key(2), "5")
    assert watch.observe(now=100.0) == {}
    store.key_value_set(Liveness.key(2), "6")  # process 2 beats on, process 1 is silent
    assert watch.observe(now=105.0) == {}
    assert watch.observe(now=111.0) == {1: "process 1 of 3 stopped responding (no heartbeat for 11 s)"}
    store.key_value_set(Liveness.key(1), "done")  # left normally: never in trouble
    store.key_value_set(Liveness.key(2), "failed: DataError: AAA.csv missing")
    trouble = watch.observe(now=200.0)
    assert trouble == {2: "process 2 of 3 failed: DataError: AAA.csv missing"}
    watch.give_up(trouble)  # process 0: record the failure, tell the others, end the process
    assert exits == [1]
    status = run.read_status()
    assert status["state"] == "failed" and status["error"] == "process 2 of 3 failed: DataError: AAA.csv missing"
    assert store.values[Liveness.key(0)].startswith("failed: process 2 of 3 failed")


def test_a_failed_collective_is_put_down_to_the_process_that_went_silent():
    store = FakeStore()
    watch = Liveness(store, 1, 2, timeout=60.0, start=False, exit=lambda code: None, grace=0.0)
    assert list(watch.watched()) == [0]  # a peer watches process 0
    store.key_value_set(Liveness.key(0), "41")  # and process 0 stays silent during the probe
    message = watch.explain("ValueError: Gloo all-reduce failed", probe_s=0.0)
    assert message == ("process 0 of 2 stopped responding (no heartbeat for 0 s) "
                       "(seen by process 1 of 2: ValueError: Gloo all-reduce failed)")
    assert watch.blamed == [0] and store.values[Liveness.key(1)] == f"failed: {message}"
    # a process whose own error comes first reports just that error
    alone = Liveness(FakeStore(), 0, 2, timeout=60.0, start=False)
    alone.client.key_value_set(Liveness.key(1), "done")
    assert alone.explain("ConfigError: num_envs: ...", probe_s=0.0) == "ConfigError: num_envs: ..."
    assert alone.blamed == []


# -- memory: a population spread over many devices is checked per device --------------------------
def test_memory_is_checked_per_device_of_the_mesh():
    assert sizing.mesh_shards(1, 1) == (1, 1) and sizing.mesh_shards(1, 4) == (1, 4)
    assert sizing.mesh_shards(256, 32) == (32, 1) and sizing.mesh_shards(6, 4) == (2, 2)
    config = make_config("production", population=256, member_group=256)  # all side by side
    whole = sizing.memory_estimate(config)
    assert sizing.memory_estimate(config, 32, 1) == pytest.approx(whole / 32)
    sizing.check_fits(config, available=whole / 16, population_shards=32)  # 8 members a device: fits
    with pytest.raises(ConfigError, match=r"population: 256 members need about .* GiB, .*at most 128 members fit"):
        sizing.check_fits(config, available=whole / 2)  # one device
    # one device, members in groups of 4: every member's held bytes, one group's working bytes
    grouped = make_config("production", population=256, member_group=4)
    held, working = sizing.memory_parts(grouped)
    sizing.check_fits(grouped, available=256 * held + 4 * working)
    with pytest.raises(ConfigError, match=r"population: 256 members need about .*at most 255 members fit"):
        sizing.check_fits(grouped, available=256 * held + 4 * working - 1)
    with pytest.raises(ConfigError, match=r"GiB per device, .*at most 128 members fit"):
        sizing.check_fits(config, available=whole / 64, population_shards=32)
    # one agent: its env batch, rollout and minibatch split over the data axis, its parameters whole
    agent = make_config("production")
    assert sizing.memory_estimate(agent) / 4 < sizing.memory_estimate(agent, 1, 4) < sizing.memory_estimate(agent)


# -- two real processes on localhost ---------------------------------------------------------
SCRIPT = textwrap.dedent("""
    import json, sys, threading
    from evorl_core.system import distributed
    distributed.initialize()  # EVORL_COORDINATOR_ADDRESS / EVORL_NUM_PROCESSES / EVORL_PROCESS_ID, if set
    import jax
    from evorl_core.training import pipeline
    from evorl_core.config import make_config
    from evorl_core.data import build_market, synthetic_ohlcv

    out, resume_dir = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    config = make_config("quick", num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,),
                         window=8, test_days=20, total_timesteps=8 * 16 * 4, updates_per_chunk=2,
                         symbols=("AAA", "BBB"), data="synthetic")
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in config.symbols}
    market = build_market(frames, window=8, test_days=20, info={"source": "synthetic", "synthetic": True})
    keep = ("policy_loss", "value_loss", "entropy", "approx_kl", "reward_mean", "explained_variance")
    result = {"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count()}
    if resume_dir:  # continue a run another process count stopped half-way
        resumed = pipeline.run(config, resume_dir, "half", resume=True, market=market)
        result["resumed"] = [{k: r[k] for k in ("update", *keep)} for r in resumed.read_metrics()]
        result["resumed_state"] = (resumed.read_status() or {}).get("state")
    if sys.argv[3:] != ["resume-only"]:
        run = pipeline.run(config, out, "dp", market=market)
        pbt_config = config.replace(population=2, pbt_interval=2, val_days=30, embargo_days=8).validated()
        pbt_market = build_market(frames, window=8, test_days=20, val_days=30, embargo_days=8,
                                  info={"source": "synthetic", "synthetic": True})
        pbt = pipeline.run(pbt_config, out, "pbt", market=pbt_market)
        stop = threading.Event()  # stop after the first chunk: a checkpoint half-way
        half = pipeline.run(config, out, "half", market=market, stop_event=stop, progress=lambda info: stop.set())
        result.update({
            "status": run.read_status(), "pbt_status": pbt.read_status(), "half_status": half.read_status(),
            "metrics": [{k: r[k] for k in keep} for r in run.read_metrics()],
            "pbt_metrics": [{k: r[k] for k in ("update", "member", *keep)} for r in pbt.read_metrics()],
            "pbt_fitness": [r["fitness"] for r in pbt.read_population("hyperparams") if "fitness" in r]})
    print(json.dumps(result))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(tmp_path: Path, process: int | None = None, count: int = 2, port: int = 0,
                devices: int = 1) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", *CLUSTER_VARS)}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1",
               TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(exist_ok=True)
    if process is not None:
        env.update({distributed.ENV_ADDRESS: f"127.0.0.1:{port}", distributed.ENV_COUNT: str(count),
                    distributed.ENV_ID: str(process)})
    return env


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])  # gloo prints a line of its own first


def run_one(tmp_path: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], env=process_env(tmp_path), capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return last_json(proc.stdout)


def run_two(tmp_path: Path, args: list[list[str]], timeout: float = 600) -> list[dict]:
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, *a], env=process_env(tmp_path, i, 2, port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for i, a in enumerate(args)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-4000:]
            results.append(last_json(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results


def assert_close(rows_a: list[dict], rows_b: list[dict]) -> None:
    assert len(rows_a) == len(rows_b)
    for a, b in zip(rows_a, rows_b, strict=True):
        for key in a:
            if key in ("update", "member"):
                assert a[key] == b[key]
            else:
                np.testing.assert_allclose(b[key], a[key], rtol=2e-3, atol=2e-5, err_msg=key)


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume_across_process_counts(tmp_path):
    one = run_one(tmp_path, str(tmp_path / "one"))  # the reference, and a run stopped half-way
    writer, peer = run_two(tmp_path, [[str(tmp_path / "two"), str(tmp_path / "one")],
                                      [str(tmp_path / "peer"), str(tmp_path / "one")]])
    back = run_one(tmp_path, str(tmp_path / "unused"), str(tmp_path / "two"), "resume-only")

    assert one["processes"] == 1 and one["status"]["mesh"] is None
    assert (writer["process"], writer["processes"], writer["devices"]) == (0, 2, 2)
    # data parallel: the env batch split over both processes' devices
    assert writer["status"]["mesh"] == {"population": 1, "data": 2} and writer["status"]["processes"] == 2
    assert writer["status"]["state"] == "done"
    assert_close(one["metrics"], writer["metrics"])
    # a population of 2 sharded over the processes: one member each
    assert writer["pbt_status"]["mesh"] == {"population": 2, "data": 1}
    assert_close(one["pbt_metrics"], writer["pbt_metrics"])
    np.testing.assert_allclose(writer["pbt_fitness"], one["pbt_fitness"], rtol=1e-3, atol=1e-5)
    # exactly one process writes: process 1 saw no run directory and created nothing, anywhere
    assert peer["process"] == 1 and peer["status"] is None and peer["resumed_state"] is None
    assert not (tmp_path / "peer").exists() and not (tmp_path / "tmp" / "evorl-peer").exists()
    assert {p.name for p in (tmp_path / "two").iterdir()} == {"dp", "pbt", "half"}
    # resume: stopped by 1 process, finished by 2; stopped by 2, finished by 1; as if never stopped
    assert one["half_status"]["state"] == writer["half_status"]["state"] == "stopped"
    assert writer["resumed_state"] == back["resumed_state"] == "done"
    strip = [{k: v for k, v in r.items() if k != "update"} for r in one["metrics"]]
    for resumed in (writer["resumed"], back["resumed"]):
        assert [r["update"] for r in resumed] == [1, 2, 3, 4]
        assert_close(strip, [{k: v for k, v in r.items() if k != "update"} for r in resumed])


TRAIN_ARGS = ["-m", "evorl_core.cli", "train", "--preset", "quick", "--data", "synthetic", "--symbols", "AAA", "BBB",
              "--num-envs", "8", "--num-steps", "16", "--minibatch-size", "32", "--epochs", "1", "--hidden", "16",
              "--window", "8", "--test-days", "20", "--timesteps", str(8 * 16 * 100000), "--updates-per-chunk", "1",
              "--quiet", "--run-id", "killed"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_killed_or_hung_process_fails_the_run_in_bounded_time(tmp_path, how):
    """killed (SIGKILL): gloo fails the collective at once, a 3 s probe names the silent process.
    hung (SIGSTOP, as a NCCL collective with a dead peer can hang): the watcher gives up after
    the peer timeout."""
    port = free_port()
    runs = tmp_path / "runs"
    procs = []
    for i in range(2):
        env = process_env(tmp_path)
        env[distributed.ENV_PEER_TIMEOUT] = "20" if how == "killed" else "8"
        flags = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                 "--runs-dir", str(runs if i == 0 else tmp_path / "peer-runs"), "--cache-dir", str(tmp_path / "cache")]
        procs.append(subprocess.Popen([sys.executable, *TRAIN_ARGS, *flags], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=tmp_path))
    writer, peer = procs
    status_path = runs / "killed" / "status.json"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait until both processes train together
            status = json.loads(status_path.read_text()) if status_path.exists() else {}
            if status.get("state") == "running" and status.get("updates_done", 0) >= 2:
                break
            assert writer.poll() is None and peer.poll() is None, writer.stderr.read()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("the two processes never trained together")
        peer.send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        killed_at = time.monotonic()
        _, err = writer.communicate(timeout=120)
        took = time.monotonic() - killed_at
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    status = json.loads(status_path.read_text())
    assert writer.returncode == 1, err[-3000:]
    assert status["state"] == "failed"
    assert status["error"].startswith("process 1 of 2 stopped responding"), status["error"]
    assert "process 1 of 2 stopped responding" in err
    if how == "hung":
        assert took >= 8, took
    assert took < 40, took  # killed: a failed collective, a 3 s probe; hung: the 8 s timeout. Never endless.
    print(f"{how} process 1: process 0 ended the run after {took:.1f} s")
    assert not (tmp_path / "peer-runs").exists()
