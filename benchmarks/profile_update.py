"""Profile PPO updates: where the time of one compiled chunk goes, op by op (XLA CPU/GPU).

Runs `--updates` updates of a preset as one jitted scan under `jax.profiler.trace`, then sums the
trace's events by XLA op name (while loops include the ops they contain) and prints the largest.
The trace directory can also be opened in Perfetto (ui.perfetto.dev) or TensorBoard's profiler.

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true python benchmarks/profile_update.py --preset quick
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import jax  # noqa: E402

from evorl_core.agents.build import make_ppo  # noqa: E402
from evorl_core.bench.plan import bench_config, bench_market  # noqa: E402
from evorl_core.training.sizing import update_flops  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "production"])
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--trace-dir", default="bench-results/trace")
    args = parser.parse_args()

    config = bench_config(args.preset, {})
    market = bench_market(config)
    ppo = make_ppo(config)
    runner = ppo.init(jax.random.PRNGKey(0), market.data)
    fn = jax.jit(ppo.run_updates, static_argnums=2).lower(runner, market.data, args.updates).compile()
    jax.block_until_ready(fn(runner, market.data))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(runner, market.data))
    seconds = (time.perf_counter() - t0) / args.updates
    flops = update_flops(config)
    print(f"{args.preset}: {seconds * 1e3:.1f} ms/update unprofiled, {config.batch_size / seconds:,.0f} steps/s, "
          f"{flops / seconds / 1e9:.1f} GFLOP/s")

    with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
        jax.block_until_ready(fn(runner, market.data))
    files = sorted(glob.glob(f"{args.trace_dir}/**/*perfetto_trace.json.gz", recursive=True))
    trace = json.load(gzip.open(files[-1]))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(("$", "ThunkExecutor", "PjitFunction")):
            total[e["name"]] += e["dur"]
            count[e["name"]] += 1
    print(f"top ops of {args.updates} updates (profiled; trace in {args.trace_dir}):")
    for name, us in total.most_common(args.top):
        print(f"  {us / 1e3:9.2f} ms  {count[name]:6d} calls  {name[:100]}")


if __name__ == "__main__":
    main()
