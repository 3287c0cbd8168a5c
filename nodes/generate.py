"""ReferenceNet Encode and MuseDance Sampler: the reference image and motion prompt in, video frames out.

ReferenceNet Encode runs the VAE, the mask encoder, CLIP and the ReferenceNet once; its result (on
the CPU, small) can feed several samplers, for other music or seeds, without encoding again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import torch

from ..musedance_core.audio.timing import frame_samples
from ..musedance_core.config import MAX_GUIDANCE, SamplerSettings
from . import comfy
from .job_memory import job_from_run, refusal
from .mask import is_load_image_placeholder
from .model import MuseDanceModel
from .music import FrameBeats, FrameMusic, check_same_frames
from .schedule import guidance_schedule, text_schedule

log = logging.getLogger(__name__)

CATEGORY = "MuseDance"
RESIZE_MODES = ("crop", "pad", "stretch")
MAX_SEED = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, eq=False)
class MuseDanceReference:
    """What flows along a MUSEDANCE_REFERENCE link."""

    model: MuseDanceModel  # the model that encoded it; the sampler must use the same one
    encoding: object  # musedance_core.sampling.pipeline.ReferenceEncoding, tensors on the CPU
    text_embeds: torch.Tensor  # [1, 77, D] on the CPU
    negative_text_embeds: torch.Tensor | None
    image: torch.Tensor  # the reference as the model sees it, IMAGE [1, H, W, 3]


def _to_cpu(encoding):
    from ..musedance_core.sampling.pipeline import ReferenceEncoding

    return ReferenceEncoding(
        latent=encoding.latent.cpu(), tokens={k: v.cpu() for k, v in encoding.tokens.items()},
        height=encoding.height, width=encoding.width,
    )


class ReferenceNetEncode:
    """MODEL + reference IMAGE (+ MASK) + motion prompt -> MUSEDANCE_REFERENCE."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MUSEDANCE_REFERENCE", "IMAGE")
    RETURN_NAMES = ("reference", "framed_image")
    OUTPUT_TOOLTIPS = ("The encoded reference; one encoding can feed several samplers.",
                       "The reference cropped/padded to the video size, as the model sees it.")
    DESCRIPTION = ("Encodes the subject once: VAE latent plus mask features through the ReferenceNet, and "
                   "the motion prompt through CLIP.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MUSEDANCE_MODEL",),
                "image": ("IMAGE", {"tooltip": "The subject to animate (one image)."}),
                "prompt": ("STRING", {"multiline": True, "default": "a person dancing energetically to the beat",
                                      "tooltip": "The motion description."}),
                "width": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                                  "tooltip": "Video width in pixels (a multiple of 8)."}),
                "height": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                                   "tooltip": "Video height in pixels (a multiple of 8)."}),
                "resize": (list(RESIZE_MODES), {"default": "crop",
                                                "tooltip": "How the image meets the video size: centre crop, "
                                                           "pad with the border colour, or stretch."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "The subject's mask (Subject Mask node). Without it the whole "
                                             "image counts as the subject."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "",
                                               "tooltip": "What guidance steers away from; empty is SD's usual."}),
            },
        }

    def run(self, model: MuseDanceModel, image: torch.Tensor, prompt: str, width: int, height: int, resize: str,
            mask: torch.Tensor | None = None, negative_prompt: str = ""):
        from ..musedance_core.masks.framing import fit_image
        from ..musedance_core.masks.subject import mask_for_image

        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"ReferenceNet Encode takes one image; got a batch of {image.shape[0]} "
                             "(pick one with ComfyUI's ImageFromBatch node).")
        if width % 8 or height % 8:
            raise ValueError(f"width and height must be multiples of 8, got {width}x{height}.")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}.")
        framed, framing = fit_image(image[..., :3], height, width, resize)
        if mask is not None and is_load_image_placeholder(mask, image):
            log.warning("MuseDance: the connected mask is Load Image's empty placeholder; using the whole image.")
            mask = None
        if mask is not None:
            if mask.ndim == 3 and mask.shape[0] != 1:
                raise ValueError(f"mask must be one mask for the one image; got a batch of {mask.shape[0]}.")
            # Same aspect, other size: resized with a warning; other aspect: a ValueError naming both sizes.
            mask = mask_for_image(mask, image.shape[1], image.shape[2])
            mask = framing.apply(mask if mask.ndim == 3 else mask[None])[0]
        pipe = model.pipeline
        comfy.throw_if_interrupted()
        if is_flow(model):
            return self._encode_flow(model, framed, mask, prompt, height, width)
        device = model.load_encoders()
        try:
            with torch.no_grad():
                text = pipe.encode_prompt(prompt)
                negative = pipe.encode_prompt(negative_prompt) if negative_prompt.strip() else None
                encoding = pipe.encode_reference(framed.to(device), None if mask is None else mask.to(device), text,
                                                 interrupt=comfy.check_interrupt)
        finally:
            model.done()
        reference = MuseDanceReference(
            model, _to_cpu(encoding), text.float().cpu(), None if negative is None else negative.float().cpu(), framed,
        )
        notes = []
        if size_note := pipe.size_note(height, width):
            notes.append(f"Size: {size_note}")
            log.warning("MuseDance: %s", size_note)
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            cut = pipe.cut_from_prompt(text)
            if cut:
                notes.append(f"The {name} is longer than the {pipe.config.text_length} tokens CLIP reads; "
                             f"this end was left out: \"{cut}\". Shorten it, or put what matters first.")
                log.warning("MuseDance: %s", notes[-1])
        return {"ui": {"text": notes}, "result": (reference, framed)}

    @staticmethod
    def _encode_flow(model: MuseDanceModel, framed: torch.Tensor, mask: torch.Tensor | None, prompt: str,
                     height: int, width: int) -> dict:
        """The flow family's reference: the framed picture at its size (the video keeps it) and its latent."""
        pipe = model.pipeline
        device = model.load_encoders()
        try:
            encoding = pipe.encode_reference(framed[0].to(device), None if mask is None else mask.to(device))
        finally:
            model.done()
        notes = []
        if prompt.strip():
            notes.append("The flow-family model follows the music alone: the prompt is not used.")
        if size_note := pipe.size_note(height, width) if hasattr(pipe, "size_note") else None:
            notes.append(f"Size: {size_note}")
        reference = MuseDanceReference(model, encoding.to("cpu"), None, None, framed)
        return {"ui": {"text": notes}, "result": (reference, framed)}


