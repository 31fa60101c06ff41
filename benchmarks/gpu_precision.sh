#!/usr/bin/env bash
# The GPU precision figures of docs/benchmarks.md in one go (about 7 minutes on one H200), each
# section's JSON and log in OUTDIR:
#   precision.json: fp32 vs bf16 (then tf32) for end-to-end training of the production and quick
#                   presets and quick populations of 1, 16 and 64 (PBT rounds included): env
#                   steps/s, compile time, device peak memory, FLOP utilisation against each
#                   dtype's matmul peak at the network's layer shapes;
#   portfolio.json: the portfolio section (env asset-steps/s at N = 3, 50, 500; training of the
#                   production portfolio preset at N = 50 and 500).
# Every JSON is rewritten after each measured point, so a section cut short by its timeout keeps
# what it measured ("complete": false). Targets (docs/benchmarks.md): production >= 3M env
# steps/s, a quick population of 64 >= 35x one quick agent, bf16 device peak memory <= fp32's.
# Usage: bash benchmarks/gpu_precision.sh [OUTDIR]   (PYTHON=... to pick the interpreter)
set -uo pipefail
out=${1:-bench-results/gpu-precision}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
$py -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$out/devices.txt"
timeout "${PRECISION_TIMEOUT:-330}" $py -m evorl_core.bench --backend gpu --quick --only precision --repeats 3 \
    --out "$out/precision.json" 2>&1 | tee "$out/precision.log"
timeout "${PORTFOLIO_TIMEOUT:-100}" $py -m evorl_core.bench --backend gpu --quick --only portfolio --repeats 3 \
    --out "$out/portfolio.json" 2>&1 | tee "$out/portfolio.log"
