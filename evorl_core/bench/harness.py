"""Running the suite: the worker protocol (a section run in a fresh `python -m evorl_core.bench
--worker KIND` process that prints one result line), the machine record, and `run_suite`, which runs
the chosen sections and assembles the JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evorl_core.bench.features import bench_features
from evorl_core.bench.peer import peer_available, worker_peer
from evorl_core.bench.plan import BENCH_PRESETS, SECTIONS, plan
from evorl_core.bench.portfolio import bench_portfolio_env, worker_portfolio_train
from evorl_core.bench.precision import bench_precision
from evorl_core.bench.report import derive
from evorl_core.bench.sections import bench_env, bench_flops, worker_population, worker_scaling, worker_train
from evorl_core.system import provenance

RESULT_MARK = "EVORL_BENCH_RESULT "
SCHEMA = 1
WORKERS = {"portfolio_train": worker_portfolio_train, "train": worker_train, "peer": worker_peer, "scaling": worker_scaling, "population": worker_population}
ROOT = Path(__file__).resolve().parents[2]  # the checkout holding evorl_core


def run_worker(kind: str, args: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run a worker in a fresh Python process (its own compile caches, peak RSS and threads)."""
    cmd = [sys.executable, "-m", "evorl_core.bench", "--worker", kind, "--worker-args", json.dumps(args)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout)[-3000:]
    raise RuntimeError(f"bench worker {kind} failed (exit {proc.returncode}):\n{tail}")


