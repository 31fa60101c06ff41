"""The Walk-forward page: the list of walk-forwards with their pooled headline, the per-fold
and the pooled (chained out-of-sample) tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from evorl_core.metrics import BH_PREFIX
from evorl_ui.presenters.format import format_metric, headline, number_text, pretty


def walkforwards_table(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """walkforward.list_walkforwards(): one row per walk-forward with its pooled headline (mean
    over symbols of the chained out-of-sample test days)."""
    rows = []
    for s in summaries:
        config = s.get("config") or {}
        pooled = s.get("pooled") or {}
        head = headline(pooled)
        bh = headline({sym: {k[len(BH_PREFIX):]: v for k, v in m.items() if k.startswith(BH_PREFIX)}
                       for sym, m in pooled.items() if isinstance(m, Mapping)})
        rows.append({
            "walk-forward": s.get("id"), "state": s.get("state"),
            "folds": f"{len(s.get('per_fold') or [])} / {s.get('folds')}",
            "symbols": ", ".join(config.get("symbols") or []),
            "test days per fold": config.get("test_days"),
            "pooled return": format_metric("total_return", head["total_return"]),
            "pooled B&H return": format_metric("total_return", bh["total_return"]),
            "pooled Sharpe": number_text(head["sharpe"]),
            "created": pd.Timestamp(s.get("created_at") or 0, unit="s").strftime("%Y-%m-%d %H:%M"),
        })
    return pd.DataFrame(rows)


WALKFORWARD_COLUMNS = ("total_return", "sharpe", "max_drawdown")


def _agent_and_buy_and_hold(row: dict[str, Any], m: Mapping[str, Any], columns: Sequence[str],
                            benchmark: str = "buy & hold") -> dict[str, Any]:
    """`row` with each metric of `columns` formatted twice: the agent's, then its benchmark's (buy &
    hold's bh_ keys; a portfolio's 1/N, from bh_ keys when pooled, else its baselines' entry)."""
    short = "B&H" if benchmark == "buy & hold" else benchmark.split()[0]
    baseline = (m.get("baselines") or {}).get(benchmark) or {}
    for c in columns:
        row[pretty(c)] = format_metric(c, m.get(c))
        row[f"{pretty(c)} ({short})"] = format_metric(c, m.get(BH_PREFIX + c, baseline.get(c)))
    return row


def fold_table(summary: Mapping[str, Any], columns: Sequence[str] = WALKFORWARD_COLUMNS) -> pd.DataFrame:
    """Per fold and symbol: the fold's run, its test dates, the agent's and buy & hold's test metrics."""
    rows = []
    for fold in summary.get("per_fold") or []:
        for sym, m in (fold.get("metrics") or {}).items():
            if not isinstance(m, Mapping):
                continue
            dates = (fold.get("date_ranges") or {}).get(sym) or {}
            row = {"fold": fold.get("fold"), "symbol": sym, "run": fold.get("run_id"),
                   "test days": f"{dates.get('test_start', '?')} → {dates.get('last', '?')}"}
            rows.append(_agent_and_buy_and_hold(row, m, columns, summary.get("benchmark", "buy & hold")))
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["fold", "symbol"])


def pooled_table(summary: Mapping[str, Any], columns: Sequence[str] = WALKFORWARD_COLUMNS) -> pd.DataFrame:
    """Per symbol: the folds' test days chained in time order (every day out of sample), agent and
    buy & hold."""
    rows = []
    for sym, m in (summary.get("pooled") or {}).items():
        if not isinstance(m, Mapping):
            continue
        row = {"symbol": sym, "test days": f"{m.get('first_test_day', '?')} → {m.get('last_test_day', '?')}",
               "daily returns": m.get("days")}
        rows.append(_agent_and_buy_and_hold(row, m, columns, summary.get("benchmark", "buy & hold")))
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("symbol")
