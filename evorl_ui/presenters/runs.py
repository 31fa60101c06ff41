"""Run lists: the backend and host lines, data-provenance badges and tags, run labels, filters
and sorts, the Home page's runs table and the warning when two runs are not comparable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from evorl_ui.presenters.format import format_metric, headline, number_text, steps_text
from evorl_ui.presenters.live import progress


# backend and host -----------------------------------------------------------------
def backend_line(info: Mapping[str, Any]) -> str:
    """The sidebar's one line about the JAX backend (from provenance.describe())."""
    kinds = ", ".join(info["device_kinds"]) or info["jax_platform"]
    return (f"Backend **{info['jax_platform']}** · {info['device_count']} device(s) · {kinds} · "
            f"JAX {info['jax']}")


def devices_text(info: Mapping[str, Any]) -> str:
    """'cpu:0 (cpu), …' for provenance.describe()'s device list."""
    return ", ".join(f"{d['platform']}:{d['id']} ({d['kind']})" for d in info.get("devices") or [])


# run lists ------------------------------------------------------------------------
def data_badge(synthetic: bool | None, source: str | None = None) -> tuple[str, str, str]:
    """(text, colour, icon) of the data-provenance badge: synthetic, real (with its source) or
    not known yet (a run whose data is still loading)."""
    if synthetic is None:
        return "Data not loaded yet", "gray", ":material/hourglass_empty:"
    if synthetic:
        return "Synthetic data — not real prices", "orange", ":material/science:"
    return f"Real data · {source or 'market data'}", "green", ":material/verified:"


def data_tag(run: Mapping[str, Any]) -> str:
    """The short provenance of a run in labels and tables: 'SYNTHETIC', 'real: csv', 'data ?'."""
    if run.get("synthetic") is None:
        return "data ?"
    if run["synthetic"]:
        return "SYNTHETIC" if run.get("data_source") != "mixed" else "SYNTHETIC (mixed)"
    return f"real: {run.get('data_source') or '?'}"


def run_size(run: Mapping[str, Any]) -> str:
    """'quick · 200k steps', then the members: '· 4 seeds' or '· population 16' (steps per member)."""
    preset = run.get("preset") or "custom"
    steps = run.get("total_timesteps") or run.get("total_steps")
    text = f"{preset} · {steps_text(steps)} steps"
    population, seeds = run.get("population") or 1, run.get("seeds") or 1
    if population > 1:
        return f"{text} · population {population}"
    return f"{text} · {seeds} seeds" if seeds > 1 else text


def run_label(run: Mapping[str, Any]) -> str:
    """A picker label that tells runs apart: state, name, data provenance, size, symbols, id, e.g.
    'done · baseline · real: csv · quick · 200k steps · BPCL,TATASTEEL · run-2026…'."""
    parts = [str(run.get("state") or "?")]
    if run.get("name"):
        parts.append(str(run["name"]))
    if "synthetic" in run:
        parts.append(data_tag(run))
    if run.get("preset") or run.get("total_timesteps"):
        parts.append(run_size(run))
    if run.get("symbols"):
        parts.append(",".join(run["symbols"]))
    if run.get("archived"):
        parts.append("archived")
    parts.append(run["run_id"])
    return " · ".join(parts)


RUN_SORTS = {
    "newest first": (lambda r: r.get("created_at") or 0.0, True),
    "oldest first": (lambda r: r.get("created_at") or 0.0, False),
    "name": (lambda r: (not r.get("name"), (r.get("name") or r["run_id"]).lower()), False),
    "best mean Sharpe": (lambda r: _sort_value(headline(r.get("backtest"))["sharpe"]), True),
    "best mean test return": (lambda r: _sort_value(headline(r.get("backtest"))["total_return"]), True),
}


def _sort_value(v: float | None) -> float:
    return -math.inf if v is None else v


def filter_runs(runs: Sequence[Mapping[str, Any]], text: str = "", states: Sequence[str] = (),
                data: str = "any", archived: bool = False, sort: str = "newest first") -> list[Mapping[str, Any]]:
    """Runs matching every filter, sorted: ``text`` in the id, name, tags, note or symbols (case
    insensitive); ``states`` (empty = all); ``data`` any | real | synthetic; archived runs only
    when ``archived``."""
    needle = text.strip().lower()
    out = []
    for r in runs:
        if r.get("archived") and not archived:
            continue
        if states and r.get("state") not in states:
            continue
        if data == "real" and r.get("synthetic") is not False:
            continue
        if data == "synthetic" and not r.get("synthetic"):
            continue
        if needle:
            hay = " ".join([r["run_id"], r.get("name") or "", " ".join(r.get("tags") or []), r.get("note") or "",
                            " ".join(r.get("symbols") or [])]).lower()
            if needle not in hay:
                continue
        out.append(r)
    key, reverse = RUN_SORTS[sort]
    return sorted(out, key=key, reverse=reverse)


def runs_table(runs: Sequence[Mapping[str, Any]], limit: int = 20) -> pd.DataFrame:
    """The Home page's runs: state, name, data provenance, progress, size, mean test return and
    Sharpe over symbols (as text, '—' when there are none), tags, id."""
    rows = []
    for r in runs[:limit]:
        head = headline(r.get("backtest"))
        prog = progress({"env_steps": r.get("env_steps"), "total_steps": r.get("total_steps"),
                         "state": r.get("state")})
        rows.append({
            "state": r.get("state"),
            "name": r.get("name") or "",
            "data": data_tag(r) if "synthetic" in r else (r.get("data_source") or "?"),
            "progress": prog["fraction"],
            "size": run_size(r),
            "symbols": ", ".join(r.get("symbols") or []),
            "test return": format_metric("total_return", head["total_return"]),
            "Sharpe": number_text(head["sharpe"]),
            "tags": ", ".join(r.get("tags") or []),
            "run": r["run_id"],
        })
    return pd.DataFrame(rows)


def comparison_warning(left: Mapping[str, Any], right: Mapping[str, Any]) -> str | None:
    """Why two runs' metrics are not comparable, or None: one on synthetic prices and one on
    real ones, different real sources, or different test windows."""
    ltag, rtag = data_tag(left), data_tag(right)
    if bool(left.get("synthetic")) != bool(right.get("synthetic")):
        return (f"Different data: {left['run_id']} used {ltag}, {right['run_id']} used {rtag}. Metrics on "
                "synthetic prices say nothing about real ones; do not compare them.")
    if ltag != rtag:
        return f"Different data sources: {left['run_id']} used {ltag}, {right['run_id']} used {rtag}."
    if left.get("data_hash") and right.get("data_hash") and left["data_hash"] != right["data_hash"]:
        return (f"The runs used different price histories (data hashes differ) and may test on different "
                f"days ({left.get('test_days')} vs {right.get('test_days')} test days).")
    if left.get("test_days") != right.get("test_days"):
        return f"Different test windows: {left.get('test_days')} vs {right.get('test_days')} test days."
    return None
