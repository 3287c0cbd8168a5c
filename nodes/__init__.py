"""ComfyUI node classes of MuseDance, registered by name.

Each module holds the nodes of one step and its own NODE_CLASS_MAPPINGS. They adapt ComfyUI values
and call `musedance_core`; heavy libraries load when a node runs, not when ComfyUI starts. A module
that fails to import is reported and skipped, so one broken dependency does not hide the others.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

_MODULES = ("model", "music", "mask", "generate", "video", "render", "schedule")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

for _name in _MODULES:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except Exception:  # noqa: BLE001 - report any import failure and keep the rest of the pack
        log.exception("MuseDance: could not load the nodes in nodes/%s.py", _name)
        continue
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