def is_flow(model: MuseDanceModel) -> bool:
    """Whether the model is of the flow family (DabFusion) rather than MuseDance."""
    from ..musedance_core.sampling.flow_pipeline import FlowDancePipeline

    return isinstance(model.pipeline, FlowDancePipeline)


GUIDANCE_ROWS = ("together", "one at a time")
DECODE_CHUNK_SIZE = 8  # iter_clips' own default
MAX_DECODE_CHUNK_SIZE = 256
MAX_VAE_TILE_SIZE = 4096
MIN_VAE_TILE_SIZE = 64  # iter_clips' own floor
LOW_MEMORY_INPUTS = {
    "guidance_rows": (list(GUIDANCE_ROWS), {"default": GUIDANCE_ROWS[0], "tooltip": (
        "How each step runs guidance's model rows (the conditional one, the unconditional one when guidance is "
        "above 1, the beats' own with beat_guidance): together as one batch, or one at a time: the same frames, "
        "with a step's working memory for one row instead of two or three, for somewhat more time.")}),
    "decode_chunk_size": ("INT", {"default": DECODE_CHUNK_SIZE, "min": 1, "max": MAX_DECODE_CHUNK_SIZE, "tooltip": (
        "Frames the VAE decodes at once: the decode's memory grows with it; fewer save memory for a little more "
        "time. The same frames whatever the number.")}),
    "vae_tile_size": ("INT", {"default": 0, "min": 0, "max": MAX_VAE_TILE_SIZE, "step": 8, "tooltip": (
        "0: the VAE decodes whole frames. A side in pixels (a multiple of 8, at least 64; e.g. 256): larger "
        "frames are decoded in overlapping tiles of that size, blended at the seams, so the decode needs the "
        "memory of one tile instead of a whole frame; it takes more time and the frames differ slightly near "
        "the seams.")}),
}


