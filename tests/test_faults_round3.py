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

import pandas as pd
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
    tiny_config,
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
    rows = out.splitlines()  # the models table: header, rule, one row per model, then its notes
    assert code == 0 and rows[2].startswith("renamed ") and "bundle.json names it 'm1'" in out
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


# 4. a header that repeats column names; a yfinance Ticker row that names another stock -----------
def _multi_ticker(path: Path, tickers: tuple[str, ...], yfinance: bool = True) -> Path:
    from evorl_core.data import synthetic_ohlcv

    frames = {t: synthetic_ohlcv(t.split(".")[0], n_days=150, seed=i + 1) for i, t in enumerate(tickers)}
    names = ["Adj Close", "Close", "High", "Low", "Open", "Volume"]
    columns = {"Adj Close": "close", "Close": "close", "High": "high", "Low": "low", "Open": "open", "Volume": "volume"}
    header = [n for n in names for _ in tickers]
    lines = [",".join(["Price" if yfinance else "Date", *header])]
    if yfinance:
        lines += [",".join(["Ticker", *[t for _ in names for t in tickers]]), "Date" + "," * len(header)]
    first = next(iter(frames.values()))
    for i, day in enumerate(first.index):
        cells = [f"{frames[t][columns[n]].iloc[i]:.4f}" for n in names for t in tickers]
        lines.append(",".join([str(day.date()), *cells]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_r3_4_repeated_column_names_are_refused_naming_them(tmp_path, capsys):
    from test_faults import TINY_ARGS

    _multi_ticker(tmp_path / "csv" / "BPCL.csv", ("BPCL.NS", "TATASTEEL.NS"), yfinance=False)
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--data", f"csv:{tmp_path / 'csv'}", "--symbols", "BPCL",
                       "--runs-dir", runs)
    line = error_line(err)
    assert code == 2 and "BPCL.csv" in line and "repeats 'Adj Close' (2x)" in line and "'Close' (2x)" in line
    assert "multi-ticker" in line and "evorl: training" not in err
    assert not runs.exists() or not list(runs.iterdir())


def test_r3_4_yfinance_ticker_row_picks_the_symbol_or_is_refused(tmp_path, capsys):
    from evorl_core.data import DataError, read_symbol_csv, synthetic_ohlcv

    path = _multi_ticker(tmp_path / "csv" / "TATASTEEL.csv", ("BPCL.NS", "TATASTEEL.NS"))
    frame = read_symbol_csv(path)
    expected = synthetic_ohlcv("TATASTEEL", n_days=150, seed=2)
    assert list(frame["close"].round(4)) == list(expected["close"].round(4))  # TATASTEEL's, not BPCL's
    assert list(frame["close"].round(4)) != list(synthetic_ohlcv("BPCL", n_days=150, seed=1)["close"].round(4))

    other = _multi_ticker(tmp_path / "csv2" / "TATASTEEL.csv", ("BPCL.NS",))  # one ticker, another stock
    with pytest.raises(DataError, match=r"TATASTEEL\.csv: the Ticker row \(row 2\) holds BPCL\.NS, not TATASTEEL"):
        read_symbol_csv(other)
    shutil.copy(path, tmp_path / "csv2" / "INFY.csv")
    code, _, err = cli(capsys, "signal", "--model", "none", "--models-dir", tmp_path)  # control: not a data path
    assert code == 2
    with pytest.raises(DataError, match="holds BPCL.NS, TATASTEEL.NS, not INFY"):
        read_symbol_csv(tmp_path / "csv2" / "INFY.csv")


# 6. two symbols that resolve to one file --------------------------------------------------------
def test_r3_6_the_same_file_twice_is_refused(tmp_path, capsys):
    from market_csv import write_csv
    from test_faults import TINY_ARGS

    from evorl_core.data import synthetic_ohlcv

    write_csv(tmp_path / "csv" / "BPCL.csv", synthetic_ohlcv("BPCL", n_days=300, seed=1))
    runs = tmp_path / "runs"
    for symbols in (("BPCL", "bpcl"), ("BPCL", "BPCL.NS")):
        code, _, err = cli(capsys, "train", *TINY_ARGS, "--data", f"csv:{tmp_path / 'csv'}", "--symbols", *symbols,
                           "--runs-dir", runs)
        line = error_line(err)
        assert code == 2 and f"{symbols[0]!r} and {symbols[1]!r} name the same data" in line
        assert "BPCL.csv" in line
    assert not runs.exists() or not list(runs.iterdir())


# 7. a flag that does nothing is refused, naming the option that would make it apply -------------
@pytest.mark.parametrize("argv, expected", [
    (["--fee-bps", "10"], "--fee-bps: applies to the flat cost model only"),
    (["--cost-model", "flat", "--dp-charge", "5"], "--dp-charge: applies to the nse-delivery cost model only"),
    (["--pbt-interval", "5"], "--pbt-interval: applies to population-based training only; add --population"),
    (["--init-scheme", "orthogonal", "--init-std", "0.1"], "--init-std: applies to the normal initialiser only"),
    (["--model-name", "m1"], "--model-name: applies with --deploy only"),
    (["--member-group", "2"], "--member-group: applies with several members only"),
])
def test_r3_7_train_flags_that_do_nothing_are_refused(argv, expected, tmp_path, capsys):
    from test_faults import TINY_ARGS

    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "train", *TINY_ARGS, *argv, "--runs-dir", runs)
    assert code == 2 and expected in error_line(err) and "evorl: training" not in err
    assert not runs.exists()


