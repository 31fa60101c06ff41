"""The Train form, without Streamlit: its fields, their preset values, and form -> TrainConfig.

``FIELDS`` is the one list of the form's config fields (each with how its text or number is
parsed); pages/train.py draws a widget per field under the key ``train_<field>``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evorl_core.backends import BACKENDS
from evorl_core.config import (
    COST_MODELS,
    EXECUTION_MODES,
    PRESETS,
    PRICE_ADJUSTMENTS,
    ConfigError,
    TrainConfig,
    parse_floats,
    parse_ints,
    validation_errors,
)

# field -> kind: int / float (numbers), ints / floats (comma-separated text), or the allowed choices.
FIELDS: dict[str, Any] = {
    "num_envs": int, "num_steps": int, "minibatch_size": int, "epochs": int,
    "hidden": "ints", "lr": float, "fee_bps": float, "slippage_bps": float,
    "positions": "floats", "execution": EXECUTION_MODES, "seed": int, "backend": BACKENDS,
    "total_timesteps": int, "test_days": int,
    "cost_model": COST_MODELS, "brokerage_bps": float, "dp_charge": float, "price_adjustment": PRICE_ADJUSTMENTS,
}
FORM_FIELDS = tuple(FIELDS)
# Fields a preset does not set: changing the preset keeps what the user chose for them.
KEPT_ON_PRESET_CHANGE = ("test_days", "backend", "cost_model", "brokerage_bps", "dp_charge", "price_adjustment")
PRESET_FIELDS = tuple(f for f in FORM_FIELDS if f not in KEPT_ON_PRESET_CHANGE)
INT_FIELDS = tuple(f for f, kind in FIELDS.items() if kind is int)
FLOAT_FIELDS = tuple(f for f, kind in FIELDS.items() if kind is float)
LIST_PARSERS = {"ints": parse_ints, "floats": parse_floats}


def parse_symbols(text: str) -> tuple[str, ...]:
    """'bpcl, hdfclife;TATASTEEL' -> ('BPCL', 'HDFCLIFE', 'TATASTEEL')."""
    return tuple(s.strip().upper() for s in text.replace(";", ",").replace(" ", ",").split(",") if s.strip())


def preset_form_values(preset: str) -> dict[str, Any]:
    """The values the Train form shows for a preset: list fields as text, float fields as floats."""
    base = TrainConfig()
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)}
    values.update(PRESETS[preset])
    out = {}
    for name in FORM_FIELDS:
        v = values[name]
        if FIELDS[name] == "ints":
            v = ",".join(str(h) for h in v)
        elif FIELDS[name] == "floats":
            v = ",".join(f"{p:g}" for p in v)
        elif FIELDS[name] is float:
            v = float(v)
        out[name] = v
    return out


def config_from_form(form: Mapping[str, Any]) -> tuple[TrainConfig | None, list[str]]:
    """Translate the Train form into a TrainConfig; return every problem, each naming its field.

    ``form`` holds: symbols (text), data (source string), preset, and FORM_FIELDS, where the list
    fields (hidden, positions) are comma-separated text and the rest numbers or choices.
    """
    errors: list[str] = []
    preset = form.get("preset", "quick")
    if preset not in PRESETS:
        return None, [f"preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"]
    values: dict[str, Any] = dict(PRESETS[preset])
    values["preset"] = preset
    values["symbols"] = parse_symbols(str(form.get("symbols", "")))
    values["data"] = form.get("data", "auto")
    for name, kind in FIELDS.items():
        if name not in form or form[name] is None:
            continue
        v = form[name]
        if kind in LIST_PARSERS:
            try:
                values[name] = LIST_PARSERS[kind](str(v), name)
            except ConfigError as exc:
                errors.append(str(exc))
        elif kind in (int, float):
            try:
                fv = float(v)
            except (TypeError, ValueError):
                errors.append(f"{name}: {v!r} is not a number")
                continue
            if kind is int:
                if not math.isfinite(fv) or fv != int(fv):
                    errors.append(f"{name}: must be a whole number (got {v})")
                    continue
                values[name] = int(fv)
            else:
                values[name] = fv
        else:  # a choice; validation_errors names a bad one
            values[name] = v
    if errors:
        return None, errors
    try:
        config = TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        return None, [str(exc)]
    errors = validation_errors(config)
    if config.num_envs >= 1 and config.num_steps >= 1 and config.batch_size < 2:
        errors.append("num_envs x num_steps must be at least 2")
    return (None, errors) if errors else (config, [])


def batch_summary(form: Mapping[str, Any]) -> str | None:
    """'Batch 8,192 env steps per update · 8 minibatches · ≈25 updates' from TrainConfig's own
    batch arithmetic; None until envs, steps and minibatch size are positive whole numbers."""
    sizes = {k: form.get(k) for k in ("num_envs", "num_steps", "minibatch_size")}
    if not all(isinstance(v, int) and v > 0 for v in sizes.values()):
        return None
    c = TrainConfig(**sizes, total_timesteps=int(form.get("total_timesteps") or 0))
    minibatches = c.num_minibatches if c.batch_size % c.minibatch_size == 0 else "—"
    return f"Batch {c.batch_size:,} env steps per update · {minibatches} minibatches · ≈{c.num_updates:,} updates"


def csv_dir_source(text: str) -> tuple[str | None, list[str]]:
    """A CSV-directory field as a data source ('csv:<folder>'), or the problem with it."""
    if not text.strip():
        return None, ["CSV directory: give a folder path"]
    folder = Path(text.strip()).expanduser()
    if not folder.is_dir():
        return None, [f"CSV directory: {text.strip()!r} is not a folder"]
    return f"csv:{folder}", []
