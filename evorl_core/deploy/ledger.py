"""The forward (paper) ledger of a deployed model: models/<name>/ledger.jsonl.

Run once per session day (``evorl paper`` or the Models page), ``record`` appends, for every
symbol and every bar newer than the symbol's last entry, one line: the position the greedy policy
decides at that bar's close (seeing the position the ledger holds), the fill of the previous
decision at this bar's open and the mark to market at its close, under exactly the accounting of
the mode's ``accounting`` (docs/accounting.md). The first entry of a symbol is its deployment day: flat, with
the initial capital, like a backtest's first day. Buy & hold is kept beside it the same way.

The file is append-only: a bar already recorded is never recorded again (running twice on one day
appends nothing) and earlier lines are never changed, even when a data source revises its
history; each write keeps the old bytes and renames the new file into place.

Line (JSON): date, symbol, open, close, held (position held over the bar, decided at the previous
close), target (decided at this close, filled at the next open with next_open execution), equity,
benchmark_equity (account currency), benchmark_held (0 on the deployment day, then 1), probabilities, data_source, synthetic, stale, recorded_at.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd

from evorl_core import modes
from evorl_core.costs import cost_model
from evorl_core.data.arrays import MarketData
from evorl_core.deploy.bundle import LEDGER_FILE, Bundle, DeployError, ModelLock
from evorl_core.deploy.signal import decider, stale_warnings, symbol_data
from evorl_core.evaluation.tearsheet import ANNUALIZATION, portfolio
from evorl_core.store.atomic import atomic_write_text, clean_json, read_json


class LedgerError(DeployError):
    """The ledger cannot be extended with this data (a gap, a missing symbol, a busy file)."""


@dataclass
class PaperResult:
    appended: list[dict[str, Any]] = field(default_factory=list)
    latest: dict[str, str] = field(default_factory=dict)  # symbol -> date of its last entry
    warnings: list[str] = field(default_factory=list)


def ledger_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / LEDGER_FILE


def read_ledger(model_dir: str | Path) -> list[dict[str, Any]]:
    """Every entry, in file order. A line that does not parse is an error: the ledger is history."""
    path = ledger_path(model_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise LedgerError(f"{path}: line {number} is not valid JSON ({exc.msg}); fix or move the file") from None
        except (RecursionError, ValueError):
            raise LedgerError(f"{path}: line {number} cannot be decoded (nested too deeply or a number too "
                              "long); fix or move the file") from None
    return rows


def ledger_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Entries as a table (date as datetime), sorted by symbol and date."""
    if not rows:
        return pd.DataFrame(columns=["date", "symbol", "open", "close", "held", "target", "equity",
                                     "benchmark_equity"])
    frame = pd.DataFrame(rows)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.sort_values(["symbol", "date"], ignore_index=True)


def _decider(bundle: Bundle):
    """decide(data, t, held) -> (target, probabilities): the greedy policy at the close of bar t,
    computed by `signal.decider` (the one computation signals use too)."""
    positions = np.asarray(bundle.config.positions, np.float64)
    probabilities = decider(bundle)[3]

    def decide(data: MarketData, t: int, held: float) -> tuple[float, dict[str, float]]:
        probs = np.asarray(probabilities(bundle.params, data, jnp.int32(t), jnp.float32(held)), np.float64)
        return float(positions[int(np.argmax(probs))]), {f"{p:g}": float(q) for p, q in zip(positions, probs, strict=True)}

    return decide


