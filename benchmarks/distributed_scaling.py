"""One process against two (jax.distributed on localhost): env steps/s of the same training run.

Every arm is `evorl train` in fresh processes on synthetic data, same preset and seed:
- one agent: `1 process` (one device, the default); `1 process, 2 devices` (two forced CPU devices,
  the env batch split inside a process); `2 processes` (one device each, joined with
  `--coordinator-address --num-processes --process-id`: the env batch split over the processes,
  gradients all-reduced between them by gloo on CPU);
- a population (`--population 2`, PBT): `pop 1 process` against `pop 2 processes` (one member per
  process: no gradient traffic between them, only the PBT rounds and the metrics).
Throughput = median over chunks of the env steps/s in metrics.jsonl (compile excluded, the first
chunk dropped), for each repeat; the figure is the median over repeats. Arms alternate within a
repeat so that background load hits them alike. Writes JSON. docs/scaling.md has the figures.

    python benchmarks/distributed_scaling.py [--preset quick] [--timesteps 400000] [--repeats 3]
                                             [--arms agent,population] [--backend cpu]
                                             [--out bench-results/distributed_scaling.json]

On a GPU host, `--backend gpu --devices-per-process 1` makes each process use one GPU
(CUDA_VISIBLE_DEVICES), so `2 processes` means two GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evorl_core.system import provenance

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chunk_rates(run_dir: Path, per_chunk: int) -> list[float]:
    """Env steps/s of each chunk (every row of a chunk, one per update and member, carries the
    chunk's figure), the first chunk dropped."""
    rates: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rates.setdefault((row["update"] - 1) // per_chunk, row["steps_per_sec"])
    values = [rates[k] for k in sorted(rates)]
    return values[1:] or values


def run_arm(name: str, processes: int, devices: int, extra: list[str], args: argparse.Namespace,
            work: Path) -> dict:
    run_id = f"{name.replace(' ', '-').replace(',', '')}-{time.time_ns()}"
    base = [sys.executable, "-m", "evorl_core.cli", "train", "--preset", args.preset, "--data", "synthetic",
            "--timesteps", str(args.timesteps), "--updates-per-chunk", str(args.updates_per_chunk),
            "--backend", args.backend, "--quiet", "--run-id", run_id, "--cache-dir", str(work / "cache"), *extra]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if args.backend == "cpu":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    port = free_port()
    procs = []
    t0 = time.perf_counter()
    for i in range(processes):
        cmd = [*base, "--runs-dir", str(work / ("runs" if i == 0 else f"peer{i}"))]
        if processes > 1:
            cmd += ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(processes),
                    "--process-id", str(i)]
        proc_env = dict(env)
        if args.backend == "gpu" and processes > 1:
            first = i * args.devices_per_process
            proc_env["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + d) for d in range(args.devices_per_process))
        procs.append(subprocess.Popen(cmd, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=work))
    for proc in procs:
        _, err = proc.communicate(timeout=args.timeout)
        if proc.returncode != 0:
            raise SystemExit(f"{name}: exit {proc.returncode}\n{err[-3000:]}")
    wall = time.perf_counter() - t0
    run_dir = work / "runs" / run_id
    status = json.loads((run_dir / "status.json").read_text())
    rates = chunk_rates(run_dir, args.updates_per_chunk)
    return {"arm": name, "processes": processes, "devices_per_process": devices,
            "steps_per_sec": statistics.median(rates), "chunks": len(rates),
            "chunk_rates": rates, "compile_seconds": status.get("compile_seconds"),
            "mesh": status.get("mesh"), "wall_seconds": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--timesteps", type=int, default=400_000, help="env steps (per member)")
    parser.add_argument("--arms", default="agent,population", help="agent, population or both")
    parser.add_argument("--population", type=int, default=2)
    parser.add_argument("--updates-per-chunk", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--devices-per-process", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", default="bench-results/distributed_scaling.json")
    args = parser.parse_args()

    pop = ["--population", str(args.population), "--pbt-interval", str(args.updates_per_chunk)]
    per = args.devices_per_process
    arms = {"agent": [("1 process", 1, per, [])] + ([("1 process, 2 devices", 1, 2, [])] if args.backend == "cpu"
                                                     else []) + [("2 processes", 2, per, [])],
            "population": [(f"pop {args.population}, 1 process", 1, per, pop),
                           (f"pop {args.population}, 2 processes", 2, per, pop)]}
    arms = [arm for group in args.arms.split(",") for arm in arms[group.strip()]]
    results: dict[str, list[dict]] = {arm[0]: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="evorl-dist-bench-") as tmp:
        for repeat in range(args.repeats):
            for name, processes, devices, extra in arms:
                load = os.getloadavg()[0]
                result = run_arm(name, processes, devices, extra, args, Path(tmp))
                result["loadavg_before"] = load
                results[name].append(result)
                print(f"repeat {repeat + 1}: {name:<26} {result['steps_per_sec']:>10,.0f} env steps/s "
                      f"(median of {result['chunks']} chunks; load {load:.1f})", flush=True)
    summary = {name: statistics.median(r["steps_per_sec"] for r in runs) for name, runs in results.items()}
    ratio = {name: summary[name] / summary[next(n for n, p, _, e in arms if p == 1 and e == extra)]
             for name, _, _, extra in arms}  # against the first one-process arm of the same kind
    print(f"\n{'arm':<26} {'env steps/s':>12} {'vs 1 process':>13}")
    for name in summary:
        print(f"{name:<26} {summary[name]:>12,.0f} {ratio[name]:>12.2f}x")
    record = {"preset": args.preset, "timesteps": args.timesteps, "population": args.population, "updates_per_chunk": args.updates_per_chunk,
              "repeats": args.repeats, "backend": args.backend, "summary": summary, "vs_one_process": ratio,
              "runs": results,
              "host": provenance.host(), "versions": provenance.library_versions(),
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
