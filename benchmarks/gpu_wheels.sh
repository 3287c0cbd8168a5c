#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh installs on the GPU machine, whose image has torch, transformers and
# accelerate but not diffusers: downloaded here into .whl/ (ignored by git), at this checkout's versions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${MUSEDANCE_PYTHON:-.venv/bin/python}"
versions=$("$python" -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in ('diffusers', 'importlib_metadata')))")
mkdir -p .whl
# shellcheck disable=SC2086
"$python" -m pip download -q --no-deps --only-binary=:all: -d .whl $versions
ls .whl
