"""The benchmark suite: runs end to end in a tiny configuration and writes the documented JSON;
the analytic FLOP count matches a hand computation. No timed assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evorl_core.agents.ppo import update_flops
from evorl_core.bench import harness, peer, report, sections
from evorl_core.bench import precision as sections_precision
from evorl_core.bench.plan import stat
from evorl_core.config import make_config

ROOT = Path(__file__).resolve().parents[1]


def test_update_flops_matches_hand_count():
    # obs 5 -> hidden (4, 3) -> actor head 2 actions / critic head 1 value
    config = make_config("quick", hidden=(4, 3), positions=(0.0, 1.0), num_envs=2, num_steps=8,
                         minibatch_size=4, epochs=3)
    obs = 5
    # multiply-adds of one forward pass for one sample
    actor_macs = 5 * 4 + 4 * 3 + 3 * 2  # 38
    critic_macs = 5 * 4 + 4 * 3 + 3 * 1  # 35
    fwd = 2 * (actor_macs + critic_macs)  # 146 FLOPs
    # backward: weight gradients of all layers (= forward MACs) + input gradients of all layers
    # except the two input layers (the observation gets no gradient)
    weight_grads = 2 * (actor_macs + critic_macs)  # 146
    input_grads = 2 * ((4 * 3 + 3 * 2) + (4 * 3 + 3 * 1))  # 66
    batch = 2 * 8
    rollout = fwd * (batch + 2)  # every step's forward plus the bootstrap value of the last obs
    train = (fwd + weight_grads + input_grads) * batch * 3
    assert update_flops(config, obs) == rollout + train == 146 * 18 + 358 * 48


def test_layer_shapes_cover_actor_and_critic():
    assert sections.layer_shapes(5, (4, 3), 2) == [(5, 4), (4, 3), (3, 2), (5, 4), (4, 3), (3, 1)]


def test_stat_is_a_median_of_repeats():
    s = stat([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4


def test_targets_judged_from_figures():
    result = {
        "env": {"jax_4096": {"steps_per_s": stat([12e6])}},
        "train": {"production": {"steps_per_s": stat([100.0]), "update_s": stat([2.0]),
                                 "update_flops": 8e9, "compile_s": 3.0, "peak_host_rss_mb": 5000.0}},
        "flops": {"production": {"flops_per_s": stat([5e9])}},
        "peer": {"production": {"available": True, "steps_per_s": stat([40.0])}},
    }
    derived = report.derive(result)
    prod = derived["presets"]["production"]
    assert prod["vs_sb3"] == pytest.approx(2.5)
    assert prod["flop_fraction"] == pytest.approx(0.8)  # 4 GFLOP/s achieved of 5 peak
    met = {t["name"]: t["met"] for t in derived["targets"]}
    assert met["production steps/s vs SB3"] is True
    assert met["production fraction of FLOP-bound limit"] is False
    assert met["env steps/s at 4096 envs"] is True
    assert met["production peak host RSS (MB)"] is False
    assert met["quick steps/s vs SB3"] is None  # not measured


def test_missing_peer_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(harness, "peer_available", lambda: (False, "not installed (torch missing)"))
    result = harness.run_suite(only=["peer"], tiny=True, log=lambda _: None)
    assert result["peer"]["quick"] == {"available": False, "reason": "not installed (torch missing)"}
    assert "not installed" in report.format_table(result)


@pytest.mark.slow
def test_tiny_bench_writes_json_with_expected_keys(tmp_path):
    out = tmp_path / "bench.json"
    chosen = ["env", "train", "flops", "scaling"] + (["peer"] if peer.peer_available()[0] else [])
    proc = subprocess.run(
        [sys.executable, "-m", "evorl_core.bench", "--tiny", "--repeats", "2", "--backend", "cpu",
         "--out", str(out), "--only", *chosen],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "training (end to end)" in proc.stdout and "env (random actions)" in proc.stdout
    result = json.loads(out.read_text())
    for key in ("machine", "backend", "device", "jax_version", "versions", "repeats", "env", "train", "flops",
                "scaling", "derived", "load_avg_start"):
        assert key in result, key
    assert result["backend"] == "cpu" and result["repeats"] == 2
    assert {"cpu", "cpu_count", "memory_gb", "platform"} <= set(result["machine"])
    env = result["env"]
    assert {"jax_8", "jax_16", "numpy_single", "numpy_loop_16"} <= set(env)
    for item in env.values():
        if isinstance(item, dict) and "steps_per_s" in item:
            s = item["steps_per_s"]
            assert s["n"] == 2 and s["min"] <= s["median"] <= s["max"] and s["median"] > 0
    for preset in ("quick", "production"):
        t = result["train"][preset]
        for key in ("steps_per_s", "updates_per_s", "compile_s", "peak_host_rss_mb", "device_memory_mb",
                    "update_flops"):
            assert key in t, (preset, key)
        assert t["steps_per_s"]["median"] > 0 and t["compile_s"] > 0 and t["peak_host_rss_mb"] > 0
        assert t["update_flops"] > 0
        assert result["flops"][preset]["flops_per_s"]["median"] > 0
        d = result["derived"]["presets"][preset]
        assert d["flop_fraction"] > 0
        if "peer" in chosen:
            p = result["peer"][preset]
            assert p["available"] is True and p["steps_per_s"]["median"] > 0
            assert d["vs_sb3"] > 0
    assert [pt["num_envs"] for pt in result["scaling"]["points"]] == [8, 16]


def test_population_figures_ratios_flops_and_ceiling_from_made_up_points():
    def point(size, rate):
        return {"size": size, "steps_per_s": stat([rate]), "batch_size": 1000, "update_flops": 2e9}

    result = {"backend": "cpu", "population": {"quick": [point(1, 50_000.0), point(16, 80_000.0)]},
              "flops": {"quick": {"flops_per_s": stat([120e9]), "batch": 1024},
                        "production": {"flops_per_s": stat([150e9]), "batch": 4096}}}
    derived = report.derive(result)
    assert derived["population"]["quick"] == {1: 1.0, 16: pytest.approx(1.6)}
    assert derived["population_flops"]["quick"][1] == pytest.approx(50 * 2e9)  # 50 updates/s x 2 GFLOP
    ceiling = derived["population_ceiling"]
    assert ceiling["best_matmul_flops_per_s"] == 150e9 and ceiling["ratio"] == pytest.approx(1.5)
    (pop,) = [t for t in derived["targets"] if t["name"].startswith("population 16")]
    assert pop["value"] == pytest.approx(1.6) and pop["target"] == 2.0 and pop["met"] is False
    text = report.format_table({**result, "derived": derived, "device_count": 1, "device": "cpu",
                                "jax_version": "x", "machine": {"cpu": "c", "cpu_count": 2}})
    assert "no population can exceed 1.50x" in text and "target (2-core CPU)" in text
    # on a GPU: its own target, no ceiling (one small agent leaves the device idle), no host-RSS judgement
    gpu = report.derive({**result, "backend": "gpu", "train": {"production": {"peak_host_rss_mb": 5000.0}}})
    assert gpu["population_ceiling"] is None
    (pop,) = [t for t in gpu["targets"] if t["name"].startswith("population 16")]
    assert pop["target"] == 10.0 and pop["met"] is False
    (rss,) = [t for t in gpu["targets"] if t["name"].startswith("production peak host RSS")]
    assert rss["value"] is None


@pytest.mark.slow
def test_tiny_population_bench_saves_every_point_as_it_goes():
    saved = []
    result = harness.run_suite(only=["population"], tiny=True, log=lambda _: None,
                               save=lambda r: saved.append(json.loads(json.dumps(r, default=float))))
    points = result["population"]["quick"]
    assert [p["size"] for p in points] == [1, 2] and result["complete"] is True
    for p in points:
        assert p["steps_per_s"]["median"] > 0 and p["update_flops"] > 0 and "device_peak_mb" in p
    # one save per measured point, each a valid partial result that grows
    assert [len(s["population"]["quick"]) for s in saved] == [1, 2]
    assert all(s["complete"] is False for s in saved)
    ratio = points[1]["steps_per_s"]["median"] / points[0]["steps_per_s"]["median"]
    assert result["derived"]["population"]["quick"][2] == pytest.approx(ratio)


def test_precision_figures_from_made_up_points():
    """Speed-up, memory ratio and each dtype's utilisation against its own matmul peak."""
    def train(rate, update_s, rss, device=None):
        return {"steps_per_s": stat([rate]), "update_s": stat([update_s]), "update_flops": 1e9, "compile_s": 2.0,
                "peak_host_rss_mb": rss, "device_peak_mb": device}

    def pop(rate, rss, size=16):
        return {"size": size, "steps_per_s": stat([rate]), "batch_size": 1000, "update_flops": 1e9, "compile_s": 3.0,
                "peak_host_rss_mb": rss, "device_peak_mb": None}

    section = {
        "precisions": ["fp32", "bf16"],
        "peak": {"production": {"fp32": {"flops_per_s": stat([4e9])}, "bf16": {"flops_per_s": stat([1e9])}},
                 "quick": {"fp32": {"flops_per_s": stat([2e9])}, "bf16": {"flops_per_s": stat([8e9])}}},
        "train": {"production": {"fp32": train(100.0, 0.5, 900.0), "bf16": train(50.0, 1.0, 800.0)},
                  "quick": {"fp32": train(1000.0, 1.0, 500.0, device=300.0),
                            "bf16": train(3000.0, 0.25, 500.0, device=150.0)}},
        "population": {"fp32": [pop(1_000.0, 500.0, size=1), pop(10_000.0, 700.0)],
                       "bf16": [{"size": 16, "error": "boom"}]},
    }
    d = sections_precision.derive(section)
    prod, quick = d["production"], d["quick"]
    assert prod["bf16_speedup"] == pytest.approx(0.5) and quick["bf16_speedup"] == pytest.approx(3.0)
    assert prod["fp32"]["flop_utilisation"] == pytest.approx(0.5)  # 2 GFLOP/s of a 4 GFLOP/s fp32 peak
    assert prod["bf16"]["flop_utilisation"] == pytest.approx(1.0)  # 1 GFLOP/s of a 1 GFLOP/s bf16 peak
    assert quick["bf16"]["flop_utilisation"] == pytest.approx(0.5)
    assert prod["bf16_memory_ratio"] == pytest.approx(800 / 900)  # host RSS without a device figure
    assert quick["bf16_memory_ratio"] == pytest.approx(0.5)  # the device peak when there is one
    # the population of 16: 10 member-updates/s of 1 GFLOP each over the quick fp32 peak, 10x one
    # agent of the same precision; its bf16 point failed
    assert d["population"][16]["fp32"]["flop_utilisation"] == pytest.approx(5.0)
    assert d["population"][16]["fp32"]["vs_one_agent"] == pytest.approx(10.0)
    assert "bf16" not in d["population"][16] and "bf16_speedup" not in d["population"][16]
    rows = sections_precision.format_rows(section, d, report._n)
    assert ["quick population x 16 bf16", "failed", "", "", "", "", ""] in rows
    assert next(r for r in rows if r[0] == "quick bf16")[-1] == "3.00x"


