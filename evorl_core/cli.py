"""The `evorl` command line: train, backtest, deploy, signal, paper, runs, bench.

User mistakes end in one clear line on stderr (a data error lists each further problem it found on
an indented line under it) and exit code 2; a run that fails once started (diverged, disk full, out
of memory) in one line and exit code 1; SIGINT/SIGTERM during training save a checkpoint and end
the run `interrupted` (exit 130/143). No traceback (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import jax

from evorl_core import __version__, bench, guards
from evorl_core.config import (
    COST_MODELS,
    DEFAULT_SYMBOLS,
    EXECUTION_MODES,
    INIT_SCHEMES,
    PRESETS,
    PRICE_ADJUSTMENTS,
    SEARCH_SPACE,
    ConfigError,
    TrainConfig,
    make_config,
    parse_floats,
    parse_ints,
)
from evorl_core.console import ProgressBar, cost_line, format_metrics_table, indented
from evorl_core.data import DataError, DataFallbackWarning
from evorl_core.deploy.bundle import DeployError, deploy_run, list_models, load_bundle
from evorl_core.deploy.ledger import record as record_paper
from evorl_core.deploy.signal import load_signal_frames, signals, stale_warnings, training_source
from evorl_core.evaluation.evaluate import rebacktest_dir, run_backtest
from evorl_core.store.atomic import RunDirError, StorageError, dumps, read_json
from evorl_core.store.catalogue import list_runs
from evorl_core.store.rundir import DAMAGED, RunDir, new_run_id
from evorl_core.system import backends, distributed, provenance
from evorl_core.system.backends import BackendError
from evorl_core.training import pipeline
from evorl_core.training.loop import TrainingDiverged
from evorl_core.training.walkforward import WALKFORWARD_DIR, run_walkforward


class UserError(Exception):
    pass


class RunFailed(Exception):
    """A run that started and then failed (exit code 1); the message is one line."""


def add_train_flags(t: argparse.ArgumentParser) -> None:
    """Every training setting as a flag (train and walkforward share them)."""
    t.add_argument("--symbols", nargs="+", default=list(DEFAULT_SYMBOLS), help="symbols (default: %(default)s)")
    t.add_argument("--timesteps", type=int, help="total env steps (default from the preset)")
    t.add_argument("--test-days", type=int, default=60, help="held-out last N trading days per symbol")
    t.add_argument("--val-days", type=int,
                   help="validation days before the test days, for any selection (default 60; 0 = none)")
    t.add_argument("--embargo-days", type=int,
                   help="unused days before validation and before test (default: the feature window)")
    t.add_argument("--seeds", type=int,
                   help="train N independent agents (seeds seed..seed+N-1) as one vmapped program")
    pbt = t.add_argument_group("population-based training (docs/evolution.md)")
    pbt.add_argument("--population", type=int, help="train N agents as one vmapped program and evolve them")
    pbt.add_argument("--pbt-interval", type=int, help="updates between exploit/explore rounds (default 10)")
    pbt.add_argument("--pbt-fraction", type=float, help="bottom fraction replaced each round (default 0.25)")
    pbt.add_argument("--pbt-resample", type=float, help="chance explore resamples instead of perturbing (0.25)")
    pbt.add_argument("--evolve", help=f"hyperparameters to evolve, from {','.join(SEARCH_SPACE)} "
                                      "(default lr,ent_coef,clip_eps)")
    pbt.add_argument("--search-space", help="ranges, e.g. lr=1e-5:1e-2,ent_coef=0.0001:0.05 (defaults: "
                     + ", ".join(f"{k}={r.low:g}:{r.high:g}" for k, r in SEARCH_SPACE.items()) + ")")
    pbt.add_argument("--init-space", help="ranges the first generation is drawn from (default: the search space)")
    t.add_argument("--data", default="auto", help="auto | synthetic | yahoo | csv:DIR (default: auto)")
    t.add_argument("--preset", default="production", choices=sorted(PRESETS))
    t.add_argument("--num-envs", type=int)
    t.add_argument("--num-steps", type=int)
    t.add_argument("--minibatch-size", type=int)
    t.add_argument("--epochs", type=int)
    t.add_argument("--hidden", help="hidden layer sizes, e.g. 1024,512,256")
    t.add_argument("--lr", type=float)
    t.add_argument("--ent-coef", type=float)
    t.add_argument("--clip-eps", type=float)
    t.add_argument("--gamma", type=float)
    t.add_argument("--gae-lambda", type=float)
    t.add_argument("--vf-coef", type=float)
    t.add_argument("--max-grad-norm", type=float)
    t.add_argument("--anneal-lr", action="store_true", default=None, help="decay the learning rate linearly to 0")
    t.add_argument("--activation", choices=["tanh", "relu"])
    t.add_argument("--init-scheme", "--init", choices=list(INIT_SCHEMES), help="weight initialiser")
    t.add_argument("--init-std", type=float, help="std of the normal initialiser")
    t.add_argument("--window", type=int, help="days of features in one observation (default 32)")
    t.add_argument("--episode-len", type=int)
    t.add_argument("--cost-model", choices=list(COST_MODELS),
                   help="nse-delivery (default: NSE statutory charges per side) or flat (--fee-bps each side)")
    t.add_argument("--fee-bps", type=float, help="flat cost model: fee per side in bps (default 5)")
    t.add_argument("--slippage-bps", type=float, help="slippage per side in bps, both models (default 5)")
    t.add_argument("--brokerage-bps", type=float, help="nse-delivery: brokerage per side in bps (default 0)")
    t.add_argument("--dp-charge", type=float,
                   help="nse-delivery: depository charge in rupees per sell day, before GST (default 13.5)")
    t.add_argument("--price-adjustment", choices=list(PRICE_ADJUSTMENTS),
                   help="none (traded close, default) or dividends (total-return prices from Adj Close)")
    t.add_argument("--positions", help="target exposures, e.g. 0,0.5,1 or -1,0,1")
    t.add_argument("--execution", choices=list(EXECUTION_MODES))
    t.add_argument("--initial-capital", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--backend", choices=list(backends.BACKENDS))
    t.add_argument("--updates-per-chunk", type=int, help="updates per compiled chunk (0 = automatic)")
    t.add_argument("--member-group", type=int,
                   help="seeds/population members computed side by side, the groups one after another "
                        "(0 = automatic: 4 on CPU, all on an accelerator)")
    t.add_argument("--runs-dir", default=os.environ.get("EVORL_RUNS_DIR", "runs"))
    t.add_argument("--run-id")
    t.add_argument("--cache-dir", default=os.environ.get("EVORL_DATA_CACHE", "data_cache"))
    t.add_argument("--deploy", action="store_true", help="deploy the trained model to models/<name>/")
    t.add_argument("--model-name")
    t.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    dist = t.add_argument_group(
        "several processes or hosts (docs/scaling.md); default: the EVORL_* variables, else JAX's "
        "cluster detection (SLURM, MPI, Kubernetes), else one process")
    dist.add_argument("--coordinator-address", metavar="HOST:PORT",
                      help=f"process 0's address, the same for every process (or {distributed.ENV_ADDRESS})")
    dist.add_argument("--num-processes", type=int, metavar="N",
                      help=f"processes in the run; 1 turns cluster detection off (or {distributed.ENV_COUNT})")
    dist.add_argument("--process-id", type=int, metavar="I",
                      help=f"this process, 0..N-1; process 0 writes the run (or {distributed.ENV_ID})")
    dist.add_argument("--peer-timeout", type=float, metavar="SECONDS",
                      help="end the run when a process is silent this long (default 60, or "
                           f"{distributed.ENV_PEER_TIMEOUT})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evorl", description="JAX reinforcement-learning trading workbench.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a PPO agent, backtest it on held-out days, optionally deploy")
    add_train_flags(t)

    w = sub.add_parser("walkforward", help="K rolling-origin folds, each trained and tested on its own block")
    add_train_flags(w)
    w.add_argument("--folds", type=int, default=3, help="number of folds (test blocks of --test-days)")
    w.add_argument("--id", help="walk-forward id (default: wf-<time>); folds are runs <id>-fold<k>")

    b = sub.add_parser("backtest", help="re-run the backtest of a trained run on a data source")
    b.add_argument("--run", required=True, metavar="RUN_DIR")
    b.add_argument("--data", help="data source (default: the run's own)")
    b.add_argument("--test-days", type=int,
                   help="test on the last N days (refused if they overlap the run's training/validation days)")
    b.add_argument("--out", metavar="DIR",
                   help="a new output folder (default: RUN_DIR/rebacktests/<timestamp>-<source>/; "
                        "never RUN_DIR/backtest)")
    b.add_argument("--cache-dir", default=os.environ.get("EVORL_DATA_CACHE", "data_cache"))

    d = sub.add_parser("deploy", help="deploy a finished run as a model bundle")
    d.add_argument("--run", required=True, metavar="RUN_DIR")
    d.add_argument("--model-name")
    d.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))
    d.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="deploy the top K members by validation score; signals average their action "
                        "probabilities (default 1: the chosen member)")

    s = sub.add_parser("signal", help="target position for the next session from the latest bar")
    s.add_argument("--model", required=True, metavar="NAME_OR_DIR")
    s.add_argument("--data", help="data source (default: the one the model was trained on); 'auto' never "
                                   "falls back to synthetic prices here")
    s.add_argument("--symbols", nargs="+", help="default: the model's symbols")
    s.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))
    s.add_argument("--cache-dir", default=os.environ.get("EVORL_DATA_CACHE", "data_cache"))
    s.add_argument("--json", action="store_true", help="machine-readable output")

    pp = sub.add_parser("paper", help="append today's bar to a model's forward (paper) ledger; once per day")
    pp.add_argument("--model", required=True, metavar="NAME_OR_DIR")
    pp.add_argument("--data", help="data source (default: the one the model was trained on); 'auto' never "
                                    "falls back to synthetic prices here")
    pp.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))
    pp.add_argument("--cache-dir", default=os.environ.get("EVORL_DATA_CACHE", "data_cache"))
    pp.add_argument("--json", action="store_true", help="machine-readable output")

    r = sub.add_parser("runs", help="list runs with state and headline metrics")
    r.add_argument("--runs-dir", default=os.environ.get("EVORL_RUNS_DIR", "runs"))
    r.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="list deployed model bundles")
    m.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))

    be = sub.add_parser("bench", help="benchmark suite (env, training, FLOP utilisation, peers)")
    be.add_argument("--quick", action="store_true", help="a few-minute version of the suite")
    be.add_argument("--out", default="bench-results/bench.json", help="JSON output path")
    be.add_argument("--only", nargs="+", help="run only these sections")
    be.add_argument("--repeats", type=int)
    be.add_argument("--backend", choices=list(backends.BACKENDS), default="auto")
    guards.add_flags(sub.choices)
    return p


def _version() -> str:
    return f"evorl {__version__}"


# ---------------------------------------------------------------------------------------------
def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset, then every training flag that was given."""
    overrides = dict(
        symbols=tuple(args.symbols), data=args.data, test_days=args.test_days, val_days=args.val_days,
        embargo_days=args.embargo_days, seeds=args.seeds, population=args.population,
        pbt_interval=args.pbt_interval, pbt_fraction=args.pbt_fraction, pbt_resample=args.pbt_resample,
        evolve=tuple(x for x in args.evolve.replace(" ", "").split(",") if x) if args.evolve is not None else None,
        search_space=args.search_space, init_space=args.init_space,
        total_timesteps=args.timesteps, num_envs=args.num_envs, num_steps=args.num_steps,
        minibatch_size=args.minibatch_size, epochs=args.epochs,
        hidden=parse_ints(args.hidden, "hidden") if args.hidden is not None else None,
        lr=args.lr, ent_coef=args.ent_coef, clip_eps=args.clip_eps, gamma=args.gamma, window=args.window,
        gae_lambda=args.gae_lambda, vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm,
        anneal_lr=args.anneal_lr, activation=args.activation, init_scheme=args.init_scheme, init_std=args.init_std,
        episode_len=args.episode_len, fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
        cost_model=args.cost_model, brokerage_bps=args.brokerage_bps, dp_charge=args.dp_charge,
        price_adjustment=args.price_adjustment,
        positions=parse_floats(args.positions, "positions") if args.positions is not None else None,
        execution=args.execution, initial_capital=args.initial_capital, seed=args.seed,
        backend=args.backend, updates_per_chunk=args.updates_per_chunk,
        member_group=args.member_group,
    )
    return guards.check_command(args, make_config(args.preset, **overrides))  # no flag that would do nothing


