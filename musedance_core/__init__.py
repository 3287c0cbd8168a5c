"""MuseDance core library: music-driven image animation, independent of ComfyUI.

    from musedance_core import MuseDanceConfig, MuseDancePipeline
    pipe = MuseDancePipeline.from_config(MuseDanceConfig.tiny())
    frames = pipe(reference_image=..., mask=..., text_embeds=..., music_tokens=..., beats=...)

Real weights: `load_pipeline(checkpoint, base=..., motion_module=..., tokenizer=...)` (local files only).

The names below are imported on first use, so importing the package (as ComfyUI does at start-up,
through the node pack) does not load torch, diffusers or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MuseDanceConfig": "config",
    "MuseDancePipeline": "sampling.pipeline",
    "GenerationStopped": "sampling.pipeline",
    "ReferenceEncoding": "sampling.pipeline",
    "StepInfo": "sampling.pipeline",
    "load_pipeline": "loading.loader",
    "save_checkpoint": "loading.checkpoint",
    "WeightsFileError": "loading.weights",
    "foreground_mask": "masks.subject",
    "MaskRefinement": "masks.subject",
    "MaskWarning": "masks.subject",
    "fit_image": "masks.framing",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'musedance_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
