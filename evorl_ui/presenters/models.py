"""The Models page: deployed bundles and their signals, the paper ledger's messages, table and
forward caption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evorl_ui.presenters.format import format_metric, headline, number_text


# deployed bundles -----------------------------------------------------------------
def models_table(models: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Deployed bundles (deploy.list_models()): symbols, dates, source run, mean test metrics."""
    rows = []
    for m in models:
        head = headline(m.get("test_metrics"))
        ranges = m.get("date_ranges") or {}
        first = next(iter(ranges.values()), {}) if ranges else {}
        rows.append({
            "name": m["name"],
            "data": "SYNTHETIC" if m.get("synthetic") else "real",
            "symbols": ", ".join(m.get("symbols") or []),
            "created": pd.Timestamp(m.get("created_at") or 0, unit="s").strftime("%Y-%m-%d"),
            "source run": m.get("source_run"),
            "train": f"{first.get('first', '?')} → {first.get('train_end', '?')}" if first else "—",
            "test": f"{first.get('test_start', '?')} → {first.get('last', '?')}" if first else "—",
            "test return": format_metric("total_return", head["total_return"]),
            "test Sharpe": format_metric("sharpe", head["sharpe"]),
            "evidence": m.get("evidence") or "not recorded (deployed by an older evorl)",
        })
    return pd.DataFrame(rows)


def signals_table(signals: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """deploy.signals() output: one row per symbol with the target position and its probabilities."""
    return pd.DataFrame([{
        "symbol": s["symbol"],
        "as of close": s["date"],
        "close": s.get("close"),
        "held position": s.get("held_position"),
        "target position": s["position"],
        **{f"P({p})": q for p, q in (s.get("probabilities") or {}).items()},
    } for s in signals])


# the paper ledger -----------------------------------------------------------------
def paper_result_text(result: Any) -> tuple[bool, str]:
    """(anything appended, message) for a ledger.record result."""
    if result.appended:
        days = sorted({e["date"] for e in result.appended})
        span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
        return True, (f"Appended {len(result.appended)} entr{'y' if len(result.appended) == 1 else 'ies'} for {span}. "
                      "The new targets fill at the next session.")
    latest = sorted(set(result.latest.values()))
    return False, (f"Nothing appended: already recorded up to {', '.join(latest)}, the latest bar. The ledger takes "
                   "one entry per bar; run it again after the next session closes.")


def portfolio_signal_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """deploy.portfolio.portfolio_signal output: one row per symbol (largest target first), then cash."""
    rows = [{"symbol": w["symbol"], "last bar": w["last_bar"], "close": w["close"], "held": f"{w['held']:.2%}",
             "target (next session)": f"{w['target']:.2%}", "tradable": "yes" if w["tradable"] else "no"}
            for w in sorted(result["weights"], key=lambda w: -w["target"])]
    rows.append({"symbol": "CASH", "last bar": result["date"], "close": None, "held": f"{result['cash_held']:.2%}",
                 "target (next session)": f"{result['cash_target']:.2%}", "tradable": "yes"})
    return pd.DataFrame(rows)


def benchmark_name(rows: Sequence[Mapping[str, Any]]) -> str:
    """What a ledger's benchmark is: '1/N rebalanced' for a portfolio ledger, else buy & hold."""
    return next((str(r["benchmark"]) for r in rows if r.get("benchmark")), "buy & hold")


def _account_row(r: Mapping[str, Any]) -> dict[str, Any]:
    top = sorted(((s, w) for s, w in r["target"].items() if s != "CASH"), key=lambda x: -x[1])[:3]
    return {"date": r["date"], "symbol": r["symbol"], "cash held": f"{r['weights']['CASH']:.1%}",
            "target (next session)": f"cash {r['target']['CASH']:.1%}; " + ", ".join(f"{s} {w:.1%}" for s, w in top),
            "costs": number_text(r.get("costs")), "equity": number_text(r.get("equity")),
            str(r.get("benchmark")): number_text(r.get("benchmark_equity"))}


def ledger_table(rows: Sequence[Mapping[str, Any]], limit: int = 30) -> pd.DataFrame:
    """The newest ledger entries first: date, symbol, held -> target, close, equity, buy & hold (a
    portfolio ledger: cash held, the target's cash and largest weights, costs, equity, 1/N)."""
    if rows and isinstance(rows[0].get("target"), dict):
        out = [{**_account_row(r), "data": ("SYNTHETIC" if r.get("synthetic") else str(r.get("data_source") or "?"))}
               for r in rows]
        return pd.DataFrame(sorted(out, key=lambda r: r["date"], reverse=True)[:limit])
    out = [{
        "date": r["date"], "symbol": r["symbol"], "held": f"{r['held']:g}", "target (next open)": f"{r['target']:g}",
        "close": number_text(r.get("close")), "equity": number_text(r.get("equity")),
        "buy & hold": number_text(r.get("benchmark_equity")),
        "data": ("SYNTHETIC" if r.get("synthetic") else str(r.get("data_source") or "?")) + (" · stale" if r.get("stale") else ""),
    } for r in rows]
    out.sort(key=lambda r: (r["date"], r["symbol"]), reverse=True)
    return pd.DataFrame(out[:limit])


def forward_caption(curves: pd.DataFrame, benchmark: str = "buy & hold") -> str:
    """Forward return since deployment against the benchmark and against the backtest's expectation."""
    if curves.empty:
        return ""
    first, last = curves.iloc[0], curves.iloc[-1]
    days = len(curves) - 1
    parts = [f"{days} session(s) since deployment ({curves.index[0].date()})",
             f"paper {format_metric('total_return', last['paper'] / first['paper'] - 1)}",
             f"{benchmark} {format_metric('total_return', last['buy_hold'] / first['buy_hold'] - 1)}"]
    if np.isfinite(last.get("expected", np.nan)):
        parts.append(f"backtest expectation {format_metric('total_return', last['expected'] / first['expected'] - 1)}"
                     f" (±1σ {format_metric('total_return', last['expected_low'] / first['expected'] - 1)} … "
                     f"{format_metric('total_return', last['expected_high'] / first['expected'] - 1)})")
    return " · ".join(parts)