def test_r3_7_walkforward_run_id_and_resume_flags_are_refused(tmp_path, capsys):
    from test_faults import TINY_ARGS

    code, _, err = cli(capsys, "walkforward", *TINY_ARGS, "--run-id", "myrun", "--runs-dir", tmp_path / "runs")
    assert code == 2 and "--run-id: walk-forward folds are runs <id>-fold<k>; name them with --id" in error_line(
        err, "walkforward")
    assert not (tmp_path / "runs").exists()
    (tmp_path / "runs" / "x").mkdir(parents=True)
    code, _, err = cli(capsys, "train", "--resume", tmp_path / "runs" / "x", "--lr", "0.1")
    assert code == 2 and "--lr would be ignored" in error_line(err)
    # the control: the same flag where it applies is accepted by the check
    from evorl_core import guards
    from evorl_core.cli import build_parser
    from evorl_core.config import make_config

    args = build_parser().parse_args(["train", "--cost-model", "flat", "--fee-bps", "10"])
    assert guards.check_command(args, make_config("quick", cost_model="flat", fee_bps=10.0)) is not None


# 10. a refused start creates nothing and prints no banner ----------------------------------------
@pytest.mark.parametrize("symbols, data, expected", [
    (["X" * 300], "auto", "is 300 characters"),
    (["BP/CL"], "synthetic", "is not a valid ticker"),
    (["ZZZ"], "csv", "no file for ZZZ"),
    (["BPCL"], "csv-missing", "folder not found"),
    (["BPCL"], "csv-file", "is a file; csv: takes the folder that holds one <SYMBOL>.csv per symbol (here: csv:"),
])
def test_r3_10_refused_start_leaves_no_run_and_no_banner(symbols, data, expected, tmp_path, capsys):
    from market_csv import write_csv
    from test_faults import TINY_ARGS

    from evorl_core.data import synthetic_ohlcv

    write_csv(tmp_path / "csv" / "BPCL.csv", synthetic_ohlcv("BPCL", n_days=300, seed=1))
    spec = {"csv": f"csv:{tmp_path / 'csv'}", "csv-missing": f"csv:{tmp_path / 'nope'}",
            "csv-file": f"csv:{tmp_path / 'csv' / 'BPCL.csv'}"}.get(data, data)
    runs = tmp_path / "runs"
    code, out, err = cli(capsys, "train", *TINY_ARGS, "--data", spec, "--symbols", *symbols, "--runs-dir", runs)
    assert code == 2 and expected in error_line(err)
    assert "evorl: training" not in err and "backend" not in err
    assert not runs.exists() or not list(runs.iterdir())


def test_r3_7_train_form_field_that_does_nothing_is_an_error_under_it():
    from evorl_ui import forms

    form = {**forms.preset_form_values("quick"), "symbols": "BPCL", "data": "synthetic"}
    config, errors = forms.config_from_form(form)
    assert config is not None, errors  # the preset as shown is accepted
    config, errors = forms.config_from_form({**form, "fee_bps": 12.0})  # nse-delivery is the default
    assert config is None and forms.field_errors(errors)["fee_bps"][0].startswith(
        "fee_bps: applies to the flat cost model only")
    config, errors = forms.config_from_form({**form, "fee_bps": 12.0, "cost_model": "flat"})
    assert config is not None and config.fee_bps == 12.0, errors


