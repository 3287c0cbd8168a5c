#!/usr/bin/env bash
# Test suite: set up .venv and the ComfyUI test host if needed, then run pytest; extra arguments go to pytest.
# MUSEDANCE_SKIP_COMFYUI=1 skips the test host's setup (its tests then skip, or fail under CI).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
cd "$MUSEDANCE_ROOT"
export MUSEDANCE_COMFYUI_HOME="${MUSEDANCE_COMFYUI_HOME:-$MUSEDANCE_ROOT/.comfyui}"
if [ "${MUSEDANCE_SKIP_COMFYUI:-0}" != "1" ]; then
    bash scripts/setup_comfyui.sh
fi
status=0
"$MUSEDANCE_PYTHON" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "run_tests: pytest collected no tests; that is a failure here." >&2
    exit 1
fi
exit "$status"
