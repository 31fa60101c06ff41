"""The `evorl` command line's arguments: every command, flag and help text (the commands themselves
are in `cli`)."""

from __future__ import annotations

import argparse
import os

from evorl_core import __version__, guards
from evorl_core.bench.plan import SECTION_HELP, SECTIONS
from evorl_core.config import (
    COST_MODELS,
    DEFAULT_DATA,
    DEFAULT_SYMBOLS,
    EXECUTION_MODES,
    INIT_SCHEMES,
    PRECISIONS,
    PRESETS,
    PRICE_ADJUSTMENTS,
    SEARCH_SPACE,
)
from evorl_core.system import backends, distributed
from evorl_core.system.compile_cache import CACHE_DIR_NAME, ENV_CACHE

RUN_HELP = "a run id (as `evorl runs` lists them, looked up in --runs-dir) or a run directory"
EXPORT_FORMATS = ("tensorboard",)


def add_train_flags(t: argparse.ArgumentParser) -> None:
    """Every training setting as a flag (train and walkforward share them)."""
    t.add_argument("--symbols", nargs="+", default=list(DEFAULT_SYMBOLS), help="symbols (default: %(default)s)")
    t.add_argument("--timesteps", type=int,
                   help="timesteps per agent (env steps; default from the preset); --seeds/--population N train "
                        "N agents, N times the env steps in all")
    pf = t.add_argument_group("portfolio mode (docs/portfolio.md)")
    pf.add_argument("--portfolio", dest="mode", action="store_const", const="portfolio",
                    help="one agent allocates one account over all the symbols plus cash (mode portfolio)")
    pf.add_argument("--universe-size", type=int,
                    help="--symbols all --data synthetic: names in the synthetic universe (default 50)")
    pf.add_argument("--rebalance-band", type=float,
                    help="trades of at most this fraction of the account are not made (default 0.002)")
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
    t.add_argument("--data", default=DEFAULT_DATA, help="auto | synthetic | yahoo | csv:DIR (default: %(default)s)")
    t.add_argument("--preset", default="production", choices=sorted(PRESETS),
                   help="sizes of network and batch (default: production, the original system's sizes, minutes per "
                        "update on a small CPU; quick learns within minutes)")
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
    t.add_argument("--precision", choices=list(PRECISIONS),
                   help="network arithmetic: fp32; tf32 (TensorFloat-32 matmuls on NVIDIA GPUs, the same as fp32 "
                        "on CPU); bf16 (bfloat16 matmuls and activations; float32 parameters, optimiser state and "
                        "losses); checkpoints and bundles stay float32; auto (default) = the backend's "
                        "measured-faster choice, fp32 on every backend today (docs/internals.md)")
    t.add_argument("--window", type=int, help="days of features in one observation (default 32)")
    t.add_argument("--features", help="feature set: default, technical, or NAME,NAME(k),... "
                                      "(`evorl features` lists them; docs/features.md)")
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
    t.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard/ (per member with members)")
    t.add_argument("--no-compile-cache", dest="compile_cache", action="store_false", default=None,
                   help=f"do not use JAX's persistent compilation cache (default: on, in {CACHE_DIR_NAME}/ beside "
                        f"the runs folder; {ENV_CACHE}=off turns it off, {ENV_CACHE}=DIR moves it)")
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

    t = sub.add_parser("train", help="train a PPO agent, backtest it on held-out days, optionally deploy",
                       epilog="The held-out table's verdicts (excess over buy & hold, timing skill): "
                              "docs/evaluation.md. Phases, compile cache, TensorBoard: README.md.")
    add_train_flags(t)

    w = sub.add_parser("walkforward", help="K rolling-origin folds, each trained and tested on its own block")
    add_train_flags(w)
    w.add_argument("--folds", type=int, default=3, help="number of folds (test blocks of --test-days)")
    w.add_argument("--id", help="walk-forward id (default: wf-<time>); folds are runs <id>-fold<k>")

    b = sub.add_parser("backtest", help="re-run the backtest of a trained run on a data source")
    b.add_argument("--run", required=True, metavar="RUN", help=RUN_HELP)
    b.add_argument("--runs-dir", default=os.environ.get("EVORL_RUNS_DIR", "runs"))
    b.add_argument("--data", help="data source (default: the run's own)")
    b.add_argument("--test-days", type=int,
                   help="test on the last N days (refused if they overlap the run's training/validation days)")
    b.add_argument("--out", metavar="DIR",
                   help="a new output folder (default: RUN_DIR/rebacktests/<timestamp>-<source>/; "
                        "never RUN_DIR/backtest)")
    b.add_argument("--cache-dir", default=os.environ.get("EVORL_DATA_CACHE", "data_cache"))

    d = sub.add_parser("deploy", help="deploy a finished run as a model bundle")
    d.add_argument("--run", required=True, metavar="RUN", help=RUN_HELP)
    d.add_argument("--runs-dir", default=os.environ.get("EVORL_RUNS_DIR", "runs"))
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
    s.add_argument("--features", help="refuse the model unless it was trained on this feature set")

    o = sub.add_parser("orders", help="portfolio model: whole-share orders from holdings to the next session's "
                                      "target weights, as CSV")
    o.add_argument("--model", required=True, metavar="NAME_OR_DIR")
    o.add_argument("--capital", required=True, type=float, metavar="RUPEES",
                   help="cash in the account (rupees); with --holdings the account is this cash plus the holdings")
    o.add_argument("--holdings", metavar="FILE", help="CSV with columns symbol,shares of what the account holds")
    o.add_argument("--data", help="data source (default: the one the model was trained on)")
    o.add_argument("--out", metavar="FILE", help="write the order list here (default: print it)")
    o.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))
    o.add_argument("--cache-dir", default=os.environ.get("EVORL_DATA_CACHE", "data_cache"))

    pp = sub.add_parser("paper", help="append today's bar to a model's forward (paper) ledger; once per day")
    pp.add_argument("--model", required=True, metavar="NAME_OR_DIR")
    pp.add_argument("--data", help="data source (default: the one the model was trained on); 'auto' never "
                                    "falls back to synthetic prices here")
    pp.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))
    pp.add_argument("--cache-dir", default=os.environ.get("EVORL_DATA_CACHE", "data_cache"))
    pp.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("features", help="list every feature (parameters, description) and the named feature sets")
    r = sub.add_parser("runs", help="list runs with state and headline metrics")
    r.add_argument("--runs-dir", default=os.environ.get("EVORL_RUNS_DIR", "runs"))
    r.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="list deployed model bundles")
    m.add_argument("--models-dir", default=os.environ.get("EVORL_MODELS_DIR", "models"))
    m.add_argument("--json", action="store_true")

    rp = sub.add_parser("report", help="write a run's tearsheet as one self-contained HTML file (opens offline)")
    rp.add_argument("run", metavar="RUN", help="a run id (in --runs-dir) or a run directory")
    rp.add_argument("--runs-dir", default=os.environ.get("EVORL_RUNS_DIR", "runs"))
    rp.add_argument("--out", metavar="FILE.html", help="where to write it (default: <run id>-report.html here)")

    x = sub.add_parser("export", help="write a run in another tool's format (tensorboard)")
    x.add_argument("format", choices=EXPORT_FORMATS, help="tensorboard: event files in RUN_DIR/tensorboard/")
    x.add_argument("run", metavar="RUN", help=RUN_HELP)
    x.add_argument("--runs-dir", default=os.environ.get("EVORL_RUNS_DIR", "runs"))

    be = sub.add_parser("bench", help="benchmark suite (env, training, FLOP utilisation, peers)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="sections (all by default; --only picks some):\n"
                               + "\n".join(f"  {name:<11} {SECTION_HELP[name]}" for name in SECTIONS))
    be.add_argument("--quick", action="store_true", help="a few-minute version of the suite")
    be.add_argument("--out", default="bench-results/bench.json", help="JSON output path")
    be.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections (listed below)")
    be.add_argument("--repeats", type=int)
    be.add_argument("--backend", choices=list(backends.BACKENDS), default="auto")
    guards.add_flags(sub.choices)
    return p


def _version() -> str:
    return f"evorl {__version__}"
