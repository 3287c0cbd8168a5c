"""ComfyUI node classes of MuseDance, registered by name.

Empty for now: the node classes (loaders, music/beat analysis, sampler, video output) arrive
with the node-pack issue. They adapt ComfyUI values and call `musedance_core`.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
