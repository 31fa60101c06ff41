"""Every dashboard page through Streamlit's AppTest: empty runs directory, a real finished run,
the Train form's validation, starting runs, failures shown as st.error (never a traceback)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from evorl_core.config import make_config
from evorl_core.store.rundir import RunDir, RunLock
from evorl_core.training import jobs

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("home", "train", "live", "backtest", "walkforward", "models", "data")
TITLES = {"home": "evorl — RL trading workbench", "train": "Train", "live": "Live", "backtest": "Backtest",
          "walkforward": "Walk-forward", "models": "Models", "data": "Data"}
TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, hidden=(16,), total_timesteps=512, test_days=20)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> RunDir:
    """One real (tiny) training run on synthetic data, built once per test session."""
    from evorl_core.training.pipeline import run as train

    base = tmp_path_factory.mktemp("finished")
    config = make_config("quick", data="synthetic", **TINY)
    rd = train(config, base / "runs", "tiny-done", cache_dir=str(base / "cache"))
    assert rd.read_status()["state"] == "done"
    return rd


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    paths = {"runs": tmp_path / "runs", "models": tmp_path / "models", "cache": tmp_path / "cache"}
    monkeypatch.setenv("EVORL_RUNS_DIR", str(paths["runs"]))
    monkeypatch.setenv("EVORL_MODELS_DIR", str(paths["models"]))
    monkeypatch.setenv("EVORL_DATA_CACHE", str(paths["cache"]))
    return paths


@pytest.fixture
def with_run(dirs, finished_run):
    """The finished run copied into this test's runs directory (tests may change it)."""
    shutil.copytree(finished_run.path, dirs["runs"] / finished_run.run_id)
    return RunDir(dirs["runs"] / finished_run.run_id)


@pytest.fixture
def fake_train(monkeypatch):
    """Replace training in the process-wide registry the dashboard uses."""
    calls = []

    def fake(config, runs_dir, run_id, *, stop_event=None, **kwargs):
        calls.append({"config": config, "runs_dir": runs_dir, "run_id": run_id, **kwargs})
        rd = RunDir.create(runs_dir, run_id)
        rd.append_metrics([{"update": 1, "env_steps": 128, "steps_per_sec": 321.0, "updates_per_sec": 2.5,
                            "reward_mean": 0.001, "reward_std": 0.01, "host_rss_mb": 500.0}])
        rd.write_status("done", env_steps=128, finished_at=time.time())

    monkeypatch.setattr(jobs.get_registry(), "train_fn", fake)
    return calls


def open_page(page: str, **session) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
    for k, v in session.items():
        at.session_state[k] = v
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    return at


def assert_clean(at: AppTest, page: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title][:1] == [TITLES[page]]


def plotly_titles(at: AppTest) -> list[str]:
    out = []
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        out.append(((spec.get("layout") or {}).get("title") or {}).get("text", ""))
    return out


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


# every page, empty runs directory -----------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_empty_runs_dir(page, dirs):
    at = open_page(page)
    assert_clean(at, page)
    assert errors(at) == []
    # the shared frame: the directory settings are in the sidebar
    assert any(t.value == str(dirs["runs"]) for t in at.sidebar.text_input)


# every page, a real finished run ----------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_finished_run(page, with_run):
    at = open_page(page)
    assert_clean(at, page)
    assert errors(at) == []


def test_home_lists_the_run_and_backend(with_run):
    at = open_page("home")
    labels = [m.label for m in at.metric]
    assert "Backend" in labels and "Devices" in labels and "JAX" in labels
    table = at.dataframe[0].value
    assert with_run.run_id in table["run"].tolist()
    assert table.loc[table["run"] == with_run.run_id, "state"].item() == "done"


def test_live_shows_progress_metric_and_charts(with_run):
    at = open_page("live")
    tput = [m for m in at.metric if m.label == "Env steps / s (median)"]
    assert tput and float(tput[0].value.replace(",", "")) > 0
    titles = plotly_titles(at)
    for expected in ("Reward per step (mean ± std)", "Throughput", "Memory", "PPO losses",
                     "Approx KL and clip fraction", "Entropy and explained variance"):
        assert expected in titles
    assert "done" in at.get("progress")[0].proto.text
    assert any(b.label == "Open backtest" for b in at.button)


