"""What a bench run measures and on what: its sections, sizes (full, --quick, and the tiny one the
tests use), the targets it reports, the median-of-repeats statistic, and the configuration and
synthetic market every measurement runs on."""

from __future__ import annotations

import statistics
from typing import Any

from evorl_core.config import TrainConfig, make_config
from evorl_core.data import Market, build_market, synthetic_ohlcv

SECTIONS = ("env", "train", "flops", "peer", "scaling", "population", "portfolio", "precision", "features")
# one line per section for `evorl bench --help`
SECTION_HELP = {
    "env": "env steps/s with random actions: the JAX env (256 and 4096 envs) and the NumPy reference env",
    "train": "end-to-end training of the quick and production presets: steps/s, compile time, memory",
    "flops": "model FLOP utilisation: analytic FLOPs of one update over the measured matmul peak",
    "peer": "Stable-Baselines3 PPO on the same env and sizes, ratio evorl/SB3 (needs the [bench] extra)",
    "scaling": "steps/s of the quick preset over num_envs 64 ... 4096",
    "population": "aggregate steps/s of a vmapped population against one agent",
    "portfolio": "portfolio env asset-steps/s at N = 3, 50, 500 beside the single-asset env; training at N = 50, 500",
    "precision": "fp32 vs bf16: production, quick and a quick population of 16; steps/s, compile, peak memory, "
                 "FLOP utilisation against each dtype's matmul peak",
    "features": "time to build every feature of the technical set for 500 symbols x 5,000 days (NumPy, host)",
}
BENCH_PRESETS = ("quick", "production")
SCALING_ENVS = (64, 128, 256, 512, 1024, 2048, 4096)

# Targets for a 2-core CPU (docs/benchmarks.md). Reported, never asserted.
TARGETS = {
    "production_vs_sb3": 2.0,
    "production_flop_fraction": 0.85,
    "quick_vs_sb3": 5.0,
    "env_steps_per_s_4096": 10e6,
    "production_peak_rss_mb": 4096.0,
    "compile_s": 20.0,
    "population_16_vs_1": 2.0,  # aggregate steps/s of a quick population of 16 over one agent (CPU)
    "population_16_vs_1_gpu": 10.0,
    # the precision section (docs/benchmarks.md): the GPU speed record and mixed precision's memory
    "production_steps_per_s_gpu": 3e6,  # the fastest precision's production preset on one GPU
    "population_64_vs_1_gpu": 35.0,  # quick population of 64, aggregate over one quick agent
    "bf16_memory_vs_fp32": 1.0,  # bf16 device peak memory over fp32's (production), at most
    "population_16_flop_fraction": 0.90,  # CPU: quick population of 16 against its matmul peak
    # portfolio env asset-steps/s at N = 50 (network inputs gathered) over the single-asset env's
    # steps/s: within 2x per asset-step
    "portfolio_50_vs_single": 0.5,
    "features_technical_s": 1.0,  # the technical set for 500 symbols x 5,000 days, seconds (at most)
}

# config overrides of the tiny run (tests): seconds, every code path
_TINY = {"num_envs": 8, "num_steps": 16, "minibatch_size": 32, "epochs": 1, "hidden": (16,), "window": 8,
         "test_days": 20, "total_timesteps": 8 * 16 * 3, "updates_per_chunk": 1, "symbols": ("AAA", "BBB")}


