"""The Train form, without Streamlit: its fields, their preset values, and form -> TrainConfig.

``FIELDS`` is the one list of the form's config fields (each with how its text or number is
parsed); pages/train.py draws a widget per field under the key ``train_<field>``. ``mode`` picks
single-asset or portfolio trading, and with it which presets' values the form starts from. Several
agents: ``agents`` chooses independent seeds or a population (PBT, ``population_form``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from evorl_core.config import (
    ALL_SYMBOLS,
    COST_MODELS,
    DEFAULT_DATA,
    EXECUTION_MODES,
    PRECISIONS,
    PRESETS,
    PRICE_ADJUSTMENTS,
    SEARCH_SPACE,
    TRADING_MODES,
    ConfigError,
    TrainConfig,
    parse_floats,
    parse_ints,
    preset_values,
    validation_errors,
)
from evorl_core.data import MIN_TRAIN_STEPS, DataError, rows_needed
from evorl_core.guards import form_inapplicable  # a field that would do nothing is an error under it
from evorl_core.system.backends import BACKENDS
from evorl_core.timefmt import format_duration
from evorl_core.training.sizing import ASSUMED_FLOPS, check_fits, update_flops  # the loop's own sizing
from evorl_ui.population_form import AGENT_MODES, POPULATION_FIELDS, space_from_form

# field -> kind: int / float (numbers), ints / floats (comma-separated text), or the allowed choices.
FIELDS: dict[str, Any] = {
    "num_envs": int, "num_steps": int, "minibatch_size": int, "epochs": int,
    "hidden": "ints", "lr": float, "fee_bps": float, "slippage_bps": float,
    "positions": "floats", "execution": EXECUTION_MODES, "seed": int, "backend": BACKENDS,
    "total_timesteps": int, "test_days": int, "precision": PRECISIONS,
    "cost_model": COST_MODELS, "brokerage_bps": float, "dp_charge": float, "price_adjustment": PRICE_ADJUSTMENTS,
    "val_days": int, "seeds": int, "population": int, "pbt_interval": int, "pbt_fraction": float,
    "pbt_resample": float, "mode": TRADING_MODES, "universe_size": int, "rebalance_band": float,
}
FORM_FIELDS = tuple(FIELDS)
# Fields a preset does not set: changing the preset keeps what the user chose for them.
KEPT_ON_PRESET_CHANGE = ("test_days", "backend", "cost_model", "brokerage_bps", "dp_charge", "price_adjustment",
                         "val_days", "population", "pbt_interval", "pbt_fraction", "pbt_resample", "mode",
                         "universe_size", "rebalance_band", "precision")
# Beyond the engine's preset: several quick-preset seeds, so a first run reports a spread, not one draw.
DASHBOARD_PRESET_DEFAULTS: dict[str, dict[str, Any]] = {"quick": {"seeds": 4}}
# Form values where the engine's default means "off": a population the user switches to has 8 members.
FORM_DEFAULTS: dict[str, Any] = {"population": 8}
PRESET_FIELDS = tuple(f for f in FORM_FIELDS if f not in KEPT_ON_PRESET_CHANGE)
INT_FIELDS = tuple(f for f, kind in FIELDS.items() if kind is int)
FLOAT_FIELDS = tuple(f for f, kind in FIELDS.items() if kind is float)
LIST_PARSERS = {"ints": parse_ints, "floats": parse_floats}


def parse_symbols(text: str) -> tuple[str, ...]:
    """'bpcl, hdfclife;TATASTEEL' -> ('BPCL', 'HDFCLIFE', 'TATASTEEL'); 'all' (every symbol of the
    source, portfolio mode) stays ('all',)."""
    if text.strip().lower() == ALL_SYMBOLS:
        return (ALL_SYMBOLS,)
    return tuple(s.strip().upper() for s in text.replace(";", ",").replace(" ", ",").split(",") if s.strip())


def hidden_fields(mode: str, symbols: tuple[str, ...], data: str) -> tuple[str, ...]:
    """The fields the form neither shows nor sends in a trading mode, since they would do nothing
    there: the universe size applies to the synthetic universe of portfolio mode only."""
    if mode != "portfolio":
        return ("universe_size", "rebalance_band")
    return ("positions",) if symbols == (ALL_SYMBOLS,) and data == "synthetic" else ("positions", "universe_size")


def preset_form_values(preset: str, mode: str = "single") -> dict[str, Any]:
    """The values the Train form shows for a preset in a trading mode: list fields as text, float
    fields as floats."""
    base = TrainConfig()
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)}
    values.update(FORM_DEFAULTS)
    values.update(preset_values(preset, mode), mode=mode)
    values.update(DASHBOARD_PRESET_DEFAULTS.get(preset, {}))
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
    mode = form.get("mode") if form.get("mode") in TRADING_MODES else "single"  # a bad one: validation names it
    preset_of_mode = preset_values(preset, mode)
    values: dict[str, Any] = dict(preset_of_mode)
    values.update(preset=preset, symbols=parse_symbols(str(form.get("symbols", ""))))
    values["data"] = form.get("data", DEFAULT_DATA)
    agents = form.get("agents") or "seeds"
    if agents not in AGENT_MODES:
        errors.append(f"agents: {agents!r} must be one of {', '.join(AGENT_MODES)}")
        agents = "seeds"
    unused = (*(POPULATION_FIELDS if agents == "seeds" else ("seeds",)),  # the other agents mode's fields
              *hidden_fields(mode, values["symbols"], values["data"]))
    for name, kind in FIELDS.items():
        if name not in form or form[name] is None or name in unused:
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
    # An unparsed field keeps its preset value, so every other field is checked too (all problems at once).
    unparsed = {field_of(e) for e in errors}
    base = TrainConfig()
    for name in unparsed:
        if name in FIELDS:
            values[name] = preset_of_mode.get(name, getattr(base, name))
    if agents == "population":
        values["seeds"] = 1
        if isinstance(values.get("population"), int) and values["population"] < 2:
            errors.append(f"population: a population needs at least 2 members (got {values['population']})")
        evolve, search_space, init_space, space_errors = space_from_form(form)
        values.update(evolve=evolve, search_space=search_space, init_space=init_space)
        errors += space_errors
    else:
        values["population"] = 1
    try:
        config = TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        return None, [*errors, str(exc)]
    errors += [e for e in validation_errors(config) + form_inapplicable(config, values, preset_of_mode)
               if field_of(e) not in unparsed]
    if config.num_envs >= 1 and config.num_steps >= 1 and config.batch_size < 2:
        errors.append("num_envs x num_steps must be at least 2")
    return (None, errors) if errors else (config, [])


def memory_errors(config: TrainConfig) -> list[str]:
    """The loop's own check that the run fits in memory (a population too large for the device),
    made before the run starts; the message names the field (population, seeds or hidden)."""
    try:
        check_fits(config)
    except ConfigError as exc:
        return [str(exc)]
    return []


# Message prefixes (as validation_errors and the data checks write them) -> form field.
MESSAGE_FIELDS = {"timesteps": "total_timesteps", "num_envs x num_steps must": "num_envs",
                  "fee_bps + slippage_bps": "fee_bps", "data": "source", "upload": "source",
                  "CSV directory": "source", "csv": "source"}
GENERAL = "_form"

SPACE_MESSAGE = re.compile(r"^(search_space|init_space): '(\w+)=")
SPACE_FIELDS = {"search_space": "range", "init_space": "init"}


def field_of(message: str) -> str:
    """The form field a message is about (its 'field:' prefix), else GENERAL; a search-space
    problem belongs to its hyperparameter's range field (range_<name> or init_<name>)."""
    if (match := SPACE_MESSAGE.match(message)) and match.group(2) in SEARCH_SPACE:
        return f"{SPACE_FIELDS[match.group(1)]}_{match.group(2)}"
    for prefix, name in MESSAGE_FIELDS.items():
        if message.startswith(prefix) and not message.startswith(prefix + "_"):
            return name
    head = message.split(":", 1)[0].strip()
    if head in FIELDS or head in ("symbols", "source", "preset", "name", "tags", "note", "agents", "evolve"):
        return head
    return GENERAL


