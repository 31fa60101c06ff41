"""Calibration of portfolio mode's verdict (evorl_core.evaluation.portfolio): false claims on
universes without structure in time, power on a planted cross-sectional signal.

- null universes: a synthetic factor universe (market factor + idiosyncratic noise) whose days are
  permuted jointly: every day keeps its cross-section (correlations, volatilities), but time
  structure is destroyed, so no causal rule can beat 1/N or allocate with skill. Rules: 20-day
  momentum, 5-day reversal, inverse volatility, random Dirichlet weights, each re-chosen daily from
  past data only. A claim "beats 1/N" or "allocation skill" there is a false positive.
- planted universes (`planted_universe_frames`): each asset's next-day return is tilted by the sign
  of its own last return, visible at the close. The causal rule "equal weight over the assets whose
  last return was positive" earns the tilt; a claim of skill there is a detection (power). The
  oracle (the same rule that also knows the noise-free sign of tomorrow's tilt, i.e. the best the
  signal allows) gives the share of the oracle's excess that the rule reaches.

    python benchmarks/portfolio_calibration.py --markets 100 --out docs/bench/portfolio-calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evorl_core.config import make_config  # noqa: E402
from evorl_core.data.synthetic import factor_universe_frames, planted_universe_frames, universe_symbols  # noqa: E402
from evorl_core.evaluation import portfolio as pe  # noqa: E402
from evorl_core.modes.portfolio import accounting  # noqa: E402

HISTORY = 40  # days of history before the test window (rules read it)
TEST_DAYS = 60
ASSETS = 20


def permuted_universe(rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """open, close [N, HISTORY + TEST_DAYS] of a factor universe with its days permuted jointly."""
    days = HISTORY + TEST_DAYS + 1
    frames = factor_universe_frames(universe_symbols(ASSETS), n_days=400, seed=seed, ragged=False)
    o = np.array([f["open"].to_numpy() for f in frames.values()])
    c = np.array([f["close"].to_numpy() for f in frames.values()])
    gap = np.log(o[:, 1:] / c[:, :-1])  # overnight
    day = np.log(c[:, 1:] / o[:, 1:])  # intraday
    pick = rng.permutation(gap.shape[1])[:days - 1]  # the same day order for every asset
    gap, day = gap[:, pick], day[:, pick]
    log_close = np.concatenate([np.zeros((ASSETS, 1)), np.cumsum(gap + day, axis=1)], axis=1)
    log_open = np.concatenate([np.zeros((ASSETS, 1)), log_close[:, :-1] + gap], axis=1)
    return 100 * np.exp(log_open[:, 1:]), 100 * np.exp(log_close[:, 1:])


def planted_universe(seed: int, tilt: float) -> tuple[np.ndarray, np.ndarray]:
    frames = planted_universe_frames(n_assets=ASSETS, n_days=HISTORY + TEST_DAYS, tilt=tilt, seed=seed)
    return (np.array([f["open"].to_numpy() for f in frames.values()]),
            np.array([f["close"].to_numpy() for f in frames.values()]))


def _weights(score: np.ndarray, positive_only: bool = False) -> np.ndarray:
    w = np.maximum(score, 0.0) if positive_only else score
    total = w.sum()
    out = np.zeros(len(score) + 1)
    if total <= 0:
        out[-1] = 1.0
    else:
        out[:-1] = w / total
    return out


def rule_targets(name: str, open_: np.ndarray, close: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[TEST_DAYS, N + 1] targets decided at each test close from closes up to that day only."""
    out = []
    for k in range(HISTORY, HISTORY + TEST_DAYS):
        past = close[:, : k + 1]
        r = np.log(past[:, 1:] / past[:, :-1])
        if name == "momentum":
            w = _weights(r[:, -20:].sum(axis=1), positive_only=True)
        elif name == "reversal":
            w = _weights(-r[:, -5:].sum(axis=1), positive_only=True)
        elif name == "inverse volatility":
            w = _weights(1.0 / np.maximum(r[:, -20:].std(axis=1), 1e-6))
        elif name == "random":
            w = rng.dirichlet(np.ones(ASSETS + 1))
        elif name == "last sign":  # the planted signal's causal rule
            intraday = np.log(close[:, k] / open_[:, k])
            w = _weights((intraday > 0).astype(float))
        else:
            raise ValueError(name)
        out.append(w)
    return np.array(out)


