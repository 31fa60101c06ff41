"""Evaluation of trained agents: their greedy policies on validation and held-out test days.

The accounting is the mode's (`modes.get(config).accounting`, NumPy, exact, docs/accounting.md), the metrics `metrics`; the statistics
are `stats`. Selection (which member of a population / which seed is reported and deployed) looks
at validation days only; the test days are evaluated once and reported for every member, so the
spread is visible (docs/evaluation.md). Files of the run-directory contract:

  backtest/equity.csv      the chosen agent: date,symbol,open,close,position,equity,benchmark_equity
  backtest/metrics.json    the chosen agent: {symbol: {metric: value}}, with the members' spread
  backtest/selection.json  how the agent was chosen: criterion, validation scores per member
  backtest/members.csv     several agents: date,symbol,member,position,equity (test days)
  backtest/members.json    several agents: {member: {symbol: {metric: value}}} (test days)

A re-backtest (`run_backtest`) never reads a day the run saw in training or validation and never
overwrites `backtest/`: it writes `rebacktests/<timestamp>-<source>/` (or a new `out_dir`).
"""

from __future__ import annotations

import dataclasses
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from evorl_core import modes
from evorl_core.agents.build import make_ppo
from evorl_core.agents.checkpoints import load_params
from evorl_core.agents.precision import EVALUATION_PRECISION
from evorl_core.config import TrainConfig
from evorl_core.costs import cost_model
from evorl_core.data import Market, load_market
from evorl_core.evaluation import portfolio
from evorl_core.evaluation.significance import count_trials, symbol_report
from evorl_core.evaluation.stats import sharpe_confidence_interval
from evorl_core.metrics import buy_and_hold_metrics, compute_metrics
from evorl_core.store.atomic import RunDirError, atomic_write_json, atomic_write_text, read_json
from evorl_core.store.rundir import RunDir

SPREAD_METRICS = ("total_return", "sharpe", "max_drawdown", "exposure", "trades")


class LeakError(ValueError):
    """A re-backtest's test days overlap the days a run was trained or validated on."""


def greedy_paths(config: TrainConfig, params: Any, market: Market, start: np.ndarray, num_days: int,
                 members: int = 1, precision: str = EVALUATION_PRECISION) -> np.ndarray:
    """[members, S, num_days] positions of the greedy policy decided at the close of days
    start[s] .. start[s] + num_days - 1, starting flat. `params` has a leading member axis when
    `members > 1`. The network computes in `precision` (float32 unless told otherwise, whatever
    the run trained in)."""
    ppo = make_ppo(config, precision=precision)
    policy = partial(modes.get(config).greedy_positions, ppo.action_probabilities, num_days=num_days, env=ppo.env)
    if members > 1:
        policy = jax.vmap(policy, in_axes=(0, None, None))
    paths = np.asarray(jax.jit(policy)(params, market.data, np.asarray(start, np.int32)), dtype=np.float64)
    return paths.reshape(members, len(market.symbols), num_days)


def _window(market: Market, s: int, start: int, num_days: int):
    frame = market.frames[market.symbols[s]]
    return (market.dates[s][start:start + num_days],
            frame["open"].to_numpy(np.float64)[start:start + num_days],
            frame["close"].to_numpy(np.float64)[start:start + num_days])


def window_log_returns(config: TrainConfig, market: Market, paths: np.ndarray, start: np.ndarray,
                       num_days: int) -> np.ndarray:
    """[members, S] net log return of each member's positions over a window (the selection score)."""
    out = np.zeros(paths.shape[:2])
    costs = cost_model(config)
    accounting = modes.get(config).accounting
    for s in range(len(market.symbols)):
        _, open_, close = _window(market, s, int(start[s]), num_days)
        for m in range(paths.shape[0]):
            equity = accounting.equity_curve(open_, close, paths[m, s], costs, config.execution, config.initial_capital)
            out[m, s] = float(np.log(equity[-1] / config.initial_capital))
    return out


