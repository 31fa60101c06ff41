"""`evorl bench`: throughput, memory, FLOP utilisation and a peer baseline, in one run.

Sections (`--only` picks some):

- env       env steps/s with random actions: the JAX env at 256 and 4096 envs (one jitted scan,
            the whole observation consumed so nothing is dead code; actions and keys drawn before the
            timed call), and the NumPy reference env (evorl_core/modes/single/reference.py) as one
            env and as a Python loop over 256 envs.
- train     end-to-end `pipeline.run` of the `quick` and `production` presets on synthetic data, each
            in a fresh subprocess: env steps/s and updates/s per compiled chunk (compile excluded),
            compile time, peak host RSS of the process, device memory where the backend reports it.
- flops     model FLOP utilisation: analytic FLOPs of one update (ppo.update_flops) / measured update
            time, over the peak rate measured in this run with matmuls of the network's own layer
            shapes (forward, input-gradient and weight-gradient products at the minibatch size).
- peer      Stable-Baselines3 PPO (PyTorch, CPU) on a gymnasium wrapper of the NumPy reference env
            with the same observation, network, rollout, minibatch sizes and epochs; ratio evorl/SB3.
            Needs the optional [bench] extra; reported as not installed otherwise.
- scaling   steps/s of the quick preset over num_envs 64 ... 4096 (8 minibatches per epoch).
- precision fp32 vs bf16 (and tf32 on an accelerator): the train points, quick populations, each
            dtype's matmul peak at the layer shapes and the FLOP utilisation against it (precision.py).
- population  aggregate steps/s of populations of 1 ... 64 members (PBT rounds included).
- portfolio   portfolio env asset-steps/s at N = 3, 50, 500, alone and with the network's inputs
            gathered, timed in turns with the single-asset env (at the same num_envs and at num_envs x N);
            the production portfolio preset trained at N = 50 and 500 (throughput, compile, peak RSS).
            The JSON's `portfolio.includes` says what each figure contains.
- features    the time to build every feature of the `technical` set for 500 symbols x 5,000 days
            (one `raw_features` call per symbol, as `build_market` does; wall and CPU seconds),
            beside the legacy `default` six (features.py).

Every figure is the median of repeats (min and max are kept in the JSON). The JSON records the
machine, backend, devices, versions and the load average before and after: on a shared machine,
other processes slow every figure down, the peer's as much as ours.

    evorl bench [--quick] [--only env train flops peer scaling] [--repeats N] [--out PATH]
    python -m evorl_core.bench ...          (same, plus --backend auto|cpu|gpu|metal)

Modules: plan (sections, sizes, targets, the median statistic), sections (env, train, flops,
scaling), peer (the optional SB3 baseline), harness (workers in fresh processes, run_suite),
report (derived figures, the table); __main__ is the command line of `python -m evorl_core.bench`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from evorl_core.bench.harness import run_suite
from evorl_core.bench.report import format_table
from evorl_core.system import backends


def main(quick: bool = False, out: str | None = "bench-results/bench.json", only: list[str] | None = None,
         repeats: int | None = None, backend: str | None = None, tiny: bool = False) -> int:
    """Entry point of `evorl bench`. Prints the table, writes the JSON; returns the exit code."""
    backends.select(backend)
    if backend not in (None, "auto"):
        backends.check_available(backend)
    command = "evorl bench" + (" --quick" if quick else "") + (f" --only {' '.join(only)}" if only else "") + \
        (f" --repeats {repeats}" if repeats else "") + (f" --backend {backend}" if backend else "")
    path = Path(out) if out else None

    def save(result: dict) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
        tmp.replace(path)

    # the JSON is rewritten after every measured point ("complete": false until the end), so a run
    # cut short (a time limit, a crash of the machine) keeps what it measured
    result = run_suite(quick=quick, only=only, repeats=repeats, tiny=tiny, command=command,
                       log=lambda msg: print(msg, file=sys.stderr, flush=True), save=save)
    print(format_table(result))
    if path is not None:
        save(result)
        print(f"\nwrote {path}")
    return 0
