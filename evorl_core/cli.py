"""The `evorl` command line: train, backtest, deploy, signal, paper, runs, bench.

User mistakes end in one clear line on stderr (a data error lists each further problem it found on
an indented line under it) and exit code 2; a run that fails once started (diverged, disk full, out
of memory) in one line and exit code 1; SIGINT/SIGTERM during training save a checkpoint and end
the run `interrupted` (exit 130/143). No traceback (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import jax

from evorl_core import bench, guards
from evorl_core.arguments import build_parser
from evorl_core.config import ConfigError, TrainConfig, make_config, parse_floats, parse_ints
from evorl_core.console import (
    ProgressBar,
    cost_line,
    format_metrics_table,
    format_models_table,
    format_pooled_account,
    format_portfolio_table,
    format_runs_table,
    indented,
)
from evorl_core.data import DataError, DataFallbackWarning, feature_registry
from evorl_core.data.features import canonical_features
from evorl_core.deploy.bundle import DeployError, deploy_run, list_models, load_bundle
from evorl_core.deploy.ledger import LedgerError, read_ledger
from evorl_core.deploy.ledger import record as record_paper
from evorl_core.deploy.signal import load_signal_frames, signals, stale_warnings, training_source
from evorl_core.evaluation.evaluate import rebacktest_dir, run_backtest
from evorl_core.portfolio_cli import cmd_orders, cmd_portfolio_paper, cmd_portfolio_signal
from evorl_core.store.atomic import RunDirError, StorageError, dumps, read_json
from evorl_core.store.catalogue import list_runs
from evorl_core.store.rundir import RUN_ID_RE, RunDir, new_run_id
from evorl_core.store.tensorboard import export_run
from evorl_core.system import backends, distributed, provenance
from evorl_core.system.backends import BackendError
from evorl_core.timefmt import format_phases
from evorl_core.training import pipeline
from evorl_core.training.loop import TrainingDiverged
from evorl_core.training.phases import PhaseClock
from evorl_core.training.walkforward import WALKFORWARD_DIR, run_walkforward


class UserError(Exception):
    pass


class RunFailed(Exception):
    """A run that started and then failed (exit code 1); the message is one line."""


# ---------------------------------------------------------------------------------------------
def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset, then every training flag that was given."""
    overrides = dict(
        symbols=tuple(s for token in args.symbols for s in token.split(",") if s), data=args.data, test_days=args.test_days, val_days=args.val_days,
        embargo_days=args.embargo_days, seeds=args.seeds, population=args.population,
        pbt_interval=args.pbt_interval, pbt_fraction=args.pbt_fraction, pbt_resample=args.pbt_resample,
        evolve=tuple(x for x in args.evolve.replace(" ", "").split(",") if x) if args.evolve is not None else None,
        search_space=args.search_space, init_space=args.init_space,
        total_timesteps=args.timesteps, num_envs=args.num_envs, num_steps=args.num_steps,
        minibatch_size=args.minibatch_size, epochs=args.epochs,
        hidden=parse_ints(args.hidden, "hidden") if args.hidden is not None else None,
        lr=args.lr, ent_coef=args.ent_coef, clip_eps=args.clip_eps, gamma=args.gamma, window=args.window,
        features=canonical_features(args.features) if args.features is not None else None,
        gae_lambda=args.gae_lambda, vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm,
        anneal_lr=args.anneal_lr, activation=args.activation, init_scheme=args.init_scheme, init_std=args.init_std,
        precision=args.precision,
        episode_len=args.episode_len, fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
        cost_model=args.cost_model, brokerage_bps=args.brokerage_bps, dp_charge=args.dp_charge,
        price_adjustment=args.price_adjustment,
        positions=parse_floats(args.positions, "positions") if args.positions is not None else None,
        execution=args.execution, initial_capital=args.initial_capital, seed=args.seed,
        backend=args.backend, updates_per_chunk=args.updates_per_chunk,
        member_group=args.member_group, universe_size=args.universe_size, rebalance_band=args.rebalance_band,
    )
    overrides["mode"] = args.mode
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
        phases = PhaseClock(None if args.quiet or not distributed.is_writer() else print_phase)
    else:
        config = config_from_args(args)
        runs_dir, run_id = Path(args.runs_dir), args.run_id or new_run_id()
        phases = PhaseClock(None if args.quiet or not distributed.is_writer() else print_phase)
        market = pipeline.checked_market(config, runs_dir, run_id, cache_dir=args.cache_dir, deploy=args.deploy,
                                         model_name=args.model_name, models_dir=args.models_dir, replace=args.replace,
                                         phases=phases)
        if distributed.is_writer():
            universe = (f"every symbol of {config.data}" if tuple(config.symbols) == ("all",)
                        else ", ".join(config.symbols))
            mode = "portfolio of " if config.mode == "portfolio" else ""
            print(f"evorl: training {config.preset} preset on {mode}{universe} "
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
                           cache_dir=args.cache_dir, phases=phases, tensorboard=args.tensorboard,
                           use_compile_cache=args.compile_cache, market=market, replace=args.replace)
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
    if status.get("phases"):
        print(f"phases: {format_phases(status['phases'])}")
    if args.tensorboard:
        print(f"tensorboard: tensorboard --logdir {run.path / 'tensorboard'}")
    metrics = run.read_backtest_metrics()
    if metrics:
        cfg = run.read_config() or {}
        synthetic = (cfg.get("data_info") or {}).get("synthetic")
        print(f"\nHeld-out test ({cfg.get('test_days')} days, {cfg.get('execution')} execution, "
              f"costs {cost_line(cfg)})" + ("  [SYNTHETIC DATA]" if synthetic else ""))
        print(format_portfolio_table(metrics) if cfg.get("mode") == "portfolio" else format_metrics_table(metrics))
    if status.get("deployed_to"):
        print(f"\ndeployed model: {status['deployed_to']}\nevidence: {status.get('deploy_evidence') or '?'}")
    print(f"\nrun directory: {run.path}")
    if status.get("state") in ("interrupted", "stopped"):
        print(f"resume with: evorl train --resume {run.path}", file=sys.stderr)
    if received:
        return 128 + received[0]
    return 0


