"""Next-session target weights of a deployed portfolio model, and the order list that reaches them.

`portfolio_signal` aligns the latest frames of the universe on one calendar with the model's
training normalisation, replays the greedy policy from all cash over the last days (what a user who
followed the model would hold, exactly like the backtest: `modes.portfolio.accounting`), and
returns the weights held at the last close and the target weights for the next session. The same
model runs on a universe with other or newly listed names (the policy is per asset).

`order_list` turns target weights into whole-share orders for an account of `capital` rupees of
cash plus optional holdings (a CSV of symbol,shares), priced at the last close, with the cost
model's estimated charges; buys are trimmed until the cash left is not negative.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evorl_core import modes
from evorl_core.agents.build import make_ppo
from evorl_core.agents.precision import EVALUATION_PRECISION
from evorl_core.costs import cost_model
from evorl_core.data.panel import build_panel, load_universe
from evorl_core.data.validate import DataError
from evorl_core.deploy.bundle import Bundle, DeployError
from evorl_core.modes.portfolio import accounting

CASH = "CASH"
ORDER_COLUMNS = ["symbol", "side", "shares", "price", "value", "estimated_cost", "target_weight", "held_shares",
                 "target_shares"]


def pooled_norm(bundle: Bundle, symbols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The pooled training statistics of a portfolio model (the same for every asset)."""
    norm = bundle.meta["normalization"]
    first = next(iter(norm.values()))
    return (np.tile(np.asarray(first["mean"], np.float64), (len(symbols), 1)),
            np.tile(np.asarray(first["std"], np.float64), (len(symbols), 1)))


def portfolio_signal(bundle: Bundle, frames: dict[str, pd.DataFrame], replay_days: int | None = None) -> dict[str, Any]:
    """{date, weights: [{symbol, close, held, target}], cash_held, cash_target, replayed_days}."""
    config = bundle.config
    if config.mode != "portfolio":
        raise DeployError(f"model {bundle.name!r} is not a portfolio model")
    symbols = list(frames)
    calendar = np.unique(np.concatenate([f.index.values.astype("datetime64[D]") for f in frames.values()]))
    replay = int(replay_days or config.test_days)
    days = max(2, min(replay, len(calendar) - config.window - 3))
    try:
        market = build_panel(frames, config.window, days, execution=config.execution, norm=pooled_norm(bundle, symbols),
                             feature_set=config.features)
    except DataError as exc:
        raise DeployError(f"model {bundle.name!r}: {exc}") from None
    run_config = dataclasses.replace(config, symbols=tuple(symbols), seeds=1, population=1)
    ppo = make_ppo(run_config, precision=EVALUATION_PRECISION)  # float32, whatever it trained in
    mode = modes.get(run_config)
    probabilities = partial(ppo.action_probabilities, ensemble=bundle.ensemble)
    start = int(market.data.test_start)
    targets = np.asarray(mode.greedy_positions(probabilities, bundle.params, market.data, start, days, ppo.env),
                         np.float64)
    if not np.isfinite(targets).all() or not (targets.sum(axis=-1) > 0).all():
        raise DeployError(f"model {bundle.name!r} gives non-finite weights on {calendar[-1]}; no signal")
    targets = targets / targets.sum(axis=-1, keepdims=True)
    prices = market.prices(start, days)
    path = accounting.simulate(*prices, targets, cost_model(config), band=config.rebalance_band,
                               execution=config.execution, initial=config.initial_capital)
    held, target = path.weights[-1], path.held[-1]
    rows = []
    for i, symbol in enumerate(symbols):
        frame = frames[symbol]
        rows.append({"symbol": symbol, "last_bar": str(frame.index[-1].date()), "close": float(frame["close"].iloc[-1]),
                     "held": float(held[i]), "target": float(target[i]),
                     "tradable": bool(np.asarray(market.data.tradable)[i, -1])})
    return {"model": bundle.name, "date": str(calendar[-1]), "weights": rows, "cash_held": float(held[-1]),
            "cash_target": float(target[-1]), "replayed_days": days, "execution": config.execution,
            "replay_equity": float(path.equity[-1] / path.equity[0])}


def load_portfolio_frames(bundle: Bundle, source: str | None = None, symbols: list[str] | None = None,
                          cache_dir: str | Path = "data_cache") -> tuple[dict[str, pd.DataFrame], dict]:
    """The universe's latest frames for a portfolio signal: the training source (or `source`) for
    the model's symbols (or `symbols`, `all` included), loaded as the run loaded them."""
    config = bundle.config
    changes: dict[str, Any] = {"symbols": tuple(symbols or bundle.symbols)}
    if source:
        changes["data"] = source
    frames, info, _ = load_universe(dataclasses.replace(config, **changes), cache_dir, synthetic_fallback=False)
    return frames, info