def test_backtest_has_one_equity_chart_per_symbol_and_conventions(with_run):
    at = open_page("backtest")
    symbols = with_run.read_config()["symbols"]
    titles = plotly_titles(at)
    assert sorted(t for t in titles if t.endswith("equity vs buy & hold")) == sorted(
        f"{s} — equity vs buy & hold" for s in symbols)
    # one linked figure per symbol: equity, drawdown and price share the date axis (zoom one, zoom all)
    for spec in (json.loads(el.proto.spec) for el in at.get("plotly_chart")):
        title = spec["layout"]["title"]["text"]
        if title.endswith("equity vs buy & hold"):
            axes = [spec["layout"][k]["title"]["text"] for k in ("yaxis", "yaxis2", "yaxis3")]
            assert axes == ["equity (currency)", "drawdown", "close (currency)"]
            assert spec["layout"]["xaxis"].get("matches") == "x3" or spec["layout"]["xaxis2"].get("matches") == "x3"
    assert "Portfolio — equity vs buy & hold, drawdown, exposure" in titles
    assert "Monthly returns of the portfolio (%)" in titles
    assert any(t.startswith("Rolling Sharpe of the portfolio") for t in titles)
    # the trades count beside the win rate is the win rate's own: round trips
    portfolio = at.dataframe[0].value
    assert "round trips" in portfolio.index and "win rate (per round trip)" in portfolio.index
    assert "position changes" not in portfolio.index
    # the conventions needed to read the numbers, with this run's own execution mode and costs
    config = with_run.read_config()
    caption = " ".join(c.value for c in at.caption)
    assert "252" in caption and config["execution"] in caption
    costs = ("fee_bps", "slippage_bps") if config["cost_model"] == "flat" else ("slippage_bps", "brokerage_bps")
    for cost in costs:
        assert re.search(rf"\b{config[cost]:g}(\.0+)? bps", caption), (cost, caption)
    assert config["cost_model"] in caption
    assert any("Synthetic data" in m.value for m in at.markdown)  # st.badge renders as markdown
    # the verdict in plain words: in the overview table and above each symbol's metrics
    assert any("verdict" in df.value.columns for df in at.dataframe)
    assert sum(c.value.startswith("Verdict: ") and "buy & hold" in c.value for c in at.caption) == len(symbols)
    assert len(at.get("download_button")) == 2  # the HTML report and equity.csv
    for spec in (json.loads(el.proto.spec) for el in at.get("plotly_chart")):
        if not spec["layout"]["title"]["text"].startswith("Monthly returns"):  # a heatmap: per cell
            assert spec["layout"]["hovermode"] == "x unified"


def test_backtest_compares_two_runs(with_run, dirs):
    shutil.copytree(with_run.path, dirs["runs"] / "second")
    at = open_page("backtest")
    assert not at.exception
    compare = at.selectbox(key="bt_compare")
    assert compare.value in ("second", with_run.run_id)
    last = at.dataframe[-1].value
    assert set(last.columns) == {"second", with_run.run_id}


def test_live_failed_run_shows_error(dirs):
    rd = RunDir.create(dirs["runs"], "broken")
    rd.write_config(make_config("quick", data="csv:/nowhere").to_dict())
    rd.write_status("failed", error="DataError: csv:/nowhere: directory not found")
    at = open_page("live")
    assert not at.exception
    assert any("directory not found" in e for e in errors(at))


def test_live_stop_button_writes_stop_file(dirs):
    rd = RunDir.create(dirs["runs"], "cli-run")
    rd.write_config(make_config("quick", data="synthetic").to_dict())
    owner = RunLock.acquire(rd)  # stands for the CLI process that owns the run
    rd.write_status("running", env_steps=256, total_steps=1024)
    rd.append_metrics([{"update": 1, "env_steps": 256, "steps_per_sec": 1000.0}])
    at = open_page("live")
    assert not at.exception
    stop = at.button(key="live_stop")
    assert not stop.disabled
    stop.click().run()
    assert rd.stop_requested()
    owner.release()