def field_errors(messages: list[str]) -> dict[str, list[str]]:
    """Messages grouped by the field they belong to (GENERAL for the rest), order kept."""
    out: dict[str, list[str]] = {}
    for m in messages:
        out.setdefault(field_of(m), []).append(m)
    return out


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


# checks of the data before a run starts ----------------------------------------------------
DATA_FIELDS = ("symbols", "source", "test_days", "val_days", "seed")


def data_check_config(form: Mapping[str, Any], problems: Mapping[str, Any]) -> TrainConfig | None:
    """The config check_data needs (symbols, data, test days, seed, the preset's window) when
    those fields have no problem of their own, else None; other fields may still be wrong."""
    if any(f in problems for f in DATA_FIELDS if f != "symbols"):
        return None
    preset = form.get("preset", "quick")
    mode = form.get("mode") if form.get("mode") in TRADING_MODES else "single"
    # Symbols with a problem of their own (a bad ticker, a duplicate) are left out; the rest are checked.
    symbols = tuple(dict.fromkeys(s for s in parse_symbols(str(form.get("symbols", "")))
                                  if not validation_errors(TrainConfig(symbols=(s,), mode=mode))))
    if not symbols or preset not in PRESETS:
        return None
    try:
        val_days = form.get("val_days")
        config = TrainConfig(symbols=symbols, data=str(form.get("data", DEFAULT_DATA)), mode=mode,
                             test_days=int(form["test_days"]), seed=int(form.get("seed") or 0),
                             val_days=TrainConfig().val_days if val_days is None else int(val_days),
                             window=int(preset_values(preset, mode).get("window", TrainConfig().window)))
        if mode == "portfolio" and "universe_size" not in hidden_fields(mode, symbols, config.data):
            config = config.replace(universe_size=int(form.get("universe_size") or config.universe_size))
    except (KeyError, TypeError, ValueError):
        return None
    bad = {field_of(e) for e in validation_errors(config)}
    return None if bad & {"symbols", "source", "test_days", "val_days"} else config


