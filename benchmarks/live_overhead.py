"""Training throughput with the dashboard's Live page open and polling vs the same run headless.

Runs the same `evorl train` (quick preset, synthetic data) alternately:
  headless: the CLI alone;
  watched:  the CLI while `streamlit run dashboard.py` serves and headless Chromium shows the run's
            Live page (which re-reads the run directory and redraws its charts every second).
Throughput per run = median of the per-chunk env steps/s in metrics.jsonl (compile excluded).
Prints the medians per mode and their ratio, and writes JSON.

    python benchmarks/live_overhead.py --timesteps 1500000 --repeats 2
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_cmd(run_id: str, runs_dir: Path, timesteps: int) -> list[str]:
    return [sys.executable, "-m", "evorl_core.cli", "train", "--preset", "quick", "--data", "synthetic",
            "--timesteps", str(timesteps), "--runs-dir", str(runs_dir), "--run-id", run_id, "--quiet",
            "--updates-per-chunk", "8"]


def run_throughput(runs_dir: Path, run_id: str) -> float:
    rows = [json.loads(line) for line in (runs_dir / run_id / "metrics.jsonl").read_text().splitlines() if line]
    per_chunk = sorted({(r["train_seconds"], r["steps_per_sec"]) for r in rows})
    return statistics.median(v for _, v in per_chunk)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timesteps", type=int, default=1_500_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench-results/live_overhead.json")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="evorl-live-"))
    runs_dir = tmp / "runs"
    env = {**os.environ, "EVORL_RUNS_DIR": str(runs_dir), "EVORL_MODELS_DIR": str(tmp / "models"),
           "EVORL_DATA_CACHE": str(tmp / "cache")}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
         "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, list[float]] = {"headless": [], "watched": []}
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("EVORL_CHROMIUM", "/usr/bin/chromium"),
                                        headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            for i in range(args.repeats):
                for mode in ("headless", "watched"):
                    run_id = f"{mode}-{i}"
                    proc = subprocess.Popen(train_cmd(run_id, runs_dir, args.timesteps), cwd=ROOT, env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    if mode == "watched":
                        while not (runs_dir / run_id / "status.json").exists():
                            time.sleep(0.2)
                        page.goto(f"http://127.0.0.1:{port}/live?run={run_id}")
                        page.get_by_text("Env steps / s").first.wait_for(timeout=120_000)
                    else:
                        page.goto("about:blank")
                    if proc.wait() != 0:
                        raise SystemExit(f"training run {run_id} failed")
                    results[mode].append(run_throughput(runs_dir, run_id))
                    print(f"{run_id}: {results[mode][-1]:,.0f} env steps/s", flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    headless = statistics.median(results["headless"])
    watched = statistics.median(results["watched"])
    summary = {"timesteps": args.timesteps, "repeats": args.repeats, "runs": results,
               "headless_median_steps_per_sec": headless, "watched_median_steps_per_sec": watched,
               "ratio_watched_over_headless": watched / headless}
    print(f"headless median {headless:,.0f} env steps/s | Live page open {watched:,.0f} env steps/s | "
          f"ratio {watched / headless:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