def machine_info() -> dict[str, Any]:
    """The host as the bench JSON records it (`machine`): provenance.host()'s facts and a hash of
    the hostname, which tells runs on one machine apart without naming it."""
    host = provenance.host()
    return {"hostname_hash": abs(hash(platform.node())) % 10**8,
            **{k: host[k] for k in ("platform", "python", "cpu", "cpu_count", "memory_gb")}}


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_suite(*, quick: bool = False, only: list[str] | None = None, repeats: int | None = None,
              tiny: bool = False, command: str = "", log=print, save=None) -> dict[str, Any]:
    """Run the sections; `save(result)`, when given, receives the partial result (`complete`
    false) after every measured point, and the caller saves the final one."""
    sections = list(only or SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    info = provenance.describe()
    p = plan(quick, repeats, tiny, backend=info["backend"])
    result: dict[str, Any] = {
        "schema": SCHEMA, "command": command, "quick": quick, "tiny": tiny, "sections": sections,
        "repeats": p["repeats"], "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(), "backend": info["backend"], "device": info["device_kind"],
        "device_count": info["device_count"], "backend_info": info, "jax_version": info["jax"],
        "versions": provenance.library_versions(), "load_avg_start": _load(), "notes": [], "complete": False,
    }

    def checkpoint() -> None:
        if save is not None:
            save(result)

    log(f"evorl bench{' --quick' if quick else ''}: {provenance.summary(info)}; median of {p['repeats']} repeats")
    if "env" in sections:
        log("env ...")
        result["env"] = bench_env(p, log)
        checkpoint()
    if "flops" in sections:
        log("flops ...")
        result["flops"] = bench_flops(p, log)
        checkpoint()
    if "train" in sections:
        result["train"] = {}
        for preset in BENCH_PRESETS:
            log(f"train {preset} ...")
            result["train"][preset] = run_worker("train", p["train"][preset])
            t = result["train"][preset]
            log(f"  {t['steps_per_s']['median']:,.0f} steps/s, compile {t['compile_s']:.1f} s, "
                f"peak RSS {t['peak_host_rss_mb']:.0f} MB")
            checkpoint()
    if "peer" in sections:
        ok, why = peer_available()
        result["peer"] = {}
        if not ok:
            log(f"peer: Stable-Baselines3 {why}")
            result["peer"] = {p_: {"available": False, "reason": why} for p_ in BENCH_PRESETS}
        else:
            for preset in BENCH_PRESETS:
                log(f"peer sb3 {preset} ...")
                args = {"preset": preset, **p["peer"][preset]}
                try:
                    result["peer"][preset] = run_worker("peer", args)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    result["peer"][preset] = {"available": True, "error": str(exc)[-2000:]}
                    log(f"  failed: {str(exc).splitlines()[0]}")
                    continue
                r = result["peer"][preset]
                log(f"  {r['steps_per_s']['median']:,.0f} steps/s over {r['updates_timed']} update(s)"
                    f" ({r['warmup_updates']} warm-up)")
                checkpoint()
            if quick:
                result["notes"].append("--quick: SB3 production is one update without warm-up")
    if "scaling" in sections:
        log("scaling ...")
        result["scaling"] = run_worker("scaling", {"envs": list(p["scaling_envs"]), "updates": p["scaling_updates"],
                                                   "repeats": p["repeats"], "overrides": p["scaling_overrides"]})
        checkpoint()
    if "portfolio" in sections:
        log("portfolio env ...")
        result["portfolio"] = bench_portfolio_env(p, log)
        result["portfolio"]["train"] = []
        checkpoint()
        for spec in p["portfolio"]["train"]:
            log(f"portfolio train {spec['preset']} N={spec['assets']} ...")
            try:
                point = run_worker("portfolio_train", spec)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log(f"  failed: {str(exc).splitlines()[-1]}")
                result["portfolio"]["train"].append({"assets": spec["assets"], "error": str(exc)[-2000:]})
                checkpoint()
                continue
            result["portfolio"]["train"].append(point)
            log(f"  {point['steps_per_s']['median']:,.0f} env steps/s = {point['asset_steps_per_s']['median']:,.0f} "
                f"asset-steps/s, compile {point['compile_s']:.1f} s, peak RSS {point['peak_host_rss_mb']:.0f} MB "
                f"(estimated {point['estimated_memory_mb']:.0f} MB)")
            checkpoint()
    if "population" in sections:
        result["population"] = {}
        for preset, spec in p["population"].items():
            points = result["population"][preset] = []
            for size in spec["sizes"]:
                log(f"population {preset} x {size} ...")
                try:
                    point = run_worker("population", {"preset": preset, "size": size, "repeats": spec["repeats"],
                                                      "updates": spec["updates"], "overrides": spec["overrides"]})
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    log(f"  failed: {str(exc).splitlines()[-1]}")
                    points.append({"size": size, "error": str(exc)[-2000:]})
                    checkpoint()
                    continue
                points.append(point)
                peak = f", device peak {point['device_peak_mb']:.0f} MB" if point.get("device_peak_mb") else ""
                log(f"  {point['steps_per_s']['median']:,.0f} aggregate steps/s, peak RSS "
                    f"{point['peak_host_rss_mb']:.0f} MB{peak} (estimated {point['estimated_memory_mb']:.0f} MB)")
                checkpoint()
    if "features" in sections:
        log("features ...")
        result["features"] = bench_features(p, log)
        checkpoint()
    if "precision" in sections:
        log("precision (fp32 vs bf16) ...")
        result["precision"] = bench_precision(p, log, run_worker, checkpoint)
    result["derived"] = derive(result)
    if tiny:
        result["derived"]["targets"] = []
        result["notes"].append("tiny configuration (tests): the figures are not the presets' and targets are not judged")
    result["load_avg_end"] = _load()
    cores = os.cpu_count() or 1
    busiest = max([x for x in (result["load_avg_start"] or [])[:1] + (result["load_avg_end"] or [])[:1]] or [0.0])
    if busiest > cores:
        result["notes"].append(f"shared machine: 1-minute load average up to {busiest:.1f} on {cores} cores during "
                               "the run, so every throughput figure is low; figures are medians of repeats and "
                               "the ratios compare measurements taken in this one run")
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["complete"] = True
    return result