def test_pages_read_the_run_named_in_the_url(with_run, dirs):
    shutil.copytree(with_run.path, dirs["runs"] / "other")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
    at.query_params["run"] = "other"
    at.run()
    at.switch_page("pages/live.py").run()
    assert at.selectbox(key="live_run").value == "other"


# the Train form -----------------------------------------------------------------------------
def test_train_form_rejects_bad_values_with_messages(dirs, fake_train):
    at = open_page("train")
    at.selectbox(key="train_source").set_value("synthetic").run()  # the data checks run too: no network
    at.text_input(key="train_symbols").set_value("BPCL, BPCL")
    at.number_input(key="train_minibatch_size").set_value(1000)
    at.text_input(key="train_positions").set_value("0,2")
    at.number_input(key="train_lr").set_value(0.0)
    at.button(key="train_start").click().run()
    assert not at.exception
    msgs = errors(at)
    assert any(m.startswith("symbols: duplicates") for m in msgs), msgs
    assert any(m.startswith("minibatch_size: 1000 must divide") for m in msgs), msgs
    assert any(m.startswith("positions: each target exposure") for m in msgs), msgs
    assert any(m.startswith("lr: must be a positive number") for m in msgs), msgs
    assert fake_train == []
    assert not dirs["runs"].exists() or not any(dirs["runs"].iterdir())


def test_train_form_rejects_unparsable_hidden_and_missing_csv_dir(dirs, fake_train):
    at = open_page("train")
    at.selectbox(key="train_source").set_value("csv_dir").run()
    at.text_input(key="train_csv_dir").set_value(str(dirs["runs"] / "nope"))
    at.text_input(key="train_hidden").set_value("64,x")
    at.button(key="train_start").click().run()
    msgs = errors(at)
    assert any("is not a folder" in m for m in msgs), msgs
    assert any(m.startswith("hidden:") for m in msgs), msgs
    assert fake_train == []


def test_train_submit_starts_run_and_opens_live(dirs, fake_train):
    at = open_page("train")
    at.selectbox(key="train_source").set_value("synthetic").run()
    at.number_input(key="train_total_timesteps").set_value(4096)
    at.number_input(key="train_test_days").set_value(30)
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert errors(at) == []
    assert jobs.get_registry().join(fake_train[0]["run_id"], dirs["runs"], timeout=10)
    call = fake_train[0]
    assert call["config"].data == "synthetic" and call["config"].total_timesteps == 4096
    assert call["config"].test_days == 30 and call["config"].preset == "quick"
    assert call["config"].symbols == ("BPCL", "HDFCLIFE", "TATASTEEL")
    assert call["cache_dir"] == str(dirs["cache"]) and call["models_dir"] == str(dirs["models"])
    assert (dirs["runs"] / call["run_id"] / "status.json").exists()
    # the app moved to Live with the new run selected
    assert [t.value for t in at.title] == ["Live"]
    assert at.session_state["selected_run"] == call["run_id"]


def test_train_preset_change_fills_the_advanced_fields(dirs):
    at = open_page("train")
    assert at.number_input(key="train_num_envs").value == 64
    at.selectbox(key="train_preset").set_value("production").run()
    assert at.number_input(key="train_num_envs").value == 256
    assert at.text_input(key="train_hidden").value == "1024,512,256"


def test_train_precision_survives_a_preset_change_and_reaches_the_run(dirs, fake_train):
    at = open_page("train")
    assert at.selectbox(key="train_precision").value == "auto"
    at.selectbox(key="train_precision").set_value("bf16").run()
    at.selectbox(key="train_preset").set_value("production").run()
    assert at.selectbox(key="train_precision").value == "bf16"
    at.selectbox(key="train_preset").set_value("quick").run()
    at.selectbox(key="train_source").set_value("synthetic").run()
    at.number_input(key="train_total_timesteps").set_value(4096)
    at.button(key="train_start").click().run()
    assert not at.exception and errors(at) == []
    assert jobs.get_registry().join(fake_train[0]["run_id"], dirs["runs"], timeout=10)
    assert fake_train[0]["config"].precision == "bf16"


