"""Tables and text of a portfolio run's backtest (pure: no Streamlit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from evorl_core.metrics import format_value

ACCOUNT_COLUMNS = {"total_return": "total return", "cagr": "CAGR", "sharpe": "Sharpe", "max_drawdown": "max drawdown",
                   "gross_return": "gross return", "cost_drag": "cost drag", "costs_rupees": "costs (Rs)"}


def _fraction(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def account_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The agent and each baseline: returns, risk, costs, turnover and concentration, formatted."""
    rows = {"agent": metrics, **(metrics.get("baselines") or {})}
    out = []
    for name, m in rows.items():
        row = {"account": name}
        for key, title in ACCOUNT_COLUMNS.items():
            row[title] = f"{m[key]:,.0f}" if key == "costs_rupees" and m.get(key) is not None else format_value(key, m.get(key))
        turnover = m.get("turnover_annual")
        row["turnover / year"] = "—" if turnover is None else f"{turnover:.2f}x"
        eff = m.get("effective_assets")
        row["effective assets"] = "—" if eff is None else f"{eff:.1f}"
        out.append(row)
    return pd.DataFrame(out).set_index("account")


def diagnostics_lines(metrics: Mapping[str, Any]) -> list[str]:
    """Plain sentences: the verdict with its subject, distance from 1/N, cash, concentration."""
    lines = []
    if metrics.get("verdict"):
        subject = metrics.get("verdict_subject")
        lines.append(f"Verdict ({subject}): {metrics['verdict']}." if subject else f"Verdict: {metrics['verdict']}.")
    if metrics.get("distance_from_1n") is not None:
        lines.append(f"Distance from 1/N {_fraction(metrics['distance_from_1n'])} (total variation, mean over the "
                     f"test days); cash {_fraction(metrics.get('cash_weight_mean'))} on average; largest weight "
                     f"{_fraction(metrics.get('max_weight'))}; {metrics.get('effective_assets', 0):.1f} effective "
                     f"of {metrics.get('assets', '?')} assets.")
    if metrics.get("deflated_sharpe") is not None:
        lines.append(f"Deflated Sharpe ratio of the best of {metrics.get('deflated_sharpe_trials')} trials: "
                     f"{metrics['deflated_sharpe']:.2f} (probability that its Sharpe beats the best of as many "
                     "skill-less trials).")
    return lines


def universe_lines(config: Mapping[str, Any]) -> list[str]:
    """The universe a run trained on: requested, resolved, left out, the survivorship note."""
    universe = (config.get("data_info") or {}).get("universe") or {}
    if not universe:
        return []
    requested = universe.get("requested")
    symbols = universe.get("symbols") or config.get("symbols") or []
    lines = [f"Universe: {len(symbols)} symbols" + (" (every symbol of the source)" if requested == "all" else "")]
    for symbol, reason in (universe.get("skipped") or {}).items():
        lines.append(f"Left out {symbol}: {reason}")
    if universe.get("note"):
        note = str(universe["note"])
        lines.append(note[:1].upper() + note[1:] + ".")
    return lines
