"""Checks of a command line before anything runs (docs/reliability.md, round 3).

- A flag that does not apply to what was chosen is refused, naming the flag and the option that
  would make it apply (`--fee-bps` under the `nse-delivery` cost model, `--run-id` of walkforward,
  PBT flags without `--population`, training flags beside `--resume`, ...). The rules are stated
  once, on configuration fields (`inapplicable`), for the CLI and the Train form alike.
- Symbols are checked before a run directory exists and before the "training ..." banner:
  length and characters, and no two symbols may name the same file (`--symbols BPCL bpcl`).
- The flags this module adds (`--replace` for deploy, `--force` for signal and paper) live here
  so the CLI's own flag tables stay small.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evorl_core.config import ConfigError, TrainConfig, validation_errors

SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9&._^-]{0,39}$")
SYMBOL_MAX = 40

_PARSERS: dict[str, argparse.ArgumentParser] = {}


class FlagError(ConfigError):
    """A flag that would do nothing, or a symbol that cannot name a file: one line, exit code 2."""


def add_flags(subparsers: Mapping[str, argparse.ArgumentParser]) -> None:
    """Add this module's flags and remember each command's parser (for its defaults)."""
    _PARSERS.update(subparsers)
    for command in ("train", "deploy"):
        subparsers[command].add_argument(
            "--replace", action="store_true",
            help="deploy over a model that has a forward ledger; the old bundle and its ledger are kept "
                 "in models/<name>/archive/<version>/")
    for command in ("signal", "paper", "orders"):
        subparsers[command].add_argument(
            "--force", action="store_true",
            help="use a bundle whose checksum does not match (an edited bundle.json or params.msgpack)")


def given_flags(args: argparse.Namespace) -> set[str]:
    """Destinations of the flags given on the command line (a value other than the default)."""
    parser = _PARSERS.get(getattr(args, "command", None) or "")
    if parser is None:
        return set()
    return {k for k, v in vars(args).items() if k != "command" and v != parser.get_default(k)}


def flag(field: str) -> str:
    return "--" + {"total_timesteps": "timesteps", "init_scheme": "init-scheme", "mode": "portfolio"}.get(field, field).replace("_", "-")


PBT_FIELDS = ("pbt_interval", "pbt_fraction", "pbt_resample", "evolve", "search_space", "init_space")


def inapplicable(config: TrainConfig, given: Iterable[str], name=flag) -> list[str]:
    """Messages for the given configuration fields that the chosen configuration ignores; `name`
    turns a field into what the user typed (a CLI flag, a form label)."""
    given = set(given)
    out = []
    if config.cost_model != "flat" and "fee_bps" in given:
        out.append(f"{name('fee_bps')}: applies to the flat cost model only (the {config.cost_model} model "
                   f"charges statutory costs); add {name('cost_model')} flat, or leave it out")
    if config.cost_model == "flat":
        out += [f"{name(f)}: applies to the nse-delivery cost model only; the flat model charges "
                f"{name('fee_bps')} + {name('slippage_bps')}; drop it or choose {name('cost_model')} nse-delivery"
                for f in ("brokerage_bps", "dp_charge") if f in given]
    if config.population <= 1:
        out += [f"{name(f)}: applies to population-based training only; add {name('population')} N (N > 1)"
                for f in PBT_FIELDS if f in given]
    if config.init_scheme != "normal" and "init_std" in given:
        out.append(f"{name('init_std')}: applies to the normal initialiser only (this one is "
                   f"{config.init_scheme}); add {name('init_scheme')} normal")
    if config.mode != "portfolio":
        out += [f"{name(f)}: applies to portfolio mode only; add {name('mode')}"
                for f in ("universe_size", "rebalance_band") if f in given]
    elif "positions" in given:
        out.append(f"{name('positions')}: applies to single-asset mode only (a portfolio's action is a vector "
                   "of target weights); drop it")
    if config.mode == "portfolio" and "universe_size" in given and not (
            tuple(config.symbols) == ("all",) and config.data == "synthetic"):
        out.append(f"{name('universe_size')}: applies to the synthetic universe only; add {name('symbols')} all "
                   f"{name('data')} synthetic")
    if config.members <= 1 and "member_group" in given:
        out.append(f"{name('member_group')}: applies with several members only; add {name('seeds')} N "
                   f"or {name('population')} N")
    return out


_TRAINING_DESTS = {"symbols", "timesteps", "test_days", "val_days", "embargo_days", "seeds", "population",
                   "pbt_interval", "pbt_fraction", "pbt_resample", "evolve", "search_space", "init_space",
                   "data", "preset", "num_envs", "num_steps", "minibatch_size", "epochs", "hidden", "lr",
                   "ent_coef", "clip_eps", "gamma", "gae_lambda", "vf_coef", "max_grad_norm", "anneal_lr",
                   "activation", "init_scheme", "init_std", "window", "episode_len", "cost_model", "fee_bps",
                   "slippage_bps", "brokerage_bps", "dp_charge", "price_adjustment", "positions", "execution",
                   "initial_capital", "seed", "run_id", "runs_dir", "mode", "universe_size", "rebalance_band",
                   "precision"}
_FIELD_OF_DEST = {"timesteps": "total_timesteps"}


def check_command(args: argparse.Namespace, config: TrainConfig | None = None) -> TrainConfig | None:
    """Refuse flags that the command would ignore; `config`: the resolved training config (returned)."""
    given = given_flags(args)
    problems: list[str] = []
    command = args.command
    if command == "walkforward":
        problems += [f"{flag(d)}: applies to `evorl train`; each walk-forward fold is its own run"
                     for d in ("resume", "deploy", "replace") if d in given]
    elif command == "train" and getattr(args, "resume", None):
        ignored = sorted(given & _TRAINING_DESTS)
        if ignored:
            problems.append(f"--resume continues the run with its stored configuration; "
                            f"{', '.join(flag(d) for d in ignored)} would be ignored: leave "
                            f"{'it' if len(ignored) == 1 else 'them'} out")
    if command == "walkforward":
        if "run_id" in given:
            problems.append("--run-id: walk-forward folds are runs <id>-fold<k>; name them with --id")
        problems += [f"{flag(d)}: applies to `evorl train --deploy`; walk-forward folds are not deployed"
                     for d in ("model_name", "models_dir") if d in given]
    if command == "train" and not getattr(args, "deploy", False):
        problems += [f"{flag(d)}: applies with --deploy only; add --deploy or leave it out"
                     for d in ("model_name", "models_dir", "replace") if d in given]
    if config is not None and not (command == "train" and getattr(args, "resume", None)):
        fields = {_FIELD_OF_DEST.get(d, d) for d in given}
        problems += inapplicable(config, fields)
    if command == "deploy" and args.ensemble < 1:
        problems.append(f"--ensemble: must be at least 1 (got {args.ensemble})")
    if problems:
        raise FlagError("\n".join(problems))
    return config


def checked(args: argparse.Namespace) -> argparse.Namespace:
    """`args` once `check_command` (without a training config) has passed."""
    check_command(args)
    return args


def check_symbols(symbols: Iterable[str], data: str | None = None) -> tuple[str, ...]:
    """Symbols that can name a file, none twice (case-insensitive, after a `.NS`/`.BO` suffix is
    set aside, which is how one CSV file or one cache entry is found for either spelling)."""
    symbols = tuple(symbols)
    seen: dict[str, str] = {}
    for s in symbols:
        if not isinstance(s, str) or not s:
            raise FlagError("--symbols: an empty symbol")
        if len(s) > SYMBOL_MAX:
            raise FlagError(f"--symbols: {s[:40]!r}... is {len(s)} characters; a symbol has at most {SYMBOL_MAX}")
        if not SYMBOL_RE.match(s):
            bad = sorted({c for c in s if not re.match(r"[A-Za-z0-9&._^-]", c)})
            raise FlagError(f"--symbols: {s!r} is not a symbol (use letters, digits and & . _ ^ -"
                            + (f"; found {' '.join(map(repr, bad))}" if bad else "") + ")")
        key = re.sub(r"\.(NS|BO)$", "", s.upper())
        if key in seen:
            where = ""
            if data and data.startswith("csv:"):
                where = f" (both read {Path(data[4:]) / (key + '.csv')})"
            raise FlagError(f"--symbols: {seen[key]!r} and {s!r} name the same data{where}; give each symbol once")
        seen[key] = s
    return symbols


def form_inapplicable(config: TrainConfig, values: Mapping[str, Any], preset: Mapping[str, Any]) -> list[str]:
    """`inapplicable` for the Train form, messages starting with the field's name (the form shows
    each under its field): a field counts as given when its value differs from the preset's."""
    base = TrainConfig()
    given = {k for k, v in values.items() if hasattr(base, k) and v != preset.get(k, getattr(base, k))}
    wrong = {e.split(":", 1)[0] for e in validation_errors(config)}  # out of range already: said once
    return inapplicable(config, given - wrong, name=lambda f: f)