def oracle_targets(open_: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Equal weight over the assets whose next intraday return is positive (perfect foresight)."""
    out = []
    for k in range(HISTORY, HISTORY + TEST_DAYS):
        nxt = np.log(close[:, min(k + 1, close.shape[1] - 1)] / open_[:, min(k + 1, close.shape[1] - 1)])
        out.append(_weights((nxt > 0).astype(float)))
    return np.array(out)


def claims(config, prices, targets) -> dict:
    path = pe._run(config, prices, targets)
    equal = pe._run(config, prices, accounting.equal_weight_targets(prices[2]))
    report = pe.allocation_report(config, [path], equal, prices, trials=1)
    beats = report["excess_1n_p_value"] is not None and report["excess_1n_p_value"] < pe.ALPHA \
        and report["excess_1n_mean_annual"] > 0
    skill = report["selection_p_value"] is not None and report["selection_p_value"] < pe.ALPHA / 2
    excess = float(np.log(path.equity[-1] / equal.equity[-1]))
    return {"beats": bool(beats), "skill": bool(skill), "any": bool(beats or skill), "excess_log": excess}


def rate(xs: list[bool]) -> dict:
    n = len(xs)
    p = float(np.mean(xs)) if n else float("nan")
    return {"rate": p, "se": float(np.sqrt(p * (1 - p) / n)) if n else None, "n": n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markets", type=int, default=100)
    ap.add_argument("--tilt", type=float, default=0.004)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    config = make_config("quick", mode="portfolio", symbols=tuple(universe_symbols(ASSETS)), cost_model="flat",
                         fee_bps=5.0, slippage_bps=5.0, rebalance_band=0.002)
    rng = np.random.default_rng(0)
    t0 = time.time()
    null: dict[str, list[dict]] = {n: [] for n in ("momentum", "reversal", "inverse volatility", "random")}
    for m in range(args.markets):
        open_, close = permuted_universe(rng, seed=m)
        window = slice(HISTORY, HISTORY + TEST_DAYS)
        prices = (open_[:, window], close[:, window], np.ones((ASSETS, TEST_DAYS), bool))
        for name in null:
            null[name].append(claims(config.replace(seed=m), prices, rule_targets(name, open_, close, rng)))
    planted, shares = [], []
    for m in range(args.markets):
        open_, close = planted_universe(seed=m, tilt=args.tilt)
        window = slice(HISTORY, HISTORY + TEST_DAYS)
        prices = (open_[:, window], close[:, window], np.ones((ASSETS, TEST_DAYS), bool))
        got = claims(config.replace(seed=m), prices, rule_targets("last sign", open_, close, rng))
        best = claims(config.replace(seed=m), prices, oracle_targets(open_, close))
        planted.append(got)
        if best["excess_log"] > 0:
            shares.append(got["excess_log"] / best["excess_log"])
    result = {
        "markets": args.markets, "assets": ASSETS, "test_days": TEST_DAYS, "tilt": args.tilt,
        "alpha": pe.ALPHA, "costs": "5 + 5 bps per side, band 0.2%", "seconds": time.time() - t0,
        "null_permuted_days": {name: {"false_any": rate([c["any"] for c in rows]),
                                      "false_beats_1n": rate([c["beats"] for c in rows]),
                                      "false_allocation_skill": rate([c["skill"] for c in rows])}
                               for name, rows in null.items()},
        "planted": {"power_any": rate([c["any"] for c in planted]),
                    "power_beats_1n": rate([c["beats"] for c in planted]),
                    "power_allocation_skill": rate([c["skill"] for c in planted]),
                    "share_of_oracle_excess_median": float(np.median(shares)) if shares else None},
    }
    print(f"{'null (days permuted jointly)':<32} {'any claim':>12} {'beats 1/N':>12} {'alloc. skill':>12}")
    for name, r in result["null_permuted_days"].items():
        print(f"{name:<32} " + " ".join(f"{r[k]['rate']:>8.1%} ±{r[k]['se']:.1%}"
                                        for k in ("false_any", "false_beats_1n", "false_allocation_skill")))
    p = result["planted"]
    print(f"{'planted (last-sign rule)':<32} " + " ".join(f"{p[k]['rate']:>8.1%} ±{p[k]['se']:.1%}"
                                                        for k in ("power_any", "power_beats_1n",
                                                                  "power_allocation_skill")))
    print(f"share of the oracle's excess log return over 1/N (median): {p['share_of_oracle_excess_median']:.1%}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