def print_phase(name: str, phases: list[dict[str, Any]]) -> None:
    """`evorl: compiling (features took 0.3 s)`: a line as each phase of a run starts."""
    done = phases[-2] if len(phases) > 1 else None
    took = f" ({done['name']} took {done['seconds']:.1f} s)" if done and done.get("seconds") is not None else ""
    print(f"evorl: {name}{took}", file=sys.stderr, flush=True)


def cmd_walkforward(args: argparse.Namespace) -> int:
    backends.select(args.backend)
    if args.resume or args.deploy or args.tensorboard:
        raise UserError("walkforward: --resume, --deploy and --tensorboard apply to `evorl train`; each fold is "
                        "its own run (`evorl export tensorboard <fold run>` writes a fold's events)")
    config = config_from_args(args)
    portfolio = config.mode == "portfolio"
    subject = f"a portfolio of {', '.join(config.symbols)}" if portfolio else ", ".join(config.symbols)
    print(f"evorl: walk-forward of {config.preset} preset on {subject}, {args.folds} folds of "
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
        print(format_portfolio_table(fold["metrics"]) if portfolio else format_metrics_table(fold["metrics"]))
    print(f"\npooled over {args.folds} folds (test days chained in time order, every day out of sample)")
    print(format_pooled_account(summary["pooled"]["PORTFOLIO"], summary["benchmark"]) if portfolio
          else format_metrics_table(summary["pooled"], pooled=True))
    print(f"\nsummary: {Path(args.runs_dir) / WALKFORWARD_DIR / summary['id'] / 'summary.json'}")
    return 0


def resolve_run(value: str, runs_dir: str | Path, flag: str = "--run", trained: bool = True) -> RunDir:
    """A run given as a directory or as a run id in `runs_dir`; refuses one that does not exist or
    failed (`trained`: one that has no checkpoint yet), naming the case."""
    path = Path(value)
    if not path.is_dir():
        path = Path(runs_dir) / value
        if not RUN_ID_RE.match(value) or not path.is_dir():
            where = f"no run {value!r} in {runs_dir}" if Path(runs_dir).is_dir() else f"{runs_dir} does not exist"
            raise UserError(f"{flag} {value}: no such run ({where}; `evorl runs --runs-dir {runs_dir}` lists the runs)")
    run = RunDir(path)
    status = run.read_status() or {}
    if trained and status.get("state") == "failed":
        raise UserError(f"{flag} {value}: this run failed: {status.get('error') or 'no error message recorded'}")
    if trained and not run.has_checkpoint():  # a damaged config.json is the loaders' to name
        raise UserError(f"{flag} {value}: run {run.path} is {status.get('state', 'unknown')} and has no checkpoint "
                        "yet: not a trained run")
    return run


def cmd_backtest(args: argparse.Namespace) -> int:
    run = resolve_run(args.run, args.runs_dir)
    stored = run.load_config()
    out = Path(args.out) if args.out else rebacktest_dir(run, args.data or str(stored.get("data", "data")))
    metrics = run_backtest(run, data=args.data, test_days=args.test_days, out_dir=out, cache_dir=args.cache_dir)
    record = read_json(out / "rebacktest.json", {}, kind=dict)
    for warning in (record.get("data_info") or {}).get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    windows = record.get("windows") or {}
    spans = sorted({f"{w.get('test_start')} .. {w.get('test_end')}" for w in windows.values() if isinstance(w, dict)})
    print(f"Re-backtest of {run.run_id} on {record.get('data') or stored.get('data')}: "
          f"{record.get('test_days') or stored.get('test_days')} test days ({'; '.join(spans) or 'dates unknown'}), "
          f"{stored.get('execution')} execution, costs {cost_line(stored)}"
          + ("  [SYNTHETIC DATA]" if (record.get("data_info") or {}).get("synthetic") else ""))
    selection = run.read_selection() or {}
    if (selection.get("members") or 1) > 1:
        print(f"subject: the chosen member alone (member {selection.get('chosen_member')} of {selection['members']}): "
              "its figures and its verdict")
    print(format_metrics_table(metrics))
    print(f"\nwritten to: {out} (the run's own backtest/ is unchanged)")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    path = deploy_run(resolve_run(args.run, args.runs_dir).path, args.model_name, args.models_dir, args.ensemble,
                      args.replace)
    meta = load_bundle(path).meta
    print(f"deployed model: {path} ({meta['policy']})\nevidence: {meta['evidence']}")
    return 0


def load_model(name: str, models_dir: str | Path, force: bool = False, expect_features: str | None = None):
    """`load_bundle`, and for a name that is no model the models that exist (and the closest one)."""
    try:
        return load_bundle(name, models_dir=models_dir, force=force, expect_features=expect_features)
    except DeployError as exc:
        if "no model bundle" not in str(exc):
            raise
        names = [m["name"] for m in list_models(models_dir)]
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = f" (models in {models_dir}: {', '.join(names)})" if names else f" ({models_dir} holds no models)"
        raise DeployError(f"{exc}{hint}{listing}") from None


def cmd_signal(args: argparse.Namespace) -> int:
    bundle = load_model(args.model, args.models_dir, args.force, getattr(args, "features", None))
    if bundle.config.mode == "portfolio":
        return cmd_portfolio_signal(args, bundle)
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
    bundle = load_model(args.model, args.models_dir, args.force)
    if bundle.config.mode == "portfolio":
        return cmd_portfolio_paper(args, bundle)
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
    print(format_runs_table(runs, args.runs_dir))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    models = [dict(m, ledger=ledger_state(m["path"])) for m in list_models(args.models_dir)]
    if args.json:
        print(dumps(models))
        return 0
    print(format_models_table(models, args.models_dir))
    return 0


def ledger_state(model_dir: str | Path) -> dict[str, Any]:
    """A model's paper ledger in brief: entries, the last date recorded, or why it cannot be read."""
    try:
        rows = read_ledger(model_dir)
    except LedgerError as exc:
        return {"entries": None, "last_date": None, "error": str(exc)}
    dates = [str(r["date"]) for r in rows if r.get("date")]
    return {"entries": len(rows), "last_date": max(dates) if dates else None, "error": None}


def cmd_export(args: argparse.Namespace) -> int:
    run = resolve_run(args.run, args.runs_dir, flag="RUN", trained=False)
    path = export_run(run)
    print(f"wrote TensorBoard events of {run.run_id} to {path}\nview them with: tensorboard --logdir {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    return bench.main(quick=args.quick, out=args.out, only=args.only, repeats=args.repeats, backend=args.backend)


# Mistakes a user can fix: one line on stderr (a DataError: one more line per problem), exit code 2.
USER_ERRORS = (UserError, ConfigError, DataError, DeployError, RunDirError, BackendError, FileNotFoundError,
               ValueError)

def cmd_features(args: argparse.Namespace) -> int:
    print(feature_registry.describe())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    raise UserError("report: the HTML report draws the dashboard's figures, so it comes with the dashboard: run "
                    "`evorl report RUN` (the installed `evorl` command), not the engine module alone")


COMMANDS = {"train": cmd_train, "walkforward": cmd_walkforward, "backtest": cmd_backtest, "deploy": cmd_deploy,
            "signal": cmd_signal, "orders": cmd_orders, "paper": cmd_paper, "runs": cmd_runs,
            "models": cmd_models, "export": cmd_export, "features": cmd_features, "report": cmd_report,
            "bench": cmd_bench}


NEGATIVE_VALUE = re.compile(r"^-[0-9.]")
FIELD_FLAGS = {"total_timesteps": "timesteps", "init_scheme": "init_scheme"}  # config field -> argparse dest


def flag_message(message: str, args: argparse.Namespace) -> str:
    """A config error as the user typed it: 'minibatch_size: 1024 must divide ...' ->
    'minibatch_size: 1024 must divide ... (--minibatch-size)', saying when the value came from the
    preset rather than a flag."""
    field, sep, rest = message.partition(": ")
    dest = FIELD_FLAGS.get(field, field)
    if not sep or not re.fullmatch(r"[a-z_]+", field) or not hasattr(args, dest):
        return message
    flag = "--" + dest.replace("_", "-")
    if getattr(args, dest) is None and getattr(args, "preset", None) and not getattr(args, "resume", None):
        return f"{message} (the {args.preset} preset's value; set {flag} to change it)"
    return f"{message} ({flag})"


def joined_negative_values(argv: list[str]) -> list[str]:
    """`--positions -1,0,1` as `--positions=-1,0,1`: argparse reads a value that starts with '-' as
    a flag unless it is one plain negative number; the form the help shows must work."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NEGATIVE_VALUE.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(joined_negative_values(sys.argv[1:] if argv is None else list(argv)))
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
    except BrokenPipeError:  # `evorl runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (RunFailed, StorageError, TrainingDiverged) as exc:
        print(f"evorl {args.command}: error: {indented(exc)}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        message = flag_message(str(exc), args) if isinstance(exc, ConfigError) else str(exc)
        print(f"evorl {args.command}: error: {indented(message)}", file=sys.stderr)
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
