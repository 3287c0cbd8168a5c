"""Render Dance Video: the sampler and Save Dance Video in one node, writing each clip as soon as it is made.

MuseDance Sampler hands the whole video to the next node as one IMAGE, which a long song at a large
size cannot afford. This node writes every finished clip (its frames and the music of exactly those
frames) to the video file at once, so it holds one clip whatever the length of the song.
"""

from __future__ import annotations

import json
import logging
import math

from . import comfy
from .generate import (
    CLIP_ENDS,
    COMPILE_INPUTS,
    DECODE_CHUNK_SIZE,
    GUIDANCE_ROWS,
    LOW_MEMORY_INPUTS,
    Generation,
    MuseDanceSampler,
    low_memory_problem,
)
from .job_memory import refusal
from .video import (
    PARTIAL_FILE_AGE,
    SaveDanceVideo,
    check_prefix,
    output_path,
    remove_partial_videos,
    saved_video,
    workflow_metadata,
)

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
        later = ("clip_ends", *LOW_MEMORY_INPUTS, *COMPILE_INPUTS)  # the sampler's widgets added after these nodes' own
        optional = {name: spec for name, spec in sampler["optional"].items() if name not in later}
        optional["save_workflow"] = video["optional"]["save_workflow"]
        optional["on_cancel"] = (list(ON_CANCEL), {"default": ON_CANCEL[0], "tooltip": (
            "What Cancel leaves: the frames made so far as a playable video (its music cut to them), or nothing.")})
        optional["continue_from"] = ("STRING", {"default": "", "tooltip": (
            "A video this node wrote, as a path in the output folder (e.g. MuseDance/render_00001.mp4): a render "
            "that was cancelled, or one to extend with more music (a longer duration in Dance Timing). The new "
            "video holds its frames and goes on from its last ones. Empty: a new video.")})
        for name in later:  # last, in the order they were added: widgets added later go after the old ones
            optional[name] = sampler["optional"][name]
        return {"required": required, "optional": optional, "hidden": {**video["hidden"], "unique_id": "UNIQUE_ID"}}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: str | None = None, format: str | None = None, crf: int | None = None,
                        continue_from: str | None = None, decode_chunk_size: int | None = None,
                        vae_tile_size: int | None = None, unique_id=None):
        if found := refusal(unique_id):
            return found[0].upper() + found[1:]
        if problem := low_memory_problem(decode_chunk_size=decode_chunk_size, vae_tile_size=vae_tile_size):
            return problem
        if continue_from:
            try:
                earlier_render(continue_from)
            except ValueError as error:
                return str(error)
        return SaveDanceVideo.VALIDATE_INPUTS(filename_prefix=filename_prefix, format=format, crf=crf)

    def run(self, model, reference, music, beats, seed: int, steps: int, guidance: float, frame_count: int,
            clip_length: int, motion_frames: int, filename_prefix: str, format: str, crf: int, eta: float = 0.0,
            noise_share: float = -1.0, beat_guidance: float = -1.0, reference_start: str = "auto",
            save_workflow: bool = True, on_cancel: str = ON_CANCEL[0], continue_from: str = "", schedule=None,
            clip_ends: str = CLIP_ENDS[0], guidance_rows: str = GUIDANCE_ROWS[0],
            decode_chunk_size: int = DECODE_CHUNK_SIZE, vae_tile_size: int = 0, compile: bool = False,
            prompt: dict | None = None, extra_pnginfo: dict | None = None, unique_id=None):
        from ..musedance_core.sampling.render import write_clips
        from ..musedance_core.video import video_format

        if on_cancel not in ON_CANCEL:
            raise ValueError(f"on_cancel must be one of {ON_CANCEL}, got {on_cancel!r}.")
        job = Generation(model, reference, music, beats, seed, steps, guidance, frame_count, clip_length,
                         motion_frames, eta, noise_share, beat_guidance, reference_start, schedule,
                         holds_every_frame=False, clip_ends=clip_ends, guidance_rows=guidance_rows,
                         decode_chunk_size=decode_chunk_size, vae_tile_size=vae_tile_size,
                         continuing=bool(continue_from), compile_unet=compile)
        metadata = workflow_metadata(save_workflow, prompt, extra_pnginfo)
        height, width = reference.image.shape[1:3]
        metadata[RENDER_TAG] = json.dumps({"fps": job.span.fps, "start_time": job.span.start, "width": width,
                                           "height": height, "clip_length": job.clip_length,
                                           "motion_frames": job.motion_frames, "seed": seed})
        clips = job.clips()
        if continue_from:
            clips = continued_clips(job, continue_from, width, height)
        path, name, subfolder = output_path(filename_prefix, video_format(format).extension)
        remove_partial_videos(path.parent, PARTIAL_FILE_AGE)
        keep = comfy.interrupt_exceptions() if on_cancel == ON_CANCEL[0] else ()
        audio = job.audio(0, job.frames)  # the span's music, already in memory: each clip writes its own part
        write_clips(clips, path, fps=job.span.fps, audio=audio["waveform"][0],
                    sample_rate=int(audio["sample_rate"]), format=format, crf=crf, metadata=metadata, keep_on=keep)
        answer = saved_video(path, name, subfolder)
        answer["ui"]["text"] = [f"sampler: {job.describe()}", *job.notes]
        return answer


