#!/usr/bin/env bash
# Main job: set up .venv if needed, then run the end-to-end demo (tiny model, random weights).
# Writes output/musedance_demo.mp4; extra arguments go to the demo (e.g. --seconds 2 --size 32).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
cd "$MUSEDANCE_ROOT"
exec "$MUSEDANCE_PYTHON" -m musedance_core.demo --output output/musedance_demo.mp4 "$@"
