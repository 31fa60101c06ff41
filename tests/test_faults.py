"""The fault matrix of docs/reliability.md: every fault ends in a clear state, nothing is lost,
nothing escapes its folder.

Each test reproduces one case (numbered as in the reliability issue: 1 security, 2 results that lie,
3 one owner per run, 4 liveness and signals, 5 damaged files, 6 disk full, 7 validation before
training, 8 one-line errors, 9 modes and records) and asserts what a user sees: the exit code, one
line on stderr naming the file or field, the state `evorl runs` and the dashboard (AppTest) show,
and the files left behind. Kill and signal cases run the CLI in a real subprocess. The browser
cases (an upload with a path-like name, the server stopping under a run) are at the end.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from flax import serialization
from market_csv import write_csv
from streamlit.testing.v1 import AppTest
from test_browser import chromium_page, free_port

from evorl_core.agents import checkpoints
from evorl_core.cli import main
from evorl_core.config import make_config
from evorl_core.data import DataError, read_symbol_csv, synthetic_ohlcv
from evorl_core.deploy.bundle import DeployError, deploy_run, load_bundle
from evorl_core.deploy.signal import signals
from evorl_core.store import atomic, rundir
from evorl_core.store.rundir import RunDir
from evorl_core.training import jobs, pipeline
from evorl_ui import settings, widgets

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=1, hidden=(16,), window=8, test_days=20)
TINY_ARGS = ["--preset", "quick", "--data", "synthetic", "--num-envs", "8", "--num-steps", "16",
             "--minibatch-size", "32", "--epochs", "1", "--hidden", "16", "--window", "8", "--test-days", "20",
             "--quiet"]
BATCH = 8 * 16


# helpers ------------------------------------------------------------------------------------
def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str, command: str = "train") -> str:
    """The one error line: no traceback, exactly one `evorl <command>: error:` line."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"evorl {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def strict_json(text: str):
    def reject(constant):
        raise AssertionError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def runs_by_id(capsys, runs_dir: Path) -> dict[str, dict]:
    code, out, err = cli(capsys, "runs", "--runs-dir", runs_dir, "--json")
    assert code == 0 and "Traceback" not in err, err
    return {r["run_id"]: r for r in strict_json(out)}


def tiny_config(**overrides):
    return make_config("quick", data="synthetic", **{**TINY, **overrides})


def copy_run(src: RunDir, runs_dir: Path, run_id: str | None = None) -> RunDir:
    dst = Path(runs_dir) / (run_id or src.run_id)
    shutil.copytree(src.path, dst)
    return RunDir(dst)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def stopped_run(base) -> RunDir:
    """A real tiny run stopped after 3 of 12 updates (checkpoint at 3): resumable."""
    stop = pipeline.StopSignal()

    def progress(info):
        if info.get("update", 0) >= 3:
            stop.set()

    rd = pipeline.run(tiny_config(total_timesteps=12 * BATCH, updates_per_chunk=1), base / "src", "stopped",
                      stop_event=stop, progress=progress, cache_dir=base / "cache")
    assert rd.read_status()["state"] == "stopped" and rd.has_checkpoint()
    return rd


@pytest.fixture(scope="module")
def done_run(base) -> RunDir:
    rd = pipeline.run(tiny_config(total_timesteps=4 * BATCH), base / "src", "done", cache_dir=base / "cache")
    assert rd.read_status()["state"] == "done"
    return rd


@pytest.fixture
def dash(tmp_path, monkeypatch) -> dict[str, Path]:
    """Directories of a dashboard under test (AppTest reads them from the environment)."""
    paths = {"runs": tmp_path / "runs", "models": tmp_path / "models", "cache": tmp_path / "cache"}
    paths["runs"].mkdir()
    monkeypatch.setenv("EVORL_RUNS_DIR", str(paths["runs"]))
    monkeypatch.setenv("EVORL_MODELS_DIR", str(paths["models"]))
    monkeypatch.setenv("EVORL_DATA_CACHE", str(paths["cache"]))
    return paths


def open_page(page: str, run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
    if run_id:
        at.query_params["run"] = run_id
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def progress_text(at: AppTest) -> str:
    return " ".join(el.proto.text for el in at.get("progress"))


def alerts(at: AppTest) -> str:
    return " ".join([e.value for e in at.error] + [w.value for w in at.warning])


# 1. security: uploads never use the client's file name as a path ------------------------------
class Upload:
    """What Streamlit's UploadedFile offers save_uploads: a client-chosen name and the bytes."""

    def __init__(self, name: str, content: bytes):
        self.name, self._content = name, content

    def getvalue(self) -> bytes:
        return self._content


def test_1_upload_names_and_symbols_cannot_escape_the_upload_folder(tmp_path, monkeypatch):
    good = write_csv(tmp_path / "src" / "BPCL.csv", synthetic_ohlcv("BPCL", n_days=120, seed=1)).read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "cache" / "uploads" / "data"
    hostile = {"BPCL": Upload(str(outside / "evil.csv"), good),
               "TATASTEEL": Upload("../../../../evil2.csv", good)}
    spec, problems = widgets.save_uploads(hostile, ["BPCL", "TATASTEEL"], folder)
    assert problems == [] and spec == f"csv:{folder}"
    assert sorted(p.name for p in folder.iterdir()) == ["BPCL.csv", "TATASTEEL.csv"]
    assert (folder / "BPCL.csv").read_bytes() == good
    assert list(outside.iterdir()) == []
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))

    # a path-like symbol is refused before anything is written
    spec, problems = widgets.save_uploads({"../../x": Upload("x.csv", good)}, ["../../x"], tmp_path / "f2")
    assert spec is None and "not a valid ticker" in problems[0]
    assert not (tmp_path / "f2").exists() and not (tmp_path / "x.csv").exists()

    # validated in memory first: one bad file, nothing written (the old folder keeps its files)
    bad = {"BPCL": Upload("BPCL.csv", good), "TATASTEEL": Upload("T.csv", b"Date,Open\n2024-01-01,abc\n")}
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    spec, problems = widgets.save_uploads(bad, ["BPCL", "TATASTEEL"], folder)
    assert spec is None and problems[0].startswith("TATASTEEL: T.csv: missing column")  # named as the user named it
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    # the folder name comes from us and is checked too
    monkeypatch.setenv("EVORL_DATA_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="upload folder name"):
        settings.uploads_dir("../../escape")
    assert settings.uploads_dir("run-1") == tmp_path / "cache" / "uploads" / "run-1"


# 2. results that lie: NaN training, non-finite models, invalid JSON, prices float32 cannot hold --
def test_2_nan_training_fails_as_diverged(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--timesteps", 4 * BATCH, "--lr", "1e30",
                       "--runs-dir", runs, "--run-id", "nan", "--deploy", "--models-dir", tmp_path / "models")
    assert code == 1
    assert re.search(r"diverged (at|by) update \d+ \((policy_loss|value_loss|entropy|approx_kl) = nan|"
                     r"network parameters are not finite\)", error_line(err)), err
    row = runs_by_id(capsys, runs)["nan"]
    assert row["state"] == "failed" and "diverged" in row["error"]
    assert not (tmp_path / "models").exists()  # nothing deployed
    assert not (runs / "nan" / "backtest").exists()  # no flat backtest pretending to be a result


def test_2_divergence_keeps_the_last_finite_checkpoint(stopped_run, tmp_path, capsys):
    rd = copy_run(stopped_run, tmp_path / "runs")
    # finite parameters, but a learning rate (a runner leaf, as an evolved hyperparameter) gone wild
    raw = serialization.msgpack_restore((rd.checkpoint_dir / "state.msgpack").read_bytes())
    raw["hyper"]["lr"] = np.float32(1e30)
    (rd.checkpoint_dir / "state.msgpack").write_bytes(serialization.msgpack_serialize(raw))
    before = (rd.checkpoint_dir / "state.msgpack").read_bytes()
    code, _, err = cli(capsys, "train", "--resume", rd.path, "--quiet")
    assert code == 1 and "diverged" in error_line(err)
    assert rd.read_status()["state"] == "failed"
    assert (rd.checkpoint_dir / "state.msgpack").read_bytes() == before
    raw = serialization.msgpack_restore(before)
    assert all(np.isfinite(np.asarray(x)).all() for x in leaves(raw["params"]))


def leaves(tree):
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in leaves(v)]
    return [tree]


