"""Walk-forward evaluation: K rolling-origin folds, each a complete run on the history up to the
end of its own test block (docs/evaluation.md).

The last K blocks of `test_days` days of every symbol are the folds' test blocks, oldest first (in
portfolio mode, the last K blocks of the universe's calendar: one account, one split).
Fold k sees the history up to the end of its test block only, split as usual into
train | embargo | validation | embargo | test, so no fold ever trains, validates or selects on a
day it is tested on (and nothing after its test block exists for it). Results per fold are the
folds' own run directories (`<id>-fold<k>`); the pooled result concatenates the folds' test days
in time order: a test period K times as long, every day of it out of sample.

  walkforward/<id>/summary.json   folds (run ids, date ranges), per-fold and pooled metrics
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.config import TrainConfig
from evorl_core.data import DataError, build_market, load_frames, rows_needed
from evorl_core.data.panel import build_panel, load_universe
from evorl_core.evaluation.portfolio import ONE_N
from evorl_core.evaluation.significance import EXCESS_LEVEL, verdict
from evorl_core.evaluation.stats import mean_test, sharpe_confidence_interval
from evorl_core.metrics import buy_and_hold_metrics, compute_metrics
from evorl_core.store.atomic import RunDirError, atomic_write_json, read_json
from evorl_core.store.rundir import new_run_id, validate_run_id
from evorl_core.training import pipeline

WALKFORWARD_DIR = "walkforward"


def _calendar(frames: dict[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """The union of the frames' trading days (a portfolio's calendar)."""
    return pd.DatetimeIndex(sorted(set().union(*(df.index for df in frames.values()))))


def fold_frames(frames: dict[str, pd.DataFrame], folds: int, test_days: int, k: int,
                calendar: bool = False) -> dict[str, pd.DataFrame]:
    """The history fold k (0 = oldest) may see: everything up to the end of its test block; with
    `calendar` (portfolio mode) the blocks are the universe calendar's days, and a symbol listed
    after the fold's last day is not in it."""
    cut = (folds - 1 - k) * test_days
    if not cut:
        return dict(frames)
    if not calendar:
        return {s: df.iloc[: len(df) - cut] for s, df in frames.items()}
    last = _calendar(frames)[-1 - cut]
    kept = {s: df[df.index <= last] for s, df in frames.items()}
    return {s: df for s, df in kept.items() if len(df) >= 2}


def check_folds(frames: dict[str, pd.DataFrame], config: TrainConfig, folds: int) -> None:
    """Every symbol (portfolio mode: the universe's calendar) has enough history for the oldest fold
    (one line naming the symbol otherwise)."""
    if folds < 2:
        raise DataError(f"folds: give at least 2 (got {folds})")
    need = rows_needed(config.window, config.test_days, config.val_days, config.embargo) + (folds - 1) * config.test_days
    if config.mode == "portfolio":
        days = len(_calendar(frames))
        if days < need:
            raise DataError(f"folds: {folds} folds of {config.test_days} test days need {need} days of the "
                            f"universe's calendar; it has {days}")
        return
    short = [f"{s} has {len(df)} rows" for s, df in frames.items() if len(df) < need]
    if short:
        raise DataError(f"folds: {folds} folds of {config.test_days} test days need {need} rows per symbol; "
                        + ", ".join(short))


def pooled_metrics(fold_equity: list[pd.DataFrame], config: TrainConfig,
                   benchmark: str = "buy & hold") -> dict[str, dict[str, Any]]:
    """Per symbol: metrics of the folds' test days chained in time order (each fold's daily returns
    in turn, starting from the initial capital), for the agent and for `benchmark` (the bh_ metrics:
    buy & hold, or 1/N rebalanced for a portfolio's account, its rows' benchmark_equity); the Sharpe ratio's
    bootstrap interval and the excess test over buy & hold on the pooled daily returns, and a verdict
    (the timing test needs one continuous run of positions, which folds are not: each fold's own
    verdict has it)."""
    out: dict[str, dict[str, Any]] = {}
    symbols = fold_equity[0]["symbol"].unique()
    for symbol in symbols:
        returns, bench, positions, dates = [], [], [], []
        for frame in fold_equity:
            rows = frame[frame.symbol == symbol]
            equity = rows["equity"].to_numpy(np.float64)
            bh = rows["benchmark_equity"].to_numpy(np.float64)
            returns.append(equity[1:] / equity[:-1])
            bench.append(bh[1:] / bh[:-1])
            positions.append(rows["position"].to_numpy(np.float64)[:-1])
            dates.append(rows["date"].astype(str).to_numpy())
        growth = np.concatenate(returns)
        equity = config.initial_capital * np.concatenate([[1.0], np.cumprod(growth)])
        bh_equity = config.initial_capital * np.concatenate([[1.0], np.cumprod(np.concatenate(bench))])
        held = np.concatenate([*positions, [0.0]])  # the last decision is a signal, not held
        agent = compute_metrics(equity, held)
        bh = buy_and_hold_metrics(bh_equity)
        out[str(symbol)] = {**agent, **{f"bh_{k}": v for k, v in bh.items()}, "days": int(len(growth)),
                            "first_test_day": str(dates[0][0]), "last_test_day": str(dates[-1][-1]),
                            **pooled_significance(growth - 1.0, np.concatenate(bench) - 1.0, config.seed, benchmark)}
    return out