def cmd_train(args: argparse.Namespace) -> int:
    backends.select(args.backend)
    if not distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                                  timeout=args.peer_timeout):
        return train_run(args)
    try:
        return train_run(args)
    except BaseException as exc:  # one of several processes: a normal exit would wait in JAX's
        # shutdown barrier for a failed peer; say what failed (and tell the others), then leave
        message = distributed.failure_message(exc)
        print(f"evorl train: error: {message}", file=sys.stderr)
        user_error = isinstance(exc, USER_ERRORS) and not distributed.peer_failed()
        distributed.exit_now(130 if isinstance(exc, KeyboardInterrupt) else 2 if user_error else 1)
        raise


def train_run(args: argparse.Namespace) -> int:
    resume = args.resume is not None
    if resume:
        run_path = Path(args.resume)
        if distributed.is_writer() and not run_path.is_dir():  # only process 0 reads it
            raise UserError(f"--resume {run_path}: not a run directory")
        runs_dir, run_id = run_path.parent, run_path.name
        config, market = guards.check_command(args, make_config("production")), None  # replaced by the stored one
    else:
        config = config_from_args(args)
        runs_dir, run_id = Path(args.runs_dir), args.run_id or new_run_id()
        market = pipeline.checked_market(config, runs_dir, run_id, cache_dir=args.cache_dir, deploy=args.deploy,
                                         model_name=args.model_name, models_dir=args.models_dir, replace=args.replace)
        if distributed.is_writer():
            print(f"evorl: training {config.preset} preset on {', '.join(config.symbols)} "
                  f"({config.total_timesteps:,} steps, {config.num_updates} updates of {config.batch_size:,})",
                  file=sys.stderr)
    if distributed.is_writer():
        print(f"evorl: backend {provenance.summary()}", file=sys.stderr)
    else:
        print(f"evorl: {distributed.describe()}, {jax.local_device_count()} local device(s); "
              "process 0 writes the run", file=sys.stderr)
    bar = None if args.quiet or not distributed.is_writer() else ProgressBar()
    stop = pipeline.StopSignal()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: abort now (the last checkpoint stays)
        received.append(signum)
        stop.interrupt(f"interrupted by {name}")
        print(f"\nevorl train: {name}: stopping after the current chunk and saving a checkpoint "
              "(send it again to abort at once)", file=sys.stderr)

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    run_path = Path(runs_dir) / run_id
    try:
        run = pipeline.run(config, runs_dir, run_id, resume=resume, progress=bar, deploy=args.deploy,
                           stop_event=stop, model_name=args.model_name, models_dir=args.models_dir,
                           cache_dir=args.cache_dir, market=market, replace=args.replace)
    except (StorageError, TrainingDiverged) as exc:
        raise RunFailed(f"{exc} (run {run_path}: failed)") from None
    except (UserError, ConfigError, DataError, DeployError, RunDirError, BackendError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an unexpected failure: one line, the traceback in error.log
        log = RunDir(run_path).error_log_path
        raise RunFailed(pipeline.describe_error(exc) + (f" (traceback in {log})" if log.exists() else "")) from None
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
    if not distributed.is_writer():
        print(f"evorl: {distributed.describe()} done; process 0 wrote {run.run_id}", file=sys.stderr)
        return 0
    status = run.read_status() or {}
    for warning in ((run.read_config() or {}).get("data_info") or {}).get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"state: {status.get('state')}  env steps: {status.get('env_steps', 0):,}  "
          f"compile: {status.get('compile_seconds', 0):.1f} s  "
          f"throughput: {status.get('steps_per_sec', 0):,.0f} env steps/s")
    metrics = run.read_backtest_metrics()
    if metrics:
        cfg = run.read_config() or {}
        synthetic = (cfg.get("data_info") or {}).get("synthetic")
        print(f"\nHeld-out test ({cfg.get('test_days')} days, {cfg.get('execution')} execution, "
              f"costs {cost_line(cfg)})" + ("  [SYNTHETIC DATA]" if synthetic else ""))
        print(format_metrics_table(metrics))
    if status.get("deployed_to"):
        print(f"\ndeployed model: {status['deployed_to']}\nevidence: {status.get('deploy_evidence') or '?'}")
    print(f"\nrun directory: {run.path}")
    if status.get("state") in ("interrupted", "stopped"):
        print(f"resume with: evorl train --resume {run.path}", file=sys.stderr)
    if received:
        return 128 + received[0]
    return 0


