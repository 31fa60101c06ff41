#!/usr/bin/env bash
# CI: prove the engine runs on the pinned JAX stack of the [metal] extra (jax-metal 0.1.1 needs
# jax == jaxlib >= 0.4.34 and breaks on >= 0.5.1). jax-metal itself only installs on Apple Silicon,
# so this installs the extra's jax, jaxlib, flax and optax pins (read from pyproject.toml, the one
# source of truth) in a second virtual environment and runs the core tests on CPU.
#
#   bash .ci/pinned-jax.sh            (from anywhere; uses python3.11 or $PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${PINNED_VENV:-.venv-pinned-jax}

# The [metal] pins without jax-metal (macOS arm64 only), e.g. "jax==0.4.34 jaxlib==0.4.34 flax==... optax==...".
PINS=$("$PY" - <<'EOF'
import re, tomllib
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["metal"]
pins = [r for r in extra if re.split(r"[=<>!~ ;\[]", r, maxsplit=1)[0].lower() in ("jax", "jaxlib", "flax", "optax")]
assert len(pins) == 4 and all("==" in p for p in pins), f"[metal] must pin jax, jaxlib, flax, optax exactly: {extra}"
print(" ".join(pins))
EOF
)
echo "pinned stack: $PINS"

rm -rf "$VENV"
"$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
python -m pip install -q $PINS -e . "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100" "pytest-xdist>=3.5"

python - <<EOF
import flax, jax, jaxlib, optax
got = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__}
want = dict(p.split("==") for p in "$PINS".split())
assert got == want, f"pip resolved {got}, expected the pins {want}"
print("running on", got)
EOF

# Core engine tests (no dashboard/browser) on the pinned stack: config, data, costs, env, backtest,
# stats, significance, splits, PPO + loop, seeds and PBT populations, sharding and the distributed
# helpers, the benchmark suite's fast tests, the CLI. The long tests (marked slow: two-process
# training, four-device equality, the tiny bench runs) ran in the main suite on the current stack.
# Two worker processes, a file's tests on one.
JAX_PLATFORMS=cpu python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m "not slow" \
  tests/test_config.py tests/test_data.py tests/test_costs.py tests/test_env.py tests/test_backtest.py \
  tests/test_stats.py tests/test_significance.py tests/test_splits.py tests/test_training.py tests/test_seeds.py tests/test_evolution.py \
  tests/test_sharding.py tests/test_distributed.py tests/test_bench.py tests/test_cli.py
deactivate
