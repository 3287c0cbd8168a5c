"""A generation's memory, estimated from the whole prompt before it runs, and refused at validation when over budget.

ComfyUI validates a prompt node by node, and no one node sees all that decides a render's memory: the
size (ReferenceNet Encode), the length (Dance Timing or AST Music Encode, and the song), the model and its
precision (Load MuseDance Model) and the guidance rows (the sampler). The server's on_prompt handlers see
the whole prompt just before ComfyUI validates it, in the same request: ours estimates the job of every
MuseDance Sampler and Render Dance Video there and leaves a refusal, when there is one, for that node's
VALIDATE_INPUTS, which ComfyUI calls next. When the node runs, the same check is made again from the real
values (`JobSize.problem`), before any model is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..musedance_core.config import MuseDanceConfig, SamplerSettings
from ..musedance_core.sampling.memory import (
    DEVICE,
    HOST,
    MemoryEstimate,
    gib,
    held_frames_bytes,
    memory_budget,
    sampling_memory,
    song_bytes,
)
from . import comfy

log = logging.getLogger(__name__)

HOLDS_EVERY_FRAME = {"MuseDanceSampler": True, "MuseDanceRender": False}  # node type -> its output holds all frames
DTYPE_SIZES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class JobSize:
    """What decides a generation's memory; frames and song_seconds None where not known yet."""

    config: MuseDanceConfig  # or a FlowDanceConfig, for the flow family
    height: int
    width: int
    rows: int
    clip_length: int
    element_size: int
    device: torch.device
    holds_every_frame: bool  # MuseDance Sampler's IMAGE; Render Dance Video holds one clip
    frames: int | None = None
    song_seconds: float | None = None
    # The sampler's low-memory inputs; offload_idle: the encoders may leave the device while it samples (they
    # stay for a render continued from a video, whose last frames the VAE's encoder encodes).
    one_row_at_a_time: bool = False
    decode_chunk_size: int = 8
    vae_tile_size: int = 0
    offload_idle: bool = True

    @property
    def flow(self) -> bool:
        from ..musedance_core.config import FlowDanceConfig

        return isinstance(self.config, FlowDanceConfig)

    def estimate(self) -> MemoryEstimate:
        from ..musedance_core.sampling.memory import flow_sampling_memory

        on_cpu = self.device.type == "cpu"
        if self.flow:
            estimate = flow_sampling_memory(self.config, height=self.height, width=self.width, rows=self.rows,
                                            clip_length=self.clip_length, element_size=self.element_size,
                                            on_cpu=on_cpu)
        else:
            estimate = sampling_memory(self.config, height=self.height, width=self.width, rows=self.rows,
                                       clip_length=self.clip_length, element_size=self.element_size,
                                       decode_chunk_size=self.decode_chunk_size,
                                       one_row_at_a_time=self.one_row_at_a_time, vae_tile_size=self.vae_tile_size,
                                       offload_idle=self.offload_idle, on_cpu=on_cpu)
        if self.holds_every_frame and self.frames is not None:
            estimate.add(f"{self.frames} frames held as one IMAGE",
                         held_frames_bytes(self.frames, self.height, self.width), HOST)
        elif not self.holds_every_frame:
            estimate.add("the clip being written", 2 * held_frames_bytes(self.clip_length, self.height, self.width),
                         HOST)
        if self.song_seconds is not None:
            estimate.add(f"the song ({self.song_seconds:.0f} s) and its analysis", song_bytes(self.song_seconds), HOST)
        return estimate

    def working(self) -> tuple[str, int]:
        """(what, bytes) of the device memory sampling needs besides the weights: a step's or a decode's."""
        from ..musedance_core.sampling.memory import flow_working_memory, working_memory

        if self.flow:
            return flow_working_memory(self.config, height=self.height, width=self.width, rows=self.rows,
                                       clip_length=self.clip_length, element_size=self.element_size)
        return working_memory(self.config, height=self.height, width=self.width, rows=self.rows,
                              clip_length=self.clip_length, element_size=self.element_size,
                              decode_chunk_size=self.decode_chunk_size, one_row_at_a_time=self.one_row_at_a_time,
                              vae_tile_size=self.vae_tile_size)

    def working_bytes(self) -> int:
        """What ComfyUI must leave free on the device besides the weights it loads."""
        return self.working()[1]

    def problem(self) -> str | None:
        """Why this job cannot run here (its estimate, the budget and how to lower it), or None."""
        from .generate import image_limit_problem

        if self.holds_every_frame and self.frames is not None:
            if found := image_limit_problem(self.frames, self.height, self.width):
                return found
        estimate = self.estimate()
        memories = [(HOST, "RAM", comfy.total_memory(torch.device("cpu")))]
        if self.device.type != "cpu":
            memories.insert(0, (DEVICE, f"{self.device.type.upper()} memory", comfy.total_memory(self.device)))
        for where, name, total in memories:
            budget, how = memory_budget(total)
            needed = estimate.total(where)
            if needed > budget:
                return (f"this job needs about {gib(needed)} of {name} ({estimate.describe(where)}), more than "
                        f"its budget of {gib(budget)} ({how}). To lower it: {self.remedies(where)}.")
        return None

    def remedies(self, where: str) -> str:
        ways = []
        if self.holds_every_frame and where == HOST:
            ways.append("use Render Dance Video, which writes the video clip by clip and holds one clip")
            ways.append("make a shorter stretch (Dance Timing's duration, or the sampler's frame_count)")
        ways.append("a smaller size (ReferenceNet Encode's width and height)")
        ways.append(f"fewer frames per clip (clip_length, now {self.clip_length})")
        decoding = self.working()[0].startswith("one VAE decode")  # the larger working peak: the options that lower it
        if self.rows > 1 and not self.one_row_at_a_time and not self.flow and not decoding:
            ways.append(f"guidance_rows \"one at a time\" (a step's working memory for one row instead of {self.rows})")
        if self.rows > 1:
            ways.append("guidance 1 and beat_guidance 0, one model pass per step instead of "
                        f"{self.rows}")
        if decoding and (where == DEVICE or self.device.type == "cpu"):
            if self.decode_chunk_size > 1:
                ways.append(f"a smaller decode_chunk_size (now {self.decode_chunk_size})")
            if not self.vae_tile_size and max(self.height, self.width) > 256:
                ways.append("vae_tile_size 256 (the VAE decodes tiles instead of whole frames)")
        return "; ".join(ways)