# 12. one ledger, one data source ----------------------------------------------------------------
def test_r3_12_a_ledger_refuses_another_data_source(deployed, tmp_path, capsys):
    from market_csv import write_csv

    from evorl_core.data import synthetic_ohlcv

    _, models = deployed
    meta = json.loads((models / "m1" / "bundle.json").read_text())
    paper = ["paper", "--model", "m1", "--models-dir", models, "--cache-dir", tmp_path / "cache"]
    code, _, err = cli(capsys, *paper, "--data", "synthetic")
    assert code == 0, err
    ledger = (models / "m1" / "ledger.jsonl").read_bytes()
    for s in meta["symbols"]:
        write_csv(tmp_path / "csv" / f"{s}.csv", synthetic_ohlcv(s, n_days=300, seed=9))
    code, _, err = cli(capsys, *paper, "--data", f"csv:{tmp_path / 'csv'}")
    line = error_line(err, "paper")
    assert code == 2 and "recorded on 'synthetic'" in line and "csv" in line.split("this data is")[1]
    assert (models / "m1" / "ledger.jsonl").read_bytes() == ledger


# 13. deploy states the evidence ----------------------------------------------------------------
def test_r3_13_deploy_states_the_evidence_and_the_bundle_records_it(done_run, tmp_path, capsys):  # noqa: F811
    models = tmp_path / "models"
    run = copy_run(done_run, tmp_path / "runs", "r1")
    code, out, err = cli(capsys, "deploy", "--run", run.path, "--model-name", "m1", "--models-dir", models)
    assert code == 0, err
    evidence = next(line for line in out.splitlines() if line.startswith("evidence: "))
    symbols = list(run.read_backtest_metrics())
    assert "SYNTHETIC prices" in evidence and f"of {len(symbols)} symbol(s)" in evidence
    assert all(f"{s}: " in evidence for s in symbols)
    meta = json.loads((models / "m1" / "bundle.json").read_text())
    assert meta["evidence"] == evidence.removeprefix("evidence: ")
    code, out, _ = cli(capsys, "models", "--models-dir", models)
    assert "evidence: " in out and "SYNTHETIC" in out
    code, _, err = cli(capsys, "deploy", "--run", run.path, "--models-dir", models, "--ensemble", "0")
    assert code == 2 and "--ensemble: must be at least 1" in error_line(err, "deploy")


def test_r3_13_runs_marks_a_run_trained_on_synthetic_prices(done_run, tmp_path, capsys):  # noqa: F811
    runs = tmp_path / "runs"
    copy_run(done_run, runs, "synth")
    real = copy_run(done_run, runs, "real")
    config = json.loads(real.config_path.read_text())
    config["data_info"] = {**config["data_info"], "synthetic": False, "source": "csv"}
    real.config_path.write_text(json.dumps(config))
    code, out, _ = cli(capsys, "runs", "--runs-dir", runs)
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip() and not line.startswith(" ")}
    assert "[synthetic]" in lines["synth"] and "[synthetic]" not in lines["real"]


# 14. debris of a kill -9 during a checkpoint write ----------------------------------------------
def test_r3_14_stale_temporaries_are_removed_when_the_run_is_opened_by_its_new_owner(tmp_path):
    from evorl_core.store.rundir import RunDir, RunLock

    run = RunDir.create(tmp_path / "runs", "r")
    (run.path / "checkpoint").mkdir()
    state = run.path / "checkpoint" / "state.msgpack"
    state.write_bytes(b"the good checkpoint")
    debris = [run.path / "checkpoint" / ".state.msgpack.k2j3h4.tmp", run.path / ".status.json.abc.tmp"]
    for d in debris:
        d.write_bytes(b"\0" * 3_000_000)  # several MB, as a kill -9 mid-write leaves
    keep = run.path / "notes.tmp"  # not one of ours: no leading dot
    keep.write_text("x")
    lock = RunLock.acquire(run)
    try:
        assert not any(d.exists() for d in debris)
        assert state.read_bytes() == b"the good checkpoint" and keep.exists()
    finally:
        lock.release()


