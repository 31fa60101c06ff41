"""PBT against fixed hyperparameters on the planted-signal market, with a deliberately poor
initial learning-rate range (docs/evolution.md).

Both arms train the same population (same seeds, same first generation: learning rates drawn
log-uniformly from 1e-6 .. 3e-6, far too small to learn in the budget):
- fixed: no exploit/explore round ever happens (interval beyond the run): N fixed-hyperparameter runs;
- PBT:   a round every few updates; explore may resample the learning rate within the search
         range 1e-6 .. 3e-3.
Reported: each arm's held-out log return of the member chosen on validation days, and of the
median fixed member, as fractions of the oracle's ("long after an up day"). Writes JSON.

    python benchmarks/pbt_planted.py [--population 8] [--timesteps 400000] [--out bench-results/pbt_planted.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from evorl_core.config import make_config
from evorl_core.costs import cost_model
from evorl_core.data import build_market, planted_signal_frames
from evorl_core.modes.single.accounting import equity_curve
from evorl_core.training import pipeline

SYMBOLS = ("UPDOWN1", "UPDOWN2")
TEST_DAYS, VAL_DAYS, WINDOW = 120, 60, 8


def oracle_log_return(frames, config) -> float:
    total = 0.0
    for df in frames.values():
        test = df.iloc[-TEST_DAYS:]
        open_, close = test["open"].to_numpy(), test["close"].to_numpy()
        equity = equity_curve(open_, close, (close > open_).astype(float), cost_model(config), config.execution,
                              config.initial_capital)
        total += np.log(equity[-1] / config.initial_capital)
    return float(total)


def member_log_returns(run, members: int) -> list[float]:
    """Each member's held-out log return summed over the symbols (backtest/members.json)."""
    per_member = json.loads((run.backtest_dir / "members.json").read_text())
    return [float(sum(np.log1p(m["total_return"]) for m in per_member[str(k)].values())) for k in range(members)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=400_000, help="env steps per member")
    parser.add_argument("--interval", type=int, default=4, help="updates between PBT rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-results/pbt_planted.json")
    args = parser.parse_args()

    frames = planted_signal_frames(SYMBOLS)
    base = dict(symbols=SYMBOLS, data="synthetic", test_days=TEST_DAYS, val_days=VAL_DAYS, window=WINDOW,
                total_timesteps=args.timesteps, cost_model="flat", fee_bps=1.0, slippage_bps=0.0, seed=args.seed,
                population=args.population, evolve=("lr",), init_space="lr=1e-6:3e-6",
                search_space="lr=1e-6:3e-3", pbt_resample=0.25)
    result = {"population": args.population, "timesteps_per_member": args.timesteps, "symbols": SYMBOLS,
              "test_days": TEST_DAYS, "val_days": VAL_DAYS, "init_lr_range": [1e-6, 3e-6],
              "search_lr_range": [1e-6, 3e-3], "interval": args.interval}
    with tempfile.TemporaryDirectory() as tmp:
        for arm, interval in (("fixed", 10**6), ("pbt", args.interval)):
            config = make_config("quick", **base, pbt_interval=interval)
            market = build_market(frames, WINDOW, TEST_DAYS, val_days=VAL_DAYS, embargo_days=config.embargo,
                                  info={"source": "planted", "synthetic": True})
            oracle = oracle_log_return(frames, config)
            t0 = time.perf_counter()
            run = pipeline.run(config, tmp, arm, market=market)
            seconds = time.perf_counter() - t0
            chosen = json.loads((run.backtest_dir / "selection.json").read_text())["chosen_member"]
            returns = member_log_returns(run, args.population)
            lineage = run.read_population("lineage")
            final_lr = [r["lr"] for r in run.read_population("hyperparams") if r["round"] == max(
                x["round"] for x in run.read_population("hyperparams"))]
            result[arm] = {
                "seconds": seconds, "oracle_log_return": oracle, "chosen_member": chosen,
                "chosen_fraction_of_oracle": returns[chosen] / oracle,
                "median_member_fraction_of_oracle": float(np.median(returns)) / oracle,
                "member_fractions_of_oracle": [r / oracle for r in returns],
                "exploit_events": len(lineage), "final_lr": final_lr,
            }
            print(f"{arm:>5}: chosen member {chosen} reaches {returns[chosen] / oracle:.1%} of the oracle "
                  f"({returns[chosen]:.3f} of {oracle:.3f}), median member {np.median(returns) / oracle:.1%}; "
                  f"{len(lineage)} exploit events, {seconds:.0f} s", flush=True)
    result["pbt_meets_80"] = result["pbt"]["chosen_fraction_of_oracle"] >= 0.8
    result["fixed_median_meets_80"] = result["fixed"]["median_member_fraction_of_oracle"] >= 0.8
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