def settings_rows(recommended: SamplerSettings, guidance: float, beat_guidance: float) -> int:
    """The guidance rows the sampler's widgets give (0 / -1: the model's recommendation, as the sampler reads them)."""
    from ..musedance_core.sampling.guidance import guidance_rows

    g = guidance if guidance > 0 else recommended.guidance_scale
    if beat_guidance < 0:
        b = recommended.beat_guidance_scale
    else:
        b = beat_guidance if beat_guidance > 0 else None
    unconditional, beat_row = guidance_rows(g, b)
    return 1 + unconditional + beat_row


# -- from the prompt ------------------------------------------------------------------------------------
_refusals: dict[str, str] = {}  # node id -> why its job is refused, from the prompt being validated now


def refusal(unique_id) -> str | None:
    """The refusal `check_prompt` left for this sampler or renderer node of the prompt being validated."""
    return _refusals.get(str(unique_id))


def check_prompt(json_data: dict) -> dict:
    """PromptServer's on_prompt handler: estimate every MuseDance generation of the prompt; returns json_data."""
    prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
    if not isinstance(prompt, dict):
        return json_data
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or node.get("class_type") not in HOLDS_EVERY_FRAME:
            continue
        _refusals.pop(str(node_id), None)  # a refusal holds for one prompt only
        try:
            job = job_from_prompt(prompt, str(node_id))
            found = job.problem() if job is not None else None
        except Exception:  # noqa: BLE001 - an estimate must never block a prompt; the node checks again when it runs
            log.warning("MuseDance: could not estimate the memory of node %s", node_id, exc_info=True)
            found = None
        if found:
            _refusals[str(node_id)] = found
    return json_data


comfy.on_prompt(check_prompt)


