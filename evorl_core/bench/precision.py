"""The precision section of the bench: fp32 against bf16 in one run (agents/precision.py), and tf32
too on an accelerator (on CPU it is fp32: XLA ignores the precision of a product there).

For each precision: end-to-end training of the production and quick presets and a quick
population of 16 (each in a fresh process, as the train and population sections run them): env
steps/s, compile time, device peak memory (the peak host RSS of the process on CPU, where the
model lives in host memory); and the peak matmul rate of each dtype at the network's own layer
shapes (sections.peak_matmul_rate), so that each FLOP utilisation is measured against the
arithmetic rate of its own dtype. `derive` turns the points into speed-ups bf16/fp32, memory
ratios and utilisations; `format_rows` into the printed table.
"""

from __future__ import annotations

import subprocess
from typing import Any

from evorl_core.agents.build import observation_size
from evorl_core.agents.precision import COMPUTE_DTYPES, MATMUL_PRECISION
from evorl_core.bench.plan import bench_config
from evorl_core.bench.sections import peak_matmul_rate

PRECISIONS = ("fp32", "tf32", "bf16")  # the order of the table; a run measures plan's "precisions"
PRESETS = ("production", "quick")


def _median(d: Any, key: str) -> float | None:
    value = (d or {}).get(key)
    return value.get("median") if isinstance(value, dict) else value


def memory_mb(point: dict[str, Any]) -> float | None:
    """Device peak memory where the backend reports one, else the process's peak host RSS (CPU)."""
    return point.get("device_peak_mb") or point.get("peak_host_rss_mb")


def bench_precision(p: dict[str, Any], log, run_worker, checkpoint) -> dict[str, Any]:
    """Every point of the section; `run_worker` runs a train or population worker in a fresh process,
    `checkpoint()` saves the partial result after each point."""
    spec = p["precision"]
    chosen = spec["precisions"]
    out: dict[str, Any] = {"precisions": list(chosen), "peak": {}, "train": {}, "population": {}}
    for preset in PRESETS:
        config = bench_config(preset, spec["train"][preset]["overrides"])
        for prec in chosen:
            peak = peak_matmul_rate(observation_size(config), config.hidden, len(config.positions),
                                    config.minibatch_size, p["repeats"], dtype=COMPUTE_DTYPES[prec],
                                    matmul_precision=MATMUL_PRECISION[prec])
            out["peak"].setdefault(preset, {})[prec] = peak
            log(f"  peak matmul {preset:<10} {prec}: {peak['flops_per_s']['median'] / 1e9:8.1f} GFLOP/s")
    for preset in PRESETS:
        for prec in chosen:
            log(f"precision train {preset} {prec} ...")
            args = dict(spec["train"][preset])
            args["overrides"] = {**args["overrides"], "precision": prec}
            try:
                point = run_worker("train", args)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log(f"  failed: {str(exc).splitlines()[-1]}")
                point = {"error": str(exc)[-2000:]}
            out["train"].setdefault(preset, {})[prec] = point
            if "steps_per_s" in point:
                log(f"  {_median(point, 'steps_per_s'):,.0f} steps/s, compile {point['compile_s']:.1f} s, "
                    f"peak memory {memory_mb(point):.0f} MB")
            checkpoint()
    pop = spec["population"]
    for prec in chosen:
        for size in pop["sizes"]:
            log(f"precision population quick x {size} {prec} ...")
            try:
                point = run_worker("population", {"preset": "quick", "size": size, "repeats": pop["repeats"],
                                                  "updates": pop["updates"],
                                                  "overrides": {**pop["overrides"], "precision": prec}})
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log(f"  failed: {str(exc).splitlines()[-1]}")
                point = {"size": size, "error": str(exc)[-2000:]}
            out["population"].setdefault(prec, []).append(point)
            if "steps_per_s" in point:
                log(f"  {_median(point, 'steps_per_s'):,.0f} aggregate steps/s, compile {point['compile_s']:.1f} s, "
                    f"peak memory {memory_mb(point):.0f} MB")
            checkpoint()
    return out


