"""ComfyUI entry point of the MuseDance node pack.

ComfyUI imports this folder as a package from `custom_nodes/` and reads the two mappings.
The model code lives in `musedance_core`, which never imports ComfyUI.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.model_folders import register_model_folders

# Inside ComfyUI: list models/musedance, models/audio_encoders, ... in the loaders; without ComfyUI
# (no folder_paths to import) this does nothing, so the pack still imports.
register_model_folders()

# ComfyUI serves the JavaScript in web/ to its frontend (Load Song's upload button).
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