def job_from_prompt(prompt: dict, node_id: str) -> JobSize | None:
    """The JobSize of a sampler or renderer node of an API prompt, None when its model or size is not a constant."""
    node = prompt[node_id]
    inputs = node.get("inputs", {})
    loader = _source(prompt, inputs.get("model"), "MuseDanceLoadModel")
    reference = _source(prompt, inputs.get("reference"), "MuseDanceReferenceEncode")
    if loader is None or reference is None:
        return None
    header = _model_header(loader)
    width, height = _constant(prompt, reference, "width"), _constant(prompt, reference, "height")
    if header is None or not isinstance(width, int) or not isinstance(height, int):
        return None
    config, recommended = header
    device, element_size = _device_and_size(loader)
    guidance, beat_guidance = _constant(prompt, inputs, "guidance"), _constant(prompt, inputs, "beat_guidance", -1.0)
    if not isinstance(guidance, (int, float)) or not isinstance(beat_guidance, (int, float)):
        return None
    clip_length = _constant(prompt, inputs, "clip_length")
    clip_length = clip_length if isinstance(clip_length, int) and clip_length > 0 else config.clip_length
    frames, song_seconds = _frames(prompt, inputs)
    rows = settings_rows(recommended, guidance, beat_guidance)
    schedule = _source(prompt, inputs.get("schedule"), "MuseDanceSchedule")
    if schedule is not None and isinstance(schedule.get("schedule"), str):
        rows = max([rows, *_schedule_rows(schedule["schedule"], recommended, guidance, beat_guidance)])
    from .generate import DECODE_CHUNK_SIZE, GUIDANCE_ROWS, low_memory_problem

    options = {name: _constant(prompt, inputs, name, default) for name, default in
               (("guidance_rows", GUIDANCE_ROWS[0]), ("decode_chunk_size", DECODE_CHUNK_SIZE), ("vae_tile_size", 0))}
    if low_memory_problem(**options):
        return None  # the node's own VALIDATE_INPUTS refuses it
    return JobSize(config, height, width, rows, clip_length, element_size, device,
                   HOLDS_EVERY_FRAME[node["class_type"]], frames, song_seconds,
                   one_row_at_a_time=options["guidance_rows"] == GUIDANCE_ROWS[1],
                   decode_chunk_size=options["decode_chunk_size"], vae_tile_size=options["vae_tile_size"],
                   offload_idle=not _constant(prompt, inputs, "continue_from", ""))


def _schedule_rows(text: str, recommended: SamplerSettings, guidance: float, beat_guidance: float) -> list[int]:
    """The guidance rows of each line of a Motion Schedule that gives sampler settings."""
    from ..musedance_core.sampling.schedule import read_schedule

    try:
        lines = read_schedule(text)
    except ValueError:
        return []  # Motion Schedule refuses it itself
    rows = []
    for line in lines:
        chosen = dict(line.settings)
        if chosen:
            g = chosen.get("guidance_scale", guidance)
            b = chosen["beat_guidance_scale"] if "beat_guidance_scale" in chosen else beat_guidance
            rows.append(settings_rows(recommended, g, 0.0 if b is None else b))
    return rows


def _source(prompt: dict, link, class_type: str) -> dict | None:
    """The inputs of the node a link comes from, if it is a `class_type` node."""
    if isinstance(link, list) and len(link) == 2 and str(link[0]) in prompt:
        node = prompt[str(link[0])]
        if isinstance(node, dict) and node.get("class_type") == class_type:
            return node.get("inputs", {})
    return None


def _constant(prompt: dict, inputs: dict, name: str, default=None):
    """An input's value: a widget's, or what Dance Timing (or a primitive node with one `value`) gives it."""
    value = inputs.get(name, default)
    if not isinstance(value, list):
        return value
    timing = _source(prompt, value, "MuseDanceTiming")
    if timing is not None:
        from .music import DanceTiming

        return _constant(prompt, timing, DanceTiming.RETURN_NAMES[int(value[1])])
    node = prompt.get(str(value[0]), {})
    primitive = node.get("inputs", {}) if isinstance(node, dict) else {}
    if set(primitive) == {"value"} and not isinstance(primitive["value"], list):
        return primitive["value"]
    return None