def check_data(config: TrainConfig, load: Callable[[str], tuple[Any, dict[str, Any]]]) -> list[str]:
    """Every problem the data would cause once training starts, each naming its field.

    ``load(symbol) -> (frame, info)`` loads one symbol from the chosen source (raising DataError).
    Checked per symbol, so every problem shows at once: the symbol is in the source (a file, a
    ticker); ``auto`` found real data (training on synthetic prices must be asked for); the
    history holds window + training steps + embargoes + validation + test days rows.
    """
    errors: list[str] = []
    need = rows_needed(config.window, config.test_days, config.val_days, config.embargo)
    shortest: tuple[str, int] | None = None
    for symbol in config.symbols:
        try:
            frame, info = load(symbol)
        except DataError as exc:
            text = str(exc)
            missing = "no file for" in text or "no Yahoo data" in text
            errors.append(f"{'symbols' if missing else 'source'}: {text}")
            continue
        per = (info.get("per_symbol") or {}).get(symbol, {})
        if config.data == "auto" and info.get("synthetic"):
            reason = per.get("reason") or "no real data was found"
            errors.append(f"source: auto found no real data for {symbol} ({reason}); it would train on "
                          "SYNTHETIC prices. Choose 'Synthetic (offline)' to do that on purpose, or give a CSV "
                          "directory or upload.")
        if len(frame) < need and (shortest is None or len(frame) < shortest[1]):
            shortest = (symbol, len(frame))
    if shortest is not None:
        symbol, rows = shortest
        fits = rows - rows_needed(config.window, 0, config.val_days, config.embargo)
        split = (f"2 embargoes of {config.embargo} + {config.val_days} validation days" if config.val_days
                 else f"embargo {config.embargo}")
        errors.append(f"test_days: {symbol} has {rows:,} rows; {config.test_days:,} test days need at least "
                      f"{need:,} (window {config.window} + {MIN_TRAIN_STEPS + 1} for training + {split} + test days)"
                      + (f"; at most {fits:,} test days fit" if fits >= 2 else "; too short to train on"))
    return errors


