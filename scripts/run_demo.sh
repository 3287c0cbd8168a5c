#!/usr/bin/env bash
# Main job: set up .venv if needed, then animate the sample dancer to the sample music with the default
# model that ships in models/. Writes outputs/musedance_demo.mp4 (music muxed in),
# outputs/musedance_demo_contact.png and outputs/musedance_demo_beats.png. Extra arguments go to the
# demo, e.g. --image my.png --music my.mp3 --prompt "..." (python -m musedance_demo --help).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
cd "$MUSEDANCE_ROOT"
exec "$MUSEDANCE_PYTHON" -m musedance_demo "$@"
