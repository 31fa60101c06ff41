"""Evaluation of a portfolio run: the account of the greedy policy on validation and test days,
against the baselines that are hard to beat (docs/portfolio.md).

Every figure comes from `modes.portfolio.accounting.simulate` (NumPy, float64, rupees). The JAX
policy only chooses the target weights (`modes.portfolio.decisions.greedy_positions`, one jitted
scan per window, vmapped over members). Selection among members looks at validation days only.

Baselines, in the same accounting on the same days, costs and band: 1/N rebalanced (equal weight
over the assets tradable each day, traded back to 1/N at every close unless within the band),
equal-weight buy & hold (1/N on the first day, never traded) and cash.

The questions (`allocation_report`):
1. Excess over 1/N: the mean daily difference of net simple returns (agent minus 1/N), two-sided,
   stationary block bootstrap-t and Student's t, the more cautious (`stats.mean_test`); several
   members are pooled by averaging their daily differences day by day.
2. Allocation (selection) skill against random portfolios with the same turnover and
   concentration: each null draw gives the agent's own daily weights to a random permutation of
   the assets that are tradable on every test day (so every day's concentration, cash weight and
   trading pattern are the same, and which asset gets which weight is random);
   p = (1 + #{null >= observed}) / (K + 1) on the net log return.
3. With several trials, the deflated Sharpe ratio of the best member.
Each claim needs a one-sided p below alpha / 2, as in single-asset mode.

Files (the run-directory contract): backtest/equity.csv holds one row per test day with symbol
`PORTFOLIO` (open and close empty, position = invested fraction, benchmark_equity = 1/N);
backtest/weights.csv the weights held after each fill (date, symbol, weight; cash as `CASH`);
backtest/baselines.csv the baselines' equity (date, baseline, equity);
backtest/metrics.json {"PORTFOLIO": {metric: value}} with the baselines, contributions and the
allocation diagnostics; selection.json, members.csv and members.json as in single-asset mode.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from evorl_core import modes
from evorl_core.agents.build import make_ppo
from evorl_core.agents.precision import EVALUATION_PRECISION
from evorl_core.config import TrainConfig
from evorl_core.costs import CostModel, cost_model
from evorl_core.evaluation.pbo import pbo_report
from evorl_core.evaluation.significance import count_trials
from evorl_core.evaluation.stats import (
    deflated_sharpe_ratio,
    mean_test,
    sharpe_confidence_interval,
    sharpe_ratio,
)
from evorl_core.metrics import compute_metrics
from evorl_core.modes.portfolio import accounting
from evorl_core.store.atomic import atomic_write_json, atomic_write_text
from evorl_core.store.rundir import EQUITY_COLUMNS

PORTFOLIO = "PORTFOLIO"  # the account's rows in backtest/equity.csv and key in metrics.json
CASH = "CASH"
ALPHA = 0.05
N_BOOT = 2000
N_PERMUTATIONS = 199
DISGUISE_DISTANCE = 0.05  # mean distance from 1/N below this: "1/N in disguise"
STILL_TURNOVER = 0.001  # mean daily turnover (after the first fill) below this: "never moves"
ONE_N = "1/N rebalanced"  # the baseline a portfolio is judged against
BASELINES = (ONE_N, "equal-weight buy & hold", "cash")
HEADLINE = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility", "calmar")


def window_prices(market: Any, start: int, num_days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(open, close, tradable) [N, num_days] of a window of the calendar (`PanelMarket.prices`)."""
    return market.prices(start, num_days)


def greedy_targets(config: TrainConfig, params: Any, market: Any, start: int, num_days: int,
                   members: int = 1, precision: str = EVALUATION_PRECISION) -> np.ndarray:
    """[members, num_days, N + 1] greedy target weights decided at the closes of the window, from
    all cash. `params` has a leading member axis when members > 1; the network computes in
    `precision` (float32 unless told otherwise)."""
    ppo = make_ppo(config, precision=precision)
    policy = partial(modes.get(config).greedy_positions, ppo.action_probabilities, num_days=num_days, env=ppo.env)
    if members > 1:
        policy = jax.vmap(policy, in_axes=(0, None, None))
    out = np.asarray(jax.jit(policy)(params, market.data, np.int32(start)), np.float64)
    return normalised(out.reshape(members, num_days, len(market.symbols) + 1))


def normalised(targets: np.ndarray) -> np.ndarray:
    """Float32 softmax weights made to sum to exactly 1 in float64 (zeros stay zeros)."""
    return targets / targets.sum(axis=-1, keepdims=True)


def _run(config: TrainConfig, prices, targets, costs: CostModel | None = None) -> accounting.Path:
    open_, close, tradable = prices
    return accounting.simulate(open_, close, tradable, targets, costs or cost_model(config),
                               band=config.rebalance_band, execution=config.execution,
                               initial=config.initial_capital)


