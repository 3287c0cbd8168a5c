"""MuseDance core library: music-driven image animation, independent of ComfyUI.

    from musedance_core import MuseDanceConfig, MuseDancePipeline
    pipe = MuseDancePipeline.from_config(MuseDanceConfig.tiny())
    frames = pipe(reference_image=..., mask=..., text_embeds=..., music_tokens=..., beats=...)
"""

from .config import MuseDanceConfig
from .pipeline import GenerationStopped, MuseDancePipeline, ReferenceEncoding, StepInfo

__all__ = ["MuseDanceConfig", "MuseDancePipeline", "GenerationStopped", "ReferenceEncoding", "StepInfo"]
