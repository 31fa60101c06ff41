"""The portfolio commands of the `evorl` command line: `evorl signal` on a portfolio model (target
weights per symbol for the next session) and `evorl orders` (whole-share orders to reach them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evorl_core.costs import cost_model
from evorl_core.deploy.bundle import DeployError, load_bundle
from evorl_core.deploy.paper_portfolio import record_portfolio
from evorl_core.deploy.portfolio import load_portfolio_frames, order_list, portfolio_signal, read_holdings
from evorl_core.deploy.signal import stale_warnings
from evorl_core.store.atomic import dumps


def _portfolio_signal(args: argparse.Namespace, bundle: Any, symbols: list[str] | None = None) -> dict[str, Any]:
    frames, info = load_portfolio_frames(bundle, args.data, symbols, cache_dir=args.cache_dir)
    stale = stale_warnings(frames)
    shown = stale if len(stale) <= 3 else [f"stale data for {len(stale)} of {len(frames)} symbols, e.g. {stale[0]}"]
    for w in info.get("warnings", []) + shown:
        print(f"warning: {w}", file=sys.stderr)
    result = portfolio_signal(bundle, frames)
    result.update(data_source=info.get("source"), synthetic=bool(info.get("synthetic")), stale=stale)
    return result


def cmd_portfolio_signal(args: argparse.Namespace, bundle: Any) -> int:
    result = _portfolio_signal(args, bundle, args.symbols)
    if args.json:
        print(dumps(result))
        return 0
    print(f"model {bundle.name}  portfolio of {len(result['weights'])}  data: {result['data_source']}"
          + ("  [SYNTHETIC DATA]" if result["synthetic"] else "") + ("  [STALE DATA]" if result["stale"] else ""))
    print(f"{'symbol':<12} {'last bar':<11} {'close':>12} {'held':>8} {'target':>8}")
    for w in sorted(result["weights"], key=lambda w: -w["target"]):
        note = "" if w["tradable"] else "  (not tradable: no full window or no bar on the last day)"
        print(f"{w['symbol']:<12} {w['last_bar']:<11} {w['close']:>12.2f} {w['held']:>8.2%} {w['target']:>8.2%}{note}")
    print(f"{'CASH':<12} {'':<11} {'':>12} {result['cash_held']:>8.2%} {result['cash_target']:>8.2%}")
    print(f"\ntargets are weights of the account for the next session ({result['execution']} execution), "
          f"held weights from replaying the model over the last {result['replayed_days']} days from cash; "
          "`evorl orders` turns them into shares")
    return 0


def cmd_orders(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.model, models_dir=args.models_dir, force=args.force)
    if bundle.config.mode != "portfolio":
        raise DeployError(f"--model {args.model}: a single-asset model; `evorl orders` needs a portfolio model "
                        "(train with --portfolio); use `evorl signal` for its target exposures")
    holdings = read_holdings(args.holdings) if args.holdings else None
    result = _portfolio_signal(args, bundle)
    orders, summary = order_list(result, args.capital, holdings, cost_model(bundle.config))
    text = orders.round({"price": 2, "value": 2, "estimated_cost": 2, "target_weight": 6}).to_csv(index=False)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(orders)} orders to {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    print(f"account {summary['account_rupees']:,.2f} rupees, estimated costs {summary['estimated_costs']:,.2f}, "
          f"cash left {summary['cash_left']:,.2f} (target cash weight {summary['cash_target_weight']:.2%}); "
          f"{summary['note']}", file=sys.stderr)
    return 0


def cmd_portfolio_paper(args: argparse.Namespace, bundle: Any) -> int:
    """`evorl paper` on a portfolio model: one ledger line per new session for the whole account."""
    frames, info = load_portfolio_frames(bundle, args.data, cache_dir=args.cache_dir)
    result = record_portfolio(bundle, frames, info)
    for w in bundle.meta["load_warnings"] + info.get("warnings", []) + result.warnings[:3]:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(dumps({"model": bundle.name, "data_source": info.get("source"), "synthetic": bool(info.get("synthetic")),
                     "appended": result.appended, "latest": result.latest, "warnings": result.warnings}))
        return 0
    print(f"model {bundle.name}  portfolio of {len(frames)}  data: {info.get('source')}"
          + ("  [SYNTHETIC DATA]" if info.get("synthetic") else "") + f"  ledger: {Path(bundle.path) / 'ledger.jsonl'}")
    for e in result.appended:
        top = sorted(((s, w) for s, w in e["target"].items() if s != "CASH"), key=lambda x: -x[1])[:3]
        print(f"{e['date']}  equity {e['equity']:,.2f}  {e['benchmark']} {e['benchmark_equity']:,.2f}  "
              f"costs {e['costs']:,.2f}  cash {e['weights']['CASH']:.1%} -> {e['target']['CASH']:.1%}  "
              f"largest targets {', '.join(f'{s} {w:.1%}' for s, w in top)}")
    if result.appended:
        n = len(result.appended)
        print(f"\nappended {n} entr{'y' if n == 1 else 'ies'}; targets fill at the next session "
              f"({bundle.config.execution} execution)")
    else:
        print(f"already recorded up to {result.latest.get('PORTFOLIO')}, the latest day; nothing appended")
    return 0
