"""Calibration of the evaluation protocol (evorl_core.evaluation.significance): false positives and power.

Runs `significance.symbol_report` (excess over buy & hold, exposure-matched timing test, verdict)
on many simulated markets where the truth is known:

- null markets: martingale prices (no strategy can time them), with and without costs, with drift
  (a trending stock: the case where "different from flat" fools) and with GARCH volatility and fat
  tails; strategies whose positions never see future prices (SMA crossover, momentum, a short-term
  contrarian rule, random positions). A claim of skill there is a false positive.
- planted markets: the two-regime market of tests/test_learning.py (`planted_frames`: p_stay 0.9,
  mu 0.01, noise 0.002) with the causal regime-following rule ("long after an up day") and a noisy
  version of it. A claim of skill there is a detection (power).

    python benchmarks/calibration.py                      # figures of docs/evaluation.md
    python benchmarks/calibration.py --markets 100 --out calibration.json

Prints a table (rates with their binomial standard errors) and writes JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evorl_core.data.synthetic import planted_prices  # noqa: E402
from evorl_core.evaluation.significance import ALPHA, EXCESS_LEVEL, TIMING_LEVEL, symbol_report  # noqa: E402
from evorl_core.modes.single import baselines  # noqa: E402

HISTORY = 120  # warm-up days before the test window (rules read it; tests never do)
COST = 0.001  # the default 5 + 5 bps


# ---------------------------------------------------------------- markets
def martingale_market(n_days: int, rng: np.random.Generator, sigma: float = 0.015, drift: float = 0.0,
                      garch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Open and close with independent zero-mean simple returns overnight and intraday (plus an annual
    `drift` in the intraday part); garch: GARCH(1,1) volatility with Student-t(5) shocks."""
    if garch:
        shocks = rng.standard_t(5, n_days) / math.sqrt(5 / 3)
        var = np.empty(n_days)
        omega, a, b = sigma ** 2 * 0.05, 0.10, 0.85
        var[0] = sigma ** 2
        for t in range(1, n_days):
            var[t] = omega + a * var[t - 1] * shocks[t - 1] ** 2 + b * var[t - 1]
        vol = np.sqrt(var)
    else:
        shocks = rng.standard_normal(n_days)
        vol = np.full(n_days, sigma)
    night = rng.standard_t(5, n_days) / math.sqrt(5 / 3) if garch else rng.standard_normal(n_days)
    overnight = 0.3 * vol * night
    intraday = math.sqrt(1 - 0.09) * vol * shocks + drift / 252
    overnight = np.clip(overnight, -0.5, 0.5)
    intraday = np.clip(intraday, -0.5, 0.5)
    close = np.empty(n_days)
    open_ = np.empty(n_days)
    prev = 100.0
    for t in range(n_days):
        open_[t] = prev * (1 + overnight[t])
        close[t] = open_[t] * (1 + intraday[t])
        prev = close[t]
    return open_, close