def nan_params(rd: RunDir) -> None:
    """Overwrite a run's checkpoint with NaN parameters (what a diverged run used to save)."""
    raw = serialization.msgpack_restore((rd.checkpoint_dir / "state.msgpack").read_bytes())

    raw["params"] = _deep_nan(raw["params"])
    (rd.checkpoint_dir / "state.msgpack").write_bytes(serialization.msgpack_serialize(raw))


def test_2_deploy_and_signal_refuse_a_non_finite_model(done_run, tmp_path, capsys):
    models = tmp_path / "models"
    good = copy_run(done_run, tmp_path / "runs", "good")
    assert cli(capsys, "deploy", "--run", good.path, "--models-dir", models)[0] == 0
    code, out, err = cli(capsys, "signal", "--model", "good", "--models-dir", models, "--data", "synthetic",
                         "--json", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    assert {s["symbol"] for s in strict_json(out)["signals"]} == set(done_run.load_config()["symbols"])

    bad = copy_run(done_run, tmp_path / "runs", "bad")
    nan_params(bad)
    code, _, err = cli(capsys, "deploy", "--run", bad.path, "--models-dir", models)
    assert code == 2 and "not finite" in error_line(err, "deploy")
    assert not (models / "bad").exists()

    # a bundle deployed before this check existed: signal refuses it, never prints NaN
    shutil.copytree(models / "good", models / "old")
    bundle = json.loads((models / "old" / "bundle.json").read_text())
    bundle.pop("checksum")  # deployed before bundles carried checksums
    (models / "old" / "bundle.json").write_text(json.dumps({**bundle, "name": "old"}))
    params = serialization.msgpack_restore((models / "old" / "params.msgpack").read_bytes())
    (models / "old" / "params.msgpack").write_bytes(serialization.msgpack_serialize(_deep_nan(params)))
    code, out, err = cli(capsys, "signal", "--model", "old", "--models-dir", models, "--data", "synthetic",
                         "--json", "--cache-dir", tmp_path / "cache")
    assert code == 2 and "not finite" in error_line(err, "signal") and out == ""
    with pytest.raises(DeployError, match="not finite"):
        load_bundle("old", models)


def _deep_nan(tree):
    if isinstance(tree, dict):
        return {k: _deep_nan(v) for k, v in tree.items()}
    return np.full_like(tree, np.nan)


def test_2_signal_json_is_valid_json_even_with_nan_fields(done_run, tmp_path, capsys, monkeypatch):
    models = tmp_path / "models"
    deploy_run(done_run, "m", models)
    real = signals

    def with_nan(bundle, frames, **kw):
        return [{**s, "close": float("nan")} for s in real(bundle, frames, **kw)]

    monkeypatch.setattr("evorl_core.cli.signals", with_nan)
    code, out, _ = cli(capsys, "signal", "--model", "m", "--models-dir", models, "--data", "synthetic", "--json",
                       "--cache-dir", tmp_path / "cache")
    assert code == 0
    assert all(s["close"] is None for s in strict_json(out)["signals"])


def test_2_prices_float32_cannot_hold_are_rejected(tmp_path, capsys):
    frame = synthetic_ohlcv("BPCL", n_days=200, seed=3)
    frame[["open", "high", "low", "close"]] *= 1e300  # finite in float64, inf in float32
    path = write_csv(tmp_path / "csv" / "BPCL.csv", frame)
    with pytest.raises(DataError, match=r"BPCL.csv: column 'Open', row 2: price [0-9.]+e\+30\d is outside"):
        read_symbol_csv(path)
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--symbols", "BPCL", "--data", f"csv:{tmp_path / 'csv'}",
                       "--runs-dir", tmp_path / "runs", "--run-id", "big")
    assert code == 2 and "float32" in error_line(err)
    assert not (tmp_path / "runs" / "big").exists()  # round 3, case 10: refused before a run exists


