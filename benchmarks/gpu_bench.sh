#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one go, each section's JSON and log in OUTDIR:
#   population.json: aggregate env steps/s of quick populations of 1, 4, 16, 64 and production
#                    populations of 1, 4, 16 (PBT rounds included), device peak memory of each;
#   train.json:      end-to-end training of the quick and production presets, their FLOP
#                    utilisation against the peak matmul rate, and the quick preset over num_envs.
# Usage: bash benchmarks/gpu_bench.sh [OUTDIR]   (PYTHON=... to pick the interpreter)
set -uo pipefail
out=${1:-bench-results/gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
$py -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$out/devices.txt"
timeout "${POPULATION_TIMEOUT:-330}" $py -m evorl_core.bench --backend gpu --only population --repeats 3 \
    --out "$out/population.json" 2>&1 | tee "$out/population.log"
timeout "${TRAIN_TIMEOUT:-240}" $py -m evorl_core.bench --backend gpu --only flops train scaling --repeats 3 \
    --out "$out/train.json" 2>&1 | tee "$out/train.log"
