"""ComfyUI entry point of the MuseDance node pack.

ComfyUI imports this folder as a package from `custom_nodes/` and reads the two mappings.
The model code lives in `musedance_core`, which never imports ComfyUI.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