# subprocess training: a real `evorl train` that checkpoints often and trains slowly enough to be hit
CHILD = """
import sys, time
from evorl_core.store.rundir import RunDir
from evorl_core.training import loop
loop.CHECKPOINT_EVERY_S = 0.3  # so that a kill finds a recent checkpoint
_append = RunDir.append_metrics
def _slow(self, rows):
    time.sleep(0.03)
    _append(self, rows)
RunDir.append_metrics = _slow
from evorl_core.cli import main
sys.exit(main(sys.argv[1:]))
"""
LONG_ARGS = [*TINY_ARGS, "--timesteps", str(5000 * BATCH), "--updates-per-chunk", "1"]


def spawn_train(runs: Path, run_id: str, *extra: str, log: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    out = open(log or runs.parent / f"{run_id}.log", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, "-c", CHILD, "train", *LONG_ARGS, "--runs-dir", str(runs),
                             "--run-id", run_id, *extra], cwd=ROOT, env=env, stdout=out, stderr=out)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def training_with_checkpoint(rd: RunDir, updates: int = 3):
    def ready() -> bool:
        status = rd.read_status() or {}
        return (status.get("state") == "running" and rd.has_checkpoint()
                and status.get("env_steps", 0) >= updates * BATCH)
    return ready


def test_3_one_owner_per_run_id(tmp_path, capsys):
    """Two trainers with one run id: exactly one trains, the other is refused at once; a resume of
    the live run is refused; a finished id is never overwritten."""
    runs = tmp_path / "runs"
    runs.mkdir()
    first, second = spawn_train(runs, "same"), spawn_train(runs, "same", log=tmp_path / "second.log")
    rd = RunDir(runs / "same")
    try:
        wait_until(lambda: first.poll() is not None or second.poll() is not None, 120, "one trainer to give up")
        loser, winner = (first, second) if first.poll() is not None else (second, first)
        assert loser.returncode == 2
        log = (runs.parent / "same.log").read_bytes().decode() + (tmp_path / "second.log").read_text()
        assert re.search(r"evorl train: error: run (id )?'same' (already exists|is in use)", log), log
        assert "Traceback" not in log
        wait_until(training_with_checkpoint(rd), 120, "the winner to train")
        assert winner.poll() is None and rd.lock_held()
        assert rd.owner()["pid"] == winner.pid

        code, _, err = cli(capsys, "train", "--resume", rd.path, "--quiet")
        assert code == 2 and re.search(r"is running \(pid \d+ on .*\); stop it first", error_line(err))
        assert runs_by_id(capsys, runs)["same"]["state"] == "running"
        rd.request_stop()
        assert winner.wait(120) == 0
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
    steps = [r["env_steps"] for r in rd.read_metrics()]
    assert steps == sorted(set(steps)) and steps[0] == BATCH  # one writer: no mixed lines
    assert rd.read_status()["state"] == "stopped"

    before = {p.name: p.read_bytes() for p in rd.path.iterdir() if p.is_file()}
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--timesteps", BATCH, "--runs-dir", runs, "--run-id", "same")
    assert code == 2 and "run id 'same' already exists" in error_line(err) and "state stopped" in err
    assert {p.name: p.read_bytes() for p in rd.path.iterdir() if p.is_file()} == before


