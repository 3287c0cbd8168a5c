#!/usr/bin/env bash
# The GPU check on a machine with one CUDA GPU: bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options].
# Wheels the machine lacks travel in .whl/ (bash benchmarks/gpu_wheels.sh here first; carry .whl).
set -euo pipefail
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [options]}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 exec timeout 480 python3 benchmarks/gpu_check.py --out "$out" "${@:2}"