def test_train_upload_validates_each_csv(dirs, fake_train):
    at = open_page("train")
    at.text_input(key="train_symbols").set_value("AAA,BBB").run()
    at.selectbox(key="train_source").set_value("upload").run()
    good = ("Date,Open,High,Low,Close,Adj Close,Volume\n"
            + "".join(f"2020-01-{d:02d},10,11,9,10.5,10.5,100\n" for d in range(1, 29))).encode()
    bad = b"Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-01,10,11,9,abc,10,100\n"
    at.file_uploader(key="train_upload_AAA").set_value(("AAA.csv", good, "text/csv"))
    at.file_uploader(key="train_upload_BBB").set_value(("BBB.csv", bad, "text/csv"))
    at.run()
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    msgs = errors(at)
    assert any(m.startswith("BBB:") for m in msgs), msgs
    assert not any(m.startswith("AAA:") for m in msgs), msgs
    assert fake_train == []


def test_train_upload_lists_every_problem_of_a_csv_at_the_source_field(dirs, fake_train):
    at = open_page("train")
    at.text_input(key="train_symbols").set_value("AAA").run()
    at.selectbox(key="train_source").set_value("upload").run()
    rows = [f"2020-01-{d:02d},10,11,9,10.5,10.5,100" for d in range(1, 29)]
    rows[3] = "2020-01-04,10,11,9,,10.5,100"  # row 5: no close
    rows[7] = "2020-01-08,-2,11,9,10.5,10.5,100"  # row 9: negative open
    rows[10] = "2020-01-11,10,8,9,10.5,10.5,100"  # row 12: high below low
    rows[18] = "2020-01-18,10,11,9,10.5,10.5,100"  # row 20: the date of row 19
    bad = ("Date,Open,High,Low,Close,Adj Close,Volume\n" + "\n".join(rows) + "\n").encode()
    at.file_uploader(key="train_upload_AAA").set_value(("mine.csv", bad, "text/csv"))
    at.run()
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    expected = ["AAA: mine.csv: column 'Close', row 5: missing value (evorl never fills gaps: fix or delete the row)"
                " (3 more problems)",
                "mine.csv: column 'Open', row 9: price must be positive (got -2)",
                "mine.csv: column 'High', row 12: high 8 is below close 10.5",
                "mine.csv: column 'Date', row 20: duplicate date 2020-01-18 (also in row 19)"]
    assert at.session_state["train_errors"]["errors"]["source"] == ["\n".join(expected)]  # under the source field
    assert "  \n".join(expected) in errors(at)  # drawn one problem a line
    assert fake_train == []


def test_home_quick_start(dirs, fake_train):
    at = open_page("home")
    at.button(key="quick_start").click().run()
    assert not at.exception
    assert fake_train and fake_train[0]["config"].preset == "quick" and fake_train[0]["config"].data == "synthetic"
    jobs.get_registry().join(fake_train[0]["run_id"], dirs["runs"], timeout=10)
    assert [t.value for t in at.title] == ["Live"]


# Models and Data ----------------------------------------------------------------------------
def test_models_deploy_and_signal(with_run, dirs):
    at = open_page("models")
    assert not at.exception
    at.selectbox(key="models_run").set_value(with_run.run_id)
    at.text_input(key="models_name").set_value("tiny-model")
    at.button(key="models_deploy").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert errors(at) == []
    assert (dirs["models"] / "tiny-model" / "bundle.json").exists()
    assert at.dataframe[0].value["name"].tolist() == ["tiny-model"]
    at.selectbox(key="models_source").set_value("synthetic")
    at.button(key="models_signal").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert errors(at) == []
    signals = at.dataframe[-1].value
    assert sorted(signals["symbol"]) == sorted(with_run.read_config()["symbols"])
    assert set(signals["target position"]).issubset({0.0, 0.5, 1.0})


def test_models_bad_name_is_an_error_not_a_traceback(with_run, dirs):
    at = open_page("models")
    at.text_input(key="models_name").set_value("../evil")
    at.button(key="models_deploy").click().run()
    assert not at.exception
    assert any("invalid" in e for e in errors(at))