# 4. liveness and signals --------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_4_signal_checkpoints_then_interrupted_and_resumes(sig, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = spawn_train(runs, "sig")
    rd = RunDir(runs / "sig")
    try:
        wait_until(training_with_checkpoint(rd), 120, "training")
        proc.send_signal(sig)
        assert proc.wait(60) == 128 + sig
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (runs.parent / "sig.log").read_text()
    assert "Traceback" not in log and f"{signal.Signals(sig).name}: stopping" in log
    assert f"resume with: evorl train --resume {rd.path}" in log
    status = rd.read_status()
    assert status["state"] == "interrupted" and f"interrupted by {signal.Signals(sig).name}" in status["error"]
    meta = json.loads((rd.checkpoint_dir / "meta.json").read_text())
    assert meta["env_steps"] == status["env_steps"]  # the checkpoint is of the moment it stopped
    assert runs_by_id(capsys, runs)["sig"]["state"] == "interrupted"
    assert not rd.lock_held()

    # resumable: continue a little in this process, then stop; no duplicated or lost updates
    stop = pipeline.StopSignal()
    pipeline.run(tiny_config(), runs, "sig", resume=True, stop_event=stop,
                 progress=lambda info: stop.set() if info["update"] >= meta["updates_done"] + 2 else None)
    assert rd.read_status()["state"] == "stopped"
    steps = [r["env_steps"] for r in rd.read_metrics()]
    assert steps == list(range(BATCH, steps[-1] + 1, BATCH)) and steps[-1] > meta["env_steps"]


def test_4_kill_9_reads_as_interrupted_and_resumes_from_the_dashboard(dash, capsys):
    runs = dash["runs"]
    proc = spawn_train(runs, "killed")
    rd = RunDir(runs / "killed")
    try:
        wait_until(training_with_checkpoint(rd), 120, "training")
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    recorded = rd.recorded_status()
    assert recorded["state"] == "running"  # what the dead process left behind
    row = runs_by_id(capsys, runs)["killed"]
    assert row["state"] == "interrupted" and "gone" in row["error"] and row["recorded_state"] == "running"
    code, out, _ = cli(capsys, "runs", "--runs-dir", runs)
    assert re.search(r"killed\s+interrupted", out)

    for page in ("home", "live"):
        at = open_page(page, "killed")
        assert "Could not read runs" not in alerts(at)
        if page == "home":
            table = at.dataframe[0].value
            assert table.loc[table["run"] == "killed", "state"].item() == "interrupted"
    assert "interrupted" in progress_text(at) and "ETA" not in progress_text(at)
    assert "gone" in alerts(at)
    assert at.button(key="live_stop").disabled
    resume = at.button(key="live_resume")
    assert not resume.disabled
    steps_before = rd.read_status()["env_steps"]
    resume.click().run()
    registry = jobs.get_registry()
    try:
        wait_until(lambda: (rd.read_status() or {}).get("env_steps", 0) > steps_before + 2 * BATCH, 120,
                   "the resumed run to train")
    finally:
        registry.stop("killed", runs)
        assert registry.join("killed", runs, timeout=120)
    assert rd.read_status()["state"] == "stopped"



