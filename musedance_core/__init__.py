"""MuseDance core library: music-driven image animation, independent of ComfyUI.

    from musedance_core import MuseDanceConfig, MuseDancePipeline
    pipe = MuseDancePipeline.from_config(MuseDanceConfig.tiny())
    frames = pipe(reference_image=..., mask=..., text_embeds=..., music_tokens=..., beats=...)

Real weights: `load_pipeline(checkpoint, base=..., motion_module=..., tokenizer=...)` (local files only).
"""

from .checkpoint import save_checkpoint
from .config import MuseDanceConfig
from .loading import load_pipeline
from .pipeline import GenerationStopped, MuseDancePipeline, ReferenceEncoding, StepInfo
from .weights import WeightsFileError

__all__ = [
    "MuseDanceConfig",
    "MuseDancePipeline",
    "GenerationStopped",
    "ReferenceEncoding",
    "StepInfo",
    "load_pipeline",
    "save_checkpoint",
    "WeightsFileError",
]