def baseline_targets(prices) -> dict[str, Any]:
    """The baselines' targets (or rule) on a window: 1/N rebalanced, equal-weight buy & hold, cash."""
    _, close, tradable = prices
    n, days = close.shape
    return {ONE_N: accounting.equal_weight_targets(tradable),
            "equal-weight buy & hold": accounting.buy_and_hold_rule(tradable),
            "cash": accounting.cash_targets(n, days)}


def _returns(path: accounting.Path) -> np.ndarray:
    return path.equity[1:] / path.equity[:-1] - 1.0


def _invested(path: accounting.Path) -> np.ndarray:
    return 1.0 - path.held[:, -1]


def diagnostics(path: accounting.Path, equal: accounting.Path) -> dict[str, Any]:
    """Turnover, concentration and distance from 1/N of an account's held weights, with plain flags."""
    held, ew = path.held[:-1], equal.held[:-1]  # the last row is the next session's signal
    assets = held[:, :-1]
    invested = assets.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(invested > 0, invested**2 / np.maximum((assets**2).sum(axis=1), 1e-300), 0.0)
    distance = 0.5 * np.abs(held - ew).sum(axis=1)
    turnover = path.traded[1:-1] if len(path.traded) > 2 else np.zeros(0)
    mean_turnover = float(turnover.mean()) if turnover.size else 0.0
    out = {
        "turnover_daily": mean_turnover,
        "turnover_annual": mean_turnover * 252.0,
        "first_fill_turnover": float(path.traded[0]) if len(path.traded) else 0.0,
        "effective_assets": float(eff.mean()) if len(eff) else 0.0,
        "max_weight": float(assets.max()) if assets.size else 0.0,
        "cash_weight_mean": float(held[:, -1].mean()) if len(held) else 1.0,
        "distance_from_1n": float(distance.mean()) if len(distance) else 0.0,
        "trading_days": int((path.traded[:-1] > 0).sum()),
    }
    flags = []
    if out["distance_from_1n"] < DISGUISE_DISTANCE:
        flags.append(f"1/N in disguise: the weights stay within {out['distance_from_1n']:.1%} of equal weight "
                     f"(total variation distance; below {DISGUISE_DISTANCE:.0%})")
    if mean_turnover < STILL_TURNOVER:
        flags.append(f"never moves: after the first fill it trades {mean_turnover:.3%} of the account a day "
                     f"(below {STILL_TURNOVER:.1%})")
    if out["cash_weight_mean"] > 0.95:
        flags.append(f"sits in cash: {out['cash_weight_mean']:.0%} of the account on average")
    out["flags"] = flags
    return out


def path_metrics(config: TrainConfig, path: accounting.Path, prices, targets) -> dict[str, Any]:
    """Headline metrics and costs of one account over a window; `targets` drove it (the gross
    figures run the same targets at zero cost)."""
    m = compute_metrics(path.equity, _invested(path))
    out: dict[str, Any] = {k: m[k] for k in HEADLINE if k in m}
    out["exposure"] = float(_invested(path)[:-1].mean()) if len(path.equity) > 1 else 0.0
    initial = float(config.initial_capital)
    zero = dataclasses.replace(cost_model(config), c_buy=0.0, c_sell=0.0, sell_day_charge_rupees=0.0)
    gross = _run(config, prices, targets, zero)
    out["gross_return"] = float(gross.equity[-1] / initial - 1.0)
    out["cost_drag"] = out["gross_return"] - out["total_return"]
    out["costs_rupees"] = float(path.costs.sum())
    out["final_equity"] = float(path.equity[-1])
    return out


def allocation_null(config: TrainConfig, path: accounting.Path, prices, *, draws: int = N_PERMUTATIONS,
                    seed: int = 0) -> dict[str, Any]:
    """p-value of the account's net log return against the same daily weights given to randomly
    permuted assets (those tradable on every day of the window; others keep theirs)."""
    _, _, tradable = prices
    movable = np.flatnonzero(tradable.all(axis=1))
    # observed: the held weights as targets (what every null draw re-trades, band included)
    same = _run(config, prices, path.held)
    observed = float(np.log(same.equity[-1] / same.equity[0]))
    if len(movable) < 2:
        return {"selection_p_value": None, "selection_draws": 0, "selection_null_median": None}
    rng = np.random.default_rng(seed + 7919)
    null = np.empty(draws)
    for k in range(draws):
        perm = np.arange(tradable.shape[0])
        perm[movable] = rng.permutation(movable)
        targets = path.held.copy()
        targets[:, perm] = path.held[:, np.arange(tradable.shape[0])]
        shuffled = _run(config, prices, targets)
        null[k] = np.log(shuffled.equity[-1] / shuffled.equity[0])
    p = float((1 + np.count_nonzero(null >= observed - 1e-12)) / (draws + 1))
    return {"selection_p_value": p, "selection_draws": int(draws), "selection_null_median": float(np.median(null)),
            "selection_observed": observed}