# 5. a damaged status.json is one `damaged` row and hides nothing ------------------------------------
def test_5_damaged_status_is_one_row_and_hides_no_other_run(done_run, dash, capsys):
    runs = dash["runs"]
    copy_run(done_run, runs, "good")
    damage = {"as-list": b"[]", "torn": b'{"state": "runn', "binary": b"\xff\xfe\x00status",
              "unknown": b'{"state": "exploded"}'}
    for run_id, content in damage.items():
        rd = copy_run(done_run, runs, run_id)
        rd.status_path.write_bytes(content)
    rows = runs_by_id(capsys, runs)
    assert set(rows) == {"good", *damage}
    assert rows["good"]["state"] == "done"
    for run_id in damage:
        assert rows[run_id]["state"] == "damaged", rows[run_id]
        assert str(runs / run_id / "status.json") in rows[run_id]["error"]
    assert "expected a JSON object, found list" in rows["as-list"]["error"]
    assert "not valid JSON" in rows["torn"]["error"] and "not UTF-8" in rows["binary"]["error"]
    code, out, err = cli(capsys, "runs", "--runs-dir", runs)
    assert code == 0 and err == ""
    assert len(re.findall(r"^\S+\s+damaged\s", out, re.M)) == 4 and re.search(r"^good\s+done\s", out, re.M)

    at = open_page("home")
    assert "Could not read runs" not in alerts(at)
    table = at.dataframe[0].value
    assert dict(zip(table["run"], table["state"], strict=True)) == {"good": "done", **dict.fromkeys(damage, "damaged")}
    at = open_page("live", "as-list")
    assert "Run damaged" in alerts(at) and "status.json: expected a JSON object" in alerts(at)
    assert at.button(key="live_stop").disabled and at.button(key="live_resume").disabled
    at = open_page("backtest", "good")
    assert [e.value for e in at.error] == []


# 6. disk full -----------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A small file system: a 512 KiB tmpfs when this process may mount one (root), else a patched
    write path that fails like a full disk. Yields (directory, fill(bytes_left), how)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = (os.geteuid() == 0 and shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True).returncode == 0)
    if mounted:
        def fill(left: int) -> None:
            st = os.statvfs(mnt)
            free = st.f_bavail * st.f_frsize
            (mnt / "filler").write_bytes(b"\0" * max(0, free - left))

        yield mnt, fill, "tmpfs"
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        return
    budget = {"left": None}
    real = atomic.atomic_write_many

    def limited(files):
        size = sum(len(b) for b in files.values())
        if budget["left"] is not None and size > budget["left"]:
            raise atomic.storage_error(next(iter(files)), OSError(errno.ENOSPC, "No space left on device"))
        real(files)

    monkeypatch.setattr(rundir, "atomic_write_many", limited)
    monkeypatch.setattr(checkpoints, "atomic_write_many", limited)
    yield mnt, lambda left: budget.update(left=left), "patched write"


def test_6_disk_full_during_training_keeps_the_last_checkpoint(stopped_run, small_disk, capsys,
                                                                 record_property):
    disk, fill, how = small_disk
    record_property("disk_full_simulated_with", how)  # "tmpfs" where root may mount, else "patched write"
    rd = copy_run(stopped_run, disk / "runs")
    good = (rd.checkpoint_dir / "state.msgpack").read_bytes()
    fill(16 * 1024)  # room for status and metrics lines, not for a 22 KB checkpoint
    # the compilation cache beside the runs would take that room first (JAX only warns when it cannot write)
    code, _, err = cli(capsys, "train", "--resume", rd.path, "--quiet", "--no-compile-cache")
    assert code == 1, (how, err)
    line = error_line(err)
    assert f"no space left on device writing {rd.checkpoint_dir / 'state.msgpack'}" in line, (how, line)
    status = rd.read_status()
    assert status["state"] == "failed" and "no space left on device writing" in status["error"]
    assert (rd.checkpoint_dir / "state.msgpack").read_bytes() == good  # the last good checkpoint, intact
    assert sorted(p.name for p in rd.checkpoint_dir.iterdir()) == ["meta.json", "state.msgpack"]  # no temp files
    assert runs_by_id(capsys, disk / "runs")["stopped"]["state"] == "failed"


def test_6_disk_full_before_the_first_status_leaves_a_visible_run(small_disk, capsys, record_property):
    disk, fill, how = small_disk
    record_property("disk_full_simulated_with", how)
    (disk / "runs").mkdir()
    fill(0)
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--timesteps", BATCH, "--runs-dir", disk / "runs",
                       "--run-id", "full")
    assert code == 1, (how, err)
    assert re.search(r"no space left on device writing \S+/runs/full/\S+", error_line(err)), (how, err)
    row = runs_by_id(capsys, disk / "runs")["full"]  # not invisible
    assert row["state"] in ("failed", "damaged"), row
    if row["state"] == "damaged":
        assert "status.json: missing" in row["error"]


