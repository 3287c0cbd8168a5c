"""How much memory a generation needs, estimated from its settings before anything runs.

The estimate is a sum of parts, each on the compute device or in host memory (the same memory on a
CPU). Model weights are counted exactly from the configuration; the two transient peaks of sampling
are proportional to the largest tensor of their phase, with factors measured by tracing every
tensor the real code allocates (tests/test_memory_estimate.py checks them against such a trace):
- one denoising step peaks at STEP_FACTOR x rows x K x C0 x (H/8) x (W/8) elements (C0 the UNet's
  first width: the feed-forward and attention tensors of its first level), whatever the depth;
- a VAE decode peaks at DECODE_FACTOR x chunk x C_vae0 x H x W elements (its full-resolution layers).
The low-memory options bound them: guidance rows one at a time run a step's activations for one row;
a tiled decode runs its full-resolution layers on one tile at a time (diffusers' tiled decode: tiles of
`tile` pixels a side, overlapping by a quarter) and holds every decoded tile until they are blended;
the idle modules offloaded (`MuseDancePipeline.idle_while_sampling`) wait in host memory. Frames held
(an IMAGE of the whole video, or one clip being written) and the decoded song count in host memory.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from ..config import MuseDanceConfig

STEP_FACTOR = 32.0  # traced: 27-30 for three UNet widths, two sizes, K 8 and 16, one to three rows
DECODE_FACTOR = 6.5  # traced: 5-6 for two VAE widths
# A tiled decode holds its decoded tiles, which overlap by a quarter: 3 numbers a pixel over (4/3)^2 the frame's
# area; once all are decoded, also the blended rows and the joined frame (3 numbers a pixel each).
TILES_HELD = 3 / 0.75**2
TILES_BLENDED = TILES_HELD + 2 * 3
SONG_BYTES_PER_SECOND = 1_000_000  # a song decoded, resampled for the music nodes and beat-analysed (measured: an
# hour of music at 60 fps peaked at 3.0-3.2 GiB in a ComfyUI server, BENCHMARKS.md)
FRAME_BYTES = 3 * 4  # one float RGB pixel of a frame on the CPU
DEVICE, HOST = "device", "host"


@dataclass(frozen=True)
class Part:
    what: str
    nbytes: int
    where: str  # DEVICE or HOST


@dataclass
class MemoryEstimate:
    """The parts of a job's memory; `on_cpu` when the device is the host's memory too."""

    parts: list[Part] = field(default_factory=list)
    on_cpu: bool = True

    def add(self, what: str, nbytes: float, where: str) -> None:
        self.parts.append(Part(what, int(nbytes), where))

    def total(self, where: str | None = None) -> int:
        """Bytes on `where` (DEVICE or HOST); on a CPU both are one memory, so either gives the sum."""
        if where is None or self.on_cpu:
            return sum(p.nbytes for p in self.parts)
        return sum(p.nbytes for p in self.parts if p.where == where)

    def describe(self, where: str | None = None) -> str:
        chosen = [p for p in self.parts if where is None or self.on_cpu or p.where == where]
        return "; ".join(f"{p.what} {gib(p.nbytes)}" for p in sorted(chosen, key=lambda p: -p.nbytes))


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 / 10 else f"{nbytes / 2**20:.0f} MiB"


@functools.lru_cache(maxsize=8)
def _parameter_count(config_json: str, text_encoder: bool) -> tuple[int, int]:
    """(all parameters, those of the modules idle while sampling)."""
    import torch

    from .pipeline import MuseDancePipeline

    with torch.device("meta"):  # shapes only: no memory, no initialisation work
        pipe = MuseDancePipeline.from_config(MuseDanceConfig.from_json(config_json), text_encoder=text_encoder)

    def count(modules) -> int:
        return sum(p.numel() for module in modules.values() for p in module.parameters())

    return count(pipe.modules()), count(pipe.idle_while_sampling())


def parameter_count(config: MuseDanceConfig, text_encoder: bool = True) -> int:
    """Parameters of the whole model of `config` (counted on the meta device; cached per configuration)."""
    return _parameter_count(config.to_json(), text_encoder)[0]


def idle_parameter_count(config: MuseDanceConfig, text_encoder: bool = True) -> int:
    """Parameters of the modules idle while sampling (`MuseDancePipeline.idle_while_sampling`) of `config`."""
    return _parameter_count(config.to_json(), text_encoder)[1]


def step_bytes(config: MuseDanceConfig, height: int, width: int, rows: int, clip_length: int,
               element_size: int = 4) -> int:
    """The peak of one denoising step's activations: `rows` guidance rows of `clip_length` frames."""
    scale = config.vae.downscale
    cells = (height // scale) * (width // scale)
    return int(STEP_FACTOR * rows * clip_length * config.unet.block_out_channels[0] * cells * element_size)


def decode_bytes(config: MuseDanceConfig, height: int, width: int, chunk_size: int, element_size: int = 4,
                 tile_size: int = 0) -> int:
    """The peak of one VAE decode of `chunk_size` frames; tile_size > 0: in tiles of that side, when a frame is
    larger (the decoder's layers at one tile's size, and the decoded tiles held until they are blended)."""
    if tile_size and (height > tile_size or width > tile_size):
        tile = DECODE_FACTOR * config.vae.block_out_channels[0] * min(height, tile_size) * min(width, tile_size)
        per_frame = max(tile + TILES_HELD * height * width, TILES_BLENDED * height * width)
        return int(chunk_size * per_frame * element_size)
    return int(DECODE_FACTOR * chunk_size * config.vae.block_out_channels[0] * height * width * element_size)


def sampling_memory(
    config: MuseDanceConfig,
    *,
    height: int,
    width: int,
    rows: int,
    clip_length: int | None = None,
    element_size: int = 4,
    decode_chunk_size: int = 8,
    one_row_at_a_time: bool = False,
    vae_tile_size: int = 0,
    offload_idle: bool = False,
    on_cpu: bool = True,
) -> MemoryEstimate:
    """The memory of sampling one clip at a time: the model's weights and the larger of one denoising step
    (`rows` guidance rows of `clip_length` frames) and one VAE decode, at `element_size` bytes per number,
    with the low-memory options of `MuseDancePipeline.iter_clips` (offload_idle: the idle modules wait in
    host memory)."""
    k = clip_length or config.clip_length
    estimate = MemoryEstimate(on_cpu=on_cpu)
    weights = parameter_count(config)
    if offload_idle:
        idle = idle_parameter_count(config)
        estimate.add("model weights used while sampling", (weights - idle) * element_size, DEVICE)
        estimate.add("idle modules' weights, offloaded", idle * element_size, HOST)
    else:
        estimate.add("model weights", weights * element_size, DEVICE)
    what, nbytes = working_memory(config, height=height, width=width, rows=rows, clip_length=k,
                                  element_size=element_size, decode_chunk_size=decode_chunk_size,
                                  one_row_at_a_time=one_row_at_a_time, vae_tile_size=vae_tile_size)
    estimate.add(what, nbytes, DEVICE)
    return estimate


def working_memory(config: MuseDanceConfig, *, height: int, width: int, rows: int, clip_length: int,
                   element_size: int = 4, decode_chunk_size: int = 8, one_row_at_a_time: bool = False,
                   vae_tile_size: int = 0) -> tuple[str, int]:
    """(what, bytes) of the larger transient peak of sampling besides the weights: a denoising step or a decode."""
    step = step_bytes(config, height, width, 1 if one_row_at_a_time else rows, clip_length, element_size)
    chunk = min(decode_chunk_size, clip_length)
    decode = decode_bytes(config, height, width, chunk, element_size, vae_tile_size)
    if step >= decode:
        how = (f"{rows} guidance rows one at a time" if one_row_at_a_time and rows > 1
               else f"{rows} guidance row{'s' if rows != 1 else ''}")
        return f"one denoising step at {width}x{height} ({clip_length} frames, {how})", step
    tiled = vae_tile_size and (height > vae_tile_size or width > vae_tile_size)
    return f"one VAE decode at {width}x{height} ({chunk} frames{f', in {vae_tile_size}-pixel tiles' if tiled else ''})", decode


FLOW_STEP_FACTOR = 40.0  # the flow denoiser's step over rows x K x C0 x h x w (traced: 32-38 on the tiny flow model)
COMPOSE_FACTOR = 5.0  # composing K frames at H x W over K x H x W x 3 numbers (traced: 4.4)


@functools.lru_cache(maxsize=8)
def _flow_parameter_count(config_json: str) -> int:
    import torch

    from ..config import FlowDanceConfig
    from .flow_pipeline import FlowDancePipeline

    with torch.device("meta"):
        pipe = FlowDancePipeline.from_config(FlowDanceConfig.from_json(config_json))
    return sum(p.numel() for module in pipe.modules().values() for p in module.parameters())


def flow_sampling_memory(config, *, height: int, width: int, rows: int, clip_length: int | None = None,
                         element_size: int = 4, on_cpu: bool = True) -> MemoryEstimate:
    """As `sampling_memory` for the flow family (`FlowDanceConfig`): weights, and the larger of one step of the
    flow denoiser at the latent's size and composing a clip's frames at the video's size."""
    k = clip_length or config.clip_length
    estimate = MemoryEstimate(on_cpu=on_cpu)
    estimate.add("model weights", _flow_parameter_count(config.to_json()) * element_size, DEVICE)
    estimate.add(*flow_working_memory(config, height=height, width=width, rows=rows, clip_length=k,
                                      element_size=element_size), DEVICE)
    return estimate


def flow_working_memory(config, *, height: int, width: int, rows: int, clip_length: int,
                        element_size: int = 4) -> tuple[str, int]:
    """As `working_memory` for the flow family: one denoising step or composing a clip's frames."""
    k = clip_length
    step = int(FLOW_STEP_FACTOR * rows * k * config.unet.block_out_channels[0] * config.latent_size**2 * element_size)
    frames = int(COMPOSE_FACTOR * k * height * width * 3 * 4)  # composed in float32 whatever the model's precision
    if step >= frames:
        return f"one denoising step ({k} frames, {rows} guidance row{'s' if rows != 1 else ''})", step
    return f"composing {k} frames at {width}x{height}", frames


def held_frames_bytes(frames: int, height: int, width: int) -> int:
    """An IMAGE of `frames` float RGB frames."""
    return frames * height * width * FRAME_BYTES


def song_bytes(seconds: float) -> int:
    return int(max(seconds, 0.0) * SONG_BYTES_PER_SECOND)


BUDGET_VARIABLE = "MUSEDANCE_MEMORY_BUDGET_GB"
BUDGET_SHARE = 0.9  # of the machine's memory (RAM, or the GPU's own) when the variable is not set


def host_memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(total: int) -> tuple[float, str]:
    """(bytes a job may use of a memory of `total` bytes, how that was decided)."""
    value = os.environ.get(BUDGET_VARIABLE, "").strip()
    if value:
        try:
            return float(value) * 2**30, f"{BUDGET_VARIABLE}={value}"
        except ValueError:
            pass
    return BUDGET_SHARE * total, f"{BUDGET_SHARE:.0%} of {gib(total)}; {BUDGET_VARIABLE} sets it"
