"""Evaluation of a trained policy: the greedy policy on each symbol's held-out test days.

The accounting and the metrics are `backtest` (NumPy, exact, docs/accounting.md); the statistics
are `stats`. This module runs the policy, applies the accounting and writes
`backtest/equity.csv` and `backtest/metrics.json` of the run-directory contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from .backtest import backtest_rows, buy_and_hold, compute_metrics, equity_curve
from .checkpoints import load_params
from .config import TrainConfig
from .data import Market, load_market
from .ppo import PPO
from .rundir import RunDir, RunDirError, atomic_write_json, atomic_write_text
from .significance import symbol_report
from .stats import sharpe_confidence_interval


def backtest_policy(config: TrainConfig, params: Any, market: Market) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Greedy policy on each symbol's last `test_days` days -> (equity frame, metrics per symbol)."""
    ppo = PPO(config, market.data.features.shape[-1])
    n = market.test_days
    start = market.data.test_start
    positions = np.asarray(jax.jit(ppo.greedy_positions, static_argnums=3)(params, market.data, start, n),
                           dtype=np.float64)
    rows, metrics = [], {}
    for s, symbol in enumerate(market.symbols):
        t0 = int(start[s])
        frame = market.frames[symbol]
        open_ = frame["open"].to_numpy(np.float64)[t0:t0 + n]
        close = frame["close"].to_numpy(np.float64)[t0:t0 + n]
        dates = market.dates[s][t0:t0 + n]
        equity = equity_curve(open_, close, positions[s], config.cost, config.execution, config.initial_capital)
        bench = buy_and_hold(open_, close, config.cost, config.execution, config.initial_capital)
        m = {**compute_metrics(equity, positions[s]),
             **sharpe_confidence_interval(equity[1:] / equity[:-1] - 1.0, seed=config.seed)}
        bh = compute_metrics(bench, np.ones(n))
        # excess over buy & hold, timing skill, verdict, baselines (docs/evaluation.md)
        report = symbol_report(open_, close, positions[s], cost=config.cost, execution=config.execution,
                               seed=config.seed, lookback=config.window,
                               prior_close=frame["close"].to_numpy(np.float64)[:t0])
        metrics[symbol] = {**m, **{f"bh_{k}": v for k, v in bh.items()}, **report,
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


def run_backtest(run: RunDir | str | Path, market: Market | None = None, out_dir: Path | None = None,
                 data: str | None = None, test_days: int | None = None,
                 cache_dir: str = "data_cache") -> dict[str, dict]:
    """Re-run the backtest of a trained run (optionally on another data source / test length).

    Feature normalisation always uses the statistics stored with the run (its training range).
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
    if market is None:
        market = load_market(config, cache_dir=cache_dir, norm=stored_normalisation(stored, config.symbols))
    params = load_params(run, config, market.data.features.shape[-1])
    frame, metrics = backtest_policy(config, params, market)
    write_backtest(out_dir or run.backtest_dir, frame, metrics)
    return metrics
