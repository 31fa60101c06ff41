"""The forward (paper) ledger of a deployed portfolio model: one line per session for the account.

Like the single-asset ledger (`ledger`), each run of ``evorl paper`` appends one line for every
calendar day of the universe newer than the ledger's last line, and never changes a line: at that
day's open the target decided at the previous close is filled (drift overnight, the rebalance band,
costs per asset and side, forced sale of what can no longer be held), at its close the account is
marked to market, and the greedy policy decides the next target seeing the weights the ledger
holds. All of it is `modes.portfolio.accounting`, the backtest's own accounting, one day at a time.
The first line is the deployment day: all cash with the initial capital. Equal weight (1/N
rebalanced, the baseline a portfolio is judged against) is kept beside it the same way.

Line (JSON): date, symbol ("PORTFOLIO"), weights (held at the close: symbol -> weight, CASH),
target (decided at this close, filled at the next session), equity, benchmark ("1/N rebalanced"),
benchmark_equity, benchmark_weights, closes (symbol -> close, tradable symbols), costs (rupees paid
at this day's fill), data_source, synthetic, stale, execution, recorded_at.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Any

import jax
import numpy as np
import pandas as pd

from evorl_core.agents.build import make_ppo
from evorl_core.costs import cost_model
from evorl_core.data.panel import build_panel
from evorl_core.data.validate import DataError
from evorl_core.deploy.bundle import Bundle
from evorl_core.deploy.ledger import LedgerError, PaperResult, ledger_path, record
from evorl_core.deploy.portfolio import CASH, pooled_norm
from evorl_core.deploy.signal import stale_warnings
from evorl_core.modes.portfolio import accounting
from evorl_core.modes.portfolio.decisions import decision

ACCOUNT = "PORTFOLIO"  # the `symbol` of a portfolio ledger's lines
BENCHMARK = "1/N rebalanced"


def _vector(weights: dict[str, float], symbols: list[str], where: str) -> np.ndarray:
    """[N + 1] weights in `symbols` order (cash last) from a ledger line's mapping; a holding of a
    symbol the data no longer has is an error (it could not be valued)."""
    lost = [s for s, w in weights.items() if s != CASH and w > 0 and s not in symbols]
    if lost:
        raise LedgerError(f"{where}: the ledger holds {', '.join(lost)}, which the data no longer has; "
                          "load the universe the ledger was recorded on")
    return np.array([float(weights.get(s, 0.0)) for s in symbols] + [float(weights.get(CASH, 0.0))])


def _mapping(vector: np.ndarray, symbols: list[str]) -> dict[str, float]:
    return {**{s: float(w) for s, w in zip(symbols, vector[:-1], strict=True)}, CASH: float(vector[-1])}


def plan_portfolio(bundle: Bundle, frames: dict[str, pd.DataFrame], existing: list[dict[str, Any]],
                   info: dict[str, Any] | None = None, today: Any = None) -> PaperResult:
    """The lines ``record_portfolio`` would append (nothing is written)."""
    config = bundle.config
    info = info or {}
    symbols = list(frames)
    try:
        market = build_panel(frames, config.window, 2, execution=config.execution,
                             norm=pooled_norm(bundle, symbols), feature_set=config.features)
    except DataError as exc:
        raise LedgerError(f"model {bundle.name!r}: {exc}") from None
    dates = [str(d) for d in market.calendar]
    stale = stale_warnings(frames, today)
    result = PaperResult(warnings=stale)
    source = info.get("source")
    history = [r for r in existing if r.get("symbol") == ACCOUNT]
    recorded = next((r.get("data_source") for r in history if r.get("data_source")), None)
    if recorded is not None and source != recorded:
        raise LedgerError(f"{ledger_path(bundle.path)}: the ledger was recorded on {recorded!r} (its first entry); "
                          f"this data is {source!r}; a ledger holds one data source")
    last = history[-1] if history else None
    if last is not None and last["date"] not in dates:
        raise LedgerError(f"the universe's calendar has no day {last['date']}, the ledger's last entry (data from "
                          f"{dates[0]} to {dates[-1]}); is it the source the ledger was recorded on?")
    new = range(dates.index(last["date"]) + 1, len(dates)) if last else range(len(dates) - 1, len(dates))
    if not len(new):
        result.latest[ACCOUNT] = last["date"]
        return result
    run_config = dataclasses.replace(config, symbols=tuple(symbols), seeds=1, population=1)
    ppo = make_ppo(run_config)
    policy = partial(ppo.action_probabilities, ensemble=bundle.ensemble)
    decide = jax.jit(lambda params, data, t, held: decision(policy, params, data, t, held, ppo.env))
    costs = cost_model(config)
    now = time.time()
    for t in new:
        open_, close, tradable = market.prices(t - 1, 2) if last else market.prices(t, 1)
        if last is None:  # deployment day: all cash with the initial capital, like a backtest's first day
            weights = bench_weights = accounting.cash_targets(len(symbols), 1)[0]
            equity = bench = float(config.initial_capital)
            paid = 0.0
        else:  # fill yesterday's targets at today's open, mark to market at today's close
            where = f"{ledger_path(bundle.path)} ({last['date']})"
            held, target = _vector(last["weights"], symbols, where), _vector(last["target"], symbols, where)
            path = accounting.simulate(open_, close, tradable, np.stack([target, target]), costs,
                                       band=config.rebalance_band, execution=config.execution,
                                       initial=float(last["equity"]), initial_weights=held)
            one_n = accounting.equal_weight_targets(tradable)
            bench_path = accounting.simulate(open_, close, tradable, one_n, costs, band=config.rebalance_band,
                                             execution=config.execution, initial=float(last["benchmark_equity"]),
                                             initial_weights=_vector(last["benchmark_weights"], symbols, where))
            weights, equity, paid = path.weights[1], float(path.equity[1]), float(path.costs[0])
            bench_weights, bench = bench_path.weights[1], float(bench_path.equity[1])
        target = np.asarray(decide(bundle.params, market.data, t, weights.astype(np.float32)), np.float64)
        if not np.isfinite(target).all() or target.sum() <= 0:
            raise LedgerError(f"model {bundle.name!r} gives non-finite weights on {dates[t]}; nothing appended")
        target = target / target.sum()
        mask = np.asarray(market.data.tradable)[:, t]
        entry = {"date": dates[t], "symbol": ACCOUNT, "weights": _mapping(weights, symbols),
                 "target": _mapping(target, symbols), "equity": equity, "benchmark": BENCHMARK,
                 "benchmark_equity": bench, "benchmark_weights": _mapping(bench_weights, symbols),
                 "closes": {s: float(c) for s, c, ok in zip(symbols, close[:, -1], mask, strict=True) if ok},
                 "costs": paid, "data_source": source, "synthetic": source == "synthetic", "stale": bool(stale),
                 "execution": config.execution, "recorded_at": now}
        result.appended.append(entry)
        last = entry
    result.latest[ACCOUNT] = last["date"]
    return result


def record_portfolio(bundle: Bundle, frames: dict[str, pd.DataFrame], info: dict[str, Any] | None = None,
                     today: Any = None) -> PaperResult:
    """Append the new days' lines to the portfolio model's ledger (idempotent, append-only)."""
    return record(bundle, frames, info, today, planner=plan_portfolio)