# 7. everything is validated before training starts ------------------------------------------------
def test_7_bad_model_name_is_refused_before_training(tmp_path, dash, capsys):
    runs = tmp_path / "cli-runs"
    start = time.monotonic()
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--timesteps", BATCH, "--runs-dir", runs, "--run-id", "r",
                       "--deploy", "--model-name", "../../x")
    assert code == 2 and "model name '../../x' is invalid" in error_line(err)
    assert not (runs / "r").exists() and time.monotonic() - start < 30

    at = open_page("train")
    at.selectbox(key="train_source").set_value("synthetic").run()
    at.checkbox(key="train_deploy").check().run()
    at.text_input(key="train_model_name").set_value("../../x").run()
    at.button(key="train_start").click().run()
    assert "model name '../../x' is invalid" in alerts(at)
    assert list(dash["runs"].iterdir()) == []
    assert not (tmp_path / "x").exists()


# 8. one-line errors naming the field or the file -------------------------------------------------
@pytest.mark.parametrize("flag,value,expected", [
    ("--seed", "100000000000000000000000", "seed: must be a whole number from 0 to 4294967295"),
    ("--seed", "-1", "seed: must be a whole number"),
    ("--hidden", "100000000", "hidden: one agent needs about"),
    ("--hidden", "", "hidden: give positive layer sizes"),
    ("--positions", "", "positions: give at least two target positions"),
    ("--initial-capital", "inf", "initial_capital: must be a finite number"),
    ("--runs-dir", "FILE", "is not a directory"),
])
def test_8_bad_values_end_in_one_line_naming_the_field(flag, value, expected, tmp_path, capsys):
    runs = tmp_path / "runs"
    if value == "FILE":
        value = tmp_path / "a-file"
        value.write_text("not a directory")
        runs = value
    args = ["train", *TINY_ARGS, "--timesteps", BATCH, "--run-id", "r", flag, value]
    if flag != "--runs-dir":
        args += ["--runs-dir", runs]
    code, _, err = cli(capsys, *args)
    assert code == 2 and expected in error_line(err)
    assert not (tmp_path / "runs" / "r").exists()


def test_8_resume_skips_metric_lines_that_are_not_objects(stopped_run, tmp_path, capsys):
    rd = copy_run(stopped_run, tmp_path / "runs")
    with open(rd.metrics_path, "a", encoding="utf-8") as f:
        f.write('[1, 2]\n5\n"text"\nnull\n{"env_steps": "many"}\n')
    code, _, err = cli(capsys, "train", "--resume", rd.path, "--quiet")
    assert code == 0, err
    assert rd.read_status()["state"] == "done"
    steps = [r["env_steps"] for r in rd.read_metrics()]
    assert steps == list(range(BATCH, 12 * BATCH + 1, BATCH))


@pytest.mark.parametrize("damage,expected", [
    ("config-list", "config.json: expected a JSON object, found list"),
    ("config-binary", "config.json: not UTF-8 text"),
    ("config-dir", "config.json: is a directory"),
    ("config-missing", "no config.json; is this a run directory?"),
    ("checkpoint-torn", "state.msgpack: damaged checkpoint"),
])
def test_8_backtest_of_a_damaged_run_names_the_file(damage, expected, done_run, tmp_path, capsys):
    rd = copy_run(done_run, tmp_path / "runs")
    if damage == "config-list":
        rd.config_path.write_text("[]")
    elif damage == "config-binary":
        rd.config_path.write_bytes(b"\xff\xfe{}")
    elif damage == "config-dir":
        rd.config_path.unlink()
        rd.config_path.mkdir()
    elif damage == "config-missing":
        rd.config_path.unlink()
    else:
        state = rd.checkpoint_dir / "state.msgpack"
        state.write_bytes(state.read_bytes()[:100])
    code, _, err = cli(capsys, "backtest", "--run", rd.path, "--data", "synthetic", "--cache-dir", tmp_path / "c")
    assert code == 2 and expected in error_line(err, "backtest")
    assert str(rd.path) in error_line(err, "backtest")


def test_8_csv_parser_errors_are_one_line(tmp_path, capsys):
    good = synthetic_ohlcv("BPCL", n_days=120, seed=2)
    path = write_csv(tmp_path / "csv" / "BPCL.csv", good)
    lines = path.read_text().splitlines()
    lines[5] += ",1,2,3"  # a row with more fields than the header
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_symbol_csv(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--symbols", "BPCL", "--data", f"csv:{path.parent}",
                       "--timesteps", BATCH, "--runs-dir", tmp_path / "runs")
    assert code == 2 and "not a readable CSV file (ParserError" in error_line(err)


