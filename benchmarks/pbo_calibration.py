"""Calibration of the probability of backtest overfitting (evorl_core.evaluation.pbo).

Each market is a daily price path of `--days` test days; each of `--candidates` candidates trades
it with positions in {0, 0.5, 1} (next-open execution, 10 bps a side, the single-asset accounting),
the way a population's members or seeds would.

- null: the price is a random walk (Student-t steps, 1% daily) and every candidate is a skill-less
  rule: a random position held for a random number of days. Choosing the best of them in sample is
  choosing noise, so PBO should sit near 0.5 or above.
- planted: tomorrow's open-to-close return is tilted by 0.6% times the sign of a signal visible at
  today's close, so a position taken at the next open earns it. Half the candidates follow the signal through
  noise of different strength (some reliable, some barely), half are skill-less as above. Selection
  in sample then carries over, so PBO should be low.

    python benchmarks/pbo_calibration.py --markets 200 --out docs/bench/pbo-calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evorl_core.evaluation.pbo import pbo  # noqa: E402
from evorl_core.modes.single.accounting import equity_curve  # noqa: E402

COST = 0.001
LEVELS = np.array([0.0, 0.5, 1.0])


def _prices(rng, days: int, tilt: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    steps = 0.01 * rng.standard_t(5, days) / np.sqrt(5 / 3)
    if tilt is not None:
        steps = steps + tilt
    gaps = 0.002 * rng.standard_normal(days)  # overnight; the day's step is open to close
    close = 100 * np.exp(np.cumsum(gaps + steps))
    open_ = close * np.exp(-steps)
    return open_, close


def _random_rule(rng, days: int) -> np.ndarray:
    out, t = np.empty(days), 0
    while t < days:
        hold = int(rng.integers(1, 20))
        out[t:t + hold] = rng.choice(LEVELS)
        t += hold
    return out


def _returns(open_, close, positions) -> np.ndarray:
    eq = equity_curve(open_, close, positions, COST, "next_open")
    return eq[1:] / eq[:-1] - 1.0


def market(rng, days: int, candidates: int, planted: bool) -> np.ndarray:
    """[candidates, days - 1] daily returns of the candidates on one market."""
    signal = rng.choice([-1.0, 1.0], days)  # visible at the close of day t, tilts day t + 1
    tilt = np.concatenate([[0.0], 0.006 * signal[:-1]]) if planted else None
    open_, close = _prices(rng, days, tilt)
    rows = []
    for c in range(candidates):
        if planted and c < candidates // 2:
            reliability = 0.55 + 0.4 * c / max(candidates // 2 - 1, 1)  # 55% .. 95% of days read right
            read = np.where(rng.random(days) < reliability, signal, -signal)
            rows.append(_returns(open_, close, np.where(read > 0, 1.0, 0.0)))
        else:
            rows.append(_returns(open_, close, _random_rule(rng, days)))
    return np.array(rows)


def summary(values: list[float]) -> dict:
    v = np.asarray(values)
    return {"mean": float(v.mean()), "median": float(np.median(v)), "sd": float(v.std(ddof=1)),
            "share_at_least_0.5": float(np.mean(v >= 0.5)), "share_below_0.1": float(np.mean(v < 0.1)),
            "min": float(v.min()), "max": float(v.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--days", type=int, default=250)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    results = {}
    for kind in ("null", "planted"):
        values = [pbo(market(rng, args.days, args.candidates, kind == "planted"), args.blocks)["pbo"]
                  for _ in range(args.markets)]
        results[kind] = summary(values)
        r = results[kind]
        print(f"{kind:>8}: PBO mean {r['mean']:.3f}, median {r['median']:.3f} (sd {r['sd']:.3f}); "
              f">= 0.5 in {r['share_at_least_0.5']:.0%} of markets, < 0.1 in {r['share_below_0.1']:.0%}")
    out = {"benchmark": "pbo_calibration", "command": "python benchmarks/pbo_calibration.py " + " ".join(argv or sys.argv[1:]),
           "markets": args.markets, "days": args.days, "candidates": args.candidates, "blocks": args.blocks,
           "seed": args.seed, "cost_per_side": COST, "seconds": round(time.time() - t0, 1), **results}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
