"""Evaluation of a trained policy: the greedy policy on each symbol's held-out test days.

The accounting and the metrics are `backtest` (NumPy, exact, docs/accounting.md); the statistics
are `stats`. This module runs the policy, applies the accounting and writes
`backtest/equity.csv` and `backtest/metrics.json` of the run-directory contract. A re-backtest
(`run_backtest`) never reads a day the run saw in training or validation and never overwrites
`backtest/`: it writes `rebacktests/<timestamp>-<source>/` (or a new `out_dir`).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from .backtest import backtest_rows, buy_and_hold, compute_metrics, cost_metrics, equity_curve
from .checkpoints import load_params
from .config import TrainConfig
from .costs import cost_model
from .data import Market, load_market
from .ppo import PPO
from .rundir import RunDir, RunDirError, atomic_write_json, atomic_write_text
from .stats import sharpe_confidence_interval

REBACKTESTS = "rebacktests"  # runs/<id>/rebacktests/<timestamp>-<source>/: one folder per re-backtest


class LeakError(ValueError):
    """A re-backtest's test days overlap the days a run was trained or validated on."""


def backtest_policy(config: TrainConfig, params: Any, market: Market) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Greedy policy on each symbol's last `test_days` days -> (equity frame, metrics per symbol)."""
    ppo = PPO(config, market.data.features.shape[-1])
    n = market.test_days
    start = market.data.test_start
    positions = np.asarray(jax.jit(ppo.greedy_positions, static_argnums=3)(params, market.data, start, n),
                           dtype=np.float64)
    rows, metrics = [], {}
    costs = cost_model(config)
    for s, symbol in enumerate(market.symbols):
        t0 = int(start[s])
        frame = market.frames[symbol]
        open_ = frame["open"].to_numpy(np.float64)[t0:t0 + n]
        close = frame["close"].to_numpy(np.float64)[t0:t0 + n]
        dates = market.dates[s][t0:t0 + n]
        equity = equity_curve(open_, close, positions[s], costs, config.execution, config.initial_capital)
        bench = buy_and_hold(open_, close, costs, config.execution, config.initial_capital)
        m = {**compute_metrics(equity, positions[s]),
             **cost_metrics(open_, close, positions[s], costs, config.execution, config.initial_capital),
             **sharpe_confidence_interval(equity[1:] / equity[:-1] - 1.0, seed=config.seed)}
        bh = compute_metrics(bench, np.ones(n))
        metrics[symbol] = {**m, **{f"bh_{k}": v for k, v in bh.items()},
                           "test_start": str(dates[0]), "test_end": str(dates[-1]), "days": n}
        rows.append(backtest_rows(dates, symbol, open_, close, positions[s], equity, bench))
    return pd.concat(rows, ignore_index=True), metrics


def write_backtest(out_dir: Path, frame: pd.DataFrame, metrics: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.15g")
    atomic_write_text(out_dir / "equity.csv", text)
    atomic_write_json(out_dir / "metrics.json", metrics)


def stored_normalisation(stored: dict, symbols) -> tuple[np.ndarray, np.ndarray]:
    """The training-range feature statistics a run recorded in config.json, for `symbols`."""
    norm = stored["normalization"]
    missing = [s for s in symbols if s not in norm]
    if missing:
        raise ValueError(f"the run was not trained on {', '.join(missing)}; it knows {', '.join(norm)}")
    mean = np.array([norm[s]["mean"] for s in symbols], dtype=np.float64)
    std = np.array([norm[s]["std"] for s in symbols], dtype=np.float64)
    return mean, std


def evaluate_run(run: RunDir, market: Market) -> dict[str, dict]:
    """Backtest a trained run on `market` (built with the run's own normalisation) into its backtest/."""
    config = TrainConfig.from_dict(run.read_config())
    params = load_params(run, config, market.data.features.shape[-1])
    frame, metrics = backtest_policy(config, params, market)
    write_backtest(run.backtest_dir, frame, metrics)
    return metrics


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
        raise LeakError("refused, a backtest must not test on days the run learned from: " + "; ".join(problems))


def rebacktest_dir(run: RunDir, source: str) -> Path:
    """A new folder `rebacktests/<YYYYmmdd-HHMMSS>-<source>/` of the run (never an existing one)."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', source).strip('-.')[:40] or 'data'}"
    path, i = run.path / REBACKTESTS / name, 2
    while path.exists():
        path, i = run.path / REBACKTESTS / f"{name}-{i}", i + 1
    return path


def run_backtest(run: RunDir | str | Path, market: Market | None = None, out_dir: Path | None = None,
                 data: str | None = None, test_days: int | None = None,
                 cache_dir: str = "data_cache") -> dict[str, dict]:
    """Re-run the backtest of a trained run (optionally on another data source / test length).

    Feature normalisation always uses the statistics stored with the run (its training range).
    Refused (LeakError) when a test window overlaps the run's training or validation days. Written
    to `out_dir` (a new folder; never the run's own `backtest/`), by default
    `rebacktest_dir(run, source)`, with `rebacktest.json` recording the data and windows used.
    """
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    stored = run.read_config()
    if stored is None:
        raise RunDirError(f"{run.path}: no config.json; is this a run directory?")
    if not run.has_checkpoint():
        raise RunDirError(f"{run.path}: no checkpoint/state.msgpack; the run has no trained state")
    config = TrainConfig.from_dict(stored)
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
    params = load_params(run, config, market.data.features.shape[-1])
    frame, metrics = backtest_policy(config, params, market)
    write_backtest(out_dir, frame, metrics)
    atomic_write_json(out_dir / "rebacktest.json", {
        "run": run.run_id, "data": config.data, "test_days": config.test_days, "created": time.time(),
        "data_info": market.info, "data_hash": market.data_hash,
        "windows": {sym: {"test_start": m["test_start"], "test_end": m["test_end"],
                          "last_seen": last_seen_day((stored.get("date_ranges") or {}).get(sym) or {})}
                    for sym, m in metrics.items()},
    })
    return metrics