# 9. readable files, config.json before the data, a done run is not resumed ----------------------------
def test_9_run_files_are_readable_by_other_users(done_run):
    files = [p for p in done_run.path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"status.json", "config.json", "metrics.jsonl", "state.msgpack",
                                        "meta.json", "equity.csv", "metrics.json"}
    assert "LOCK" not in {p.name for p in files}  # a finished run keeps no lock file
    umask = os.umask(0o022)
    os.umask(umask)
    for p in files:
        mode = p.stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, (p, oct(mode))  # what open() gives, not mkstemp's 0600
        if umask == 0o022:
            assert mode == 0o644, p


def test_9_resume_of_a_done_run_is_refused_and_changes_nothing(done_run, tmp_path, capsys):
    rd = copy_run(done_run, tmp_path / "runs")
    state = rd.checkpoint_dir / "state.msgpack"
    state.write_bytes(state.read_bytes()[:50])
    before = {p: p.read_bytes() for p in rd.path.rglob("*") if p.is_file()}
    code, _, err = cli(capsys, "train", "--resume", rd.path, "--quiet")
    assert code == 2 and "is done; nothing to resume" in error_line(err)
    assert rd.read_status()["state"] == "done"
    assert {p: p.read_bytes() for p in rd.path.rglob("*") if p.is_file()} == before


# browser: the real server, driven through Chromium (see tests/test_browser.py) ------------------------
IGNORED = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", "test-artifacts", ".venv"}


class Server:
    """`streamlit run dashboard.py` on its own port with runs/models/cache under `base`."""

    def __init__(self, base: Path):
        self.base, self.log_path = base, base / "streamlit.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Server:
        port = free_port()
        env = {**os.environ, "EVORL_RUNS_DIR": str(self.base / "runs"), "EVORL_MODELS_DIR": str(self.base / "models"),
               "EVORL_DATA_CACHE": str(self.base / "cache"), "JAX_PLATFORMS": "cpu"}
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                return urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok"
            except OSError:
                return False

        wait_until(healthy, 90, "streamlit to start")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def browser():
    with chromium_page() as pg:
        yield pg


def wait_idle(pg, timeout: float = 60.0) -> None:
    app = pg.locator('[data-testid="stApp"]')
    app.wait_for()
    time.sleep(0.3)
    deadline, quiet_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if app.get_attribute("data-test-script-state") in ("running", "rerunRequested", "initial"):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return
        time.sleep(0.1)
    raise AssertionError(f"Streamlit still busy after {timeout} s")


def choose(pg, label: str, option: str) -> None:
    pg.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    pg.get_by_role("option", name=option, exact=True).click()
    wait_idle(pg)


def no_exceptions(pg) -> None:
    exc = pg.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


def files_under(*roots: Path) -> set[Path]:
    found = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in IGNORED]
            found.update(Path(dirpath) / f for f in filenames)
    return found


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_1_browser_upload_with_path_like_names_writes_only_into_the_upload_folder(tmp_path, browser):
    pg = browser
    server = Server(tmp_path / "app").start()
    outside = tmp_path / "outside"
    outside.mkdir()
    csv = {s: write_csv(tmp_path / "src" / f"{s}.csv", synthetic_ohlcv(s, n_days=150, seed=4)).read_bytes()
           for s in ("BPCL", "TATASTEEL")}
    names = {"BPCL": str(outside / "evil.csv"), "TATASTEEL": "../../../../evil2.csv"}
    try:
        before = files_under(tmp_path, ROOT)
        pg.goto(f"{server.url}/data")
        pg.get_by_role("button", name="Load", exact=True).wait_for()
        wait_idle(pg)
        symbols = pg.get_by_label("Symbols")
        symbols.fill("BPCL,TATASTEEL")
        symbols.press("Enter")
        wait_idle(pg)
        choose(pg, "Data source", widgets.SOURCES["upload"])
        for sym, name in names.items():
            uploader = pg.locator('[data-testid="stFileUploader"]').filter(has_text=f"{sym}.csv")
            uploader.locator('input[type="file"]').set_input_files(
                files=[{"name": name, "mimeType": "text/csv", "buffer": csv[sym]}])
            wait_idle(pg)
        # the browser kept the hostile names as given (the uploader's file chips show them)
        listed = {el.get_attribute("title") for el in pg.locator('[data-testid="stFileChipName"]').all()}
        assert listed == set(names.values()), listed
        pg.get_by_role("button", name="Load", exact=True).click()
        wait_idle(pg)
        pg.locator(".js-plotly-plot").first.wait_for()
        no_exceptions(pg)
        assert pg.locator('[data-testid="stAlert"]').filter(has_text="error").count() == 0

        # a path-like symbol names the file on disk: refused, nothing written
        symbols.fill("../../EVIL3")
        symbols.press("Enter")
        wait_idle(pg)
        pg.locator('[data-testid="stFileUploader"]').filter(has_text="../../EVIL3.csv").locator(
            'input[type="file"]').set_input_files(files=[{"name": "x.csv", "mimeType": "text/csv", "buffer": csv["BPCL"]}])
        wait_idle(pg)
        pg.get_by_role("button", name="Load", exact=True).click()
        wait_idle(pg)
        pg.get_by_text("is not a valid ticker", exact=False).first.wait_for()
        no_exceptions(pg)
    finally:
        server.close()
    folder = tmp_path / "app" / "cache" / "uploads" / "data"
    new = files_under(tmp_path, ROOT) - before - {server.log_path}
    app_folders = [tmp_path / "app" / d for d in ("runs", "models", "cache")]
    assert all(any(f.is_relative_to(d) for d in app_folders) for f in new), sorted(map(str, new))
    assert {f for f in new if f.is_relative_to(folder.parent)} == {folder / "BPCL.csv", folder / "TATASTEEL.csv"}
    assert not any("evil" in f.name.lower() for f in new), sorted(map(str, new))
    assert all((folder / f"{s}.csv").read_bytes() == csv[s] for s in csv)
    assert list(outside.iterdir()) == []
    for where in (folder, folder.parent, folder.parent.parent, tmp_path / "app", tmp_path, ROOT):
        assert not (where / names["TATASTEEL"]).resolve().exists()
        assert not (where / "../../EVIL3.csv").resolve().exists()