def planted_market(n_days: int, rng: np.random.Generator, mu: float = 0.01, noise: float = 0.002,
                   p_stay: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """The planted-signal market of tests/test_learning.py for one symbol (data.planted_prices)."""
    return planted_prices(n_days, rng, mu, noise, p_stay)


# ---------------------------------------------------------------- strategies (causal)
def contrarian(close: np.ndarray, window: int = 5) -> np.ndarray:
    """Long while the close is below its `window`-day mean (short-term mean reversion), else flat."""
    m = baselines.trailing_mean(close, window)
    return np.where(np.isfinite(m) & (close < m), 1.0, 0.0)


def random_positions(n: int, rng: np.random.Generator, p_change: float = 0.1) -> np.ndarray:
    """Positions in {0, 0.5, 1} that change with probability p_change a day, independent of prices."""
    levels = np.array([0.0, 0.5, 1.0])
    out = np.empty(n)
    cur = rng.choice(levels)
    for t in range(n):
        if rng.random() < p_change:
            cur = rng.choice(levels)
        out[t] = cur
    return out


def regime_follower(open_: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Long after an up day (close > open), flat after a down day: the Bayes rule of the planted market."""
    return (close > open_).astype(np.float64)


def noisy(positions: np.ndarray, rng: np.random.Generator, keep: float) -> np.ndarray:
    """Each day the position is kept with probability `keep`, else replaced by a fair coin (0 or 1)."""
    coin = (rng.random(positions.size) < 0.5).astype(np.float64)
    return np.where(rng.random(positions.size) < keep, positions, coin)


# name: days of past prices one decision reads (the `lookback` the protocol is told)
NULL_STRATEGIES = {"sma_crossover": baselines.SMA_SLOW, "momentum": baselines.MOMENTUM_LOOKBACK + 1,
                   "contrarian_5": 5, "contrarian_20": 20, "random": 1}
REGIME_LOOKBACK = 1  # the regime follower reads day t's open and close


def null_positions(name: str, open_: np.ndarray, close: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if name in ("sma_crossover", "momentum"):
        return baselines.rule_positions(name, close)
    if name.startswith("contrarian_"):
        return contrarian(close, int(name.split("_")[1]))
    if name == "random":
        return random_positions(close.size, rng)
    raise ValueError(name)


# ---------------------------------------------------------------- protocol
SCENARIOS = {
    # name: (market kwargs, cost): the excess test's null (mean excess 0) holds only without cost and drift
    "martingale, no cost": (dict(), 0.0),
    "martingale, cost 10 bps": (dict(), COST),
    "drift 20%/yr, cost 10 bps": (dict(drift=0.20), COST),
    "GARCH t(5), cost 10 bps": (dict(garch=True), COST),
}
FAST_SCENARIOS = ("martingale, no cost", "drift 20%/yr, cost 10 bps", "GARCH t(5), cost 10 bps")


def _claims(report: dict) -> dict[str, bool]:
    p_ex, mean, p_tm = report["excess_p_value"], report["excess_mean_annual"], report["timing_p_value"]
    return {"excess_rejects": p_ex is not None and p_ex < ALPHA,
            "beats": p_ex is not None and p_ex < ALPHA and mean > 0,
            "worse": p_ex is not None and p_ex < ALPHA and mean < 0,
            "timing_5pct": p_tm is not None and p_tm < ALPHA,
            "timing": p_tm is not None and p_tm < ALPHA / 2}


def _rate(hits: int, n: int) -> dict[str, float]:
    p = hits / n
    return {"rate": p, "se": math.sqrt(max(p * (1 - p), 1e-12) / n), "hits": hits, "n": n}


def _record(rep: dict) -> list:
    """[excess p, sign of the mean excess, timing p, timing p over all shifts, timing p over past-only
    shifts, excess p of the bootstrap-t, excess p of Student's t] of one report (rounded)."""
    p_ex, mean = rep["excess_p_value"], rep["excess_mean_annual"]

    def r(p):
        return None if p is None else round(p, 5)

    return [r(p_ex), 0 if not mean else int(math.copysign(1, mean)), r(rep["timing_p_value"]),
            r(rep["timing_p_all_shifts"]), r(rep["timing_p_past_only"]), r(rep["excess_p_bootstrap"]),
            r(rep["excess_p_student"])]


def claim_rates(records: list, excess_level: float = EXCESS_LEVEL, timing_level: float = TIMING_LEVEL) -> dict:
    """Rates of each test's rejection and of each verdict claim over records [[p_ex, sign, p_tm], ...]."""
    n = len(records)
    count = {"excess_rejects": 0, "beats": 0, "worse": 0, "timing_5pct": 0, "timing": 0, "skill": 0}
    for p_ex, sign, p_tm, *_ in records:
        ex = p_ex is not None and p_ex < excess_level
        beats, worse = ex and sign > 0, ex and sign < 0
        timing = p_tm is not None and p_tm < timing_level
        count["excess_rejects"] += p_ex is not None and p_ex < ALPHA
        count["timing_5pct"] += p_tm is not None and p_tm < ALPHA
        count["beats"] += beats
        count["worse"] += worse
        count["timing"] += timing
        count["skill"] += beats or timing
    return {k: _rate(v, n) for k, v in count.items()}


def run_null(markets: int, test_days: int, seed: int, n_boot: int, strategies=NULL_STRATEGIES,
             scenarios=FAST_SCENARIOS) -> dict:
    """{scenario: {strategy: [[excess p, sign, timing p] per market]}}."""
    out: dict = {}
    for scenario in scenarios:
        kwargs, cost = SCENARIOS[scenario]
        out[scenario] = {s: [] for s in strategies}
        for i in range(markets):
            rng = np.random.default_rng([seed, i, test_days])
            open_, close = martingale_market(HISTORY + test_days, rng, **kwargs)
            for strategy in strategies:
                pos = null_positions(strategy, open_, close, rng)[HISTORY:]
                rep = symbol_report(open_[HISTORY:], close[HISTORY:], pos, cost=cost, seed=i, n_boot=n_boot,
                                    lookback=strategies[strategy], baselines=False)
                out[scenario][strategy].append(_record(rep))
    return out


def run_planted(markets: int, test_days: int, seed: int, n_boot: int, keeps=(1.0, 0.75, 0.6),
                mu: float = 0.01) -> dict:
    """{strategy: [[excess p, sign, timing p] per planted market]}."""
    out: dict = {}
    for keep in keeps:
        name = "regime follower" if keep == 1.0 else f"noisy follower (kept {keep:.0%})"
        out[name] = []
        for i in range(markets):
            rng = np.random.default_rng([seed, 10_000 + i, test_days])
            open_, close = planted_market(HISTORY + test_days, rng, mu=mu)
            pos = noisy(regime_follower(open_, close), rng, keep)[HISTORY:]
            rep = symbol_report(open_[HISTORY:], close[HISTORY:], pos, cost=COST, seed=i, n_boot=n_boot,
                                lookback=REGIME_LOOKBACK, baselines=False)
            out[name].append(_record(rep))
    return out


def run_pooled(markets: int, test_days: int, seed: int, n_boot: int, members: int = 5) -> dict:
    """Several members on the same symbol, pooled (excess: daily differences averaged over members;
    timing: mean member log return against one common shift per draw). Null: independent random
    members on martingale prices (no cost); power: noisy regime followers (each kept 60%) on the
    planted market."""
    out: dict = {}
    for name in ("null: random members", "planted: noisy followers (kept 60%)"):
        out[name] = []
        for i in range(markets):
            rng = np.random.default_rng([seed, 20_000 + i, test_days])
            if name.startswith("null"):
                open_, close = martingale_market(HISTORY + test_days, rng)
                pos = np.stack([random_positions(close.size, rng) for _ in range(members)])
                cost, lookback = 0.0, 1
            else:
                open_, close = planted_market(HISTORY + test_days, rng)
                pos = np.stack([noisy(regime_follower(open_, close), rng, 0.6) for _ in range(members)])
                cost, lookback = COST, REGIME_LOOKBACK
            rep = symbol_report(open_[HISTORY:], close[HISTORY:], pos[:, HISTORY:], cost=cost, seed=i,
                                n_boot=n_boot, lookback=lookback, baselines=False)
            out[name].append(_record(rep) + [rep.get("deflated_sharpe")])
    return out


def run_agents(agents: int, test_days: int, seed: int, symbols_per_run: int = 3,
               timesteps: int = 100_000) -> dict:
    """Quick-preset PPO agents trained on random-walk markets (as tests/test_learning.py does), each
    symbol's verdict read from its backtest/metrics.json: every claim of skill is a false positive."""
    import tempfile  # only this optional section needs JAX and the training pipeline

    import pandas as pd

    from evorl_core.config import make_config
    from evorl_core.data import build_market
    from evorl_core.training import pipeline

    counts = {"beats": 0, "worse": 0, "timing": 0, "skill": 0, "traded": 0}
    verdicts, n = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for a in range(agents):
            symbols = tuple(f"WALK{a}_{k}" for k in range(symbols_per_run))
            frames = {}
            for k, sym in enumerate(symbols):
                rng = np.random.default_rng([seed, 50_000 + a, k])
                open_, close = martingale_market(1500, rng)
                dates = pd.bdate_range("2012-01-02", periods=close.size, name="date")
                frames[sym] = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.001,
                                            "low": np.minimum(open_, close) * 0.999, "close": close,
                                            "volume": np.full(close.size, 1e6)}, index=dates)
            config = make_config("quick", symbols=symbols, data="synthetic", test_days=test_days, window=8,
                                 total_timesteps=timesteps, seed=seed + a)
            market = build_market(frames, config.window, test_days, info={"source": "random-walk", "synthetic": True})
            run = pipeline.run(config, tmp, f"walk{a}", market=market)
            for sym, m in run.read_backtest_metrics().items():
                n += 1
                c = {"beats": m["verdict"].startswith("beats"), "worse": m["verdict"].startswith("worse"),
                     "timing": "; timing skill" in m["verdict"]}
                c["skill"] = c["beats"] or c["timing"]
                c["traded"] = m["trades"] >= 2 and m["exposure"] > 0.05
                for k, v in c.items():
                    counts[k] += int(v)
                verdicts.append({"symbol": sym, "verdict": m["verdict"], "trades": m["trades"],
                                 "exposure": m["exposure"], "timing_draws": m["timing_draws"]})
                print(f"  agent {a} {sym}: {m['verdict']} (trades {m['trades']:.0f}, exposure {m['exposure']:.2f})")
    return {"symbols": n, "rates": {k: _rate(v, n) for k, v in counts.items()}, "verdicts": verdicts,
            "test_days": test_days, "timesteps": timesteps, "window": 8}


def _fmt(r: dict) -> str:
    return f"{r['rate']:6.1%} ±{r['se']:.1%}"


def print_rates(n: int, null: dict, planted: dict, excess_level: float = EXCESS_LEVEL,
                timing_level: float = TIMING_LEVEL) -> None:
    markets = len(next(iter(next(iter(null.values())).values())))
    print(f"\n== {n} test days: false-positive rates on {markets} null markets per row (claims: excess p < "
          f"{excess_level:g} two-sided, timing p < {timing_level:g})")
    print(f"{'scenario':28s} {'strategy':14s} {'excess p<5%':>14s} {'beats':>14s} {'worse':>14s} "
          f"{'timing p<5%':>14s} {'timing claim':>14s} {'skill claim':>14s}")
    for scenario, by_strategy in null.items():
        for strategy, recs in by_strategy.items():
            r = claim_rates(recs, excess_level, timing_level)
            print(f"{scenario:28s} {strategy:14s} {_fmt(r['excess_rejects']):>14s} {_fmt(r['beats']):>14s} "
                  f"{_fmt(r['worse']):>14s} {_fmt(r['timing_5pct']):>14s} {_fmt(r['timing']):>14s} "
                  f"{_fmt(r['skill']):>14s}")
    planted_n = len(next(iter(planted.values())))
    print(f"-- power on {planted_n} planted markets per row (p_stay 0.9, mu 0.01, noise 0.002)")
    for name, recs in planted.items():
        r = claim_rates(recs, excess_level, timing_level)
        print(f"{name:43s} beats {_fmt(r['beats'])}  timing claim {_fmt(r['timing'])}  skill claim {_fmt(r['skill'])}")


def headline(null: dict) -> str:
    """Pooled rates: the excess test where its null holds (martingale, no cost), the timing test and the
    verdict's claims of skill over every null row (a claim of skill is false in all of them)."""
    rows = [(sc, st, recs) for sc, by in null.items() for st, recs in by.items()]
    excess_rows = [recs for sc, _, recs in rows if sc == "martingale, no cost"]
    pooled_ex = claim_rates([r for recs in excess_rows for r in recs])["excess_rejects"]
    every = claim_rates([r for _, _, recs in rows for r in recs])
    worst = max(((claim_rates(recs)["skill"]["rate"], sc, st) for sc, st, recs in rows))
    return (f"Pooled: excess p < 5% in {pooled_ex['rate']:.1%} ± {pooled_ex['se']:.1%} of {pooled_ex['n']} "
            f"martingale no-cost markets; timing p < 5% in {every['timing_5pct']['rate']:.1%} ± "
            f"{every['timing_5pct']['se']:.1%} and a claim of skill in {every['skill']['rate']:.1%} ± "
            f"{every['skill']['se']:.1%} of all {every['skill']['n']} null markets (worst row: {worst[0]:.1%}, "
            f"{worst[2]} / {worst[1]}).")


def markdown(result: dict) -> str:
    """The calibration tables of docs/evaluation.md from a result (this script's --out JSON)."""
    lines = []
    for n, block in result["by_test_days"].items():
        null, planted = block["null"], block["planted"]
        markets = len(next(iter(next(iter(null.values())).values())))
        lines += [f"**{n} test days** ({markets} null markets per row; rate ± binomial standard error)", "",
                  "| scenario | strategy (lookback) | excess p < 5% | beats | worse | timing p < 5% "
                  "| timing claim | skill claim |", "|---|---|---|---|---|---|---|---|"]
        for scenario, by_strategy in null.items():
            for strategy, recs in by_strategy.items():
                r = claim_rates(recs)
                cells = [f"{r[k]['rate']:.1%} ± {r[k]['se']:.1%}" for k in
                         ("excess_rejects", "beats", "worse", "timing_5pct", "timing", "skill")]
                lines.append(f"| {scenario} | {strategy} ({NULL_STRATEGIES[strategy]}) | " + " | ".join(cells) + " |")
        lines += ["", headline(null), ""]
        planted_n = len(next(iter(planted.values())))
        lines += [f"Power on {planted_n} planted markets per row:", "",
                  "| strategy | beats | timing claim | skill claim |", "|---|---|---|---|"]
        for name, recs in planted.items():
            r = claim_rates(recs)
            lines.append(f"| {name} | " + " | ".join(f"{r[k]['rate']:.1%} ± {r[k]['se']:.1%}"
                                                   for k in ("beats", "timing", "skill")) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markets", type=int, default=300, help="null markets per scenario and test length")
    ap.add_argument("--planted", type=int, default=200, help="planted markets per strategy and test length")
    ap.add_argument("--test-days", type=int, nargs="+", default=[60, 120, 250])
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pooled", type=int, default=0, help="markets for the pooled-members section (120 test days)")
    ap.add_argument("--only-extra", action="store_true", help="skip the single-strategy sections")
    ap.add_argument("--agents", type=int, default=0,
                    help="also train this many quick PPO agents (3 random-walk symbols each, 250 test days)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--markdown", type=Path, help="print the tables of docs/evaluation.md from a saved --out JSON")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    t0 = time.perf_counter()
    result = {"alpha": ALPHA, "markets": args.markets, "planted_markets": args.planted, "n_boot": args.n_boot,
              "history_days": HISTORY, "cost": COST, "by_test_days": {}}
    for n in ([] if args.only_extra else args.test_days):
        null = run_null(args.markets, n, args.seed, args.n_boot)
        planted = run_planted(args.planted, n, args.seed, args.n_boot)
        result["by_test_days"][str(n)] = {"null": null, "planted": planted}
        print_rates(n, null, planted)
    if args.pooled:
        pooled = run_pooled(args.pooled, 120, args.seed, args.n_boot)
        result["pooled_members"] = {"members": 5, "test_days": 120, "records": pooled}
        print(f"\n== 5 members pooled, 120 test days, {args.pooled} markets per row")
        for name, recs in pooled.items():
            r = claim_rates([rec[:-1] for rec in recs])
            dsr = _rate(sum(1 for rec in recs if (rec[-1] or 0) > 0.95), len(recs))
            print(f"{name:38s} excess p<5% {_fmt(r['excess_rejects'])}  timing p<5% {_fmt(r['timing_5pct'])}  "
                  f"skill claim {_fmt(r['skill'])}  best member DSR > 0.95 {_fmt(dsr)}")
    if args.agents:
        print(f"\n== {args.agents} quick PPO agents on random walks (3 symbols each, 250 test days)")
        agents = run_agents(args.agents, 250, args.seed)
        result["trained_agents"] = agents
        r = agents["rates"]
        print(f"{agents['symbols']} symbols: beats {_fmt(r['beats'])}  worse {_fmt(r['worse'])}  "
              f"timing claim {_fmt(r['timing'])}  skill claim {_fmt(r['skill'])}  traded {_fmt(r['traded'])}")
    result["seconds"] = time.perf_counter() - t0
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