def _test_results(config: TrainConfig, market: Market, paths: np.ndarray):
    """Per member: equity frame rows and metrics per symbol on the test days."""
    n, start = market.test_days, np.asarray(market.data.test_start)
    costs = cost_model(config)
    accounting = modes.get(config).accounting
    frames, metrics = [], []
    for m in range(paths.shape[0]):
        rows, per_symbol = [], {}
        for s, symbol in enumerate(market.symbols):
            dates, open_, close = _window(market, s, int(start[s]), n)
            positions = paths[m, s]
            equity = accounting.equity_curve(open_, close, positions, costs, config.execution, config.initial_capital)
            bench = accounting.buy_and_hold(open_, close, costs, config.execution, config.initial_capital)
            row = {**compute_metrics(equity, positions),
                   **accounting.cost_metrics(open_, close, positions, costs, config.execution, config.initial_capital),
                   **sharpe_confidence_interval(equity[1:] / equity[:-1] - 1.0, seed=config.seed)}
            bh = buy_and_hold_metrics(bench)
            per_symbol[symbol] = {**row, **{f"bh_{k}": v for k, v in bh.items()},
                                  "test_start": str(dates[0]), "test_end": str(dates[-1]), "days": n}
            rows.append(accounting.backtest_rows(dates, symbol, open_, close, positions, equity, bench))
        frames.append(pd.concat(rows, ignore_index=True))
        metrics.append(per_symbol)
    return frames, metrics


def backtest_policy(config: TrainConfig, params: Any, market: Market) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Greedy policy of one agent on each symbol's last `test_days` days -> (equity frame, metrics)."""
    paths = greedy_paths(config, params, market, np.asarray(market.data.test_start), market.test_days)
    frames, metrics = _test_results(config, market, paths)
    reports = significance_reports(config, market, paths, trials=1)
    return frames[0], {symbol: {**m, **reports[symbol]} for symbol, m in metrics[0].items()}