def plan(quick: bool, repeats: int | None, tiny: bool = False, backend: str = "cpu") -> dict[str, Any]:
    """Sizes of a run: full vs --quick, and the tiny one the tests use. On an accelerator the full run
    also times a production population of 16 (about 6 GiB; minutes on a 2-core CPU)."""
    if tiny:  # tests: seconds, every code path
        return {
            "repeats": repeats or 2, "env_sizes": (8, 16), "env_steps": 10, "ref_steps": 200,
            "ref_loop_envs": 16, "ref_loop_steps": 5,
            "train": {p: {"preset": p, "total_timesteps": None, "overrides": _TINY} for p in BENCH_PRESETS},
            "peer": {p: {"updates": 1, "warmup": 0, "overrides": _TINY} for p in BENCH_PRESETS},
            "scaling_envs": (8, 16), "scaling_overrides": {**_TINY, "num_envs": None}, "scaling_updates": 1,
            "flops_overrides": _TINY,
            "population": {"quick": {"sizes": (1, 2), "repeats": 1, "updates": 2,
                                     "overrides": {**_TINY, "pbt_interval": 2, "val_days": 20}}},
            "portfolio": {"sizes": (3, 5), "num_envs": 4, "env_steps": 5, "window": 8,
                          "train": [{"assets": 4, "preset": "quick", "total_timesteps": None,
                                     "overrides": {**_TINY, "symbols": None}}]},
            "precision": {"precisions": ("fp32", "bf16"),
                          "train": {p: {"preset": p, "total_timesteps": None, "overrides": _TINY} for p in BENCH_PRESETS},
                          "population": {"sizes": (2,), "repeats": 1, "updates": 2,
                                         "overrides": {**_TINY, "pbt_interval": 2, "val_days": 20}}},
            "features": {"set": "technical", "symbols": 3, "days": 300},
        }
    r = repeats or (3 if quick else 5)
    return {
        "repeats": r,
        "env_sizes": (256, 4096),
        "env_steps": 200 if quick else 1000,
        "ref_steps": 20_000 if quick else 100_000,
        "ref_loop_envs": 256,
        "ref_loop_steps": 40 if quick else 200,
        "train": {
            # quick: the preset's own full run (25 updates); production: a few updates (each ~10-40 s
            # on a 2-core CPU), one compiled chunk per update, so each update is one timing sample.
            "quick": {"preset": "quick", "total_timesteps": None, "overrides": {}},
            "production": {"preset": "production", "total_timesteps": (3 if quick else 5) * 256 * 512,
                           "overrides": {"updates_per_chunk": 1}},
        },
        "peer": {
            "quick": {"updates": r + 1 if quick else 2 * r, "warmup": 1, "overrides": {}},
            # one SB3 production update is ~30-60 s here; --quick times a single one without warm-up
            "production": {"updates": 1 if quick else 2, "warmup": 0 if quick else 1, "overrides": {}},
        },
        # portfolio: env asset-steps/s at N = 3, 50, 500 beside the single-asset env; the production
        # portfolio preset trained at N = 50 and 500 (a few updates, each its own timing sample)
        "portfolio": {"sizes": (3, 50, 500), "num_envs": 64, "env_steps": 50 if quick else 200, "window": 32,
                      "train": [{"assets": n, "preset": "production", "overrides": {"updates_per_chunk": 1},
                                 "total_timesteps": (3 if quick else 5) * 32 * 128} for n in (50, 500)]},
        # precision: the train section's points and a quick population of 16, once per precision
        # (--quick: 2 production updates, 10 quick updates, PBT every 5 updates); tf32 on an
        # accelerator only (on CPU XLA ignores a product's precision: tf32 is fp32). Populations of
        # 1 (the baseline), 16 and, on an accelerator, 64 quick agents.
        "precision": {
            "precisions": ("fp32", "bf16") if backend == "cpu" else ("fp32", "bf16", "tf32"),
            "train": {
                "quick": {"preset": "quick", "total_timesteps": (10 * 64 * 128) if quick else None, "overrides": {}},
                "production": {"preset": "production", "total_timesteps": (2 if quick else 5) * 256 * 512,
                               "overrides": {"updates_per_chunk": 1}},
            },
            "population": {"sizes": (1, 16) if backend == "cpu" else (1, 16, 64), "repeats": 2 if quick else r,
                           "updates": 10,
                           "overrides": {"pbt_interval": 5} if quick else {}},
        },
        "features": {"set": "technical", "symbols": 500, "days": 5000},
        "scaling_envs": SCALING_ENVS,
        "scaling_overrides": {},
        "scaling_updates": 2 if quick else 3,
        "flops_overrides": {},
        # population: quick preset at 1, 4, 16, 64 members (PBT round every 10 updates, timed per
        # chunk of 10 updates + round); production where memory and time allow (one update + round)
        "population": {
            "quick": {"sizes": (1, 4, 16) if quick else (1, 4, 16, 64), "repeats": 2 if quick else r,
                      "updates": 10, "overrides": {}},
            **({} if quick else {"production": {"sizes": (1, 4) if backend == "cpu" else (1, 4, 16),
                                                "repeats": 2, "updates": 1,
                                                "overrides": {"pbt_interval": 1}}}),
        },
    }


def stat(samples: list[float]) -> dict[str, Any]:
    """Median (the reported figure), min, max and the samples themselves."""
    xs = [float(x) for x in samples]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0, "samples": []}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "samples": xs}


def bench_config(preset: str, overrides: dict[str, Any]) -> TrainConfig:
    """A preset on synthetic data with the overrides that are set (None leaves the preset's value)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    return make_config(preset, data="synthetic", **values)


def bench_market(config: TrainConfig) -> Market:
    """The synthetic market of `--data synthetic` (deterministic); tiny configs get short histories."""
    n_days = 300 if config.window <= 8 else None
    frames = {s: synthetic_ohlcv(s, n_days=n_days, seed=config.seed) for s in config.symbols}
    return build_market(frames, window=config.window, test_days=config.test_days,
                        val_days=config.val_days, embargo_days=config.embargo,
                        info={"source": "synthetic", "synthetic": True, "requested": "synthetic"})
