"""Render Dance Video: the sampler and Save Dance Video in one node, writing each clip as soon as it is made.

MuseDance Sampler hands the whole video to the next node as one IMAGE, which a long song at a large
size cannot afford. This node writes every finished clip (its frames and the music of exactly those
frames) to the video file at once, so it holds one clip whatever the length of the song.
"""

from __future__ import annotations

import json
import logging

from . import comfy
from .generate import Generation, MuseDanceSampler
from .video import PARTIAL_FILE_AGE, VIDEO, SaveDanceVideo, output_path, remove_partial_videos

log = logging.getLogger(__name__)

ON_CANCEL = ("keep the video so far", "remove the video")


class RenderDanceVideo:
    """MODEL + REFERENCE + music tokens + beats -> a video file, written clip by clip."""

    CATEGORY = "MuseDance"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = SaveDanceVideo.RETURN_TYPES
    RETURN_NAMES = SaveDanceVideo.RETURN_NAMES
    OUTPUT_TOOLTIPS = SaveDanceVideo.OUTPUT_TOOLTIPS
    DESCRIPTION = ("Generates the dance as MuseDance Sampler does and writes each clip to the video as soon as "
                   "it is made, with its music: memory stays that of one clip, so whole songs at any size fit. "
                   "On Cancel the video so far is kept (closed, playable) or removed, as chosen.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        sampler, video = MuseDanceSampler.INPUT_TYPES(), SaveDanceVideo.INPUT_TYPES()
        required = dict(sampler["required"])
        required.update((name, video["required"][name]) for name in ("filename_prefix", "format", "crf"))
        optional = dict(sampler["optional"])
        optional["save_workflow"] = video["optional"]["save_workflow"]
        optional["on_cancel"] = (list(ON_CANCEL), {"default": ON_CANCEL[0], "tooltip": (
            "What Cancel leaves: the frames made so far as a playable video (its music cut to them), or nothing.")})
        return {"required": required, "optional": optional, "hidden": video["hidden"]}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: str | None = None, format: str | None = None, crf: int | None = None):
        return SaveDanceVideo.VALIDATE_INPUTS(filename_prefix=filename_prefix, format=format, crf=crf)

    def run(self, model, reference, music, beats, seed: int, steps: int, guidance: float, frame_count: int,
            clip_length: int, motion_frames: int, filename_prefix: str, format: str, crf: int, eta: float = 0.0,
            noise_share: float = -1.0, beat_guidance: float = -1.0, reference_start: str = "auto",
            save_workflow: bool = True, on_cancel: str = ON_CANCEL[0], prompt: dict | None = None,
            extra_pnginfo: dict | None = None):
        from ..musedance_core.sampling.render import write_clips
        from ..musedance_core.video import video_format

        if on_cancel not in ON_CANCEL:
            raise ValueError(f"on_cancel must be one of {ON_CANCEL}, got {on_cancel!r}.")
        job = Generation(model, reference, music, beats, seed, steps, guidance, frame_count, clip_length,
                         motion_frames, eta, noise_share, beat_guidance, reference_start)
        metadata = {}
        if save_workflow:  # as Save Dance Video
            metadata = {key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()}
            if prompt is not None:
                metadata["prompt"] = json.dumps(prompt)
        path, name, subfolder = output_path(filename_prefix, video_format(format).extension)
        remove_partial_videos(path.parent, PARTIAL_FILE_AGE)
        keep = comfy.interrupt_exceptions() if on_cancel == ON_CANCEL[0] else ()
        audio = job.audio(0, job.frames)  # the span's music, already in memory: each clip writes its own part
        write_clips(job.clips(), path, fps=job.span.fps, audio=audio["waveform"][0],
                    sample_rate=int(audio["sample_rate"]), format=format, crf=crf, metadata=metadata, keep_on=keep)
        result = {"filename": name, "subfolder": subfolder, "type": "output"}
        relative = f"{subfolder}/{name}" if subfolder else name
        outputs = (relative,) + ((VIDEO(str(path)),) if VIDEO else ())
        ui = {"images": [result], "animated": (True,), "text": [f"sampler: {job.settings.describe()}"]}
        return {"ui": ui, "result": outputs}


NODE_CLASS_MAPPINGS = {"MuseDanceRender": RenderDanceVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"MuseDanceRender": "Render Dance Video (MuseDance)"}
