"""The Train form (evorl_ui.forms): preset values, form -> TrainConfig, batch arithmetic, sources."""

from __future__ import annotations

import pytest

from evorl_core.config import PRESETS, TrainConfig
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
        expected = TrainConfig(**{**PRESETS[preset], "preset": preset, "symbols": ("AAA",), "data": "synthetic"})
        assert config == expected


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
