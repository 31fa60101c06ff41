"""The `evorl` CLI end to end on synthetic data: train -> backtest -> deploy -> signal."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from market_csv import write_csv_dir

from evorl_core.arguments import build_parser
from evorl_core.cli import main
from evorl_core.console import format_metrics_table
from evorl_core.data import synthetic_ohlcv
from evorl_core.store.rundir import EQUITY_COLUMNS

SYMBOLS = ["BPCL", "TATASTEEL"]
TINY_ARGS = ["--preset", "quick", "--num-envs", "8", "--num-steps", "16", "--minibatch-size", "32",
             "--epochs", "2", "--hidden", "16", "--window", "8", "--timesteps", "512", "--test-days", "30",
             "--seed", "1", "--quiet"]


@pytest.fixture(scope="module")
def csv_market(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    frames = {s: synthetic_ohlcv(s, n_days=400, seed=5) for s in SYMBOLS}
    write_csv_dir(root / "csv", frames)
    return root, frames


@pytest.fixture(scope="module")
def trained_run(csv_market):
    root, _ = csv_market
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", "--symbols", *SYMBOLS, "--data", f"csv:{root / 'csv'}", *TINY_ARGS,
                     "--runs-dir", str(root / "runs"), "--run-id", "cli-run", "--deploy", "--model-name", "m1",
                     "--models-dir", str(root / "models")])
    assert code == 0
    (root / "train-stdout.txt").write_text(out.getvalue())
    return root, root / "runs" / "cli-run"


def test_train_writes_contract_and_prints_summary(trained_run, capsys):
    root, run = trained_run
    for name in ("config.json", "status.json", "metrics.jsonl", "checkpoint/state.msgpack",
                 "backtest/equity.csv", "backtest/metrics.json"):
        assert (run / name).exists(), name
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    equity = pd.read_csv(run / "backtest/equity.csv")
    assert list(equity.columns) == EQUITY_COLUMNS and len(equity) == 2 * 30
    config = json.loads((run / "config.json").read_text())
    assert config["data_info"]["source"] == "csv" and config["symbols"] == SYMBOLS
    assert (root / "models" / "m1" / "bundle.json").exists()
    assert (root / "models" / "m1" / "params.msgpack").exists()


def test_runs_lists_the_run(trained_run, capsys):
    root, _ = trained_run
    assert main(["runs", "--runs-dir", str(root / "runs")]) == 0
    out = capsys.readouterr().out
    assert "cli-run" in out and "done" in out


def test_signal_json_from_bundle_without_run_dir(trained_run, capsys, tmp_path):
    root, run = trained_run
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(root / "models" / "m1", moved)
    assert main(["signal", "--model", str(moved), "--data", f"csv:{root / 'csv'}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["symbol"] for s in out["signals"]] == SYMBOLS
    frames = {s: pd.read_csv(root / "csv" / f"{s}.csv") for s in SYMBOLS}
    for s in out["signals"]:
        assert s["date"] == frames[s["symbol"]]["Date"].iloc[-1]
        assert s["position"] in (0.0, 0.5, 1.0)
        assert sum(s["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # the signal's held position equals the backtest's decision on the day before the last bar
    equity = pd.read_csv(run / "backtest/equity.csv")
    for s in out["signals"]:
        rows = equity[equity.symbol == s["symbol"]]
        assert s["held_position"] == rows["position"].iloc[-2]
        assert s["position"] == rows["position"].iloc[-1]


def test_backtest_on_perturbed_future_prices_keeps_earlier_positions(trained_run, csv_market, tmp_path):
    root, run = trained_run
    _, frames = csv_market
    k = 15  # perturb everything after the k-th test day
    perturbed = {}
    for symbol, df in frames.items():
        df = df.copy()
        cut = len(df) - 30 + k
        scale = np.linspace(1.3, 0.6, len(df) - cut - 1)
        for col in ("open", "high", "low", "close"):
            df.iloc[cut + 1:, df.columns.get_loc(col)] *= scale
        perturbed[symbol] = df
    write_csv_dir(tmp_path / "csv2", perturbed)
    out = tmp_path / "bt"
    assert main(["backtest", "--run", str(run), "--data", f"csv:{tmp_path / 'csv2'}", "--out", str(out)]) == 0
    original = pd.read_csv(run / "backtest/equity.csv")
    again = pd.read_csv(out / "equity.csv")
    assert list(again.columns) == EQUITY_COLUMNS
    for symbol in SYMBOLS:
        a = original[original.symbol == symbol].reset_index(drop=True)
        b = again[again.symbol == symbol].reset_index(drop=True)
        assert list(a["position"][: k + 1]) == list(b["position"][: k + 1])
        np.testing.assert_allclose(a["equity"][: k + 1], b["equity"][: k + 1], rtol=1e-12)
        assert not np.allclose(a["close"][k + 1:], b["close"][k + 1:])


def test_backtest_overlapping_training_days_is_refused(trained_run, capsys):
    root, run = trained_run
    before = (run / "backtest/metrics.json").read_bytes()
    config = json.loads((run / "config.json").read_text())
    ranges = config["date_ranges"]["BPCL"]
    seen = max(ranges["train_end"], ranges.get("val_end", ""))  # the last training or validation day
    assert main(["backtest", "--run", str(run), "--test-days", "60"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[0] == "evorl backtest: error: refused, a backtest must not test on days the run " \
        "learned from:"  # then one line per symbol
    assert [line.split(":")[0] for line in err[1:]] == ["  BPCL", "  TATASTEEL"]
    # unseen days: the run's own 30 test days and the embargo before them
    unseen = 30 + config["window"] if ranges.get("val_end") else 30
    assert f"up to {seen}" in err[1] and "BPCL: test days " in err[1] and f"at most {unseen} test days" in err[1]
    assert (run / "backtest/metrics.json").read_bytes() == before
    assert not (run / "rebacktests").exists()
    # and never over the run's own backtest/
    assert main(["backtest", "--run", str(run), "--out", str(run / "backtest")]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert (run / "backtest/metrics.json").read_bytes() == before


def test_rebacktest_writes_a_new_folder_and_leaves_backtest_alone(trained_run, capsys):
    root, run = trained_run
    before = {name: (run / "backtest" / name).read_bytes() for name in ("metrics.json", "equity.csv")}
    assert main(["backtest", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    folders = list((run / "rebacktests").iterdir())
    assert len(folders) == 1 and re.fullmatch(r"\d{8}-\d{6}-csv-[A-Za-z0-9_.-]+", folders[0].name), folders
    folder = folders[0]
    assert f"written to: {folder}" in out
    for name, data in before.items():
        assert (run / "backtest" / name).read_bytes() == data  # byte-identical
    # the same run on the same data and test days: the same numbers, in the new folder
    again, original = json.loads((folder / "metrics.json").read_text()), json.loads(before["metrics.json"])
    for symbol, metrics in again.items():  # the run's own file adds its validation score
        assert metrics == {k: v for k, v in original[symbol].items() if k != "val_log_return"}
    record = json.loads((folder / "rebacktest.json").read_text())
    config = json.loads((run / "config.json").read_text())
    ranges = config["date_ranges"]["BPCL"]
    assert record["windows"]["BPCL"]["last_seen"] == max(ranges["train_end"], ranges.get("val_end", ""))
    assert record["windows"]["BPCL"]["test_start"] == config["date_ranges"]["BPCL"]["test_start"]
    # costs and churn are printed under the main table
    assert "costs nse-delivery: buy 16.86 bps, sell 15.36 bps + Rs 15.93 per sell day" in out
    assert re.search(r"^Re-backtest of cli-run on \S+: \d+ test days \(\d{4}-\d\d-\d\d \.\. \d{4}-\d\d-\d\d\), next_open execution, costs ", out, re.M), out
    assert "gross ret" in out and "trades/yr" in out and "avg hold" in out and "Sharpe @ 0/10/25/50 bps" in out
    # a second re-backtest gets its own folder
    assert main(["backtest", "--run", str(run)]) == 0
    assert len(list((run / "rebacktests").iterdir())) == 2


def test_metrics_json_has_costs_and_churn(trained_run):
    _, run = trained_run
    metrics = json.loads((run / "backtest/metrics.json").read_text())
    for m in metrics.values():
        assert m["gross_return"] - m["total_return"] == pytest.approx(m["cost_drag"], abs=1e-12)
        assert list(m["cost_sensitivity"]) == ["0", "10", "25", "50"]
        assert m["cost_sensitivity"]["0"]["total_return"] == pytest.approx(m["gross_return"], rel=1e-9, abs=1e-12)
        assert m["trades_per_year"] >= 0 and "avg_holding_days" in m
    config = json.loads((run / "config.json").read_text())
    assert config["cost_model"] == "nse-delivery" and config["price_adjustment"] == "none"
    assert config["data_info"]["price_adjustment"] == "none"


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "--data", "csv:/no/such/dir", "--runs-dir", str(tmp_path), *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("evorl train: error:") and "Traceback" not in "\n".join(err)
    assert main(["train", "--minibatch-size", "7", "--runs-dir", str(tmp_path), "--data", "synthetic"]) == 2
    assert "minibatch_size" in capsys.readouterr().err
    assert main(["signal", "--model", "nope", "--models-dir", str(tmp_path)]) == 2
    assert "no model bundle" in capsys.readouterr().err


def test_a_data_error_lists_every_problem_under_its_error_line(tmp_path, capsys):
    frame = synthetic_ohlcv("BPCL", n_days=400, seed=5)
    frame.iloc[3, frame.columns.get_loc("close")] = np.nan  # row 5 of the file
    frame.iloc[7, frame.columns.get_loc("volume")] = -1.0  # row 9
    frame.iloc[10, frame.columns.get_loc("low")] = 0.0  # row 12
    write_csv_dir(tmp_path / "csv", {"BPCL": frame})
    assert main(["train", "--data", f"csv:{tmp_path / 'csv'}", "--symbols", "BPCL", "--runs-dir", str(tmp_path / "runs"),
                 "--run-id", "bad", *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    path = tmp_path / "csv" / "BPCL.csv"
    assert err[-3:] == [
        f"evorl train: error: {path}: column 'Close', row 5: missing value (evorl never fills gaps: fix or delete the "
        "row) (2 more problems)",
        f"  {path}: column 'Volume', row 9: volume must be >= 0 (got -1)",
        f"  {path}: column 'Low', row 12: price must be positive (got 0)",
    ]
    # refused before a run directory exists (round 3, case 10); a run that records such an error
    # (the dashboard's jobs) keeps it on one line, the problems kept apart
    assert not (tmp_path / "runs" / "bad").exists()
    from evorl_core.data import DataError, read_symbol_csv
    from evorl_core.training.pipeline import describe_error

    with pytest.raises(DataError) as caught:
        read_symbol_csv(path)
    error = describe_error(caught.value)
    assert error.startswith("DataError: ") and "\n" not in error
    assert "(2 more problems); " in error and "row 9" in error and "; " + str(path) + ": column 'Low', row 12" in error


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "evorl_core.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("train", "backtest", "signal", "runs", "deploy", "bench"):
        assert command in out


def test_every_config_field_is_a_train_flag():
    import dataclasses

    from evorl_core.cli import build_parser
    from evorl_core.config import TrainConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions} | {"total_timesteps"}  # --timesteps
    assert "timesteps" in dests
    missing = {f.name for f in dataclasses.fields(TrainConfig)} - dests - {"extra"}
    assert not missing, f"config fields without a CLI flag: {sorted(missing)}"


def test_metrics_table_shows_sharpe_interval_and_verdict():
    verdict = "beats buy & hold (p = 0.01); no evidence of timing skill (p = 0.40)"
    text = format_metrics_table({"AAA": {"total_return": 0.1, "sharpe": 0.85, "sharpe_ci_low": -1.2,
                                         "sharpe_ci_high": 2.9, "trades": 4, "verdict": verdict},
                                 "BBB": {"sharpe": None}})
    header, rule, aaa, bbb, note = text.splitlines()
    assert note.endswith("docs/evaluation.md")
    assert "Sharpe [95% CI]" in header and header.split()[-1] == "verdict"
    assert "0.850 [-1.20, 2.90]" in aaa and aaa.endswith(verdict)
    assert bbb.endswith("—") and set(rule) == {"-"}


def test_train_records_and_prints_its_phases(trained_run):
    root, run = trained_run
    phases = json.loads((run / "status.json").read_text())["phases"]
    assert [p["name"] for p in phases] == ["loading data", "features", "compiling", "training", "backtest", "deploy"]
    out = (root / "train-stdout.txt").read_text()
    line = next(line for line in out.splitlines() if line.startswith("phases: "))
    assert re.fullmatch(r"phases: loading data [0-9.]+ s · features [0-9.]+ s · compiling [0-9.]+ s · "
                        r"training [0-9.]+ s · backtest [0-9.]+ s · deploy [0-9.]+ s", line), line


def test_each_phase_is_announced_with_the_time_the_last_one_took(capsys):
    from evorl_core.cli import print_phase

    print_phase("loading data", [{"name": "loading data", "started_at": 0.0, "seconds": None}])
    print_phase("features", [{"name": "loading data", "started_at": 0.0, "seconds": 1.25},
                             {"name": "features", "started_at": 1.25, "seconds": None}])
    assert capsys.readouterr().err.splitlines() == ["evorl: loading data", "evorl: features (loading data took 1.2 s)"]


def test_run_ids_resolve_against_the_runs_folder(trained_run, tmp_path, capsys):
    root, _ = trained_run
    runs = str(root / "runs")
    assert main(["backtest", "--run", "cli-run", "--runs-dir", runs, "--out", str(tmp_path / "bt")]) == 0
    assert (tmp_path / "bt" / "metrics.json").exists()
    assert main(["deploy", "--run", "cli-run", "--runs-dir", runs, "--model-name", "by-id",
                 "--models-dir", str(tmp_path / "models")]) == 0
    assert (tmp_path / "models" / "by-id" / "bundle.json").exists()
    capsys.readouterr()
    assert main(["backtest", "--run", "run-20261203-000000-abcd", "--runs-dir", runs]) == 2
    err = capsys.readouterr().err
    assert "no such run" in err and "evorl runs" in err
    failed = tmp_path / "runs" / "broken"
    failed.mkdir(parents=True)
    (failed / "status.json").write_text(json.dumps({"state": "failed", "error": "diverged at update 3"}))
    assert main(["deploy", "--run", "broken", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--run broken: this run failed: diverged at update 3" in capsys.readouterr().err
    young = tmp_path / "runs" / "young"
    young.mkdir()
    (young / "status.json").write_text(json.dumps({"state": "stopped"}))
    assert main(["backtest", "--run", "young", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert f"run {young} is stopped and has no checkpoint yet: not a trained run" in capsys.readouterr().err


def test_models_is_a_table_like_runs(trained_run, capsys):
    root, _ = trained_run
    assert main(["models", "--models-dir", str(root / "models")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "deployed", "symbols", "from", "run", "mean", "test", "return", "paper",
                                "ledger"]
    assert set(lines[1]) == {"-"}
    row = next(line for line in lines if line.startswith("m1"))
    assert "cli-run" in row and "BPCL,TATASTEEL" in row and "(B&H " in row and row.endswith("empty")
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", row)  # deploy date
    assert main(["models", "--models-dir", str(root / "models"), "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    m1 = next(m for m in models if m["name"] == "m1")
    assert m1["ledger"] == {"entries": 0, "last_date": None, "error": None} and m1["source_run"] == "cli-run"


def test_listing_a_folder_that_does_not_exist_says_so(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path / "nope")]) == 0
    assert main(["models", "--models-dir", str(tmp_path / "nope")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"no runs: {tmp_path / 'nope'} does not exist", f"no models: {tmp_path / 'nope'} does not exist"]
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"no runs in {tmp_path}"


def test_bench_help_lists_its_sections(capsys):
    from evorl_core.bench.plan import SECTION_HELP, SECTIONS

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert set(SECTION_HELP) == set(SECTIONS)
    for name in SECTIONS:
        assert re.search(rf"^  {name} +{re.escape(SECTION_HELP[name])}$", out, re.M), name


def test_negative_positions_as_the_help_shows_them():
    from evorl_core.cli import config_from_args, joined_negative_values

    argv = ["train", "--positions", "-1,0,1", "--symbols", "BPCL,HDFCLIFE", "TATASTEEL", "--data", "synthetic"]
    assert joined_negative_values(argv)[:2] == ["train", "--positions=-1,0,1"]
    args = build_parser().parse_args(joined_negative_values(argv))
    config = config_from_args(args)
    assert config.positions == (-1.0, 0.0, 1.0)
    assert config.symbols == ("BPCL", "HDFCLIFE", "TATASTEEL")  # commas separate symbols too


def test_a_pipe_closed_early_is_no_error(trained_run):
    root, _ = trained_run
    for i in range(30):  # enough runs that the listing outgrows the pipe buffer once `head` is gone
        (root / "many" / f"run-{i:03d}").mkdir(parents=True, exist_ok=True)
        (root / "many" / f"run-{i:03d}" / "status.json").write_text(json.dumps({"state": "done", "error": "x" * 4000}))
    proc = subprocess.run(f"{sys.executable} -m evorl_core.cli runs --runs-dir {root / 'many'} | head -1; "
                          "exit ${PIPESTATUS[0]}",
                          shell=True, capture_output=True, text=True, executable="/bin/bash",
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.startswith("run id") and proc.returncode == 0
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_config_errors_name_the_flag_and_where_the_value_came_from(tmp_path, capsys):
    base = ["train", "--preset", "quick", "--data", "synthetic", "--runs-dir", str(tmp_path)]
    assert main([*base, "--num-envs", "3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "evorl train: error: minibatch_size: 1024 must divide num_envs x num_steps = 384 "
        "(the quick preset's value; set --minibatch-size to change it)")
    assert main([*base, "--test-days", "1"]) == 2
    assert capsys.readouterr().err.strip() == "evorl train: error: test_days: must be at least 2 (got 1) (--test-days)"


def test_an_unknown_model_lists_what_exists(trained_run, capsys):
    root, _ = trained_run
    assert main(["signal", "--model", "m", "--models-dir", str(root / "models")]) == 2
    err = capsys.readouterr().err
    assert "no model bundle" in err and "did you mean 'm1'?" in err and f"(models in {root / 'models'}: " in err