def plan(bundle: Bundle, frames: dict[str, pd.DataFrame], existing: list[dict[str, Any]],
         info: dict[str, Any] | None = None, today: Any = None) -> PaperResult:
    """The entries ``record`` would append (nothing is written). Raises LedgerError when a symbol's
    data does not continue its ledger (its last recorded bar is missing from the data)."""
    accounting = modes.get(bundle.config).accounting
    config = bundle.config
    norm = bundle.meta["normalization"]
    info = info or {}
    per_symbol_info = info.get("per_symbol") or {}
    stale = {w.split(":", 1)[0]: w for w in stale_warnings(frames, today)}
    result = PaperResult(warnings=list(stale.values()))
    decide = _decider(bundle)
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for row in existing:
        by_symbol.setdefault(row["symbol"], []).append(row)
    now = time.time()
    recorded = next((r.get("data_source") for r in existing if r.get("data_source")), None)
    for symbol, frame in frames.items():
        if symbol not in norm:
            raise LedgerError(f"model {bundle.name!r} was not trained on {symbol}; it knows {', '.join(norm)}")
        if len(frame) < config.window + 1:
            raise LedgerError(f"{symbol}: needs at least {config.window + 1} bars, has {len(frame)}")
        history = by_symbol.get(symbol, [])
        dates = [str(d.date()) for d in frame.index]
        source = (per_symbol_info.get(symbol) or {}).get("source", info.get("source"))
        base = {"symbol": symbol, "data_source": source, "synthetic": source == "synthetic",
                "stale": symbol in stale}
        if recorded is not None and source != recorded:  # a ledger belongs to one data source
            raise LedgerError(f"{ledger_path(bundle.path)}: the ledger was recorded on {recorded!r} (its first entry); "
                              f"this data is {source!r}; a ledger holds one data source: use that source, or "
                              "deploy the run again under another --model-name for this one")
        if history:
            last = history[-1]
            if last["date"] not in dates:
                raise LedgerError(
                    f"{symbol}: the data has no bar for {last['date']}, the ledger's last entry "
                    f"(data from {dates[0]} to {dates[-1]}); is it the source the ledger was recorded on?")
            new = range(dates.index(last["date"]) + 1, len(dates))
        else:
            last = None
            new = range(len(dates) - 1, len(dates))  # deployment day: the latest bar only
        if not len(new):
            result.latest[symbol] = dates[-1] if last is None else last["date"]
            continue
        data = symbol_data(frame, norm[symbol], config.window, len(frame) - 1, config.features)
        costs = cost_model(config)
        opens = frame["open"].to_numpy(np.float64)
        closes = frame["close"].to_numpy(np.float64)
        for t in new:
            if last is None:  # deployment day: flat, initial capital (a backtest's first day)
                held, bench_held, equity, bench = 0.0, 0.0, config.initial_capital, config.initial_capital
            else:  # fill the last decision at this open, mark to market at this close
                held, bench_held = float(last["target"]), 1.0
                growth = accounting.step_growth(float(last["held"]), held, opens[t], float(last["close"]), closes[t],
                                     costs, config.execution, float(last["equity"]))
                bench_growth = accounting.step_growth(float(last["benchmark_held"]), 1.0, opens[t], float(last["close"]),
                                           closes[t], costs, config.execution, float(last["benchmark_equity"]))
                equity = float(last["equity"]) * float(growth)
                bench = float(last["benchmark_equity"]) * float(bench_growth)
            target, probs = decide(data, t, held)
            entry = {"date": dates[t], **base, "open": float(opens[t]), "close": float(closes[t]),
                     "held": held, "target": target, "equity": equity, "benchmark_equity": bench,
                     "benchmark_held": bench_held, "probabilities": probs, "execution": config.execution,
                     "recorded_at": now}
            result.appended.append(entry)
            last = entry
        result.latest[symbol] = last["date"]
    return result


class _Lock(ModelLock):
    """The model folder's lock (shared with a redeploy); a busy ledger is a LedgerError."""

    error = LedgerError


def record(bundle: Bundle, frames: dict[str, pd.DataFrame], info: dict[str, Any] | None = None,
           today: Any = None, planner=plan) -> PaperResult:
    """Append the new bars' entries to the bundle's ledger (see the module docstring); idempotent.
    `planner` computes them (`plan`; a portfolio model's is `paper_portfolio.plan_portfolio`)."""
    with _Lock(bundle.path):
        now = (read_json(Path(bundle.path) / "bundle.json", {}, kind=dict) or {}).get("version")
        if now != bundle.meta.get("version"):
            raise LedgerError(f"{bundle.path}: the model was redeployed while this update waited; run it again")
        path = ledger_path(bundle.path)
        old = path.read_bytes() if path.exists() else b""
        result = planner(bundle, frames, read_ledger(bundle.path), info, today)
        if result.appended:
            prefix = old.decode("utf-8")
            if prefix and not prefix.endswith("\n"):
                prefix += "\n"
            text = "".join(json.dumps(clean_json(e), sort_keys=False) + "\n" for e in result.appended)
            atomic_write_text(path, prefix + text)
    return result


# forward performance ---------------------------------------------------------------------------
def forward_curves(rows: list[dict[str, Any]], bundle_meta: dict[str, Any]) -> pd.DataFrame:
    """Forward portfolio value since deployment (equal capital per symbol, as the tearsheet's
    portfolio), buy & hold, and what the backtest led one to expect: each symbol's test-window
    daily growth (1 + total return) ^ (1 / daily returns) compounded over the forward days, with a
    ±1 standard deviation band from its annual volatility (symbols taken as fully correlated).

    Columns: paper, buy_hold, expected, expected_low, expected_high (account currency); index: date.
    """
    frame = ledger_frame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["paper", "buy_hold", "expected", "expected_low", "expected_high"])
    rows_for_pf = frame.rename(columns={"target": "position"})
    paper = portfolio(rows_for_pf, "equity")
    bh = portfolio(rows_for_pf, "benchmark_equity")
    start = float(paper.iloc[0])
    test = bundle_meta.get("test_metrics") or {}
    growths, vols = [], []
    for symbol in frame["symbol"].unique():
        m = test.get(symbol) or {}
        days, total, vol = m.get("days"), m.get("total_return"), m.get("annual_volatility")
        if days and days > 1 and total is not None and total > -1:
            growths.append((1.0 + total) ** (1.0 / (days - 1)))
            vols.append(float(vol) / math.sqrt(ANNUALIZATION) if vol is not None and math.isfinite(vol) else 0.0)
    out = pd.DataFrame({"paper": paper, "buy_hold": bh})
    k = np.arange(len(out), dtype=np.float64)  # daily periods since deployment
    if growths:
        expected = np.mean([g ** k for g in growths], axis=0) * start
        sigma = float(np.mean(vols))
        out["expected"] = expected
        out["expected_low"] = expected * np.exp(-sigma * np.sqrt(k))
        out["expected_high"] = expected * np.exp(sigma * np.sqrt(k))
    else:
        out["expected"] = out["expected_low"] = out["expected_high"] = np.nan
    return out