@pytest.mark.slow
def test_tiny_precision_bench_measures_both_precisions():
    result = harness.run_suite(only=["precision"], tiny=True, log=lambda _: None)
    section = result["precision"]
    for preset in ("production", "quick"):
        assert {p: section["peak"][preset][p]["dtype"] for p in ("fp32", "bf16")} == \
            {"fp32": "float32", "bf16": "bfloat16"}
        for prec in ("fp32", "bf16"):
            point = section["train"][preset][prec]
            assert point["steps_per_s"]["median"] > 0 and point["compile_s"] > 0 and point["peak_host_rss_mb"] > 0
    derived = result["derived"]["precision"]
    assert derived["quick"]["bf16_speedup"] == pytest.approx(
        section["train"]["quick"]["bf16"]["steps_per_s"]["median"] / section["train"]["quick"]["fp32"]["steps_per_s"]["median"])
    assert {p: [pt["size"] for pt in pts] for p, pts in section["population"].items()} == \
        {"fp32": [2], "bf16": [2]}
    assert derived["population"][2]["bf16"]["flop_utilisation"] > 0 and derived["population"][2]["bf16_speedup"] > 0
    assert "quick population x 2 bf16" in report.format_table(result)


def test_precision_targets_are_judged_from_the_section():
    def point(rate, device, size=None):
        pt = {"steps_per_s": stat([rate]), "update_s": stat([1.0]), "update_flops": 1e9, "compile_s": 1.0,
              "peak_host_rss_mb": 4000.0, "device_peak_mb": device, "batch_size": 1000}
        return pt if size is None else {**pt, "size": size}

    section = {"precisions": ["fp32", "bf16"],
               "peak": {p: {q: {"flops_per_s": stat([1e12])} for q in ("fp32", "bf16")} for p in ("production", "quick")},
               "train": {"production": {"fp32": point(1.2e6, 400.0), "bf16": point(3.1e6, 300.0)},
                         "quick": {"fp32": point(9e5, 130.0), "bf16": point(1e6, 120.0)}},
               "population": {"fp32": [point(9e5, 100.0, 1), point(3e7, 900.0, 64)],
                              "bf16": [point(1e6, 90.0, 1), point(3.2e7, 800.0, 64)]}}
    met = {t["name"]: (t["value"], t["met"]) for t in report.derive({"backend": "gpu", "precision": section})["targets"]}
    assert met["production steps/s, fastest precision (one GPU)"] == (3.1e6, True)
    value, ok = met["quick population 64 vs one agent (fastest precision)"]
    assert value == pytest.approx(3e7 / 9e5) and ok is False  # 33x: the best of fp32's 33.3x and bf16's 32x
    assert met["bf16 / fp32 peak memory (production)"] == (pytest.approx(0.75), True)
    cpu = {t["name"] for t in report.derive({"backend": "cpu", "precision": section})["targets"]}
    assert "production steps/s, fastest precision (one GPU)" not in cpu
    assert "quick population 16, fraction of the FLOP bound (fp32)" in cpu