def cmd_walkforward(args: argparse.Namespace) -> int:
    backends.select(args.backend)
    config = config_from_args(args)
    print(f"evorl: walk-forward of {config.preset} preset on {', '.join(config.symbols)}, {args.folds} folds of "
          f"{config.test_days} test days", file=sys.stderr)
    bar = None if args.quiet else ProgressBar()
    try:
        summary = run_walkforward(config, args.folds, args.runs_dir, args.id, cache_dir=args.cache_dir,
                                  progress=bar, log=lambda msg: print(f"\n{msg}", file=sys.stderr))
    finally:
        if bar is not None:
            bar.close()
    for fold in summary["per_fold"]:
        first = next(iter(fold["date_ranges"].values()))
        print(f"\nfold {fold['fold']} (run {fold['run_id']}): test {first['test_start']} .. {first['last']}")
        print(format_metrics_table(fold["metrics"]))
    print(f"\npooled over {args.folds} folds (test days chained in time order, every day out of sample)")
    print(format_metrics_table(summary["pooled"]))
    print(f"\nsummary: {Path(args.runs_dir) / WALKFORWARD_DIR / summary['id'] / 'summary.json'}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    run_path = Path(args.run)
    if not run_path.is_dir():
        raise UserError(f"--run {run_path}: not a run directory")
    run = RunDir(run_path)
    stored = run.load_config()
    out = Path(args.out) if args.out else rebacktest_dir(run, args.data or str(stored.get("data", "data")))
    metrics = run_backtest(run, data=args.data, test_days=args.test_days, out_dir=out, cache_dir=args.cache_dir)
    record = read_json(out / "rebacktest.json", {}, kind=dict)
    for warning in (record.get("data_info") or {}).get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"costs {cost_line(stored)}")
    print(format_metrics_table(metrics))
    print(f"\nwritten to: {out} (the run's own backtest/ is unchanged)")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    path = deploy_run(Path(args.run), args.model_name, args.models_dir, args.ensemble, args.replace)
    meta = load_bundle(path).meta
    print(f"deployed model: {path} ({meta['policy']})\nevidence: {meta['evidence']}")
    return 0


