"""From a bench result to figures and text: the derived ratios, FLOP utilisation and targets
(`derive`), and the printed tables (`format_table`)."""

from __future__ import annotations

import math
from typing import Any

from evorl_core.bench import precision
from evorl_core.bench.plan import BENCH_PRESETS, TARGETS


def _median(d: dict | None, *path: str) -> float | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    if isinstance(d, dict):
        return d.get("median")
    return d


def population_ratios(result: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Per preset: aggregate steps/s of each population size over one agent's (size 1, same run)."""
    out: dict[str, dict[int, float]] = {}
    for preset, points in (result.get("population") or {}).items():
        ok = {pt["size"]: _median(pt, "steps_per_s") for pt in points if "steps_per_s" in pt}
        if ok.get(1):
            out[preset] = {size: rate / ok[1] for size, rate in ok.items()}
    return out


def population_flops(result: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Per preset and size: network FLOP/s of the whole population (updates/s x members x the
    analytic FLOPs of one member's update, `ppo.update_flops`)."""
    out: dict[str, dict[int, float]] = {}
    for preset, points in (result.get("population") or {}).items():
        out[preset] = {pt["size"]: _median(pt, "steps_per_s") / pt["batch_size"] * pt["update_flops"]
                       for pt in points if "steps_per_s" in pt and pt.get("update_flops")}
    return out


def population_ceiling(result: dict[str, Any]) -> dict[str, float] | None:
    """How far batching members can raise the quick preset's aggregate throughput on this machine:
    the best matmul rate measured here (the flops section, every preset's layer shapes) over the
    network FLOP/s one agent already achieves. A population does the same arithmetic per member, so
    its aggregate steps/s over one agent's cannot exceed this ratio even with no other work at all.
    CPU only: there the arithmetic is what one agent is short of; an accelerator runs one small agent
    far below its matmul rate (kernel launches and the sequential rollout bound it), so no such
    ceiling binds there."""
    if result.get("backend") != "cpu":
        return None
    one = population_flops(result).get("quick", {}).get(1)
    rates = [_median(peak, "flops_per_s") for peak in (result.get("flops") or {}).values()]
    rates = [r for r in rates if r]
    if not one or not rates:
        return None
    best = max(rates)
    return {"one_agent_flops_per_s": one, "best_matmul_flops_per_s": best, "ratio": best / one}


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """Ratios, FLOP utilisation and the targets, from whatever sections ran."""
    out: dict[str, Any] = {"presets": {}, "targets": []}
    for preset in BENCH_PRESETS:
        train = (result.get("train") or {}).get(preset)
        peer = (result.get("peer") or {}).get(preset) or {}
        peak = (result.get("flops") or {}).get(preset)
        d: dict[str, Any] = {}
        if train:
            d["steps_per_s"] = _median(train, "steps_per_s")
            update_s = _median(train, "update_s")
            d["achieved_flops_per_s"] = train["update_flops"] / update_s if update_s else None
        if peer.get("available") and "steps_per_s" in peer and train:
            d["sb3_steps_per_s"] = _median(peer, "steps_per_s")
            d["vs_sb3"] = d["steps_per_s"] / d["sb3_steps_per_s"]
        if train and peak and d.get("achieved_flops_per_s"):
            rate = _median(peak, "flops_per_s")
            d["peak_flops_per_s"] = rate
            d["flop_fraction"] = d["achieved_flops_per_s"] / rate
            d["flop_bound_update_s"] = train["update_flops"] / rate
        out["presets"][preset] = d

    def target(name: str, value: float | None, goal: float, higher_is_better: bool = True,
               inclusive: bool = False) -> None:
        met = None if value is None else (value >= goal if higher_is_better else
                                          value <= goal if inclusive else value < goal)
        out["targets"].append({"name": name, "value": value, "target": goal,
                               "direction": ">=" if higher_is_better else "<=" if inclusive else "<", "met": met})

    q, prod = out["presets"].get("quick", {}), out["presets"].get("production", {})
    target("production steps/s vs SB3", prod.get("vs_sb3"), TARGETS["production_vs_sb3"])
    target("production fraction of FLOP-bound limit", prod.get("flop_fraction"), TARGETS["production_flop_fraction"])
    target("quick steps/s vs SB3", q.get("vs_sb3"), TARGETS["quick_vs_sb3"])
    env4096 = _median(result.get("env"), "jax_4096", "steps_per_s")
    target("env steps/s at 4096 envs", env4096, TARGETS["env_steps_per_s_4096"])
    rss = ((result.get("train") or {}).get("production") or {}).get("peak_host_rss_mb")
    gpu = result.get("backend") == "gpu"
    # host RSS is a CPU target: on a GPU the process also maps the CUDA runtime (several GB of host
    # memory before any array exists) and the model lives in device memory
    target("production peak host RSS (MB)", None if gpu else rss, TARGETS["production_peak_rss_mb"],
           higher_is_better=False)
    feats = result.get("features") or {}
    target(f"{feats.get('set', 'technical')} features, {feats.get('symbols')} x {feats.get('days')} days (s)",
           _median(feats, "seconds") if feats.get("symbols") == 500 and feats.get("days") == 5000 else None,
           TARGETS["features_technical_s"], higher_is_better=False, inclusive=True)
    ratios = population_ratios(result)
    out["population"] = ratios
    out["population_flops"] = population_flops(result)
    out["population_ceiling"] = population_ceiling(result)
    out["precision"] = prec = precision.derive(result.get("precision"))
    if prec:
        fastest = max((x["steps_per_s"] for k, x in prec.get("production", {}).items() if k in precision.PRECISIONS),
                      default=None)
        pop = prec.get("population", {})
        if gpu:
            target("production steps/s, fastest precision (one GPU)", fastest, TARGETS["production_steps_per_s_gpu"])
            target("quick population 64 vs one agent (fastest precision)",
                   max((x["vs_one_agent"] or 0 for k, x in pop.get(64, {}).items() if k in precision.PRECISIONS),
                       default=None), TARGETS["population_64_vs_1_gpu"])
        target("bf16 / fp32 peak memory (production)", prec.get("production", {}).get("bf16_memory_ratio"),
               TARGETS["bf16_memory_vs_fp32"], higher_is_better=False, inclusive=True)
        if result.get("backend") == "cpu":
            target("quick population 16, fraction of the FLOP bound (fp32)",
                   (pop.get(16, {}).get("fp32") or {}).get("flop_utilisation"), TARGETS["population_16_flop_fraction"])
    target("population 16 vs one agent, aggregate steps/s (quick)", (ratios.get("quick") or {}).get(16),
           TARGETS["population_16_vs_1_gpu" if gpu else "population_16_vs_1"])
    sizes = {pt["assets"]: pt for pt in (result.get("portfolio") or {}).get("sizes", [])}
    target("portfolio env N=50 asset-steps/s vs single-asset env steps/s (with network inputs)",
           (sizes.get(50) or {}).get("vs_single_with_inputs"), TARGETS["portfolio_50_vs_single"])
    trained = {pt["assets"]: pt for pt in (result.get("portfolio") or {}).get("train", []) if "assets" in pt}
    target("portfolio N=500 production peak host RSS (MB)", None if gpu else (trained.get(500) or {}).get(
        "peak_host_rss_mb"), TARGETS["production_peak_rss_mb"], higher_is_better=False)
    compiles = [t.get("compile_s") for t in (result.get("train") or {}).values() if t.get("compile_s") is not None]
    target("compile time (s), worst preset", max(compiles) if compiles else None, TARGETS["compile_s"],
           higher_is_better=False)
    return out


def _n(x: float | None, fmt: str = ",.0f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def table(rows: list[list[str]]) -> str:
    """Aligned text table: first column left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    lines = [f"backend {result['backend']} ({result['device_count']} x {result['device']}), "
             f"jax {result['jax_version']}, {result['machine']['cpu']} x{result['machine']['cpu_count']}, "
             f"load avg {result.get('load_avg_start')} -> {result.get('load_avg_end')}"]
    env = result.get("env")
    if env:
        rows = [["env (random actions)", "envs", "env steps/s (median)", "min", "max"]]
        for key in [k for k in env if isinstance(env[k], dict) and "steps_per_s" in env[k]]:
            s = env[key]["steps_per_s"]
            name = {"numpy_single": "NumPy reference, 1 env"}.get(key, key)
            if key.startswith("numpy_loop"):
                name = f"NumPy reference, Python loop over {env[key]['num_envs']}"
            elif key.startswith("jax_"):
                name = "JAX env (jit scan, vmap)"
            rows.append([name, str(env[key]["num_envs"]), _n(s["median"]), _n(s["min"]), _n(s["max"])])
        lines += ["", table(rows)]
    train, peer, derived = result.get("train") or {}, result.get("peer") or {}, result.get("derived") or {}
    if train or peer:
        rows = [["training (end to end)", "steps/s", "updates/s", "compile s", "peak RSS MB", "device peak MB",
                 "SB3 steps/s", "evorl/SB3", "FLOP util."]]
        for preset in BENCH_PRESETS:
            t, pr, d = train.get(preset) or {}, peer.get(preset) or {}, derived.get("presets", {}).get(preset, {})
            sb3 = _median(pr, "steps_per_s") if pr.get("available") else None
            rows.append([
                preset, _n(_median(t, "steps_per_s")), _n(_median(t, "updates_per_s"), ".3f"),
                _n(t.get("compile_s"), ".1f"), _n(t.get("peak_host_rss_mb")),
                _n(t.get("device_peak_mb", t.get("device_memory_mb"))),
                _n(sb3) if pr.get("available", True) else "not installed",
                _n(d.get("vs_sb3"), ".2f") + ("x" if d.get("vs_sb3") else ""),
                _n(100 * d["flop_fraction"], ".0f") + "%" if d.get("flop_fraction") else "n/a",
            ])
        lines += ["", table(rows)]
        for preset in BENCH_PRESETS:
            d = derived.get("presets", {}).get(preset, {})
            if d.get("peak_flops_per_s"):
                lines.append(f"  {preset}: {d['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s achieved, peak matmul "
                             f"{d['peak_flops_per_s'] / 1e9:.1f} GFLOP/s -> FLOP-bound update "
                             f"{d['flop_bound_update_s']:.3f} s vs measured {_median(train[preset], 'update_s'):.3f} s")
    if result.get("flops") and not train:
        for preset, peak in result["flops"].items():
            lines.append(f"  peak matmul {preset}: {peak['flops_per_s']['median'] / 1e9:.1f} GFLOP/s "
                         f"(its layer shapes at batch {peak['batch']})")
    for preset in BENCH_PRESETS:
        pr = peer.get(preset) or {}
        if pr.get("available") and "rollout_s" in pr:
            lines.append(f"  SB3 {preset}: rollout {_median(pr, 'rollout_s'):.2f} s + training "
                         f"{_median(pr, 'train_s'):.2f} s per update, {pr['updates_timed']} update(s) timed, "
                         f"torch {pr['torch']} ({pr['torch_threads']} threads)")
        elif pr and not pr.get("available", True):
            lines.append(f"  SB3 {preset}: {pr['reason']}")
        elif pr.get("error"):
            lines.append(f"  SB3 {preset}: failed ({pr['error'].splitlines()[0]})")
    scaling = result.get("scaling")
    if scaling:
        rows = [["scaling (quick preset)", *[str(pt["num_envs"]) for pt in scaling["points"]]],
                ["steps/s", *[_n(pt["steps_per_s"]["median"]) for pt in scaling["points"]]]]
        lines += ["", table(rows)]
    for preset, points in (result.get("population") or {}).items():
        ratios = derived.get("population", {}).get(preset, {})
        flops = derived.get("population_flops", {}).get(preset, {})
        rows = [[f"population ({preset} preset)", "aggregate steps/s", "vs 1 agent", "GFLOP/s", "peak RSS MB",
                 "device peak MB", "estimate MB"]]
        for pt in points:
            if "steps_per_s" not in pt:
                rows.append([str(pt["size"]), "failed", "", "", "", "", ""])
                continue
            rows.append([str(pt["size"]), _n(_median(pt, "steps_per_s")),
                         _n(ratios.get(pt["size"]), ".2f") + "x", _n((flops.get(pt["size"]) or math.nan) / 1e9, ".1f"),
                         _n(pt.get("peak_host_rss_mb")), _n(pt.get("device_peak_mb")),
                         _n(pt.get("estimated_memory_mb"))])
        lines += ["", table(rows)]
    ceiling = derived.get("population_ceiling")
    if ceiling:
        lines.append(f"  ceiling: one quick agent already does {ceiling['one_agent_flops_per_s'] / 1e9:.1f} GFLOP/s "
                     f"of network arithmetic and the best matmul rate measured here is "
                     f"{ceiling['best_matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, so no population can exceed "
                     f"{ceiling['ratio']:.2f}x one agent's aggregate steps/s on this machine")
    feats = result.get("features")
    if feats and feats.get("seconds"):
        lines += ["", f"features: {feats['set']} ({feats['features']} features) for {feats['symbols']} symbols x "
                  f"{feats['days']:,} days in {_n(_median(feats, 'seconds'), '.3f')} s wall "
                  f"({_n(_median(feats, 'cpu_seconds'), '.3f')} s CPU) "
                  f"({_n(feats['symbol_days_per_s'])} symbol-days/s); the default six in "
                  f"{_n(_median(feats, 'default_seconds'), '.3f')} s"]
    if any(tg["value"] is not None for tg in derived.get("targets", [])):
        where = "GPU" if result.get("backend") == "gpu" else "2-core CPU" if result.get("backend") == "cpu" \
            else str(result.get("backend"))
        rows = [[f"target ({where})", "measured", "target", "met"]]
        for tg in derived["targets"]:
            if tg["value"] is None:
                continue
            fmt = ",.0f" if tg["value"] > 100 else ".2f"
            rows.append([tg["name"], _n(tg["value"], fmt), f"{tg['direction']} {_n(tg['target'], fmt)}",
                         "yes" if tg["met"] else "NO"])
        lines += ["", table(rows)]
    if result.get("precision") and derived.get("precision"):
        lines += ["", table(precision.format_rows(result["precision"], derived["precision"], _n))]
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