def read_holdings(path: str | Path) -> dict[str, int]:
    """symbol -> whole shares from a CSV with columns symbol,shares; errors name the file and row."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"--holdings {path}: cannot read ({' '.join(str(exc).split())})") from None
    columns = {c.strip().lower(): c for c in table.columns}
    missing = [c for c in ("symbol", "shares") if c not in columns]
    if missing:
        raise DataError(f"--holdings {path}: needs columns symbol,shares (missing {', '.join(missing)}; "
                        f"found {', '.join(map(str, table.columns)) or 'none'})")
    out: dict[str, int] = {}
    for row, (symbol, shares) in enumerate(zip(table[columns["symbol"]], table[columns["shares"]], strict=True), 2):
        name = symbol.strip().upper()
        if not name:
            raise DataError(f"--holdings {path} row {row}: empty symbol")
        try:
            value = float(shares)
        except ValueError:
            raise DataError(f"--holdings {path} row {row}: shares {shares!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or value != int(value):
            raise DataError(f"--holdings {path} row {row}: shares must be a whole number >= 0 (got {shares!r})")
        if name in out:
            raise DataError(f"--holdings {path} row {row}: {name} appears twice")
        out[name] = int(value)
    return out


def order_list(signal: dict[str, Any], capital: float, holdings: dict[str, int] | None, costs) -> tuple[pd.DataFrame, dict]:
    """(orders, summary): whole-share orders from `holdings` to the signal's target weights for an
    account of `capital` rupees of cash plus the holdings at the last close."""
    if not math.isfinite(capital) or capital < 0:
        raise DataError(f"--capital: must be a number of rupees >= 0 (got {capital})")
    holdings = dict(holdings or {})
    prices = {w["symbol"]: w["close"] for w in signal["weights"]}
    unknown = sorted(set(holdings) - set(prices))
    if unknown:
        raise DataError(f"--holdings: {', '.join(unknown)} not in the model's universe ({len(prices)} symbols); "
                        "remove them from the file or trade them yourself")
    account = capital + sum(holdings.get(s, 0) * p for s, p in prices.items())
    if account <= 0:
        raise DataError("--capital: the account is empty (no cash and no holdings)")
    target_shares = {w["symbol"]: int(math.floor(w["target"] * account / w["close"])) if w["close"] > 0 else 0
                     for w in signal["weights"]}

    def plan(shares: dict[str, int]):
        sold = sum((holdings.get(s, 0) - n) * prices[s] for s, n in shares.items() if n < holdings.get(s, 0))
        bought = sum((n - holdings.get(s, 0)) * prices[s] for s, n in shares.items() if n > holdings.get(s, 0))
        n_sold = sum(1 for s, n in shares.items() if n < holdings.get(s, 0))
        fees = costs.c_buy * bought + costs.c_sell * sold + n_sold * costs.sell_day_charge_rupees
        return capital + sold - bought - fees, fees

    cash_left, fees = plan(target_shares)
    while cash_left < 0:  # trim the largest buy by one share at a time until the cash suffices
        buys = [(target_shares[s] - holdings.get(s, 0)) * prices[s] for s in prices]
        s = list(prices)[int(np.argmax(buys))]
        if buys[int(np.argmax(buys))] <= 0:
            break
        target_shares[s] -= 1
        cash_left, fees = plan(target_shares)
    rows = []
    for w in signal["weights"]:
        s = w["symbol"]
        delta = target_shares[s] - holdings.get(s, 0)
        if delta == 0:
            continue
        value = abs(delta) * prices[s]
        cost = (costs.c_buy * value) if delta > 0 else (costs.c_sell * value + costs.sell_day_charge_rupees)
        rows.append({"symbol": s, "side": "BUY" if delta > 0 else "SELL", "shares": abs(delta), "price": prices[s],
                     "value": value, "estimated_cost": cost, "target_weight": w["target"],
                     "held_shares": holdings.get(s, 0), "target_shares": target_shares[s]})
    orders = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    orders = orders.sort_values(["side", "value"], ascending=[False, False], kind="stable", ignore_index=True)
    summary = {"account_rupees": account, "cash_rupees": capital, "estimated_costs": fees, "cash_left": cash_left,
               "cash_target_weight": signal["cash_target"], "date": signal["date"],
               "note": f"priced at the closes of {signal['date']}; fills at the next session "
                       f"({signal['execution']}) will differ"}
    return orders, summary
