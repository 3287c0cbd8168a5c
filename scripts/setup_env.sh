#!/usr/bin/env bash
# Create (once) the project's virtual environment and install MuseDance with its test extras.
#
#   bash scripts/setup_env.sh    # from any directory
#
# The other scripts `source` it and then run "$MUSEDANCE_PYTHON". (Do not source it from an
# interactive shell: it turns on `set -euo pipefail` there.)
# torch==2.13.0 is installed FIRST and checked: on the project machines that pin resolves to a
# small CPU wheel, while letting pip choose torch on its own would pull a multi-GB CUDA build.
# MUSEDANCE_VENV overrides the environment's location (default: <repo>/.venv).
# Already have torch (e.g. ComfyUI's Python)? Skip this and `pip install -e ".[test]"` there.
set -euo pipefail

MUSEDANCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUSEDANCE_VENV="${MUSEDANCE_VENV:-$MUSEDANCE_ROOT/.venv}"
MUSEDANCE_PYTHON="$MUSEDANCE_VENV/bin/python"
MUSEDANCE_TORCH="2.13.0"

if [ ! -x "$MUSEDANCE_PYTHON" ]; then
    echo "setup_env: creating virtual environment $MUSEDANCE_VENV" >&2
    python3 -m venv "$MUSEDANCE_VENV"
fi

# Re-install only when pyproject.toml changed since the last successful install.
_stamp="$MUSEDANCE_VENV/.musedance-installed"
_wanted="torch==$MUSEDANCE_TORCH $(sha256sum "$MUSEDANCE_ROOT/pyproject.toml" | cut -d' ' -f1)"
_pip_install() {
    # pip's warnings about this machine's file:///opt/... index locations are noise; drop them.
    "$MUSEDANCE_PYTHON" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file:///opt/" || true; } >&2
}

if [ "$(cat "$_stamp" 2>/dev/null || true)" != "$_wanted" ]; then
    echo "setup_env: installing torch==$MUSEDANCE_TORCH, then MuseDance and its test extras" >&2
    _pip_install "torch==$MUSEDANCE_TORCH"
    _have="$("$MUSEDANCE_PYTHON" -W ignore -c 'import torch; print(torch.__version__)')"
    case "$_have" in
        "$MUSEDANCE_TORCH"*) ;;
        *) echo "setup_env: ERROR: expected torch $MUSEDANCE_TORCH in $MUSEDANCE_VENV, found $_have." \
                "Remove $MUSEDANCE_VENV and run again." >&2
           exit 1 ;;
    esac
    _pip_install -e "$MUSEDANCE_ROOT[test]"
    _have="$("$MUSEDANCE_PYTHON" -W ignore -c 'import torch; print(torch.__version__)')"
    case "$_have" in
        "$MUSEDANCE_TORCH"*) ;;
        *) echo "setup_env: ERROR: installing MuseDance replaced torch $MUSEDANCE_TORCH with $_have." >&2
           exit 1 ;;
    esac
    echo "$_wanted" > "$_stamp"
fi
export MUSEDANCE_ROOT MUSEDANCE_VENV MUSEDANCE_PYTHON
