"""The background job registry: start, failure capture, stop, resume (with injected train functions)."""

from __future__ import annotations

import threading
import time

import pytest
from flax import serialization

from evorl_core.config import make_config
from evorl_core.store.rundir import RunDir, RunLock
from evorl_core.training.jobs import JobError, JobRegistry, get_registry

CONFIG = make_config("quick", data="synthetic", num_envs=8, num_steps=16, minibatch_size=32, hidden=(16,),
                     total_timesteps=512, test_days=20)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


class FakeTrain:
    """Writes the run directory like the loop does: running rows until done or stopped."""

    def __init__(self, updates=5, delay=0.0, gate: threading.Event | None = None):
        self.updates, self.delay, self.gate = updates, delay, gate
        self.calls = []

    def __call__(self, config, runs_dir, run_id, *, stop_event=None, resume=False, **kwargs):
        self.calls.append({"config": config, "runs_dir": runs_dir, "run_id": run_id, "resume": resume, **kwargs})
        rd = RunDir.create(runs_dir, run_id)
        rd.write_status("running", env_steps=0)
        if self.gate is not None:
            self.gate.wait(10)
        for u in range(1, self.updates + 1):
            if (stop_event is not None and stop_event.is_set()) or rd.stop_requested():
                rd.write_status("stopped", env_steps=u * 10, finished_at=time.time())
                return rd
            rd.append_metrics([{"update": u, "env_steps": u * 10, "steps_per_sec": 100.0}])
            rd.write_status("running", env_steps=u * 10)
            time.sleep(self.delay)
        rd.write_status("done", env_steps=self.updates * 10, finished_at=time.time())
        return rd


def test_start_writes_queued_synchronously_and_finishes(tmp_path):
    gate = threading.Event()
    fake = FakeTrain(gate=gate)
    reg = JobRegistry(train_fn=fake)
    run_id = reg.start(CONFIG, tmp_path, "r1", models_dir=tmp_path / "m", cache_dir=tmp_path / "c", deploy=True,
                       model_name="m1")
    rd = RunDir.open(tmp_path, run_id)
    status = rd.read_status()
    # visible before the thread does anything: queued (or running once the fake got going)
    assert status["state"] in ("queued", "running")
    assert status["total_steps"] == CONFIG.num_updates * CONFIG.batch_size
    assert rd.read_config()["symbols"] == list(CONFIG.symbols)
    assert reg.is_active(run_id, tmp_path) and run_id in reg.active_run_ids(tmp_path)
    assert reg.active_run_ids(tmp_path / "elsewhere") == []
    gate.set()
    assert reg.join(run_id, tmp_path, timeout=10)
    assert rd.read_status()["state"] == "done"
    assert reg.active_run_ids() == [] or run_id not in reg.active_run_ids()
    call = fake.calls[0]
    assert call["deploy"] is True and call["model_name"] == "m1"
    assert call["cache_dir"] == str(tmp_path / "c") and call["models_dir"] == str(tmp_path / "m")
    assert call["config"] == CONFIG and call["resume"] is False


def test_generated_run_id_and_duplicate_refused(tmp_path):
    reg = JobRegistry(train_fn=FakeTrain())
    run_id = reg.start(CONFIG, tmp_path)
    assert RunDir.open(tmp_path, run_id).read_status() is not None
    reg.join(run_id, tmp_path, timeout=10)
    with pytest.raises(JobError, match="already exists"):
        reg.start(CONFIG, tmp_path, run_id)


def test_invalid_config_refused_before_anything_is_written(tmp_path):
    from evorl_core.config import ConfigError

    reg = JobRegistry(train_fn=FakeTrain())
    with pytest.raises(ConfigError, match="minibatch_size"):
        reg.start(CONFIG.replace(minibatch_size=1000), tmp_path, "bad")
    assert not (tmp_path / "bad").exists()


def test_exception_in_thread_becomes_failed_status(tmp_path):
    def boom(config, runs_dir, run_id, **kwargs):
        raise RuntimeError("exploded on purpose")

    seen = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: seen.append(args)  # an escaping exception would land here
    try:
        reg = JobRegistry(train_fn=boom)
        run_id = reg.start(CONFIG, tmp_path, "boom")
        assert reg.join(run_id, tmp_path, timeout=10)
    finally:
        threading.excepthook = old_hook
    assert seen == []
    status = RunDir.open(tmp_path, run_id).read_status()
    assert status["state"] == "failed"
    assert "RuntimeError: exploded on purpose" in status["error"]
    assert status.get("finished_at")
    assert reg.get(run_id, tmp_path).error == "RuntimeError: exploded on purpose"
    assert not reg.is_active(run_id, tmp_path)