def test_data_page_loads_synthetic(dirs):
    at = open_page("data")
    at.selectbox(key="data_source").set_value("synthetic")
    at.button(key="data_load").click().run()
    assert not at.exception
    assert errors(at) == []
    assert any("daily OHLC" in t for t in plotly_titles(at))
    assert at.dataframe[0].value["rows"].min() > 100


def test_data_page_shows_validation_errors(dirs, tmp_path):
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "BAD.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-01,10,11,9,10,100\n"
                                    "2020-01-02,10,11,9,-3,100\n")
    at = open_page("data")
    at.text_input(key="data_symbols").set_value("BAD")
    at.selectbox(key="data_source").set_value("csv_dir").run()
    at.text_input(key="data_csv_dir").set_value(str(folder))
    at.button(key="data_load").click().run()
    assert not at.exception
    msgs = errors(at)
    assert msgs and "BAD.csv" in msgs[0]


# the one data-source picker ------------------------------------------------------------------
GOOD_CSV = ("Date,Open,High,Low,Close,Adj Close,Volume\n"
            + "".join(f"2020-01-{d:02d},10,11,9,10.5,10.5,100\n" for d in range(1, 29))).encode()


def test_every_data_page_offers_the_same_sources(with_run, dirs):
    at = open_page("models")
    at.selectbox(key="models_run").set_value(with_run.run_id)
    at.button(key="models_deploy").click().run()
    options = {}
    for page, key in (("train", "train_source"), ("data", "data_source"), ("models", "models_source")):
        at = open_page(page)
        assert_clean(at, page)
        options[page] = at.selectbox(key=key).options
    assert options["train"] == options["data"] == options["models"]
    assert "Yahoo Finance" in options["models"] and "CSV upload per symbol" in options["models"]


