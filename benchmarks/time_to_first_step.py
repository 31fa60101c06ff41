"""Time to first step with JAX's persistent compilation cache cold and warm.

Each measurement is one fresh Python process (so nothing is cached in memory) that trains one run
on synthetic data with a compile cache folder of its own:
  cold: the folder is empty (every program compiles);
  warm: the same folder again, after the cold run filled it (the same shapes load from disk).
Two entry points, as a user meets them:
  cli:       `python -m evorl_core.cli train ...`, timed from the process start;
  dashboard: the dashboard's job registry (`jobs.get_registry().start`, what the Train page's
             button calls) inside a fresh process, timed from the process start.
Time to first step = from the process start to the start of the `training` phase (status.json
`phases`), which is when the first update runs; the phases' own durations are kept too.

    python benchmarks/time_to_first_step.py --presets quick production --out bench-results/ttfs.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# two updates of each preset: enough to reach (and time) the first step
TIMESTEPS = {"quick": 2 * 64 * 128, "production": 2 * 256 * 512}

DASHBOARD_SNIPPET = """
import sys, time
from evorl_core.config import make_config
from evorl_core.training import jobs
preset, runs, run_id, timesteps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
overrides = {"data": "synthetic"}
if timesteps != "none":
    overrides["total_timesteps"] = int(timesteps)
registry = jobs.get_registry()
registry.start(make_config(preset, **overrides), runs, run_id)
while registry.is_active(run_id, runs):
    time.sleep(0.2)
"""


def run_once(entry: str, preset: str, runs: Path, run_id: str, cache: Path) -> dict:
    env = dict(os.environ, EVORL_COMPILE_CACHE=str(cache), PYTHONPATH=str(ROOT))
    timesteps = TIMESTEPS[preset]
    if entry == "cli":
        cmd = [sys.executable, "-m", "evorl_core.cli", "train", "--preset", preset, "--data", "synthetic",
               "--runs-dir", str(runs), "--run-id", run_id, "--quiet"]
        if timesteps:
            cmd += ["--timesteps", str(timesteps)]
    else:
        cmd = [sys.executable, "-c", DASHBOARD_SNIPPET, preset, str(runs), run_id, str(timesteps or "none")]
    started = time.time()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)
    total = time.time() - started
    status = json.loads((runs / run_id / "status.json").read_text())
    phases = {p["name"]: p for p in status["phases"]}
    return {"time_to_first_step_s": phases["training"]["started_at"] - started,
            "compile_s": status.get("compile_seconds"), "process_s": total,
            "phases_s": {name: p["seconds"] for name, p in phases.items()},
            "cache_entries": sum(1 for p in cache.rglob("*") if p.is_file())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["quick"], choices=sorted(TIMESTEPS))
    parser.add_argument("--entries", nargs="+", default=["cli", "dashboard"], choices=["cli", "dashboard"])
    parser.add_argument("--out", default="bench-results/time_to_first_step.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="evorl-ttfs-"))
    result = {"command": " ".join(sys.argv), "load_before": os.getloadavg(), "points": []}
    try:
        for preset in args.presets:
            for entry in args.entries:
                cache = work / f"cache-{preset}-{entry}"
                point = {"preset": preset, "entry": entry}
                for temperature in ("cold", "warm"):
                    point[temperature] = run_once(entry, preset, work / "runs", f"{preset}-{entry}-{temperature}",
                                                  cache)
                    print(f"{preset:<10} {entry:<9} {temperature}: time to first step "
                          f"{point[temperature]['time_to_first_step_s']:.1f} s (compile "
                          f"{point[temperature]['compile_s']:.1f} s)", file=sys.stderr, flush=True)
                point["warm_over_cold_compile"] = point["warm"]["compile_s"] / point["cold"]["compile_s"]
                point["warm_over_cold_first_step"] = (point["warm"]["time_to_first_step_s"]
                                                      / point["cold"]["time_to_first_step_s"])
                result["points"].append(point)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for p in result["points"]:
        print(f"{p['preset']:<10} {p['entry']:<9} first step cold {p['cold']['time_to_first_step_s']:6.1f} s  "
              f"warm {p['warm']['time_to_first_step_s']:6.1f} s  compile cold {p['cold']['compile_s']:5.1f} s  "
              f"warm {p['warm']['compile_s']:5.1f} s  ({p['warm_over_cold_compile']:.0%} of cold)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