def cmd_signal(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.model, models_dir=args.models_dir, force=args.force)
    frames, info = load_signal_frames(bundle, args.data, symbols=args.symbols, cache_dir=args.cache_dir)
    stale = stale_warnings(frames)
    for w in bundle.meta["load_warnings"] + info.get("warnings", []) + stale:
        print(f"warning: {w}", file=sys.stderr)
    result = signals(bundle, frames)
    if args.json:
        print(dumps({"model": bundle.name, "data_source": info.get("source"),
                     "synthetic": bool(info.get("synthetic")), "stale": stale, "signals": result}))
        return 0
    print(f"model {bundle.name}  data: {info.get('source')} ({args.data or 'as trained: ' + training_source(bundle)})"
          + ("  [SYNTHETIC DATA]" if info.get("synthetic") else "") + ("  [STALE DATA]" if stale else ""))
    print(f"{'symbol':<12} {'last bar':<11} {'close':>12} {'held':>6} {'target':>7}  probabilities")
    for s in result:
        probs = " ".join(f"{k}:{v:.2f}" for k, v in s["probabilities"].items())
        print(f"{s['symbol']:<12} {s['date']:<11} {s['close']:>12.2f} {s['held_position']:>6g} "
              f"{s['position']:>7g}  {probs}  (held: {s['held_from']})")
    print(f"\ntargets are exposures (fraction of equity) for the next session, {result[0]['next_session'] if result else '?'} "
          f"({bundle.config.execution} execution)")
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.model, models_dir=args.models_dir, force=args.force)
    frames, info = load_signal_frames(bundle, args.data, cache_dir=args.cache_dir)
    result = record_paper(bundle, frames, info)
    for w in bundle.meta["load_warnings"] + info.get("warnings", []) + result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(dumps({"model": bundle.name, "data_source": info.get("source"),
                     "synthetic": bool(info.get("synthetic")), "appended": result.appended,
                     "latest": result.latest, "warnings": result.warnings}))
        return 0
    print(f"model {bundle.name}  data: {info.get('source')}" + ("  [SYNTHETIC DATA]" if info.get("synthetic") else "")
          + f"  ledger: {Path(bundle.path) / 'ledger.jsonl'}")
    for e in result.appended:
        print(f"{e['date']}  {e['symbol']:<12} held {e['held']:g} -> target {e['target']:g}  "
              f"equity {e['equity']:,.2f}  buy & hold {e['benchmark_equity']:,.2f}")
    recorded = {e["symbol"] for e in result.appended}
    for symbol, date in result.latest.items():
        if symbol not in recorded:
            print(f"{symbol}: already recorded up to {date}, the latest bar; nothing appended")
    if result.appended:
        print(f"\nappended {len(result.appended)} entr{'y' if len(result.appended) == 1 else 'ies'}; targets fill at "
              f"the next session ({bundle.config.execution} execution)")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    runs = list_runs(args.runs_dir)
    if args.json:
        print(dumps(runs))
        return 0
    if not runs:
        print(f"no runs in {args.runs_dir}")
        return 0
    print(f"{'run id':<34} {'state':<12} {'steps':>12}  {'symbols':<28} mean test return (B&H)")
    for r in runs:
        bt = r.get("backtest") or {}
        rets = [m.get("total_return") for m in bt.values() if isinstance(m.get("total_return"), (int, float))]
        bh = [m.get("bh_total_return") for m in bt.values() if isinstance(m.get("bh_total_return"), (int, float))]
        headline = (f"{sum(rets) / len(rets) * 100:+.2f}% ({sum(bh) / len(bh) * 100:+.2f}%)" if rets and bh else "")
        print(f"{r['run_id']:<34} {str(r['state']):<12} {r.get('env_steps') or 0:>12,}  "
              f"{','.join(r.get('symbols') or []) + (' [synthetic]' if r.get('synthetic') else ''):<28} {headline}")
        if r.get("error"):
            print(f"    {'damaged' if r['state'] == DAMAGED else 'error'}: {r['error']}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    models = list_models(args.models_dir)
    if not models:
        print(f"no models in {args.models_dir}")
    for m in models:
        print(f"{m['name']:<30} symbols={','.join(m['symbols'])}  from run {m['source_run']}"
              + ("  [synthetic]" if m["synthetic"] else "") + "".join(f"  {note}" for note in m["notes"]))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    return bench.main(quick=args.quick, out=args.out, only=args.only, repeats=args.repeats, backend=args.backend)


# Mistakes a user can fix: one line on stderr (a DataError: one more line per problem), exit code 2.
USER_ERRORS = (UserError, ConfigError, DataError, DeployError, RunDirError, BackendError, FileNotFoundError,
               ValueError)

COMMANDS = {"train": cmd_train, "walkforward": cmd_walkforward, "backtest": cmd_backtest, "deploy": cmd_deploy,
            "signal": cmd_signal, "paper": cmd_paper, "runs": cmd_runs, "models": cmd_models, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if os.environ.get("EVORL_DEBUG_NANS"):  # a debugging aid: stop at the first NaN inside JAX
        jax.config.update("jax_debug_nans", True)
    # Data fallbacks are reported once through logging (and again beside the results), not as
    # Python warnings with source lines.
    warnings.simplefilter("ignore", DataFallbackWarning)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        return COMMANDS[args.command](guards.checked(args))  # a flag that would do nothing is refused first
    except (RunFailed, StorageError, TrainingDiverged) as exc:
        print(f"evorl {args.command}: error: {indented(exc)}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        print(f"evorl {args.command}: error: {indented(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an --out that is a file: one line naming it
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"evorl {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nevorl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