def test_data_page_loads_an_upload_into_the_data_cache(dirs):
    at = open_page("data")
    at.text_input(key="data_symbols").set_value("AAA").run()
    at.selectbox(key="data_source").set_value("upload").run()
    at.file_uploader(key="data_upload_AAA").set_value(("whatever.csv", GOOD_CSV, "text/csv"))
    at.run()
    at.button(key="data_load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert errors(at) == []
    assert at.dataframe[0].value["symbol"].tolist() == ["AAA"] and at.dataframe[0].value["rows"].item() == 28
    assert (dirs["cache"] / "uploads" / "data" / "AAA.csv").read_bytes() == GOOD_CSV


# issue 12: a trader's daily workflow ----------------------------------------------------------
def test_train_form_survives_navigation_and_a_new_session(dirs, tmp_path):
    at = open_page("train")
    at.selectbox(key="train_source").set_value("csv_dir").run()
    at.text_input(key="train_csv_dir").set_value(str(tmp_path))
    at.number_input(key="train_total_timesteps").set_value(1_234_567)
    at.number_input(key="train_test_days").set_value(120).run()
    at.switch_page("pages/data.py").run()
    assert at.selectbox(key="data_source").value == "csv_dir"  # Data starts from the Train form's source
    assert at.text_input(key="data_csv_dir").value == str(tmp_path)
    at.switch_page("pages/train.py").run()
    assert at.selectbox(key="train_source").value == "csv_dir"
    assert at.text_input(key="train_csv_dir").value == str(tmp_path)
    assert at.number_input(key="train_total_timesteps").value == 1_234_567
    assert at.number_input(key="train_test_days").value == 120
    fresh = open_page("train")  # a reload: a new session reads the saved draft
    assert fresh.number_input(key="train_total_timesteps").value == 1_234_567
    assert fresh.selectbox(key="train_source").value == "csv_dir"
    fresh.button(key="train_reset").click().run()
    assert fresh.number_input(key="train_total_timesteps").value == 200_000
    assert fresh.selectbox(key="train_source").value == "auto"


def test_train_refuses_test_days_the_data_cannot_hold_at_the_field(dirs, fake_train, tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    rows = "".join(f"{d.date()},10,11,9,10.5,10.5,100\n" for d in pd.bdate_range("2020-01-01", periods=300))
    (folder / "AAA.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + rows)
    at = open_page("train")
    at.text_input(key="train_symbols").set_value("AAA,ZZZ")
    at.selectbox(key="train_source").set_value("csv_dir").run()
    at.text_input(key="train_csv_dir").set_value(str(folder))
    at.number_input(key="train_test_days").set_value(2100)
    at.text_input(key="train_hidden").set_value("64,x")
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    msgs = errors(at)
    assert any(m.startswith("test_days: AAA has 300 rows; 2,100 test days need at least") for m in msgs), msgs
    assert any(m.startswith("symbols: csv:") and "no file for ZZZ" in m for m in msgs), msgs
    assert any(m.startswith("hidden:") for m in msgs), msgs
    assert fake_train == [] and not (dirs["runs"].exists() and any(dirs["runs"].iterdir()))
    # each message sits under its field, in the field's column
    def column_errors(key):
        for col in at.columns:
            if any(w.key == key for w in [*col.number_input, *col.text_input]):
                return [e.value for e in col.error]
        raise AssertionError(f"no column holds {key}")

    assert [m[:10] for m in column_errors("train_test_days")] == ["test_days:"]
    assert [m[:8] for m in column_errors("train_symbols")] == ["symbols:"]
    assert [m[:7] for m in column_errors("train_hidden")] == ["hidden:"]


def test_train_names_tags_and_notes_the_run(dirs, fake_train):
    at = open_page("train")
    at.selectbox(key="train_source").set_value("synthetic").run()
    at.number_input(key="train_total_timesteps").set_value(4096)
    at.text_input(key="train_run_name").set_value("my baseline")
    at.text_input(key="train_tags").set_value("baseline, long-only")
    at.text_area(key="train_note").set_value("first try")
    at.button(key="train_start").click().run()
    assert not at.exception and errors(at) == []
    run_id = fake_train[0]["run_id"]
    assert jobs.get_registry().join(run_id, dirs["runs"], timeout=10)
    notes = json.loads((dirs["runs"] / run_id / "annotations.json").read_text())
    assert notes["name"] == "my baseline" and notes["tags"] == ["baseline", "long-only"] and notes["note"] == "first try"


def test_live_and_home_badge_a_synthetic_run(with_run):
    at = open_page("live")
    assert any("Synthetic data" in m.value for m in at.markdown)
    assert "SYNTHETIC" in at.selectbox(key="live_run").format_func(with_run.run_id)
    home = open_page("home")
    table = home.dataframe[0].value
    assert table.loc[table["run"] == with_run.run_id, "data"].item() == "SYNTHETIC"
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()


def test_home_renames_tags_archives_and_deletes(with_run, dirs):
    at = open_page("home")
    at.text_input(key="home_name").set_value("renamed")
    at.text_input(key="home_tags").set_value("t1, t2")
    at.button(key="FormSubmitter:home_annotations-Save name, tags and note").click().run()
    assert not at.exception and errors(at) == []
    assert at.dataframe[0].value["name"].tolist() == ["renamed"]
    assert "renamed" in at.selectbox(key="home_open").format_func(with_run.run_id)
    at.button(key="home_archive").click().run()
    assert at.dataframe == [] or with_run.run_id not in at.dataframe[0].value["run"].tolist()
    assert json.loads((with_run.path / "annotations.json").read_text())["archived"] is True
    other = open_page("backtest")  # archived runs leave the pickers
    assert not other.selectbox or with_run.run_id not in other.selectbox(key="bt_run").options
    at.checkbox(key="home_archived").check().run()
    assert at.button(key="home_delete").disabled  # not confirmed yet
    at.checkbox(key=f"home_confirm_{with_run.run_id}").check().run()
    at.button(key="home_delete").click().run()
    assert not at.exception and errors(at) == []
    assert not with_run.path.exists()
    assert any("Deleted" in s.value for s in at.success)


def test_home_never_deletes_a_running_run(dirs):
    rd = RunDir.create(dirs["runs"], "busy")
    rd.write_config(make_config("quick", data="synthetic").to_dict())
    owner = RunLock.acquire(rd)  # stands for the process training it
    rd.write_status("running", env_steps=1, total_steps=10)
    at = open_page("home")
    assert at.checkbox(key="home_confirm_busy").disabled and at.button(key="home_delete").disabled
    assert rd.status_path.exists()
    owner.release()


def test_backtest_warns_when_comparing_real_and_synthetic(with_run, dirs):
    second = dirs["runs"] / "real-copy"
    shutil.copytree(with_run.path, second)
    config = json.loads((second / "config.json").read_text())
    config["data_info"] = {**config["data_info"], "synthetic": False, "source": "csv"}
    (second / "config.json").write_text(json.dumps(config))
    at = open_page("backtest")
    assert any("Different data" in w.value for w in at.warning), [w.value for w in at.warning]


def test_models_signal_defaults_to_the_training_source_and_paper_appends_once(with_run, dirs):
    at = open_page("models")
    at.selectbox(key="models_run").set_value(with_run.run_id)
    at.text_input(key="models_name").set_value("paper-model")
    at.button(key="models_deploy").click().run()
    assert at.selectbox(key="models_source").value == "synthetic"  # the run was trained on synthetic data
    at.button(key="models_paper").click().run()
    assert not at.exception and errors(at) == []
    assert any(s.value.startswith("Appended 3 entries for") for s in at.success), [s.value for s in at.success]
    ledger_file = dirs["models"] / "paper-model" / "ledger.jsonl"
    before = ledger_file.read_bytes()
    at.button(key="models_paper").click().run()
    assert any(i.value.startswith("Nothing appended: already recorded up to") for i in at.info)
    assert ledger_file.read_bytes() == before
    assert "Forward (paper) equity since deployment" in plotly_titles(at)
    assert any("stale data" in w.value for w in at.warning)  # synthetic prices end in 2025


def test_models_auto_refuses_synthetic_fallback(with_run, dirs, monkeypatch):
    from evorl_core.data import yahoo

    monkeypatch.setattr(yahoo, "_download", lambda *a, **k: (_ for _ in ()).throw(yahoo._NetworkUnavailable("offline")))
    at = open_page("models")
    at.selectbox(key="models_run").set_value(with_run.run_id)
    at.button(key="models_deploy").click().run()
    at.selectbox(key="models_source").set_value("auto").run()
    at.button(key="models_signal").click().run()
    assert not at.exception
    assert any("no real data" in e and "does not fall back" in e for e in errors(at)), errors(at)


def test_live_shows_the_phases_of_a_run_and_their_durations(dirs):
    rd = RunDir.create(dirs["runs"], "warming-up")
    rd.write_config(make_config("quick", data="synthetic").to_dict())
    owner = RunLock.acquire(rd)  # stands for the process compiling the run
    started = time.time() - 4.0
    rd.write_status("compiling", env_steps=0, total_steps=1024, phase="compiling", phases=[
        {"name": "loading data", "started_at": started - 1.5, "seconds": 1.2},
        {"name": "features", "started_at": started - 0.3, "seconds": 0.3},
        {"name": "compiling", "started_at": started, "seconds": None}])
    at = open_page("live")
    assert not at.exception
    captions = [c.value for c in at.caption if c.value.startswith("Phases: ")]
    assert len(captions) == 1
    assert re.fullmatch(r"Phases: loading data 1\.2 s · features 0\.3 s · compiling [0-9.]+ s so far", captions[0])
    owner.release()


def test_train_and_data_pages_start_from_one_default_data_source(dirs):
    from evorl_core.arguments import build_parser
    from evorl_core.config import DEFAULT_DATA, TrainConfig

    assert TrainConfig().data == DEFAULT_DATA
    assert build_parser().parse_args(["train"]).data == DEFAULT_DATA
    for page in ("train", "data"):
        at = open_page(page)
        assert not at.exception
        assert at.selectbox(key=f"{page}_source").value == DEFAULT_DATA, page


def test_train_can_write_tensorboard_events(dirs, fake_train):
    at = open_page("train")
    at.selectbox(key="train_source").set_value("synthetic").run()
    at.checkbox(key="train_tensorboard").check().run()
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert jobs.get_registry().join(fake_train[0]["run_id"], dirs["runs"], timeout=10)
    assert fake_train[0]["tensorboard"] is True
