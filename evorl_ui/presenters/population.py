"""Runs with several agents, seeds or a population (docs/evolution.md): member ids and arrays,
hyperparameter texts, the population and lineage tables, and on the Backtest page the
selection text, the member and spread tables and the members' equity curves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.config import SEARCH_SPACE
from evorl_ui.presenters.format import format_metric, metric_arrays, number_text, pretty


# several agents: seeds and populations (docs/evolution.md) ------------------------
# metrics.jsonl rows of a run with several agents carry ``member``; their steps_per_sec is the
# aggregate of all members (one vmapped program) and env_steps counts one member's steps.
def members_of(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """The member ids in metrics.jsonl rows, sorted ([] for a single agent)."""
    return sorted({int(r["member"]) for r in rows if r.get("member") is not None})


def config_members(config: Mapping[str, Any] | None) -> int:
    """Agents a run trains together (TrainConfig.members from its config.json): the population
    size with PBT, else the number of seeds; 1 for a single agent."""
    config = config or {}
    population = int(config.get("population") or 1)
    return population if population > 1 else int(config.get("seeds") or 1)


def member_arrays(rows: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[int, dict[str, np.ndarray]]:
    """metric_arrays per member, each member's rows in update order: {member: {key: array}}."""
    keys = tuple(keys)
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("member") is not None:
            groups.setdefault(int(r["member"]), []).append(r)
    return {m: metric_arrays(sorted(g, key=lambda r: r.get("update") or 0), keys) for m, g in sorted(groups.items())}


def hyper_text(name: str, value: Any) -> str:
    """A hyperparameter value as its scale reads best: 3.00e-04 (log), 0.9900 (discount), 0.2 (linear)."""
    if value is None or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        return "—"
    scale = SEARCH_SPACE[name].scale if name in SEARCH_SPACE else "linear"
    if scale == "log":
        return f"{value:.2e}"
    if scale == "discount":
        return f"{value:.4f}"
    return f"{value:.3g}"


POPULATION_COLUMNS = ("update", "round", "member", *SEARCH_SPACE, "fitness", "replaced", "donor")


def population_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """population/hyperparams.jsonl as a frame sorted by round and member: update, round, member,
    every hyperparameter (after the round's exploit and explore), fitness (validation, before the
    round's exploit; NaN for round 0, the first generation), replaced, donor."""
    frame = pd.DataFrame([dict(r) for r in rows])
    for col in POPULATION_COLUMNS:
        if col not in frame:
            frame[col] = np.nan
    if frame.empty:
        return frame[list(POPULATION_COLUMNS)]
    frame["fitness"] = pd.to_numeric(frame["fitness"], errors="coerce").astype(float)
    frame["replaced"] = frame["replaced"].fillna(False).astype(bool)
    frame["donor"] = frame["donor"].fillna(frame["member"]).astype(int)
    for col in ("update", "round", "member"):
        frame[col] = frame[col].astype(int)
    return frame.sort_values(["round", "member"]).reset_index(drop=True)


def best_per_round(table: pd.DataFrame) -> pd.DataFrame:
    """The member with the highest validation fitness in each round that has fitness values:
    round, update, member, fitness (non-finite fitness never wins)."""
    scored = table[np.isfinite(table["fitness"].to_numpy(dtype=float))] if len(table) else table
    if scored.empty:
        return pd.DataFrame(columns=["round", "update", "member", "fitness"])
    best = scored.loc[scored.groupby("round")["fitness"].idxmax()]
    return best[["round", "update", "member", "fitness"]].sort_values("round").reset_index(drop=True)


def evolved_names(config: Mapping[str, Any]) -> list[str]:
    """The hyperparameters a run evolves (its config's ``evolve``), in SEARCH_SPACE order."""
    evolve = set(config.get("evolve") or ())
    return [n for n in SEARCH_SPACE if n in evolve]


