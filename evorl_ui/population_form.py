"""The Train form's population fields, without Streamlit: independent seeds or a population (PBT,
docs/evolution.md), what evolves, and each hyperparameter's search and first-generation ranges as
text (``range_<name>`` / ``init_<name>``), turned into the config's search_space and init_space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evorl_core.config import SEARCH_SPACE, ConfigError, Range, TrainConfig, parse_space

# several agents: independent seeds or a population (docs/evolution.md) ------------------------
AGENT_MODES = {"seeds": "Independent seeds", "population": "Population (PBT)"}
POPULATION_FIELDS = ("population", "pbt_interval", "pbt_fraction", "pbt_resample")


def range_text(r: Range) -> str:
    """A search range as the form shows it: '1e-05:0.003'."""
    return f"{r.low:g}:{r.high:g}"


def space_form_values() -> dict[str, Any]:
    """The population fields' starting values: what evolves (the config's default), each
    hyperparameter's search range (SEARCH_SPACE) and no first-generation range of its own."""
    values: dict[str, Any] = {"evolve": list(TrainConfig().evolve)}
    for name, r in SEARCH_SPACE.items():
        values[f"range_{name}"] = range_text(r)
        values[f"init_{name}"] = ""
    return values


def parse_range(name: str, text: str, field: str) -> tuple[Range | None, str | None]:
    """'1e-5:1e-2' (also '1e-5 .. 1e-2') for hyperparameter ``name`` -> its Range, or the problem,
    which starts with ``field`` ('search_space' or 'init_space') and names the item ('lr=...')."""
    compact = "".join(str(text).split()).replace("..", ":")
    if compact.count(":") != 1:
        return None, f"{field}: '{name}={compact}' must look like LOW:HIGH, e.g. {range_text(SEARCH_SPACE[name])}"
    try:
        return parse_space(f"{name}={compact}", field)[name], None
    except ConfigError as exc:
        return None, str(exc)


def space_from_form(form: Mapping[str, Any]) -> tuple[tuple[str, ...], str, str, list[str]]:
    """(evolve, search_space, init_space, problems) from the population fields: ``evolve`` (names),
    ``range_<name>`` ('LOW:HIGH'; empty = the declared range) and ``init_<name>`` ('' = draw the
    first generation from the search range). search_space holds only ranges that differ from
    SEARCH_SPACE. As soon as one first-generation range is given, init_space names every evolved
    hyperparameter (the others with their search range): the engine draws a name missing from
    init_space from the declared range, not from a changed search range."""
    evolve = tuple(n for n in SEARCH_SPACE if n in set(form.get("evolve") or ()))
    unknown = [n for n in form.get("evolve") or () if n not in SEARCH_SPACE]
    errors = [f"evolve: unknown hyperparameter(s) {', '.join(map(str, unknown))}"] if unknown else []
    search: dict[str, Range] = {}
    init: dict[str, Range] = {}
    for name in evolve:
        text = str(form.get(f"range_{name}") or "").strip()
        r, problem = parse_range(name, text, "search_space") if text else (SEARCH_SPACE[name], None)
        if problem:
            errors.append(problem)
        search[name] = r or SEARCH_SPACE[name]
        text = str(form.get(f"init_{name}") or "").strip()
        if text:
            r, problem = parse_range(name, text, "init_space")
            if problem:
                errors.append(problem)
            elif r is not None:
                init[name] = r
    changed = [n for n in evolve if search[n] != SEARCH_SPACE[n]]
    search_space = ",".join(f"{n}={range_text(search[n])}" for n in changed)
    init_space = ",".join(f"{n}={range_text(init.get(n, search[n]))}" for n in evolve) if init else ""
    return evolve, search_space, init_space, errors
