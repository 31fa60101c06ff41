"""The Train form (evorl_ui.forms): preset values, form -> TrainConfig, batch arithmetic, sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evorl_core.config import PRESETS, TrainConfig
from evorl_core.data import DataError
from evorl_core.training.sizing import ASSUMED_FLOPS, update_flops
from evorl_ui import forms


# the Train form ------------------------------------------------------------------
def _form(**changes):
    values = forms.preset_form_values("quick")
    form = {k: values[k] for k in forms.FORM_FIELDS}
    form.update(symbols="bpcl, HDFCLIFE ,tatasteel", preset="quick", data="synthetic")
    form.update(changes)
    return form


def test_config_from_form_valid():
    config, errors = forms.config_from_form(_form())
    assert errors == []
    assert config.symbols == ("BPCL", "HDFCLIFE", "TATASTEEL")
    assert config.hidden == tuple(PRESETS["quick"]["hidden"])
    assert config.preset == "quick" and config.data == "synthetic"
    assert config == config.validated()
    assert isinstance(config, TrainConfig)


@pytest.mark.parametrize("changes,needle", [
    ({"symbols": ""}, "symbols: give at least one symbol"),
    ({"symbols": "BPCL,BPCL"}, "symbols: duplicates"),
    ({"minibatch_size": 1000}, "minibatch_size: 1000 must divide"),
    ({"hidden": "64,abc"}, "hidden:"),
    ({"positions": "0"}, "positions: give at least two"),
    ({"positions": "0,2"}, "positions: each target exposure must lie in [-1, 1]"),
    ({"lr": 0.0}, "lr: must be a positive number"),
    ({"total_timesteps": -5}, "timesteps: must be positive"),
    ({"test_days": 1}, "test_days: must be at least 2"),
    ({"fee_bps": -1.0}, "fee_bps: must be >= 0"),
    ({"num_envs": 2.5}, "num_envs: must be a whole number"),
    ({"preset": "nope"}, "preset: unknown preset"),
])
def test_config_from_form_reports_field_errors(changes, needle):
    config, errors = forms.config_from_form(_form(**changes))
    assert config is None
    assert any(needle in e for e in errors), errors


def test_config_from_form_reports_every_error_at_once():
    _, errors = forms.config_from_form(_form(symbols="", lr=-1.0, epochs=0))
    joined = "\n".join(errors)
    assert "symbols:" in joined and "lr:" in joined and "epochs:" in joined



def test_parse_symbols():
    assert forms.parse_symbols(" bpcl; hdfclife  tatasteel,,") == ("BPCL", "HDFCLIFE", "TATASTEEL")
    assert forms.parse_symbols("") == ()


def test_preset_form_values_are_widget_values():
    quick = forms.preset_form_values("quick")
    assert set(quick) == set(forms.FORM_FIELDS)
    assert quick["hidden"] == "64,64" and quick["positions"] == "0,0.5,1"
    assert quick["num_envs"] == PRESETS["quick"]["num_envs"] and isinstance(quick["lr"], float)
    assert isinstance(quick["fee_bps"], float) and quick["backend"] == "auto"
    assert forms.preset_form_values("production")["hidden"] == "1024,512,256"
    # a preset change leaves the user's test days and backend alone
    assert "test_days" not in forms.PRESET_FIELDS and "backend" not in forms.PRESET_FIELDS


def test_form_round_trips_every_preset():
    for preset in PRESETS:
        config, errors = forms.config_from_form({**forms.preset_form_values(preset), "preset": preset,
                                                 "symbols": "AAA", "data": "synthetic"})
        assert errors == []
        expected = TrainConfig(**{**PRESETS[preset], **forms.DASHBOARD_PRESET_DEFAULTS.get(preset, {}),
                                  "preset": preset, "symbols": ("AAA",), "data": "synthetic"})
        assert config == expected
    # the dashboard's quick preset trains several seeds: a spread and a choice on validation days
    assert forms.preset_form_values("quick")["seeds"] == 4 and forms.preset_form_values("production")["seeds"] == 1


def test_batch_summary_uses_config_arithmetic():
    form = {"num_envs": 64, "num_steps": 128, "minibatch_size": 1024, "total_timesteps": 200_000}
    c = TrainConfig(num_envs=64, num_steps=128, minibatch_size=1024, total_timesteps=200_000)
    assert forms.batch_summary(form) == (f"Batch {c.batch_size:,} env steps per update · {c.num_minibatches} "
                                         f"minibatches · ≈{c.num_updates:,} updates")
    assert forms.batch_summary(form) == "Batch 8,192 env steps per update · 8 minibatches · ≈25 updates"
    # a minibatch size that does not divide the batch, missing timesteps, unusable sizes
    assert forms.batch_summary({**form, "minibatch_size": 1000, "total_timesteps": None}) == (
        "Batch 8,192 env steps per update · — minibatches · ≈1 updates")
    assert forms.batch_summary({**form, "num_envs": 0}) is None
    assert forms.batch_summary({**form, "num_steps": 2.5}) is None


def test_csv_dir_source(tmp_path):
    assert forms.csv_dir_source(f" {tmp_path} ") == (f"csv:{tmp_path}", [])
    assert forms.csv_dir_source("  ") == (None, ["CSV directory: give a folder path"])
    source, errors = forms.csv_dir_source(str(tmp_path / "nope"))
    assert source is None and "is not a folder" in errors[0]


# every problem at once, each at its field ------------------------------------------------
def test_a_parse_error_hides_no_other_error():
    _, errors = forms.config_from_form(_form(hidden="64,x", symbols="BPCL,BPCL", lr=0.0, minibatch_size=1000,
                                             positions="0,2", epochs=0))
    fields = forms.field_errors(errors)
    assert set(fields) == {"hidden", "symbols", "lr", "minibatch_size", "positions", "epochs"}, errors
    assert len(fields["hidden"]) == 1  # the preset value stood in: no second, confusing hidden error


def test_field_of_maps_messages_to_fields():
    assert forms.field_of("timesteps: must be positive (got -5)") == "total_timesteps"
    assert forms.field_of("test_days: BPCL has 10 rows") == "test_days"
    assert forms.field_of("csv:/x: directory not found") == "source"
    assert forms.field_of("CSV directory: give a folder path") == "source"
    assert forms.field_of("fee_bps + slippage_bps must be below 10000 bps") == "fee_bps"
    assert forms.field_of("num_envs x num_steps must be at least 2") == "num_envs"
    assert forms.field_of("something else entirely") == forms.GENERAL


def _frame(rows):
    return pd.DataFrame({"close": np.ones(rows)}, index=pd.bdate_range("2020-01-01", periods=rows))


def test_check_data_reports_every_symbol_problem():
    config = TrainConfig(symbols=("AAA", "BBB", "CCC", "DDD"), data="auto", test_days=100, window=32)

    def load(symbol):
        if symbol == "BBB":
            raise DataError("BBB: no Yahoo data: download failed")
        if symbol == "CCC":
            return _frame(500), {"synthetic": True, "per_symbol": {"CCC": {"reason": "offline"}}}
        return _frame(120 if symbol == "DDD" else 400), {"synthetic": False}

    errors = forms.field_errors(forms.check_data(config, load))
    assert errors["symbols"] == ["symbols: BBB: no Yahoo data: download failed"]
    assert len(errors["source"]) == 1 and "auto found no real data for CCC (offline)" in errors["source"][0]
    # window + training + 2 embargoes (the window) + 60 validation days + test days: 32 + 21 + 64 + 60 + 100
    assert errors["test_days"] == ["test_days: DDD has 120 rows; 100 test days need at least 277 (window 32 + 21 for "
                                   "training + 2 embargoes of 32 + 60 validation days + test days); too short to "
                                   "train on"]
    no_val = forms.check_data(config.replace(val_days=0, symbols=("DDD",)), load)
    assert no_val == ["test_days: DDD has 120 rows; 100 test days need at least 185 (window 32 + 21 for training + "
                      "embargo 32 + test days); at most 35 test days fit"]
    assert forms.check_data(config.replace(data="synthetic", symbols=("AAA",)), load) == []


def test_data_check_config_needs_only_the_data_fields():
    form = _form(hidden="x", lr=-1.0, symbols="BPCL, NOSUCH$", test_days=90, data="synthetic")
    _, errors = forms.config_from_form(form)
    probe = forms.data_check_config(form, forms.field_errors(errors))
    assert probe is not None and probe.symbols == ("BPCL",) and probe.test_days == 90  # bad ticker left out
    assert forms.data_check_config(_form(test_days=1), {"test_days": ["x"]}) is None


def test_runtime_estimate_prefers_measured_throughput():
    config = TrainConfig(**{**PRESETS["production"], "preset": "production"})
    flops = update_flops(config)
    assumed = forms.runtime_estimate(config, [], "cpu")
    assert assumed["seconds"] == pytest.approx(flops * config.num_updates / ASSUMED_FLOPS["cpu"])
    assert "assumed" in assumed["basis"] and assumed["compile_seconds"] is None
    sizes = {k: getattr(config, k) for k in ("num_envs", "num_steps", "minibatch_size", "epochs", "window")}
    sizes.update(hidden=list(config.hidden), positions=list(config.positions))
    same = [{"backend": "cpu", "steps_per_sec": sps, "compile_seconds": 10.0, "sizes": sizes} for sps in (1e4, 3e4, 2e4)]
    est = forms.runtime_estimate(config, same, "cpu")
    assert est["seconds"] == pytest.approx(config.num_updates * config.batch_size / 2e4)
    assert "median throughput of 3 earlier run(s)" in est["basis"] and est["compile_seconds"] == 10.0
    assert "assumed" in forms.runtime_estimate(config, same, "gpu")["basis"]  # another backend does not count
    quick = TrainConfig(**{**PRESETS["quick"], "preset": "quick"})
    qsizes = {**sizes, "num_envs": quick.num_envs, "num_steps": quick.num_steps, "minibatch_size": quick.minibatch_size,
              "hidden": list(quick.hidden)}
    measured = forms.runtime_estimate(config, [{"backend": "cpu", "steps_per_sec": 5e4, "sizes": qsizes}], "cpu")
    rate = update_flops(quick) * 5e4 / quick.batch_size
    assert measured["seconds"] == pytest.approx(flops * config.num_updates / rate)
    assert "FLOP rate measured by 1 earlier run(s)" in measured["basis"]
    assert forms.runtime_text(est).startswith("Estimated time on this machine: ≈ ")


def test_the_estimate_says_what_it_includes():
    with_compile = {"seconds": 37.0, "compile_seconds": 40.0, "updates": 24, "basis": "median throughput of 2 runs"}
    text = forms.runtime_text(with_compile)
    assert text.startswith("Estimated time on this machine: ≈ 1m 17s in all (≈ 40s compiling, median of earlier runs, "
                           "+ ≈ 37s of training) for 24 update(s)")
    alone = forms.runtime_text({"seconds": 7.0, "compile_seconds": None, "updates": 3, "basis": "an assumed rate"})
    assert "≈ 7s of training, plus compiling first (not estimated: no earlier run here)" in alone


def test_the_estimate_uses_each_runs_median_throughput_not_its_last_chunk(tmp_path):
    from evorl_core.store.catalogue import list_runs_annotated
    from evorl_core.store.rundir import RunDir

    config = TrainConfig(**{**PRESETS["quick"], "preset": "quick"})
    run = RunDir.create(tmp_path, "r1")
    run.write_config(config.to_dict())
    run.write_status("done", backend="cpu", steps_per_sec=75_229.0, median_steps_per_sec=50_994.0, compile_seconds=9.0)
    runs = list_runs_annotated(tmp_path)
    assert runs[0]["steps_per_sec"] == 50_994.0
    est = forms.runtime_estimate(config, runs, "cpu")
    assert "(50,994 env steps/s)" in est["basis"]