def _p_text(p: float) -> str:
    return f"p < {1 / (N_BOOT + 1):.4f}" if p <= 1 / (N_BOOT + 1) else f"p = {p:.3f}"


def allocation_report(config: TrainConfig, paths: list[accounting.Path], equal: accounting.Path, prices,
                      trials: int) -> dict[str, Any]:
    """Excess over 1/N (members pooled), allocation skill of the first path, the verdict, and with
    several trials the deflated Sharpe ratio of the best member."""
    diffs = np.mean([_returns(p) - _returns(equal) for p in paths], axis=0)
    ex = mean_test(diffs, n_boot=N_BOOT, seed=config.seed)
    report: dict[str, Any] = {
        "excess_1n_mean_annual": ex["mean"], "excess_1n_ci_low": ex["ci_low"], "excess_1n_ci_high": ex["ci_high"],
        "excess_1n_p_value": ex["p_value"],
        "verdict_subject": "members' average" if len(paths) > 1 else "the agent",
    }
    report.update(allocation_null(config, paths[0], prices, seed=config.seed))
    p_ex, mean, p_sel = ex["p_value"], ex["mean"], report["selection_p_value"]
    if p_ex is None or mean is None:
        text = "too few days to compare with 1/N"
    elif p_ex < ALPHA and mean > 0:
        text = f"beats 1/N ({_p_text(p_ex)})"
    elif p_ex < ALPHA and mean < 0:
        text = f"worse than 1/N ({_p_text(p_ex)})"
    else:
        text = f"not distinguishable from 1/N ({_p_text(p_ex)})"
    if p_sel is None:
        text += "; too few assets to test allocation skill"
    elif p_sel < ALPHA / 2:
        text += f"; allocation skill against random portfolios of the same turnover and concentration (p = {p_sel:.3f})"
    else:
        text += f"; no evidence of allocation skill (p = {p_sel:.3f})"
    report["verdict"] = text
    if len(paths) > 1 or trials > 1:
        returns = np.array([_returns(p) for p in paths])
        sharpes = sharpe_ratio(returns, axis=1)
        if np.any(np.isfinite(sharpes)):
            best = int(np.nanargmax(sharpes))
            finite = sharpes[np.isfinite(sharpes)]
            variance = float(np.var(finite, ddof=1)) if finite.size > 1 else 0.0
            dsr = deflated_sharpe_ratio(returns[best], max(trials, len(paths)), variance)
            report.update(best_member=best, best_member_sharpe=dsr["sharpe"], deflated_sharpe=dsr["dsr"],
                          deflated_sharpe_threshold=dsr["sharpe0"], deflated_sharpe_trials=max(trials, len(paths)),
                          **pbo_report(returns))  # the members' probability of backtest overfitting
    return report


def evaluate(config: TrainConfig, params: Any, market: Any, trials: int | None = None) -> dict[str, Any]:
    """Validation scores, the chosen member, and every member's test account with the baselines."""
    members = config.members
    data = market.data
    scores = None
    if market.val_days:
        start = int(data.val_start)
        prices = window_prices(market, start, market.val_days)
        targets = greedy_targets(config, params, market, start, market.val_days, members)
        scores = np.array([np.log(_run(config, prices, targets[m]).equity[-1] / config.initial_capital)
                           for m in range(members)])
        chosen = int(np.argmax(scores))
        criterion = f"highest net log return of the account over the {market.val_days} validation days"
    else:
        chosen, criterion = 0, "no validation days: the first member (base seed) is reported, not selected"
    start, days = int(data.test_start), market.test_days
    prices = window_prices(market, start, days)
    targets = greedy_targets(config, params, market, start, days, members)
    paths = [_run(config, prices, targets[m]) for m in range(members)]
    base_targets = baseline_targets(prices)
    base = {name: _run(config, prices, t) for name, t in base_targets.items()}
    order = [chosen] + [m for m in range(members) if m != chosen]
    report = allocation_report(config, [paths[m] for m in order], base[ONE_N], prices,
                               trials=count_trials(config) if trials is None else trials)
    if "best_member" in report:
        report["best_member"] = order[report["best_member"]]
    selection = {"members": members, "chosen_member": chosen, "criterion": criterion,
                 "seeds": [config.seed + k for k in range(members)],
                 "validation_log_return": None if scores is None else {
                     str(m): {PORTFOLIO: float(scores[m])} for m in range(members)}}
    return {"chosen": chosen, "selection": selection, "paths": paths, "targets": targets, "baselines": base,
            "base_targets": base_targets, "prices": prices, "report": report, "validation_scores": scores,
            "dates": market.calendar[start:start + days]}