# 16. input outside what the parser can hold; damaged outputs -----------------------------------
def test_r3_16_a_year_typo_is_named_by_file_and_row(tmp_path, capsys):
    from market_csv import write_csv
    from test_faults import TINY_ARGS

    from evorl_core.data import synthetic_ohlcv

    path = write_csv(tmp_path / "csv" / "BPCL.csv", synthetic_ohlcv("BPCL", n_days=300, seed=1))
    lines = path.read_text().splitlines()
    lines[10] = "2924" + lines[10][4:]  # row 11 of the file
    path.write_text("\n".join(lines) + "\n")
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--data", f"csv:{tmp_path / 'csv'}", "--symbols", "BPCL",
                       "--runs-dir", tmp_path / "runs")
    line = error_line(err)
    assert code == 2 and f"{path}: column 'Date', row 11: date '2924-" in line and "typo in the year" in line


@pytest.mark.parametrize("content, expected", [
    (b"", "not a readable results table"),
    (b"hello,world\n1,2\n", "missing column(s) date, symbol"),
    (b"date,symbol,open,close,position,equity,benchmark_equity\n2024-01-01,A,1,1,0,abc,1\n", "row 2, column 'equity'"),
    (b"date,symbol,open,close,position,equity,benchmark_equity\n20x4-01-01,A,1,1,0,1,1\n", "row 2, column 'date'"),
])
def test_r3_16_damaged_equity_csv_is_one_line_naming_the_file(content, expected, done_run, tmp_path, capsys):  # noqa: F811
    from evorl_core.store.atomic import RunDirError

    run = copy_run(done_run, tmp_path / "runs", "r")
    assert len(run.read_equity()) > 0  # the control: the file as written reads
    run.equity_path.write_bytes(content)
    with pytest.raises(RunDirError, match=re.escape(expected)) as caught:
        run.read_equity()
    assert str(run.equity_path) in str(caught.value)


# 17. the field that is out of range is the one named ---------------------------------------------
@pytest.mark.parametrize("argv, field, wrong", [
    (["--initial-capital", "0"], "initial_capital:", "dp_charge"),
    (["--cost-model", "flat", "--initial-capital", "0"], "initial_capital:", "dp_charge"),
    (["--hidden", "100000000"], "hidden:", "window:"),
])
def test_r3_17_the_field_out_of_range_is_named(argv, field, wrong, tmp_path, capsys):
    from test_faults import TINY_ARGS

    code, _, err = cli(capsys, "train", *TINY_ARGS, *argv, "--runs-dir", tmp_path / "runs")
    line = error_line(err)
    assert code == 2 and line.startswith(f"evorl train: error: {field}") and wrong not in line, line


def test_r3_17_a_run_too_big_names_the_setting_that_takes_the_memory():
    from evorl_core.config import ConfigError
    from evorl_core.training import sizing

    for changes, field in (({"window": 100_000}, "window"), ({"hidden": (200_000,)}, "hidden"),
                           ({"num_envs": 1 << 20, "minibatch_size": 1 << 20}, "num_envs")):
        config = tiny_config(**changes)
        with pytest.raises(ConfigError) as caught:
            sizing.check_fits(config, available=2**20)
        assert str(caught.value).startswith(f"{field}: "), (changes, str(caught.value))


# 18. delete of a symlinked run -------------------------------------------------------------------
def test_r3_18_deleting_a_symlinked_run_removes_the_link_only(done_run, tmp_path):  # noqa: F811
    from evorl_core.store.catalogue import delete_run, list_runs
    from evorl_core.store.rundir import RunDir

    elsewhere = copy_run(done_run, tmp_path / "elsewhere", "real")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "linked").symlink_to(elsewhere.path, target_is_directory=True)
    assert [r["run_id"] for r in list_runs(runs)] == ["linked"]
    message = delete_run(RunDir(runs / "linked"))
    assert "removed the link" in message and str(elsewhere.path) in message
    assert list(runs.iterdir()) == []  # no hidden .deleting-* left behind
    assert elsewhere.status_path.exists()  # the target is never followed
    plain_run = copy_run(done_run, runs, "plain")
    assert delete_run(plain_run) == f"deleted {plain_run.path}" and list(runs.iterdir()) == []