COMPILE_INPUTS = {
    "compile": ("BOOLEAN", {"default": False, "tooltip": (
        "Run the UNet's denoising steps through torch.compile: the first run at each frame size and clip length "
        "compiles (minutes), later runs of that size reuse it while the model stays loaded. Needs a C++ compiler "
        "(CPU) or Triton (NVIDIA GPU); Cancel then takes effect after the current step. Off: plain PyTorch.")}),
}


def compile_failure(error: BaseException) -> bool:
    """Whether torch.compile itself failed (its backend, or Dynamo's tracing), not the model it runs."""
    exc = getattr(getattr(torch, "_dynamo", None), "exc", None)
    kinds = tuple(getattr(exc, name) for name in ("BackendCompilerFailed", "TorchDynamoException") if hasattr(exc, name))
    return bool(kinds) and isinstance(error, kinds)


def low_memory_problem(guidance_rows=None, decode_chunk_size=None, vae_tile_size=None) -> str | None:
    """What is wrong with the low-memory inputs given (None: not given, or from a link), or None."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if guidance_rows is not None and guidance_rows not in GUIDANCE_ROWS:
        return f"guidance_rows must be one of {GUIDANCE_ROWS}, got {guidance_rows!r}."
    if decode_chunk_size is not None and not (whole(decode_chunk_size) and 1 <= decode_chunk_size <= MAX_DECODE_CHUNK_SIZE):
        return (f"decode_chunk_size {decode_chunk_size!r}: give the number of frames the VAE decodes at once, "
                f"1 to {MAX_DECODE_CHUNK_SIZE} ({DECODE_CHUNK_SIZE} is the usual).")
    if vae_tile_size is not None and vae_tile_size != 0 and not (
            whole(vae_tile_size) and MIN_VAE_TILE_SIZE <= vae_tile_size <= MAX_VAE_TILE_SIZE and vae_tile_size % 8 == 0):
        near = min(max(MIN_VAE_TILE_SIZE, round(vae_tile_size / 8) * 8), MAX_VAE_TILE_SIZE) if whole(vae_tile_size) else 256
        return (f"vae_tile_size {vae_tile_size!r}: give 0 to decode whole frames, or a tile side in pixels that is a "
                f"multiple of 8 from {MIN_VAE_TILE_SIZE} to {MAX_VAE_TILE_SIZE}, e.g. {near}.")
    return None


class MuseDanceSampler:
    """MODEL + REFERENCE + music tokens + beats -> IMAGE frames (and the music they play to)."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("frames", "audio", "fps")
    OUTPUT_TOOLTIPS = ("The video frames.", "The music of exactly these frames, for Save Dance Video.",
                       "Frames per second of the video.")
    DESCRIPTION = ("Generates the dance clip by clip (K frames each); each clip continues from the last "
                   "motion_frames frames of the one before, so any length of music works.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MUSEDANCE_MODEL",),
                "reference": ("MUSEDANCE_REFERENCE",),
                "music": ("MUSEDANCE_MUSIC",),
                "beats": ("MUSEDANCE_BEATS",),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "steps": ("INT", {"default": 0, "min": 0, "max": 1000,
                                  "tooltip": "DDIM steps per clip; 0: auto, the model's recommendation."}),
                "guidance": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_GUIDANCE, "step": 0.1,
                                       "tooltip": "Classifier-free guidance scale; 1 turns guidance off; 0: auto, "
                                                  "the model's recommendation."}),
                "frame_count": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                        "tooltip": "Frames to make; 0: all the frames of the music's duration."}),
                "clip_length": ("INT", {"default": 0, "min": 0, "max": 256,
                                        "tooltip": "Frames per clip (K); 0: the model's own (48 for the paper's)."}),
                "motion_frames": ("INT", {"default": 2, "min": 0, "max": 16,
                                          "tooltip": "Previous frames each clip continues from (M; the paper uses 2)."}),
            },
            "optional": {
                "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "DDIM eta; 0 is deterministic."}),
                "noise_share": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.05,
                                          "tooltip": "Starting noise shared by all frames: 0 gives every frame "
                                                     "its own noise; higher keeps what the music does not move "
                                                     "(background, colours) steady from frame to frame; -1: auto, "
                                                     "the model's recommendation."}),
                "beat_guidance": ("FLOAT", {"default": -1.0, "min": -1.0, "max": MAX_GUIDANCE, "step": 0.1,
                                            "tooltip": "A guidance scale of the beats' own; 0: off, the beats are "
                                                       "guided with the rest by `guidance`; -1: auto, the model's "
                                                       "recommendation. Above `guidance` it pushes the video "
                                                       "further towards what the beats change, for one more model "
                                                       "pass per step (models trained with train.beat_drop_rate, "
                                                       "as the default model is)."}),
                "schedule": ("MUSEDANCE_SCHEDULE", {"tooltip": "Motion Schedule's prompts per section or bar "
                                                               "range; without it, the reference's prompt throughout."}),
                "reference_start": (["auto", "on", "off"], {"default": "auto",
                                                           "tooltip": "Start every frame from the reference image's "
                                                                      "latent, noised to the first step, instead of "
                                                                      "pure noise: the frames keep the reference's "
                                                                      "colours and background. auto: the model's "
                                                                      "recommendation."}),
                "clip_ends": (list(CLIP_ENDS), {"default": CLIP_ENDS[0], "tooltip": (
                    "Where one clip ends and the next continues from its last frames: every clip_length frames, "
                    "or on the last bar line (Beat Extract's) in a clip's second half, so the seams fall where "
                    "the dance's phrases change. A prompt change in a schedule always starts a clip.")}),
                **LOW_MEMORY_INPUTS,  # last: widgets added later go after the old ones
                **COMPILE_INPUTS,
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, guidance: float = 0.0, reference_start: str = "auto", decode_chunk_size: int | None = None,
                        vae_tile_size: int | None = None, unique_id=None) -> bool | str:
        if found := refusal(unique_id):
            return found[0].upper() + found[1:]
        if 0.0 < guidance < 1.0:
            return (f"guidance {guidance:g}: give 1 (no guidance) to {MAX_GUIDANCE:g}, or 0 for the model's "
                    "recommendation.")
        if reference_start not in ("auto", "on", "off", True, False):
            return f"reference_start must be auto, on or off, got {reference_start!r}."
        return low_memory_problem(decode_chunk_size=decode_chunk_size, vae_tile_size=vae_tile_size) or True

    def run(self, model: MuseDanceModel, reference: MuseDanceReference, music: FrameMusic, beats: FrameBeats,
            seed: int, steps: int, guidance: float, frame_count: int, clip_length: int, motion_frames: int,
            eta: float = 0.0, noise_share: float = -1.0, beat_guidance: float = -1.0, reference_start: str = "auto",
            schedule=None, clip_ends: str = "every clip_length frames", guidance_rows: str = GUIDANCE_ROWS[0],
            decode_chunk_size: int = DECODE_CHUNK_SIZE, vae_tile_size: int = 0, compile: bool = False,
            unique_id=None):
        job = Generation(model, reference, music, beats, seed, steps, guidance, frame_count, clip_length,
                         motion_frames, eta, noise_share, beat_guidance, reference_start, schedule,
                         holds_every_frame=True, clip_ends=clip_ends, guidance_rows=guidance_rows,
                         decode_chunk_size=decode_chunk_size, vae_tile_size=vae_tile_size, compile_unet=compile)
        height, width = reference.image.shape[1:3]
        video = torch.empty((job.frames, height, width, 3))  # filled clip by clip: no second copy
        done = 0
        for clip in job.clips():
            video[done : done + clip.shape[0]] = clip
            done += clip.shape[0]
        result = (video, job.audio(0, job.frames), job.span.fps)
        return {"ui": {"text": [f"sampler: {job.describe()}", *job.notes]}, "result": result}