def test_portfolio_targets_judged_from_the_with_inputs_ratio_and_the_n500_peak():
    result = {"backend": "cpu", "portfolio": {
        "sizes": [{"assets": 3, "vs_single_with_inputs": 0.1}, {"assets": 50, "vs_single_with_inputs": 0.6}],
        "train": [{"assets": 50, "peak_host_rss_mb": 9000.0}, {"assets": 500, "peak_host_rss_mb": 3000.0}]}}
    met = {t["name"]: (t["value"], t["met"]) for t in report.derive(result)["targets"]}
    assert met["portfolio env N=50 asset-steps/s vs single-asset env steps/s (with network inputs)"] == (0.6, True)
    assert met["portfolio N=500 production peak host RSS (MB)"] == (3000.0, True)
    result["portfolio"]["sizes"][1]["vs_single_with_inputs"] = 0.4
    met = {t["name"]: t["met"] for t in report.derive(result)["targets"]}
    assert met["portfolio env N=50 asset-steps/s vs single-asset env steps/s (with network inputs)"] is False


@pytest.mark.slow
def test_portfolio_env_section_times_each_size_in_turns_and_divides_its_own_medians():
    """Tiny sizes: every size carries the single-asset env timed in turns with it (as many samples as
    the portfolio figures), the ratios are the medians' quotients, and `includes` names every figure."""
    from evorl_core.bench.plan import plan
    from evorl_core.bench.portfolio import bench_portfolio_env

    p = plan(True, 2, tiny=True)
    out = bench_portfolio_env(p, log=lambda _: None)
    assert [s["assets"] for s in out["sizes"]] == list(p["portfolio"]["sizes"])
    assert {"single_env", "asset_steps_per_s", "asset_steps_per_s_with_inputs", "vs_single"} <= set(out["includes"])
    for s in out["sizes"]:
        n = s["assets"]
        assert s["single_env"]["steps_per_s"]["n"] == s["asset_steps_per_s"]["n"] == 2
        assert s["single_env_matched"]["num_envs"] == out["num_envs"] * n
        assert s["asset_steps_per_s"]["samples"] == pytest.approx([r * n for r in s["env_steps_per_s"]["samples"]])
        single = s["single_env"]["steps_per_s"]["median"]
        assert s["vs_single"] == pytest.approx(s["asset_steps_per_s"]["median"] / single)
        assert s["vs_single_with_inputs"] == pytest.approx(s["asset_steps_per_s_with_inputs"]["median"] / single)
        assert s["vs_single_matched_with_inputs"] == pytest.approx(
            s["asset_steps_per_s_with_inputs"]["median"] / s["single_env_matched"]["steps_per_s"]["median"])