def lineage_table(events: Sequence[Mapping[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    """population/lineage.jsonl for reading, newest round first: round, update, who copied whom,
    both validation fitness values, and each evolved hyperparameter old -> new (donor's value)."""
    columns = ["round", "update", "member ← donor", "fitness (replaced)", "fitness (donor)",
               "hyperparameters: old → new (donor's)"]
    rows = []
    for e in sorted(events, key=lambda e: (-int(e.get("round", 0)), int(e.get("member", 0)))):
        old, new, donor = e.get("old") or {}, e.get("new") or {}, e.get("donor_hyper") or {}
        rows.append({
            "round": int(e.get("round", 0)), "update": int(e.get("update", 0)),
            "member ← donor": f"{e.get('member')} ← {e.get('donor')}",
            "fitness (replaced)": number_text(e.get("fitness"), "{:+.4f}"),
            "fitness (donor)": number_text(e.get("donor_fitness"), "{:+.4f}"),
            "hyperparameters: old → new (donor's)": " · ".join(
                f"{n} {hyper_text(n, old.get(n))} → {hyper_text(n, new.get(n))} ({hyper_text(n, donor.get(n))})"
                for n in names),
        })
    return pd.DataFrame(rows, columns=columns)


def population_caption(config: Mapping[str, Any], table: pd.DataFrame, events: Sequence[Mapping[str, Any]]) -> str:
    """What the population does, in one line: members, round interval, selection, rounds and
    exploit events so far, what evolves."""
    members = config.get("population") or 0
    fraction = config.get("pbt_fraction") or 0.0
    rounds = int(table["round"].max()) if len(table) else 0
    return (f"Population-based training: {members} members · a round every {config.get('pbt_interval')} "
            f"update(s): fitness = net log return on the validation days, the bottom {fraction:.0%} copy a random "
            f"member of the top {fraction:.0%} (exploit), then perturb ×0.8/×1.25 or resample with probability "
            f"{config.get('pbt_resample')} (explore) · {rounds} round(s) so far · {len(events)} exploit event(s) · "
            f"evolving {', '.join(evolved_names(config)) or '—'}")


# the Backtest page: several agents ------------------------------------------------
def validation_scores(selection: Mapping[str, Any] | None) -> dict[int, float]:
    """Each member's selection score: its validation log return averaged over symbols (the
    criterion the chosen member maximised)."""
    out = {}
    for member, per_symbol in ((selection or {}).get("validation_log_return") or {}).items():
        vals = [float(v) for v in (per_symbol or {}).values() if isinstance(v, (int, float))]
        out[int(member)] = float(np.mean(vals)) if vals else float("nan")
    return out


def selection_text(selection: Mapping[str, Any], population: bool = False) -> str:
    """How the reported member was chosen, and what its test figure is."""
    chosen = selection.get("chosen_member")
    seeds = selection.get("seeds") or []
    seed = f" (seed {seeds[chosen]})" if isinstance(chosen, int) and 0 <= chosen < len(seeds) else ""
    kind = "population members" if population else "independently seeded agents"
    return (f"Member {chosen}{seed} of {selection.get('members')} {kind} is the run's headline: it was picked on the "
            f"validation days ({selection.get('criterion') or 'validation score'}), never on the test days. The "
            "per-symbol tables below show its figures (rows marked 'chosen member'); the tests of skill and their "
            "verdict are of the members' average; its figures are one draw from the spread of all members (the "
            "'All members' section), not the expected result.")


MEMBER_COLUMNS = ("total_return", "sharpe", "max_drawdown")


def member_table(member_metrics: Mapping[str, Mapping[str, Mapping[str, Any]]], selection: Mapping[str, Any] | None,
                 columns: Sequence[str] = MEMBER_COLUMNS) -> pd.DataFrame:
    """One row per member: chosen mark, seed, validation score (the selection criterion), and each
    symbol's test metrics, as display text."""
    selection = selection or {}
    chosen, seeds = selection.get("chosen_member"), selection.get("seeds") or []
    scores = validation_scores(selection)
    rows = []
    for key in sorted(member_metrics, key=int):
        m = int(key)
        row: dict[str, Any] = {"member": m, "chosen": "✓ chosen" if m == chosen else "",
                               "seed": seeds[m] if m < len(seeds) else None,
                               "validation log return": number_text(scores.get(m), "{:+.4f}")}
        for sym, metrics in (member_metrics[key] or {}).items():
            for c in columns:
                row[f"{sym} {pretty(c)}"] = format_metric(c, (metrics or {}).get(c))
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("member")


def spread_table(metrics: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = MEMBER_COLUMNS) -> pd.DataFrame:
    """Per symbol and metric: the chosen member's test value beside the members' mean ± sd and
    min … max (from metrics.json's <metric>_mean/_sd/_min/_max), as display text."""
    rows = []
    for sym, m in (metrics or {}).items():
        if not isinstance(m, Mapping) or "members" not in m:
            continue
        for c in columns:
            if f"{c}_mean" not in m:
                continue
            fmt = lambda v, c=c: format_metric(c, v)  # noqa: E731
            rows.append({"symbol": sym, "metric": pretty(c), "chosen member": fmt(m.get(c)),
                         "mean ± sd": f"{fmt(m.get(f'{c}_mean'))} ± {format_metric(f'{c}_sd', m.get(f'{c}_sd'))}",
                         "min … max": f"{fmt(m.get(f'{c}_min'))} … {fmt(m.get(f'{c}_max'))}",
                         "members": int(m["members"])})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["symbol", "metric"])


def member_curves(member_equity: pd.DataFrame | None, symbol: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each member's test equity of one symbol from backtest/members.csv: {member: (dates, equity)}."""
    if member_equity is None or member_equity.empty:
        return {}
    rows = member_equity[member_equity["symbol"] == symbol]
    return {int(m): (g.sort_values("date")["date"].to_numpy(), g.sort_values("date")["equity"].to_numpy(float))
            for m, g in rows.groupby("member")}