# 19. smaller ones: a wrong separator, an undecodable byte, an empty reason -----------------------
def test_r3_19_separator_and_undecodable_bytes_are_named(tmp_path):
    from market_csv import write_csv

    from evorl_core.data import DataError, read_symbol_csv, synthetic_ohlcv
    from evorl_core.store.atomic import RunDirError, load_json

    path = write_csv(tmp_path / "BPCL.csv", synthetic_ohlcv("BPCL", n_days=50, seed=1))
    text = path.read_text()
    for sep, word in ((";", "semicolon"), ("\t", "tab")):
        other = tmp_path / f"{word}.csv"
        other.write_text(text.replace(",", sep))
        with pytest.raises(DataError, match=f"looks {word}-separated"):
            read_symbol_csv(other, symbol="BPCL")
    raw = bytearray(path.read_bytes())
    fifth = [i for i, b in enumerate(raw) if b == ord("\n")][3] + 2  # inside row 5
    raw[fifth] = 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"BPCL\.csv: row 5: byte 0xff \(offset \d+\) is not UTF-8"):
        read_symbol_csv(path)
    js = tmp_path / "status.json"
    js.write_bytes(b'{\n"a": 1,\n"b": "\xff"}')
    with pytest.raises(RunDirError, match=r"not UTF-8 text \(line 3, byte"):
        load_json(js)


def test_r3_19_unreadable_params_always_give_a_reason(deployed):
    _, models = deployed
    (models / "m1" / "params.msgpack").write_bytes(b"")
    with pytest.raises(DeployError) as caught:
        load_bundle("m1", models, force=True)
    reason = str(caught.value).split("params.msgpack: ", 1)[1]
    assert reason.strip() and not reason.endswith("()"), str(caught.value)


# 11. one held position, one computation of the probabilities ------------------------------------
def test_r3_11_signal_and_paper_agree_on_the_held_position_and_probabilities(deployed, tmp_path, capsys):
    _, models = deployed
    common = ["--model", "m1", "--models-dir", models, "--data", "synthetic", "--cache-dir", tmp_path / "cache"]
    code, out, err = cli(capsys, "signal", *common, "--json")
    assert code == 0, err
    before = strict_json(out)["signals"]
    assert all("replayed from flat" in s["held_from"] for s in before)  # no ledger yet: it says why
    code, out, err = cli(capsys, "paper", *common, "--json")
    assert code == 0, err
    entries = {e["symbol"]: e for e in strict_json(out)["appended"]}
    code, out, err = cli(capsys, "signal", *common, "--json")
    assert code == 0, err
    for s in strict_json(out)["signals"]:
        e = entries[s["symbol"]]
        assert s["date"] == e["date"] and "paper ledger" in s["held_from"]
        assert s["held_position"] == e["held"] and s["position"] == e["target"]
        assert list(s["probabilities"].values()) == pytest.approx(list(e["probabilities"].values()), abs=1e-6)
    code, out, _ = cli(capsys, "signal", *common)
    assert code == 0 and "(held: the paper ledger's entry for" in out


# 5. gaps in the calendar -------------------------------------------------------------------------
def _real_days(tmp_path, drop=(), zero_volume_holiday=False):
    from market_csv import write_csv

    from evorl_core.data import synthetic_ohlcv
    from evorl_core.data.calendar import sessions

    frame = synthetic_ohlcv("BPCL", n_days=400, seed=3)
    days, _ = sessions(frame.index[0], frame.index[-1])
    frame = frame[frame.index.isin(days)]  # the exchange's sessions only
    if zero_volume_holiday:
        closed = frame.index[10] + pd.Timedelta(days=1)
        while closed in days:  # the first day after row 10 the exchange was closed (a weekend at worst)
            closed += pd.Timedelta(days=1)
        row = frame.iloc[[10]].copy()
        row.index = pd.DatetimeIndex([closed], name=frame.index.name)
        row["volume"] = 0.0
        frame = pd.concat([frame, row]).sort_index()
        frame = frame[~frame.index.duplicated()]
    frame = frame.drop(frame.index[list(drop)])
    return write_csv(tmp_path / "csv" / "BPCL.csv", frame), frame