def check_universe(config: TrainConfig, load: Callable[[TrainConfig], Any]) -> list[str]:
    """Portfolio mode: the problems of loading the universe on one calendar (``load(config)``, the
    engine's own `load_market`, raising DataError), each naming its field. Under 'all' a file that
    fails validation is left out by the run itself (and recorded), so it is not a problem here."""
    try:
        load(config)
    except DataError as exc:
        text = str(exc)
        field = "test_days" if "test days" in text or "test_days" in text else "source"
        return [f"{field}: {text}"]
    return []


# how long a run will take on this machine ------------------------------------------------------
def runtime_estimate(config: TrainConfig, runs: list[Mapping[str, Any]], backend: str) -> dict[str, Any]:
    """Estimated training time of ``config`` here: from the median throughput of earlier runs on
    this backend with the same sizes, else from the FLOP rate those earlier runs achieved
    (ppo.update_flops per second), else from the loop's assumed rate for the backend. Returns seconds
    (training), compile_seconds (median of earlier runs, or None), basis (the sentence that says which), updates.
    """
    flops = update_flops(config)
    sizes = {"num_envs": config.num_envs, "num_steps": config.num_steps, "minibatch_size": config.minibatch_size,
             "epochs": config.epochs, "hidden": list(config.hidden), "window": config.window,
             "positions": list(config.positions)}
    here = [r for r in runs if r.get("backend") == backend and (r.get("steps_per_sec") or 0) > 0 and r.get("sizes")]
    same = [r for r in here if all(r["sizes"].get(k) == v for k, v in sizes.items())]
    steps = config.total_env_steps  # every member's steps (throughputs are aggregates over members)
    compile_s = [r["compile_seconds"] for r in (same or here) if r.get("compile_seconds")]
    if same:
        sps = statistics.median([float(r["steps_per_sec"]) for r in same])
        seconds = steps / sps
        basis = (f"median throughput of {len(same)} earlier run(s) with these sizes on this machine "
                 f"({sps:,.0f} env steps/s)")
    else:
        rates = []
        for r in here:
            try:
                other = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in r["sizes"].items()})
            except (TypeError, ValueError):
                continue
            rates.append(update_flops(other) * float(r["steps_per_sec"]) / other.batch_size)
        if rates:
            rate = statistics.median(rates)
            basis = (f"FLOP rate measured by {len(rates)} earlier run(s) on this {backend} backend "
                     f"({rate / 1e9:,.1f} GFLOP/s) × {flops / 1e9:,.1f} GFLOP per update")
        else:
            rate = ASSUMED_FLOPS.get(backend, ASSUMED_FLOPS["cpu"])
            basis = (f"an assumed {rate / 1e9:,.0f} GFLOP/s for the {backend} backend (no earlier run here to "
                     f"measure it) × {flops / 1e9:,.1f} GFLOP per update")
        seconds = flops * config.num_updates * config.members / rate
        if config.members > 1:
            basis += f" × {config.members} members"
    return {"seconds": seconds, "compile_seconds": statistics.median(compile_s) if compile_s else None, "basis": basis,
            "updates": config.num_updates}


def runtime_text(estimate: Mapping[str, Any]) -> str:
    """'Estimated time on this machine: ≈ 12m 45s in all (≈ 15s compiling, median of earlier runs, + ≈ 12m 30s
    of training) for 4 update(s); from …'; without an earlier run's compile time it says it is left out."""
    train, compile_s = estimate["seconds"], estimate.get("compile_seconds")
    head = (f"≈ {format_duration(train + compile_s)} in all (≈ {format_duration(compile_s)} compiling, median of "
            f"earlier runs, + ≈ {format_duration(train)} of training)" if compile_s else
            f"≈ {format_duration(train)} of training, plus compiling first (not estimated: no earlier run here)")
    return f"Estimated time on this machine: {head} for {estimate['updates']:,} update(s); from {estimate['basis']}."
