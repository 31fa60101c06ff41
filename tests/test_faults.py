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
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from flax import serialization
from streamlit.testing.v1 import AppTest

from evorl_core import checkpoints, jobs, pipeline, rundir
from evorl_core.cli import main
from evorl_core.config import make_config
from evorl_core.data import DataError, read_symbol_csv, synthetic_ohlcv
from evorl_core.deploy import DeployError, deploy_run, load_bundle, signals
from evorl_core.rundir import RunDir, RunLock, list_runs
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


def write_csv(path: Path, frame) -> Path:
    out = frame.rename(columns=str.title).rename_axis("Date").reset_index()
    out["Date"] = out["Date"].dt.strftime("%Y-%m-%d")
    path.parent.mkdir(parents=True, exist_ok=True)
    out[["Date", "Open", "High", "Low", "Close", "Volume"]].to_csv(path, index=False)
    return path


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
    assert spec is None and problems[0].startswith("TATASTEEL: TATASTEEL.csv (upload)")
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
    with pytest.raises(DataError, match=r"BPCL.csv: column 'Open', row 2: price 1.*e\+30\d is outside"):
        read_symbol_csv(path)
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--symbols", "BPCL", "--data", f"csv:{tmp_path / 'csv'}",
                       "--runs-dir", tmp_path / "runs", "--run-id", "big")
    assert code == 2 and "float32" in error_line(err)
    row = runs_by_id(capsys, tmp_path / "runs")["big"]
    assert row["state"] == "failed" and row["symbols"] == ["BPCL"]  # 9: config.json before the data loads