def image_limit_problem(frames: int, height: int, width: int) -> str | None:
    """Why MuseDance Sampler cannot hold these frames as one IMAGE, or None."""
    needed = frames * height * width * 3 * 4
    if needed <= image_limit_bytes():
        return None
    return (f"{frames} frames of {width}x{height} need {needed / 2**30:.1f} GiB as one IMAGE, more than the "
            f"{image_limit_bytes() / 2**30:.1f} GiB this sampler holds ({IMAGE_LIMIT_VARIABLE}). Use Render Dance "
            "Video, which writes the video clip by clip and holds one clip, or make a shorter stretch "
            "(Dance Timing's duration, or frame_count) or a smaller size.")


CLIP_ENDS = ("every clip_length frames", "on bar lines")
IMAGE_LIMIT_VARIABLE = "MUSEDANCE_IMAGE_LIMIT_GB"
IMAGE_LIMIT_GB = 4.0  # what MuseDance Sampler's IMAGE may take; longer videos go through Render Dance Video


def image_limit_bytes() -> float:
    """The most memory MuseDance Sampler's IMAGE output may take: IMAGE_LIMIT_GB, or the variable's value."""
    try:
        return float(os.environ.get(IMAGE_LIMIT_VARIABLE, IMAGE_LIMIT_GB)) * 2**30
    except ValueError:
        return IMAGE_LIMIT_GB * 2**30


