"""Portfolio learning on a planted cross-sectional signal, over seeds: power (share of trained
agents whose verdict says "beats 1/N") and the share of the oracle allocator's excess log return
over 1/N that they reach.

The universe (`planted_universe_frames`): each asset's next intraday return is tilted by +-tilt
by the sign of its own last intraday return, which the agent sees as a feature; 1/N earns nothing
from it. The oracle allocator is the causal rule that knows the planted structure: equal weight
over the assets whose last intraday return was positive.

    python benchmarks/portfolio_learning.py --seeds 5 --out docs/bench/portfolio-learning.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evorl_core.config import make_config  # noqa: E402
from evorl_core.data.panel import build_panel  # noqa: E402
from evorl_core.data.synthetic import planted_universe_frames  # noqa: E402
from evorl_core.evaluation import portfolio as pe  # noqa: E402
from evorl_core.training import pipeline  # noqa: E402


def oracle_targets(prices) -> np.ndarray:
    open_, close, _ = prices
    up = np.log(close / open_) > 0  # [N, T]: known at each close
    out = np.zeros((close.shape[1], close.shape[0] + 1))
    count = up.sum(axis=0)
    out[:, :-1] = np.where(count[:, None] > 0, up.T / np.maximum(count[:, None], 1), 0.0)
    out[count == 0, -1] = 1.0
    return out


def one(seed: int, steps: int, assets: int, tilt: float) -> dict:
    frames = planted_universe_frames(n_assets=assets, n_days=1500, tilt=tilt, seed=seed)
    config = make_config("quick", mode="portfolio", symbols=tuple(frames), data="synthetic", test_days=250,
                         val_days=0, window=4, total_timesteps=steps, cost_model="flat", fee_bps=1.0,
                         slippage_bps=0.0, rebalance_band=0.0, seed=seed)
    market = build_panel(frames, config.window, config.test_days, execution=config.execution,
                         info={"source": "planted", "synthetic": True})
    t0 = time.time()
    with tempfile.TemporaryDirectory() as runs:
        run = pipeline.run(config, runs, "planted", market=market)
        metrics = run.read_backtest_metrics()["PORTFOLIO"]
        equity = run.read_equity()
    prices = market.prices(int(market.data.test_start), config.test_days)
    oracle = pe._run(config, prices, oracle_targets(prices))
    ew = equity["benchmark_equity"].to_numpy()
    agent_excess = float(np.log(equity["equity"].iloc[-1] / equity["equity"].iloc[0] / (ew[-1] / ew[0])))
    oracle_excess = float(np.log(oracle.equity[-1] / oracle.equity[0] / (ew[-1] / ew[0])))
    return {"seed": seed, "seconds": time.time() - t0, "agent_excess_log": agent_excess,
            "oracle_excess_log": oracle_excess, "share_of_oracle": agent_excess / oracle_excess,
            "beats_1n": metrics["verdict"].startswith("beats 1/N"), "verdict": metrics["verdict"],
            "distance_from_1n": metrics["distance_from_1n"], "turnover_annual": metrics["turnover_annual"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300_000)
    ap.add_argument("--assets", type=int, default=10)
    ap.add_argument("--tilt", type=float, default=0.004)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = []
    for seed in range(args.seeds):
        rows.append(one(seed, args.steps, args.assets, args.tilt))
        r = rows[-1]
        print(f"seed {seed}: excess {r['agent_excess_log']:+.3f} vs oracle {r['oracle_excess_log']:+.3f} "
              f"({r['share_of_oracle']:.0%}); {r['verdict']}", flush=True)
    power = float(np.mean([r["beats_1n"] for r in rows]))
    share = float(np.median([r["share_of_oracle"] for r in rows]))
    result = {"seeds": args.seeds, "steps": args.steps, "assets": args.assets, "tilt": args.tilt, "preset": "quick",
              "power_beats_1n": power, "share_of_oracle_median": share, "runs": rows}
    print(f"power (beats 1/N): {power:.0%}; median share of the oracle's excess: {share:.0%}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
