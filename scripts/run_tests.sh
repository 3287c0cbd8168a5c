#!/usr/bin/env bash
# Test suite: set up .venv if needed, then run pytest; extra arguments go to pytest.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
cd "$MUSEDANCE_ROOT"
status=0
"$MUSEDANCE_PYTHON" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "run_tests: pytest collected no tests; that is a failure here." >&2
    exit 1
fi
exit "$status"