def _model_header(loader: dict) -> tuple[MuseDanceConfig, SamplerSettings] | None:
    """(configuration, recommended settings) from the chosen checkpoint's header; SD1.5's for a base alone."""
    from ..musedance_core.config import FlowDanceConfig
    from ..musedance_core.loading.checkpoint import read_checkpoint_info
    from ..musedance_core.loading.formats import FLOW_FAMILY, checkpoint_family, safetensors_header
    from .model import NONE, resolve_files

    checkpoint = loader.get("checkpoint")
    if not isinstance(checkpoint, str):
        return None
    if checkpoint == NONE:
        return MuseDanceConfig.sd15(), SamplerSettings()
    try:
        path = resolve_files(checkpoint=checkpoint, base_checkpoint=NONE, motion_module=NONE)["checkpoint"]
        meta = safetensors_header(path).get("__metadata__") or {}
        if checkpoint_family(meta) == FLOW_FAMILY:
            sampler = SamplerSettings.from_json(meta["sampler"]) if "sampler" in meta else SamplerSettings()
            return FlowDanceConfig.from_json(meta["config"]), sampler
        info = read_checkpoint_info(path)
    except Exception:  # noqa: BLE001 - a bad file is Load MuseDance Model's own refusal
        return None
    return info.config, info.sampler or SamplerSettings()


def _device_and_size(loader: dict) -> tuple[torch.device, int]:
    from .model import choose_dtype

    device = torch.device("cpu") if loader.get("device") == "cpu" else comfy.compute_device()
    precision = loader.get("precision", "auto")
    return device, DTYPE_SIZES.get(choose_dtype(precision if isinstance(precision, str) else "auto", device), 4)


def _frames(prompt: dict, inputs: dict) -> tuple[int | None, float | None]:
    """(frames the node makes, seconds of the whole song), each None when the prompt does not fix it."""
    from ..musedance_core.audio.timing import frame_count
    from .music import TO_THE_END

    music = _source(prompt, inputs.get("music"), "MuseDanceASTEncode")
    if music is None:
        return None, None
    fps, start, duration = (_constant(prompt, music, name) for name in ("fps", "start_time", "duration"))
    song = _song_seconds(prompt, music.get("audio"))
    if not all(isinstance(v, (int, float)) for v in (fps, start, duration)):
        return None, song
    if duration == TO_THE_END:
        if song is None:
            return None, None
        duration, to_the_end = max(song - start, 0.0), True
    else:
        to_the_end = False
        song = max(song or 0.0, start + duration)
    frames = max(1, frame_count(duration, fps, to_the_end=to_the_end))
    frame_limit = _constant(prompt, inputs, "frame_count", 0)
    if isinstance(frame_limit, int) and 0 < frame_limit < frames:
        frames = frame_limit
    return frames, song


def _song_seconds(prompt: dict, link) -> float | None:
    """The length of the song a Load Song or LoadAudio node reads, from its file's header."""
    from .music import _input_file

    for class_type in ("MuseDanceLoadMusic", "LoadAudio"):
        loader = _source(prompt, link, class_type)
        if loader is not None and isinstance(loader.get("audio"), str):
            try:
                import av

                with av.open(str(_input_file(loader["audio"]))) as container:
                    if container.duration:
                        return container.duration / 1e6
                    stream = container.streams.audio[0]
                    return float(stream.duration * stream.time_base) if stream.duration else None
            except Exception:  # noqa: BLE001 - a file the loader cannot read is its own refusal
                return None
    return None


def job_from_run(model, reference, frames: int, clip_length: int, rows: int, holds_every_frame: bool,
                 song_seconds: float, **options) -> JobSize:
    """The JobSize of a sampler or renderer that is about to run, from its real inputs (`options`: JobSize's
    low-memory fields)."""
    pipe = model.pipeline
    height, width = reference.image.shape[1:3]
    element_size = torch.empty((), dtype=pipe.dtype).element_size()
    return JobSize(pipe.config, int(height), int(width), rows, clip_length, element_size,
                   model.managed.load_device, holds_every_frame, frames, song_seconds, **options)