RENDER_TAG = "musedance_render"  # the video's own metadata: where in the music it starts, its fps, size and grid


def earlier_render(name: str):
    """(path, its render metadata, its VideoInfo) of a video this node wrote, named inside the output folder."""
    from ..musedance_core.video import read_video_info

    folder, parts = check_prefix(name)
    path = folder / parts[-1]
    if not path.is_file():
        raise ValueError(f"continue_from: no video {name!r} in ComfyUI's output folder; give the path that Render "
                         "Dance Video showed (e.g. MuseDance/render_00001.mp4), or leave it empty for a new video.")
    try:
        info = read_video_info(path)
        meta = json.loads(info.metadata[RENDER_TAG])
    except (KeyError, ValueError, OSError) as error:
        raise ValueError(f"continue_from: {name!r} is not a video Render Dance Video wrote (it carries no "
                         f"{RENDER_TAG} metadata, or cannot be read: {error}).") from None
    return path, meta, info


def continued_clips(job, name: str, width: int, height: int):
    """The frames of an earlier render (decoded a clip at a time), then the new clips from its last frames on."""
    import numpy as np
    import torch

    from ..musedance_core.video import iter_video_frames

    path, meta, info = earlier_render(name)
    if not (math.isclose(meta["fps"], job.span.fps) and math.isclose(meta["start_time"], job.span.start)):
        raise ValueError(f"continue_from: {name} was made at {meta['fps']:g} fps from {meta['start_time']:g} s of "
                         f"the music; give Dance Timing the same fps and start_time (now {job.span.fps:g} fps from "
                         f"{job.span.start:g} s).")
    if (meta["width"], meta["height"]) != (width, height):
        raise ValueError(f"continue_from: {name} is {meta['width']}x{meta['height']}; ReferenceNet Encode makes "
                         f"{width}x{height}. Give it the video's size.")
    if info.num_frames >= job.frames:
        raise ValueError(f"continue_from: {name} already has {info.num_frames} frames, the {job.frames} asked for; "
                         "to extend it, give Dance Timing a longer duration.")
    if job.clip_length != meta["clip_length"]:
        log.warning("MuseDance: continuing %s with clips of %d frames; it was made with %d.", name,
                    job.clip_length, meta["clip_length"])
    tail = np.zeros((0, height, width, 3), np.uint8)
    for chunk in iter_video_frames(path, job.clip_length):
        tail = np.concatenate([tail, chunk])[-max(job.motion_frames, 1):]
        yield torch.from_numpy(chunk)
    yield from job.clips(info.num_frames, torch.from_numpy(tail).float() / 255)


NODE_CLASS_MAPPINGS = {"MuseDanceRender": RenderDanceVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"MuseDanceRender": "Render Dance Video (MuseDance)"}