def pooled_significance(returns: np.ndarray, bench_returns: np.ndarray, seed: int,
                        benchmark: str = "buy & hold") -> dict[str, Any]:
    """The pooled folds' Sharpe interval, excess over buy & hold (mean daily difference, annualised,
    with its interval and two-sided p-value, as `significance.excess_test`) and the verdict's words."""
    out: dict[str, Any] = dict(sharpe_confidence_interval(returns, seed=seed))
    if len(returns) < 3:
        return {**out, "verdict": f"too few pooled days to compare with {benchmark}"}
    res = mean_test(returns - bench_returns, seed=seed)
    out.update(excess_mean_annual=res["mean"], excess_ci_low=res["ci_low"], excess_ci_high=res["ci_high"],
               excess_p_value=res["p_value"])
    words = verdict(out, {}, EXCESS_LEVEL, benchmark=benchmark)[0].split("; ")[0]  # the excess half, as a run's
    skill = "allocation skill" if benchmark == ONE_N else "timing"
    out["verdict"] = f"{words}; {skill}: see each fold (pooled folds are no one continuous run)"
    return out


def run_walkforward(config: TrainConfig, folds: int, runs_dir: str | Path = "runs", wf_id: str | None = None,
                    cache_dir: str | Path = "data_cache", frames: dict[str, pd.DataFrame] | None = None,
                    info: dict | None = None, progress=None, log=None) -> dict[str, Any]:
    """Train and evaluate `folds` rolling-origin folds; returns (and writes) the summary."""
    config = config.validated()
    wf_id = validate_run_id(wf_id or new_run_id("wf"))
    out_dir = Path(runs_dir) / WALKFORWARD_DIR / wf_id
    if (out_dir / "summary.json").exists():
        raise RunDirError(f"walk-forward {wf_id!r} already exists in {out_dir.parent}")
    portfolio = config.mode == "portfolio"
    skipped: dict[str, str] = {}
    if frames is None and portfolio:
        frames, info, skipped = load_universe(config, cache_dir)
    elif frames is None:
        frames, info = load_frames(config.data, config.symbols, cache_dir=cache_dir, seed=config.seed,
                                   price_adjustment=config.price_adjustment)
    check_folds(frames, config, folds)
    summary: dict[str, Any] = {"id": wf_id, "folds": folds, "config": config.to_dict(), "created_at": time.time(),
                               "data_info": info, "runs": [], "per_fold": [], "state": "running"}
    atomic_write_json(out_dir / "summary.json", summary)
    fold_equity = []
    for k in range(folds):
        seen = fold_frames(frames, folds, config.test_days, k, calendar=portfolio)
        if portfolio:
            market = build_panel(seen, config.window, config.test_days, val_days=config.val_days,
                                 embargo_days=config.embargo, execution=config.execution, info=info, skipped=skipped)
            ranges = {"PORTFOLIO": market.calendar_split()}
        else:
            market = build_market(seen, config.window, config.test_days, info=info, val_days=config.val_days,
                                  embargo_days=config.embargo)
            ranges = {s: market.split_dates(i) for i, s in enumerate(market.symbols)}
        run_id = f"{wf_id}-fold{k + 1}"
        first = next(iter(ranges.values()))
        if log:
            log(f"fold {k + 1}/{folds}: test {first['test_start']} .. {first['last']}")
        run = pipeline.run(config, runs_dir, run_id, market=market, progress=progress)
        state = (run.read_status() or {}).get("state")
        if state != "done":
            summary["state"] = state
            atomic_write_json(out_dir / "summary.json", summary)
            raise RunDirError(f"fold {k + 1} ended {state}; see {run.path}")
        fold_equity.append(run.read_equity())
        summary["runs"].append(run_id)
        summary["per_fold"].append({
            "fold": k + 1, "run_id": run_id,
            "date_ranges": ranges,
            "metrics": run.read_backtest_metrics(),
        })
        atomic_write_json(out_dir / "summary.json", summary)
    summary["benchmark"] = ONE_N if portfolio else "buy & hold"
    summary["pooled"] = pooled_metrics(fold_equity, config, summary["benchmark"])
    summary["state"] = "done"
    summary["finished_at"] = time.time()
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def list_walkforwards(runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    root = Path(runs_dir) / WALKFORWARD_DIR
    if not root.is_dir():
        return []
    found = [read_json(p / "summary.json") for p in sorted(root.iterdir()) if p.is_dir()]
    return sorted((s for s in found if isinstance(s, dict)), key=lambda s: s.get("created_at", 0), reverse=True)
