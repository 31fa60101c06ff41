"""Round 3 of the fault matrix (docs/reliability.md): a ledger that is lost, data that is wrong in
quiet ways, flags that do nothing. Test names start with the case number of the round-3 issue
(r3_<n>); each reproduces the old behaviour's trigger and asserts what a user now sees."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from test_faults import (  # noqa: F401 - fixtures
    alerts,
    base,
    cli,
    copy_run,
    dash,
    done_run,
    error_line,
    open_page,
    runs_by_id,
    strict_json,
)

from evorl_core.deploy.bundle import DeployError, load_bundle

LEDGER_LINES = 200


def _ledger(model_dir: Path) -> bytes:
    text = "".join(json.dumps({"date": f"2025-01-{1 + i % 28:02d}", "symbol": "BPCL", "n": i}) + "\n"
                   for i in range(LEDGER_LINES))
    (model_dir / "ledger.jsonl").write_text(text)
    return text.encode()


@pytest.fixture
def deployed(done_run, tmp_path, capsys):  # noqa: F811 - the fixture from test_faults
    models = tmp_path / "models"
    run = copy_run(done_run, tmp_path / "runs", "r1")
    code, _, err = cli(capsys, "deploy", "--run", run.path, "--model-name", "m1", "--models-dir", models)
    assert code == 0, err
    return run, models


# 1. a forward ledger is never deleted ---------------------------------------------------------
def test_r3_1_redeploy_over_a_ledger_is_refused_and_the_ledger_kept(deployed, capsys):
    run, models = deployed
    old = _ledger(models / "m1")
    code, _, err = cli(capsys, "deploy", "--run", run.path, "--model-name", "m1", "--models-dir", models)
    line = error_line(err, "deploy")
    assert code == 2 and "forward ledger (200 entries" in line and "--replace" in line
    assert (models / "m1" / "ledger.jsonl").read_bytes() == old


def test_r3_1_replace_archives_the_ledger_beside_the_bundle_version_it_came_from(deployed, capsys):
    run, models = deployed
    old = _ledger(models / "m1")
    old_version = json.loads((models / "m1" / "bundle.json").read_text())["version"]
    code, _, err = cli(capsys, "deploy", "--run", run.path, "--model-name", "m1", "--models-dir", models,
                       "--replace")
    assert code == 0, err
    slot = models / "m1" / "archive" / old_version
    assert (slot / "ledger.jsonl").read_bytes() == old
    assert json.loads((slot / "bundle.json").read_text())["version"] == old_version
    assert not (models / "m1" / "ledger.jsonl").exists()  # the new bundle starts its own ledger
    load_bundle("m1", models)  # the new bundle loads
    # a second replace keeps the first archive too
    (models / "m1" / "ledger.jsonl").write_text('{"date": "2025-02-01", "symbol": "BPCL"}\n')
    assert cli(capsys, "deploy", "--run", run.path, "--model-name", "m1", "--models-dir", models, "--replace")[0] == 0
    archived = sorted(p.parent.name for p in (models / "m1" / "archive").glob("*/ledger.jsonl"))
    assert len(archived) == 2 and old_version in archived
    code, out, _ = cli(capsys, "models", "--models-dir", models)
    assert f"ledger: {LEDGER_LINES + 1} entries" in out
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no debris


def test_r3_1_train_deploy_over_a_ledger_is_refused_before_training(deployed, tmp_path, capsys):
    from test_faults import TINY_ARGS

    _, models = deployed
    old = _ledger(models / "m1")
    runs = tmp_path / "new-runs"
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--runs-dir", runs, "--deploy", "--model-name", "m1",
                       "--models-dir", models)
    assert code == 2 and "forward ledger" in error_line(err)
    assert "training" not in err  # no banner
    assert not runs.exists() or not list(runs.iterdir())
    assert (models / "m1" / "ledger.jsonl").read_bytes() == old


# 8. tampered or mismatched bundles: one line naming the file ----------------------------------
@pytest.mark.parametrize("field, value", [("window", 9), ("positions", [0, 1]), ("hidden", [32])])
def test_r3_8_edited_bundle_is_refused_by_its_checksum(deployed, tmp_path, capsys, field, value):
    _, models = deployed
    path = models / "m1" / "bundle.json"
    meta = json.loads(path.read_text())
    if field in meta:
        meta[field] = value
    meta["config"][field] = value
    path.write_text(json.dumps(meta))
    for command in ("signal", "paper"):
        code, out, err = cli(capsys, command, "--model", "m1", "--models-dir", models, "--data", "synthetic",
                             "--cache-dir", tmp_path / "cache")
        line = error_line(err, command)
        assert code == 2 and str(path) in line and "checksum" in line and "--force" in line
    # forced: the shapes are still checked against the recorded configuration, in one line
    code, out, err = cli(capsys, "signal", "--model", "m1", "--models-dir", models, "--data", "synthetic",
                         "--cache-dir", tmp_path / "cache", "--force")
    line = error_line(err, "signal")
    assert code == 2 and "params.msgpack" in line and "do not fit the configuration" in line and "shape" in line


def test_r3_8_edited_params_are_refused_and_features_checked(deployed, capsys):
    _, models = deployed
    params = models / "m1" / "params.msgpack"
    raw = bytearray(params.read_bytes())
    raw[-1] ^= 0x01
    params.write_bytes(bytes(raw))
    with pytest.raises(DeployError, match="params.msgpack does not match the checksum"):
        load_bundle("m1", models)
    bundle = load_bundle("m1", models, force=True)  # a flipped low bit still fits the shapes
    assert any("--force" in w for w in bundle.meta["load_warnings"])

    path = models / "m1" / "bundle.json"
    meta = json.loads(path.read_text())
    meta["feature_names"] = ["log_return", "mystery"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DeployError, match="not the ones inference builds.*unknown: mystery"):
        load_bundle("m1", models, force=True)


# 9. a renamed model folder: one name, the folder's --------------------------------------------
def test_r3_9_renamed_model_folder_is_listed_and_loaded_by_its_folder_name(deployed, tmp_path, capsys):
    _, models = deployed
    shutil.move(models / "m1", models / "renamed")
    code, out, _ = cli(capsys, "models", "--models-dir", models)
    assert code == 0 and out.startswith("renamed ") and "bundle.json names it 'm1'" in out
    bundle = load_bundle("renamed", models)
    assert bundle.name == "renamed" and any("folder" in w for w in bundle.meta["load_warnings"])
    code, out, err = cli(capsys, "signal", "--model", "renamed", "--models-dir", models, "--data", "synthetic",
                         "--json", "--cache-dir", tmp_path / "cache")
    assert code == 0 and strict_json(out)["model"] == "renamed", err


# 2. one deeply nested JSON file is one damaged row -------------------------------------------
DEEP = b"[" * 50_000 + b"]" * 50_000


def test_r3_2_deeply_nested_json_is_one_damaged_row(done_run, dash, capsys):  # noqa: F811
    runs = dash["runs"]
    copy_run(done_run, runs, "good")
    copy_run(done_run, runs, "deep-status").status_path.write_bytes(b'{"state": ' + DEEP + b"}")
    copy_run(done_run, runs, "deep-config").config_path.write_bytes(DEEP)
    huge = copy_run(done_run, runs, "huge-number")
    huge.status_path.write_bytes(b'{"state": "done", "env_steps": ' + b"9" * 5000 + b"}")
    metrics = copy_run(done_run, runs, "deep-metrics")
    with metrics.metrics_path.open("ab") as f:
        f.write(DEEP + b"\n")
    rows = runs_by_id(capsys, runs)
    assert set(rows) == {"good", "deep-status", "deep-config", "huge-number", "deep-metrics"}
    assert rows["good"]["state"] == rows["deep-metrics"]["state"] == "done"
    for run_id, file in (("deep-status", "status.json"), ("deep-config", "config.json"),
                         ("huge-number", "status.json")):
        assert rows[run_id]["state"] == "damaged", rows[run_id]
        assert str(runs / run_id / file) in rows[run_id]["error"]
    assert "nested too deeply" in rows["deep-status"]["error"]
    assert rows["deep-config"]["recorded_state"] == "done"
    code, out, err = cli(capsys, "runs", "--runs-dir", runs)
    assert code == 0 and "Traceback" not in err and "RecursionError" not in out + err
    at = open_page("home")
    assert "Could not read runs" not in alerts(at)
    table = at.dataframe[0].value
    assert dict(zip(table["run"], table["state"], strict=True))["deep-config"] == "damaged"


# 3. text that did not come from our code is plain text on every page ----------------------------
BEACON = "![b](http://beacon.invalid/b.png)"


def test_r3_3_plain_text_escapes_every_markdown_construct():
    from evorl_ui.presenters.format import message_markdown, plain

    hostile = f"BPCL.csv row 3: {BEACON} [l](http://x.invalid) <img src=x> $x^2$ :red[r] **b** `c`"
    escaped = plain(hostile)
    # every character Markdown or Streamlit could act on is backslash-escaped
    assert re.search(r"(?<!\\)([\[\]<$*`]|://)", escaped) is None, escaped
    assert plain(":smile: csv:/tmp/x") == "\\:smile: csv:/tmp/x"
    assert plain("# 1. - x") == "\\# 1. - x" and plain("1. x") == "1\\. x" and plain("dp_charge: 0") == "dp_charge: 0"
    # what Markdown shows after unescaping is the original text, character for character
    assert re.sub(r"\\(.)", r"\1", escaped) == hostile
    assert message_markdown("a_1\nb*2") == "a_1  \nb\\*2"


def test_r3_3_browser_no_request_leaves_localhost_on_any_page(done_run, tmp_path):  # noqa: F811
    from test_browser import chromium_page
    from test_faults import Server, wait_idle

    from evorl_core.store.catalogue import write_annotations

    app = tmp_path / "app"
    runs, models = app / "runs", app / "models"
    runs.mkdir(parents=True)
    failed = copy_run(done_run, runs, "poisoned")
    status = json.loads(failed.status_path.read_text())
    failed.status_path.write_text(json.dumps({**status, "state": "failed",
                                              "error": f"BPCL.csv: row 7 holds '{BEACON}', not a number"}))
    shown = copy_run(done_run, runs, "shown")
    write_annotations(shown, name=f"n {BEACON}", tags=[], note=f"note {BEACON}")
    config = json.loads(shown.config_path.read_text())
    config["data_info"]["warnings"] = [f"BPCL: {BEACON} looks like a split"]
    shown.config_path.write_text(json.dumps(config))
    assert main_deploy(shown.path, models) == 0

    server = Server(app).start()
    requests: list[str] = []
    try:
        with chromium_page() as pg:
            pg.on("request", lambda r: requests.append(r.url))
            for path in ("", "live?run=poisoned", "backtest?run=shown", "models", "walkforward", "data", "train"):
                pg.goto(f"{server.url}/{path}")
                wait_idle(pg)
                pg.locator('[data-testid="stApp"]').wait_for()
                time.sleep(1.0)
                if path.startswith("live"):
                    pg.get_by_text("beacon.invalid/b.png", exact=False).first.wait_for()
                    assert pg.locator('img[src*="beacon"]').count() == 0
    finally:
        server.close()
    hosts = {urlparse(u).hostname for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, sorted(u for u in requests if "127.0.0.1" not in u)


def main_deploy(run_path: Path, models: Path) -> int:
    from evorl_core.cli import main

    return main(["deploy", "--run", str(run_path), "--models-dir", str(models)])