def headline_metrics(config: TrainConfig, market: Any, result: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's PORTFOLIO entry of the chosen member."""
    chosen, prices = result["chosen"], result["prices"]
    path = result["paths"][chosen]
    equal = result["baselines"][ONE_N]
    row = path_metrics(config, path, prices, result["targets"][chosen])
    row.update(diagnostics(path, equal))
    row.update(sharpe_confidence_interval(_returns(path), seed=config.seed))
    row.update(result["report"])
    row["baselines"] = {name: path_metrics(config, p, prices, result["base_targets"][name])
                        for name, p in result["baselines"].items()}
    row["baselines"][ONE_N].update(
        {k: v for k, v in diagnostics(equal, equal).items() if k in ("turnover_annual", "effective_assets")})
    row["contribution"] = {s: float(path.pnl[i] / config.initial_capital) for i, s in enumerate(market.symbols)}
    row["mean_weight"] = {s: float(path.held[:-1, i].mean()) for i, s in enumerate(market.symbols)}
    row["signal_weights"] = {s: float(path.held[-1, i]) for i, s in enumerate(market.symbols)}
    row["signal_weights"][CASH] = float(path.held[-1, -1])
    dates = result["dates"]
    row.update(assets=len(market.symbols), test_start=str(dates[0]), test_end=str(dates[-1]), days=len(dates),
               chosen_member=chosen, members=len(result["paths"]))
    if result["validation_scores"] is not None:
        row["val_log_return"] = float(result["validation_scores"][chosen])
    if len(result["paths"]) > 1:
        member_metrics = [path_metrics(config, p, prices, result["targets"][m]) for m, p in enumerate(result["paths"])]
        for name in ("total_return", "sharpe", "max_drawdown"):
            values = np.array([m[name] for m in member_metrics])
            row[f"{name}_mean"], row[f"{name}_sd"] = float(values.mean()), float(values.std(ddof=1))
            row[f"{name}_min"], row[f"{name}_max"] = float(values.min()), float(values.max())
    return row


def equity_frame(dates, path: accounting.Path, equal: accounting.Path) -> pd.DataFrame:
    return pd.DataFrame({
        "date": pd.to_datetime(dates).strftime("%Y-%m-%d"), "symbol": PORTFOLIO, "open": np.nan, "close": np.nan,
        "position": _invested(path), "equity": path.equity, "benchmark_equity": equal.equity,
    }, columns=EQUITY_COLUMNS)


def weights_frame(dates, symbols, path: accounting.Path) -> pd.DataFrame:
    """Long table of the weights held after each fill (the last row: the next session's target)."""
    names = [*symbols, CASH]
    day = np.repeat(pd.to_datetime(dates).strftime("%Y-%m-%d"), len(names))
    return pd.DataFrame({"date": day, "symbol": np.tile(names, len(dates)), "weight": path.held.reshape(-1)})


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.15g")


def write_evaluation(out_dir: Path, config: TrainConfig, market: Any, result: dict[str, Any]) -> dict[str, dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen, dates = result["chosen"], result["dates"]
    equal = result["baselines"][ONE_N]
    headline = {PORTFOLIO: headline_metrics(config, market, result)}
    atomic_write_text(out_dir / "equity.csv", _csv(equity_frame(dates, result["paths"][chosen], equal)))
    atomic_write_text(out_dir / "weights.csv", _csv(weights_frame(dates, market.symbols, result["paths"][chosen])))
    baseline_rows = pd.concat([pd.DataFrame({"date": pd.to_datetime(dates).strftime("%Y-%m-%d"), "baseline": name,
                                             "equity": p.equity}) for name, p in result["baselines"].items()],
                              ignore_index=True)
    atomic_write_text(out_dir / "baselines.csv", _csv(baseline_rows))
    atomic_write_json(out_dir / "metrics.json", headline)
    atomic_write_json(out_dir / "selection.json", result["selection"])
    if len(result["paths"]) > 1:
        table = pd.concat([equity_frame(dates, p, equal).assign(member=m) for m, p in enumerate(result["paths"])],
                          ignore_index=True)[["date", "symbol", "member", "position", "equity"]]
        atomic_write_text(out_dir / "members.csv", _csv(table))
        atomic_write_json(out_dir / "members.json", {
            str(m): {PORTFOLIO: path_metrics(config, p, result["prices"], result["targets"][m])}
            for m, p in enumerate(result["paths"])})
    return headline