def spread(metrics_by_member: list[dict[str, dict]], symbol: str) -> dict[str, float]:
    """Mean, sd (ddof=1), min and max over members of the headline test metrics of one symbol."""
    out: dict[str, float] = {}
    for name in SPREAD_METRICS:
        values = np.array([m[symbol][name] for m in metrics_by_member], dtype=np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        out[f"{name}_mean"] = float(values.mean())
        out[f"{name}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[f"{name}_min"], out[f"{name}_max"] = float(values.min()), float(values.max())
    return out


def evaluate(config: TrainConfig, params: Any, market: Market) -> dict[str, Any]:
    """Validation scores, the chosen member, and every member's test results.

    Returns {"chosen": k, "selection": {...}, "frames": [per member], "metrics": [per member]}.
    """
    members = config.members
    scores = None
    if market.val_days:
        val_start = np.asarray(market.data.val_start)
        val_paths = greedy_paths(config, params, market, val_start, market.val_days, members)
        scores = window_log_returns(config, market, val_paths, val_start, market.val_days)
    if scores is not None:
        chosen = int(np.argmax(scores.mean(axis=1)))
        criterion = (f"highest mean net log return over the {market.val_days} validation days "
                     f"of {len(market.symbols)} symbol(s)")
    else:
        chosen, criterion = 0, "no validation days: the first member (base seed) is reported, not selected"
    test_paths = greedy_paths(config, params, market, np.asarray(market.data.test_start), market.test_days,
                              members)
    frames, metrics = _test_results(config, market, test_paths)
    reports = significance_reports(config, market, test_paths, trials=count_trials(config))
    selection = {
        "members": members, "chosen_member": chosen, "criterion": criterion,
        "seeds": [config.seed + k for k in range(members)],
        "validation_log_return": None if scores is None else {
            str(m): {sym: float(scores[m, s]) for s, sym in enumerate(market.symbols)} for m in range(members)
        },
    }
    return {"chosen": chosen, "selection": selection, "frames": frames, "metrics": metrics,
            "validation_scores": scores, "reports": reports}


def significance_reports(config: TrainConfig, market: Market, paths: np.ndarray, trials: int) -> dict[str, dict]:
    """Per symbol: excess over buy & hold, timing skill against the exposure-matched null, the verdict
    and the baselines, pooled over members ([M, S, N] test positions), and with several trials the
    deflated Sharpe ratio of the best member (docs/evaluation.md)."""
    costs = cost_model(config)
    # the statistics run the accounting from an account of 1: the flat sell-day charge is scaled to it
    relative = dataclasses.replace(costs, sell_day_charge_rupees=costs.sell_day_charge_rupees / config.initial_capital)
    out = {}
    for s, symbol in enumerate(market.symbols):
        t0 = int(market.data.test_start[s])
        _, open_, close = _window(market, s, t0, market.test_days)
        prior = market.frames[symbol]["close"].to_numpy(np.float64)[:t0]
        out[symbol] = symbol_report(open_, close, paths[:, s, :], cost=relative, execution=config.execution,
                                    seed=config.seed, lookback=config.window, prior_close=prior,
                                    n_trials=trials if trials > 1 else None)
    return out


def write_backtest(out_dir: Path, frame: pd.DataFrame, metrics: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.15g")
    atomic_write_text(out_dir / "equity.csv", text)
    atomic_write_json(out_dir / "metrics.json", metrics)


def write_evaluation(out_dir: Path, result: dict[str, Any], market: Market) -> dict[str, dict]:
    """The chosen member's equity.csv and metrics.json (with the members' spread and its validation
    score), selection.json, and for several members members.csv / members.json."""
    out_dir = Path(out_dir)
    chosen, metrics = result["chosen"], result["metrics"]
    members = len(metrics)
    headline = {}
    for s, symbol in enumerate(market.symbols):
        row = dict(metrics[chosen][symbol])
        row.update(result.get("reports", {}).get(symbol, {}))
        if result["validation_scores"] is not None:
            row["val_log_return"] = float(result["validation_scores"][chosen, s])
        if members > 1:
            row.update(members=members, chosen_member=chosen, **spread(metrics, symbol))
        headline[symbol] = row
    write_backtest(out_dir, result["frames"][chosen], headline)
    atomic_write_json(out_dir / "selection.json", result["selection"])
    if members > 1:
        table = pd.concat([f.assign(member=m) for m, f in enumerate(result["frames"])], ignore_index=True)
        table = table[["date", "symbol", "member", "position", "equity"]]
        atomic_write_text(out_dir / "members.csv",
                          table.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.15g"))
        atomic_write_json(out_dir / "members.json", {str(m): metrics[m] for m in range(members)})
    return headline


def stored_normalisation(stored: dict, symbols) -> tuple[np.ndarray, np.ndarray]:
    """The training-range feature statistics a run recorded in config.json, for `symbols`."""
    norm = stored.get("normalization")
    if not isinstance(norm, dict):
        raise ValueError("config.json records no feature normalisation (the run never got past loading its data)")
    missing = [s for s in symbols if s not in norm]
    if missing:
        raise ValueError(f"the run was not trained on {', '.join(missing)}; it knows {', '.join(norm)}")
    mean = np.array([norm[s]["mean"] for s in symbols], dtype=np.float64)
    std = np.array([norm[s]["std"] for s in symbols], dtype=np.float64)
    return mean, std


def evaluate_run(run: RunDir, market: Market) -> dict[str, dict]:
    """Evaluate a trained run on `market` (built with the run's own normalisation) into its backtest/."""
    config = TrainConfig.from_dict(run.load_config())
    params = load_params(run, config)
    if config.mode == "portfolio":
        return portfolio.write_evaluation(run.backtest_dir, config, market, portfolio.evaluate(config, params, market))
    return write_evaluation(run.backtest_dir, evaluate(config, params, market), market)


def chosen_member(run: RunDir) -> int:
    """The member a run reports and deploys (0 for a single agent)."""
    return int(read_json(run.selection_path, {}, kind=dict).get("chosen_member", 0))


def last_seen_day(date_range: dict) -> str | None:
    """The last day a run saw of one symbol (YYYY-MM-DD): the later of `train_end` and `val_end`."""
    days = [date_range[k] for k in ("train_end", "val_end") if date_range.get(k)]
    return max(days) if days else None


def check_unseen(stored: dict, market: Market) -> None:
    """Raise LeakError (one line, naming the dates) when a test window of `market` starts on or
    before the last training or validation day the run recorded (config.json `date_ranges`)."""
    ranges = stored.get("date_ranges") or {}
    problems = []
    for s, symbol in enumerate(market.symbols):
        seen = last_seen_day(ranges.get(symbol) or {})
        if seen is None:
            problems.append(f"{symbol}: the run records no training dates (config.json date_ranges), so "
                            "unseen test days cannot be checked")
            continue
        dates = market.dates[s]
        first, last = str(dates[int(market.data.test_start[s])]), str(dates[-1])
        if first <= seen:
            unseen = int(np.sum(dates.astype(str) > seen))
            problems.append(f"{symbol}: test days {first}..{last} overlap the run's training/validation days "
                            f"(up to {seen}); at most {unseen} test days of this data are unseen")
    if problems:
        raise LeakError("refused, a backtest must not test on days the run learned from:\n" + "\n".join(problems))


def rebacktest_dir(run: RunDir, source: str) -> Path:
    """A new folder `rebacktests/<YYYYmmdd-HHMMSS>-<source>/` of the run (never an existing one)."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', source).strip('-.')[:40] or 'data'}"
    path, i = run.rebacktests_dir / name, 2
    while path.exists():
        path, i = run.rebacktests_dir / f"{name}-{i}", i + 1
    return path


def run_backtest(run: RunDir | str | Path, market: Market | None = None, out_dir: Path | None = None,
                 data: str | None = None, test_days: int | None = None,
                 cache_dir: str = "data_cache") -> dict[str, dict]:
    """Re-run the backtest of a trained run's chosen agent (optionally on another data source / test length).

    Feature normalisation always uses the statistics stored with the run (its training range).
    Refused (LeakError) when a test window overlaps the run's training or validation days. Written
    to `out_dir` (a new folder; never the run's own `backtest/`), by default
    `rebacktest_dir(run, source)`, with `rebacktest.json` recording the data and windows used.
    """
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    stored = run.load_config()
    if not run.has_checkpoint():
        raise RunDirError(f"{run.path}: no checkpoint/state.msgpack; the run has no trained state")
    try:
        config = TrainConfig.from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{run.config_path}: {exc}") from None
    changes = {}
    if data is not None:
        changes["data"] = data
    if test_days is not None:
        changes["test_days"] = test_days
    config = config.replace(**changes).validated()
    out_dir = Path(out_dir) if out_dir is not None else rebacktest_dir(run, config.data)
    if out_dir.resolve() == run.backtest_dir.resolve():
        raise RunDirError(f"--out {out_dir}: that is the run's own backtest/; a re-backtest never overwrites it")
    if (out_dir / "metrics.json").exists():
        raise RunDirError(f"--out {out_dir}: already holds a backtest; choose a new folder")
    if market is None:
        market = load_market(config, cache_dir=cache_dir, norm=stored_normalisation(stored, config.symbols))
    check_unseen(stored, market)
    params = load_params(run, config, member=chosen_member(run))
    frame, metrics = backtest_policy(config.replace(seeds=1, population=1), params, market)
    write_backtest(out_dir, frame, metrics)
    atomic_write_json(out_dir / "rebacktest.json", {
        "run": run.run_id, "data": config.data, "test_days": config.test_days, "created": time.time(),
        "data_info": market.info, "data_hash": market.data_hash,
        "windows": {sym: {"test_start": m["test_start"], "test_end": m["test_end"],
                          "last_seen": last_seen_day((stored.get("date_ranges") or {}).get(sym) or {})}
                    for sym, m in metrics.items()},
    })
    return metrics