def live_state(pg) -> str:
    text = pg.locator('[data-testid="stProgress"]').first.inner_text() if pg.locator(
        '[data-testid="stProgress"]').count() else ""
    found = re.findall(r"\b(queued|compiling|running|stopping|stopped|done|failed|interrupted|damaged)\b", text)
    return found[0] if found else ""


def wait_live_state(pg, states: tuple[str, ...], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = live_state(pg)
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"Live never showed {states}; last: {live_state(pg)!r}")


@pytest.mark.browser
@pytest.mark.timeout(900)
def test_4_browser_server_stop_interrupts_its_runs_and_resume_works(tmp_path, browser):
    """A run started from the dashboard: SIGTERM to the server checkpoints it and records
    `interrupted` (no C++ abort on the way out); a restarted server shows it interrupted and resumes
    it; after kill -9 of the server the run reads as interrupted (owner gone) on the next start."""
    pg = browser
    app = tmp_path / "app"
    server = Server(app).start()
    try:
        pg.goto(f"{server.url}/train")
        pg.get_by_role("button", name="Start training", exact=True).wait_for()
        wait_idle(pg)
        choose(pg, "Data source", widgets.SOURCES["synthetic"])
        steps = pg.locator('[data-testid="stNumberInput"]').filter(has_text="Timesteps").locator("input")
        steps.fill("50000000")
        steps.press("Enter")
        wait_idle(pg)
        pg.get_by_role("button", name="Start training", exact=True).click()
        pg.wait_for_url(re.compile(r".*/live\?run=run-.*"), timeout=60_000)
        run_id = re.search(r"run=([^&]+)", pg.url).group(1)
        rd = RunDir(app / "runs" / run_id)
        wait_until(lambda: len(rd.read_metrics()) >= 2, 240, "the dashboard run to train")

        assert server.stop(signal.SIGTERM) == 0
        log = server.log_path.read_text()
        for bad in ("terminate called", "FATAL", "Traceback", "exception not rethrown"):
            assert bad not in log, log[-3000:]
        status = rd.recorded_status()
        assert status["state"] == "interrupted", status
        assert "dashboard server stopped" in status["error"]
        meta = json.loads((rd.checkpoint_dir / "meta.json").read_text())
        assert meta["env_steps"] == status["env_steps"] > 0
        assert not rd.lock_held()

        server = Server(app).start()  # the restarted server shows it interrupted and resumes it
        pg.goto(f"{server.url}/live?run={run_id}")
        wait_idle(pg)
        assert wait_live_state(pg, ("interrupted",), 30) == "interrupted"
        resume = pg.get_by_role("button", name="Resume", exact=True)
        assert resume.is_enabled()
        resume.click()
        wait_idle(pg)
        wait_until(lambda: (rd.read_status() or {}).get("env_steps", 0) > meta["env_steps"], 240,
                   "the resumed run to train")
        no_exceptions(pg)

        server.stop(signal.SIGKILL)  # no shutdown hook: the run is orphaned
        assert rd.recorded_status()["state"] == "running"
        server = Server(app).start()
        pg.goto(f"{server.url}/live?run={run_id}")
        wait_idle(pg)
        assert wait_live_state(pg, ("interrupted",), 30) == "interrupted"
        assert pg.get_by_text("gone", exact=False).count() >= 1
        assert pg.get_by_role("button", name="Resume", exact=True).is_enabled()
        assert not pg.get_by_role("button", name="Stop", exact=True).is_enabled()
        no_exceptions(pg)
    finally:
        server.close()