class Generation:
    """One sampler run's checked settings, and its clips as they are made (with progress, previews and Cancel)."""

    def __init__(self, model: MuseDanceModel, reference: MuseDanceReference, music: FrameMusic, beats: FrameBeats,
                 seed: int, steps: int, guidance: float, frame_count: int, clip_length: int, motion_frames: int,
                 eta: float, noise_share: float, beat_guidance: float, reference_start: str, schedule=None, *,
                 holds_every_frame: bool, clip_ends: str = "every clip_length frames",
                 guidance_rows: str = GUIDANCE_ROWS[0], decode_chunk_size: int = DECODE_CHUNK_SIZE,
                 vae_tile_size: int = 0, continuing: bool = False, compile_unet: bool = False) -> None:
        """continuing: the clips go on from a video's last frames (`clips(start_frame, context_frames)`), which the
        VAE's encoder encodes: the encoders then stay loaded with the sampling modules."""
        if reference.model is not model:
            raise ValueError("the reference was encoded by another MuseDance model than this sampler's; connect "
                             "the same Load MuseDance Model node to ReferenceNet Encode and to the sampler.")
        if 0.0 < guidance < 1.0:
            raise ValueError(f"guidance {guidance:g}: give 1 (no guidance) to {MAX_GUIDANCE:g}, or 0 for the "
                             "model's recommendation.")
        if problem := low_memory_problem(guidance_rows, decode_chunk_size, vae_tile_size):
            raise ValueError(problem)
        self.span = span = check_same_frames(beats, music)
        self.frames = span.num_frames if frame_count == 0 else frame_count
        if self.frames > span.num_frames:
            raise ValueError(f"frame_count {frame_count} is more than the music's {span.num_frames} frames "
                             f"({span.duration:.2f} s at {span.fps:g} fps); lower it, or 0 for all.")
        self.settings = resolve_settings(model.pipeline.recommended, steps, guidance, noise_share, beat_guidance,
                                         reference_start)
        log.info("MuseDance Sampler: %s", self.settings.describe())
        self.model, self.reference, self.music, self.beats = model, reference, music, beats
        self.seed, self.eta, self.motion_frames = seed, eta, motion_frames
        self.clip_length = clip_length or model.pipeline.config.clip_length
        self.flow = is_flow(model)
        if self.flow and schedule is not None:
            raise ValueError("Motion Schedule sets prompts, and the flow-family model follows the music alone: "
                             "disconnect the schedule, or load a MuseDance model.")
        from ..musedance_core.sampling.guidance import guidance_rows as rows_of

        self.guidance_schedule = [(first, chosen) for first, chosen in guidance_schedule(schedule) if first < self.frames]
        rows = 1
        for _, chosen in self.guidance_schedule or [(0, {})]:  # the most model rows any clip takes
            scales = (chosen.get("guidance_scale", self.settings.guidance_scale),
                      chosen.get("beat_guidance_scale", self.settings.beat_guidance_scale))
            rows = max(rows, 1 + sum(rows_of(*scales)))
        self.one_row_at_a_time = guidance_rows == GUIDANCE_ROWS[1]
        self.decode_chunk_size, self.vae_tile_size, self.continuing = decode_chunk_size, vae_tile_size, continuing
        if not isinstance(compile_unet, bool):
            raise ValueError(f"compile must be true or false, got {compile_unet!r}.")
        self.compile_unet = compile_unet
        self.memory = job_from_run(model, reference, self.frames, self.clip_length, rows, holds_every_frame,
                                   span.duration, one_row_at_a_time=self.one_row_at_a_time,
                                   decode_chunk_size=decode_chunk_size, vae_tile_size=vae_tile_size,
                                   offload_idle=not continuing)
        if problem := self.memory.problem():
            raise ValueError(problem[0].upper() + problem[1:])
        pairs = [] if self.flow else text_schedule(schedule, model, span, reference.text_embeds)
        self.text_schedule = [(first, text) for first, text in pairs if first < self.frames]
        if clip_ends not in CLIP_ENDS:
            raise ValueError(f"clip_ends must be one of {CLIP_ENDS}, got {clip_ends!r}.")
        self.bars: list[int] = []
        self.notes: list[str] = []
        if self.flow and (self.one_row_at_a_time, decode_chunk_size, vae_tile_size) != (False, DECODE_CHUNK_SIZE, 0):
            self.notes.append("The flow-family model has no VAE and runs its guidance rows together: guidance_rows, "
                              "decode_chunk_size and vae_tile_size do not apply to it.")
            log.warning("MuseDance: %s", self.notes[-1])
        if self.flow and compile_unet:
            self.notes.append("compile applies to MuseDance models; the flow-family model ran uncompiled.")
            log.warning("MuseDance: %s", self.notes[-1])
        if clip_ends == CLIP_ENDS[1]:
            if beats.downbeats is not None:
                self.bars = [int(f) for f in torch.nonzero(beats.downbeats[: self.frames]).flatten()]
            if not self.bars:
                self.notes.append("Beat Extract found no bar lines in this music: clips end every "
                                  f"{self.clip_length} frames.")
                log.warning("MuseDance: %s", self.notes[-1])

    def clips(self, start_frame: int = 0, context_frames: torch.Tensor | None = None):
        """The video clip by clip, float frames [K, H, W, 3] on the CPU; the model is on the device meanwhile.
        From start_frame on, with a continued video's last frames as context_frames (see iter_clips)."""
        from ..musedance_core.sampling.pipeline import clip_plan

        if self.flow:
            yield from self._flow_clips(start_frame)
            return
        pipe, settings = self.model.pipeline, self.settings
        cuts = [first for first, _ in self.text_schedule] + [first for first, _ in self.guidance_schedule]
        done, todo = clip_plan(self.frames, self.clip_length, cuts, start_frame, bars=self.bars)
        progress = comfy.Progress(len(todo) * settings.steps)

        def on_step(info) -> bool:
            preview = None
            if info.step + 1 == info.num_steps:  # a clip is done: show its last frame while the next one runs
                preview = pipe.decode(info.latents[0, -1:], tile_size=self.vae_tile_size)[0]
            progress.set((info.clip_index - len(done)) * info.num_steps + info.step + 1, preview)
            comfy.throw_if_interrupted()  # Cancel: ComfyUI's exception stops the run between two steps
            return False

        comfy.throw_if_interrupted()
        self.model.load(self.memory.working_bytes(), with_encoders=self.continuing)
        try:
            yield from pipe.iter_clips(
                reference=self.reference.encoding, text_embeds=self.reference.text_embeds,
                negative_text_embeds=self.reference.negative_text_embeds,
                music_tokens=self.music.tokens[: self.frames], beats=self.beats.vector[: self.frames].float(),
                num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale, eta=self.eta,
                seed=self.seed, noise_share=settings.noise_share, beat_guidance_scale=settings.beat_guidance_scale,
                reference_start=settings.reference_start, clip_length=self.clip_length,
                motion_frames=self.motion_frames, callback=on_step, start_frame=start_frame,
                context_frames=context_frames, text_schedule=self.text_schedule, interrupt=comfy.check_interrupt,
                bar_frames=self.bars, guidance_schedule=self.guidance_schedule,
                one_row_at_a_time=self.one_row_at_a_time, decode_chunk_size=self.decode_chunk_size,
                vae_tile_size=self.vae_tile_size, compile_unet=self.compile_unet,
            )
        except Exception as error:
            if self.compile_unet and compile_failure(error):
                cause = getattr(error, "inner_exception", None) or error.__cause__ or error
                said = (str(cause).strip().splitlines() or [""])[0][:300]
                raise RuntimeError(f"torch.compile could not compile the UNet on this machine ({type(cause).__name__}: "
                                   f"{said}); turn the sampler's compile input off, or install what torch.compile "
                                   "needs here (a C++ compiler on the CPU, Triton on an NVIDIA GPU).") from error
            raise
        finally:
            self.model.done()

    def _flow_clips(self, start_frame: int):
        """The flow family's clips (DabFusion), with progress and Cancel as MuseDance's."""
        if start_frame:
            raise ValueError("continuing a video is not available for the flow-family model; render it anew.")
        from ..musedance_core.sampling.pipeline import clip_plan

        pipe, settings = self.model.pipeline, self.settings
        _, todo = clip_plan(self.frames, self.clip_length, bars=self.bars)
        progress = comfy.Progress(len(todo) * settings.steps)

        def on_step(clip: int, step: int) -> None:
            if step + 1 < settings.steps:  # a clip's last step is shown with its last frame, once it is composed
                progress.set(clip * settings.steps + step + 1)
            comfy.throw_if_interrupted()

        comfy.throw_if_interrupted()
        self.model.load(self.memory.working_bytes())
        try:
            for index, clip in enumerate(pipe.iter_clips(
                self.reference.encoding, self.music.tokens[: self.frames], self.beats.vector[: self.frames].float(),
                num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale,
                beat_guidance_scale=settings.beat_guidance_scale, seed=self.seed, clip_length=self.clip_length,
                motion_frames=self.motion_frames, callback=on_step,
                interrupt=comfy.check_interrupt, bar_frames=self.bars,
            )):
                progress.set((index + 1) * settings.steps, clip[-1])  # shown while the next clip runs
                yield clip
        finally:
            self.model.done()

    def describe(self) -> str:
        """The settings the sampler used, as shown on the node."""
        if self.flow:
            beats = self.settings.beat_guidance_scale
            return (f"flow family: steps {self.settings.steps}, guidance {self.settings.guidance_scale:g}"
                    + ("" if beats is None else f", beat guidance {beats:g}"))
        return self.settings.describe()

    def audio(self, first: int, count: int) -> dict:
        """The music of frames first..first+count-1 as ComfyUI AUDIO (first item of the batch)."""
        audio = self.music.audio
        cut = frame_samples(first / self.span.fps, count, self.span.fps, audio["sample_rate"])
        return {"waveform": audio["waveform"][..., cut], "sample_rate": audio["sample_rate"]}


def resolve_settings(recommended: SamplerSettings, steps: int, guidance: float, noise_share: float,
                     beat_guidance: float, reference_start: str | bool) -> SamplerSettings:
    """The model's recommended settings with each widget that is not on auto in its place (steps 0, guidance 0,
    noise share -1, beat guidance -1 and reference start "auto" are auto; beat guidance 0 is off)."""
    chosen: dict = {}
    if steps > 0:
        chosen["steps"] = int(steps)
    if guidance > 0:
        chosen["guidance_scale"] = float(guidance)
    if noise_share >= 0:
        chosen["noise_share"] = float(noise_share)
    if beat_guidance >= 0:
        chosen["beat_guidance_scale"] = float(beat_guidance) if beat_guidance > 0 else None
    if reference_start != "auto":
        chosen["reference_start"] = reference_start in ("on", True)  # True/False: workflows saved before auto
    return dataclasses.replace(recommended, **chosen)


NODE_CLASS_MAPPINGS = {
    "MuseDanceReferenceEncode": ReferenceNetEncode,
    "MuseDanceSampler": MuseDanceSampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MuseDanceReferenceEncode": "ReferenceNet Encode (MuseDance)",
    "MuseDanceSampler": "MuseDance Sampler",
}
