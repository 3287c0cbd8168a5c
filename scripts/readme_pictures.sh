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
# Prerequisites (the machine needs PyPI and Debian's packages, nothing else): python3 with its venv
# module. The project's .venv (scripts/setup_env.sh; its `test` extra has Playwright and Pillow) and the
# ComfyUI test hosts and Chromium (scripts/setup_comfyui.sh) are made here if missing. The pictures come
# from the current host (ComfyUI 0.3.75 with its current web UI), so the screenshot shows the video
# player; the March-2024 host's UI cannot play a video in a node. COMFYUI_PATH and COMFYUI_PYTHON take
# your own ComfyUI instead.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
ROOT="$MUSEDANCE_ROOT"
HOME_DIR="${MUSEDANCE_COMFYUI_HOME:-$ROOT/.comfyui}"
IMAGES="$ROOT/docs/images"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

_say() { echo "readme_pictures: $*" >&2; }

MUSEDANCE_COMFYUI_HOME="$HOME_DIR" CHROMIUM="$CHROMIUM" bash "$ROOT/scripts/setup_comfyui.sh"
[ -x "$CHROMIUM" ] || { _say "ERROR: no Chromium at $CHROMIUM; apt-get install -y chromium, or set CHROMIUM."; exit 1; }
PICTURES_PYTHON="$MUSEDANCE_PYTHON"
if [ -n "${COMFYUI_PATH:-}" ]; then
    COMFY_ARGS=()  # tests/comfy_server.py's find_hosts reads COMFYUI_PATH and COMFYUI_PYTHON
else
    COMFY_ARGS=(--comfyui "$HOME_DIR/current/ComfyUI" --python "$HOME_DIR/current/venv/bin/python")
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