def test_loops_own_failure_message_is_kept(tmp_path):
    def fails_like_the_loop(config, runs_dir, run_id, **kwargs):
        RunDir.open(runs_dir, run_id).write_status("failed", error="DataError: BPCL.csv row 7: close is NaN")
        raise ValueError("BPCL.csv row 7: close is NaN")

    reg = JobRegistry(train_fn=fails_like_the_loop)
    reg.start(CONFIG, tmp_path, "f")
    reg.join("f", tmp_path, timeout=10)
    assert RunDir.open(tmp_path, "f").read_status()["error"] == "DataError: BPCL.csv row 7: close is NaN"


def test_return_without_final_status_is_marked(tmp_path):
    reg = JobRegistry(train_fn=lambda *a, **k: None)
    reg.start(CONFIG, tmp_path, "silent")
    reg.join("silent", tmp_path, timeout=10)
    status = RunDir.open(tmp_path, "silent").read_status()
    assert status["state"] == "interrupted" and "without writing a final status" in status["error"]


def test_stop_sets_event_and_writes_stop_file(tmp_path):
    fake = FakeTrain(updates=10_000, delay=0.005)
    reg = JobRegistry(train_fn=fake)
    run_id = reg.start(CONFIG, tmp_path, "s")
    rd = RunDir.open(tmp_path, run_id)
    assert wait_for(lambda: len(rd.read_metrics()) >= 2)
    assert reg.stop(run_id, tmp_path)
    assert reg.get(run_id, tmp_path).stop_event.is_set()
    assert rd.stop_path.exists()
    assert reg.join(run_id, tmp_path, timeout=10)
    assert rd.read_status()["state"] == "stopped"


def test_stop_a_run_owned_by_another_process(tmp_path):
    rd = RunDir.create(tmp_path, "cli-run")
    owner = RunLock.acquire(rd)  # the owning process (a lock on another descriptor looks the same)
    rd.write_status("running", env_steps=100)
    reg = JobRegistry(train_fn=FakeTrain())
    assert reg.stop("cli-run", tmp_path)
    assert rd.stop_requested()
    assert not reg.stop("missing", tmp_path)
    owner.release()  # the owner died: nothing would read a STOP file, so none is written
    rd.clear_stop()
    assert not reg.stop("cli-run", tmp_path)
    assert not rd.stop_requested()


def test_resume(tmp_path):
    fake = FakeTrain()
    reg = JobRegistry(train_fn=fake)
    rd = RunDir.create(tmp_path, "r")
    with pytest.raises(JobError, match="not found"):
        reg.resume("r", tmp_path)
    rd.write_config({**CONFIG.to_dict(), "data_info": {"synthetic": True}})
    with RunLock.acquire(rd):  # a live owner
        rd.write_status("running")
        with pytest.raises(JobError, match="stop it first"):
            reg.resume("r", tmp_path)
    rd.write_status("stopped")
    with pytest.raises(JobError, match="no checkpoint"):
        reg.resume("r", tmp_path)
    (rd.checkpoint_dir).mkdir()
    (rd.checkpoint_dir / "state.msgpack").write_bytes(b"x")
    with pytest.raises(JobError, match="damaged checkpoint"):
        reg.resume("r", tmp_path)
    (rd.checkpoint_dir / "state.msgpack").write_bytes(serialization.msgpack_serialize({"params": {}}))
    rd.request_stop()
    reg.resume("r", tmp_path, cache_dir=tmp_path / "c")
    assert not rd.stop_path.exists()  # a stale STOP would end the resumed run at once
    assert reg.join("r", tmp_path, timeout=10)
    assert fake.calls[-1]["resume"] is True and fake.calls[-1]["config"] == CONFIG
    assert rd.read_status()["state"] == "done"


def test_process_wide_registry_is_a_singleton():
    assert get_registry() is get_registry()


def test_real_training_stop_and_resume_through_registry(tmp_path):
    """The registry with the real loop: its queued run directory is accepted, stop and resume work."""
    reg = JobRegistry()
    config = CONFIG.replace(total_timesteps=CONFIG.batch_size * 300, updates_per_chunk=1)
    run_id = reg.start(config, tmp_path / "runs", "real", cache_dir=tmp_path / "cache")
    rd = RunDir.open(tmp_path / "runs", run_id)
    assert wait_for(lambda: len(rd.read_metrics()) >= 3, timeout=120), rd.read_status()
    reg.stop(run_id, tmp_path / "runs")
    assert reg.join(run_id, tmp_path / "runs", timeout=120)
    status = rd.read_status()
    assert status["state"] == "stopped", status
    stopped_at = status["env_steps"]
    assert 0 < stopped_at < config.total_timesteps and rd.has_checkpoint()

    reg.resume(run_id, tmp_path / "runs", cache_dir=tmp_path / "cache")
    assert reg.join(run_id, tmp_path / "runs", timeout=300)
    status = rd.read_status()
    assert status["state"] == "done", status
    assert status["env_steps"] == config.num_updates * config.batch_size
    steps = [r["env_steps"] for r in rd.read_metrics()]
    assert steps == sorted(set(steps))  # no duplicated updates after the resume
    assert rd.read_backtest_metrics() and rd.equity_path.exists()
    assert rd.read_config()["data_info"]["synthetic"] is True