def test_r3_5_a_long_hole_is_refused_naming_its_range(tmp_path, capsys):
    from test_faults import TINY_ARGS

    path, frame = _real_days(tmp_path, drop=range(150, 230))  # 80 sessions out of the middle
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "train", *TINY_ARGS, "--data", f"csv:{tmp_path / 'csv'}", "--symbols", "BPCL",
                       "--runs-dir", runs)
    line = error_line(err)
    assert code == 2 and str(path) in line and "80 sessions missing from" in line and "XBOM" in line
    assert not runs.exists() or not list(runs.iterdir())


def test_r3_5_short_gaps_and_phantom_holiday_rows_are_reported(tmp_path):
    from evorl_core.data import load_frames

    _real_days(tmp_path, drop=(100, 101, 102), zero_volume_holiday=True)
    frames, info = load_frames(f"csv:{tmp_path / 'csv'}", ["BPCL"])
    text = " ".join(info["warnings"])
    assert "3 session(s) missing" in text and " (3)" in text, text
    assert "zero-volume row(s) on days the exchange was closed" in text, text
    _real_days(tmp_path)  # the control: the exchange's sessions exactly
    frames, info = load_frames(f"csv:{tmp_path / 'csv'}", ["BPCL"])
    assert not [w for w in info["warnings"] if "session" in w or "closed" in w], info["warnings"]


def test_r3_5_signal_staleness_and_next_session_follow_the_exchange_calendar():
    from evorl_core.deploy.signal import next_session, sessions_since, stale_warnings

    # 2024-10-31 (Thu) to 2024-11-05 (Tue): Nov 1 is Diwali (a BSE holiday), then a weekend
    assert sessions_since("2024-10-31", "2024-11-05") == 2  # Nov 4 and Nov 5; weekdays would say 3
    assert next_session("2024-10-31") == "2024-11-04"
    real = pd.DataFrame({"close": [1.0]}, index=pd.to_datetime(["2024-10-31"]))
    synthetic = real.copy()
    synthetic.attrs["source"] = "synthetic"
    assert stale_warnings({"A": real}, today="2024-11-07") == ["A: stale data: the last bar is 2024-10-31, 4 sessions ago"]
    assert stale_warnings({"A": synthetic}, today="2024-11-07") == [
        "A: stale data: the last bar is 2024-10-31, 5 business days ago"]


def test_r3_1_models_page_refuses_then_archives_a_ledger(done_run, dash, capsys):  # noqa: F811
    runs, models = dash["runs"], dash["models"]
    run = copy_run(done_run, runs, "r1")
    assert cli(capsys, "deploy", "--run", run.path, "--model-name", "r1", "--models-dir", models)[0] == 0
    old = _ledger(models / "r1")
    at = open_page("models")
    at.button(key="models_deploy").click().run()
    assert "forward ledger (200 entries" in alerts(at) and (models / "r1" / "ledger.jsonl").read_bytes() == old
    at.checkbox(key="models_replace").check().run()
    at.button(key="models_deploy").click().run()
    assert not at.exception, [e.value for e in at.exception]
    archived = list((models / "r1" / "archive").glob("*/ledger.jsonl"))
    assert len(archived) == 1 and archived[0].read_bytes() == old


def test_a_released_lock_leaves_no_lock_file_and_a_stale_opener_cannot_share_ownership(tmp_path):
    """A clean release removes LOCK while still holding it. A process that opened the old LOCK
    before the release and locks it afterwards holds a lock on a removed file: the next acquire
    takes the new LOCK anyway, and readers see that one."""
    import fcntl
    import os

    from evorl_core.store.rundir import RunDir, RunInUse, RunLock

    run = RunDir.create(tmp_path, "r1")
    first = RunLock.acquire(run)
    assert run.lock_path.exists() and run.lock_held() is True
    with pytest.raises(RunInUse):
        RunLock.acquire(run, wait=0.1)
    stale = os.open(run.lock_path, os.O_RDWR)
    first.release()
    assert not run.lock_path.exists() and run.lock_held() is False
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds: the file it names is gone
    second = RunLock.acquire(run, wait=0.5)
    assert run.lock_path.exists() and run.lock_held() is True and run.owner().get("pid") == os.getpid()
    with pytest.raises(RunInUse):
        RunLock.acquire(run, wait=0.1)
    os.close(stale)
    second.release()
    assert not run.lock_path.exists()