def _utilisation(flops_per_s: float | None, peak: dict[str, Any] | None) -> float | None:
    rate = _median(peak, "flops_per_s")
    return flops_per_s / rate if flops_per_s and rate else None


def derive(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per preset and precision: steps/s, achieved network FLOP/s and utilisation against that
    dtype's peak; bf16/fp32 ratios of speed and memory; the same for the population (aggregate)."""
    if not section:
        return None
    out: dict[str, Any] = {}
    for preset, points in section.get("train", {}).items():
        d: dict[str, Any] = {}
        for prec, pt in points.items():
            if "steps_per_s" not in pt:
                continue
            update_s = _median(pt, "update_s")
            achieved = pt["update_flops"] / update_s if update_s else None
            d[prec] = {"steps_per_s": _median(pt, "steps_per_s"), "compile_s": pt.get("compile_s"),
                       "memory_mb": memory_mb(pt), "achieved_flops_per_s": achieved,
                       "flop_utilisation": _utilisation(achieved, section.get("peak", {}).get(preset, {}).get(prec))}
        out[preset] = d | _ratios(d)
    # populations: per size, per precision (aggregate steps/s; vs one agent of the same precision)
    sizes: dict[int, dict[str, Any]] = {}
    for prec, points in section.get("population", {}).items():
        ok = [pt for pt in points if "steps_per_s" in pt]
        one = next((_median(pt, "steps_per_s") for pt in ok if pt["size"] == 1), None)
        for pt in ok:
            aggregate = _median(pt, "steps_per_s") / pt["batch_size"] * pt["update_flops"]
            sizes.setdefault(pt["size"], {})[prec] = {
                "steps_per_s": _median(pt, "steps_per_s"), "compile_s": pt.get("compile_s"),
                "memory_mb": memory_mb(pt), "achieved_flops_per_s": aggregate,
                "flop_utilisation": _utilisation(aggregate, section.get("peak", {}).get("quick", {}).get(prec)),
                "vs_one_agent": _median(pt, "steps_per_s") / one if one else None}
    out["population"] = {size: d | _ratios(d) for size, d in sorted(sizes.items())}
    return out


def _ratios(d: dict[str, Any]) -> dict[str, Any]:
    """<precision>_speedup (steps/s over fp32's) and <precision>_memory_ratio (peak memory over fp32's)."""
    a, out = d.get("fp32"), {}
    for prec in (p for p in PRECISIONS if p != "fp32" and p in d and a):
        b = d[prec]
        out[f"{prec}_speedup"] = b["steps_per_s"] / a["steps_per_s"]
        out[f"{prec}_memory_ratio"] = b["memory_mb"] / a["memory_mb"] if a["memory_mb"] and b["memory_mb"] else None
    return out


def format_rows(section: dict[str, Any], derived: dict[str, Any], n) -> list[list[str]]:
    """The precision table: one row per preset (and population size) and precision."""
    rows = [["precision", "env steps/s", "compile s", "peak mem MB", "peak matmul GFLOP/s", "FLOP util.",
             "vs fp32"]]
    sizes = sorted({pt["size"] for points in section.get("population", {}).values() for pt in points})
    for name in (*PRESETS, *sizes):
        population = not isinstance(name, str)
        d = (derived.get("population", {}).get(name) if population else derived.get(name)) or {}
        label = f"quick population x {name}" if population else name
        peak_of = section.get("peak", {}).get("quick" if population else name, {})
        for prec in section.get("precisions", PRECISIONS):
            x = d.get(prec)
            if x is None:
                rows.append([f"{label} {prec}", "failed", "", "", "", "", ""])
                continue
            util = x.get("flop_utilisation")
            rows.append([f"{label} {prec}", n(x["steps_per_s"]), n(x["compile_s"], ".1f"), n(x["memory_mb"]),
                         n((_median(peak_of.get(prec), "flops_per_s") or float("nan")) / 1e9, ".1f"),
                         n(100 * util, ".0f") + "%" if util else "n/a",
                         n(d[f"{prec}_speedup"], ".2f") + "x" if d.get(f"{prec}_speedup") else ""])
    return rows
