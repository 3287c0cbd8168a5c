"""The conditioning rules of MuseDance, written once for the sampler and the trainer.

A model can only follow at sampling time the inputs it was trained on, so both sides build them here:
- pixels and latents: `to_pixels`, `encode_frames` (scaled VAE posterior means), `decode_latents`;
- the reference path, `reference_features`: E(I) + F_m(mask) through the ReferenceNet at t=0 (paper eq. 1);
- the kinds of batch row, `condition_rows`: a conditional row sees everything; an unconditional row
  (classifier-free guidance) has no reference, the null text (the negative prompt, or zeros), zero music
  tokens and unknown beats; a beats-dropped row keeps text, music and reference and has unknown beats;
- the beats of a span of frames, `frame_beats`, and the motion context, `motion_context`: the UNet at t=0
  on the M clean frames before a clip, without dropout or gradients;
- the noise schedules (`sampling_scheduler`, `training_scheduler`), the dtypes by name (`resolve_dtype`)
  and the temporal-module groups (`TEMPORAL_GROUPS`, `is_temporal_parameter`, from `models.unet`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from ..config import UNetConfig
from ..masks.subject import mask_condition  # noqa: F401 - part of the rules the trainer reads here
from ..models.reference import ReferenceBank
from ..models.temporal import UNKNOWN_BEAT, beat_windows, unknown_beats
from ..models.unet import TEMPORAL_GROUPS, TEMPORAL_MODULES, MotionContext, is_temporal_parameter  # noqa: F401

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from its name ("fp32", "fp16", "bf16") or itself; a ValueError for anything else."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)} or a torch dtype, got {dtype!r}.")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}.")
    return dtype


# -- pixels and latents ---------------------------------------------------------------------------
def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """Frames [..., H, W, 3] (uint8, or float in [0, 1]) -> the VAE's input, float32 [..., 3, H, W] in [-1, 1]."""
    frames = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
    return frames.movedim(-1, -3) * 2 - 1


def encode_frames(vae: nn.Module, frames: torch.Tensor, scaling_factor: float, chunk_size: int = 16) -> torch.Tensor:
    """Scaled VAE posterior means [n, C, h, w], in the VAE's dtype, of frames [n, H, W, 3] as `to_pixels` takes them."""
    weight = next(vae.parameters())
    return torch.cat([
        vae.encode(to_pixels(chunk).to(device=weight.device, dtype=weight.dtype)).latent_dist.mode() * scaling_factor
        for chunk in frames.split(chunk_size)
    ])


def decode_latents(vae: nn.Module, latents: torch.Tensor, scaling_factor: float, chunk_size: int = 8,
                   tile: int | None = None) -> torch.Tensor:
    """VAE-decode latents [F, C, h, w] a chunk of frames at a time -> float frames [F, H, W, 3] in [0, 1] on the CPU.

    tile: decode each frame in overlapping tiles of this many pixels, blended (diffusers' tiled decode), when the
    frame is larger; None decodes whole frames."""
    dtype = next(vae.parameters()).dtype
    frames = []
    with _tiles(vae, tile):
        for chunk in latents.split(chunk_size):
            pixels = vae.decode(chunk.to(dtype) / scaling_factor).sample
            frames.append((pixels.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())
    return torch.cat(frames)


@contextlib.contextmanager
def _tiles(vae: nn.Module, tile: int | None) -> Iterator[None]:
    """diffusers' AutoencoderKL tiling with tiles of `tile` pixels, for the calls inside; restored after."""
    if tile is None:
        yield
        return
    names = ("use_tiling", "tile_sample_min_size", "tile_latent_min_size")
    saved = {name: getattr(vae, name) for name in names}
    downscale = 2 ** (len(vae.config.block_out_channels) - 1)
    vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = True, tile, tile // downscale
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(vae, name, value)


# -- the reference --------------------------------------------------------------------------------
def reference_features(
    reference_net: nn.Module, mask_encoder: nn.Module, bank: ReferenceBank, latent: torch.Tensor,
    condition: torch.Tensor, text: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The ReferenceNet's self-attention inputs of every layer, [B, N, C] each, for z_0 = E(I) + F_m(D).

    `latent` is E(I) [B, C, h, w], `condition` the mask condition from `mask_condition`. Runs under the
    caller's grad mode (the sampler without gradients, stage 1 of the trainer with them); the bank is left empty.
    """
    bank.clear()
    try:
        reference_net(latent + mask_encoder(condition.to(latent.dtype)), 0, encoder_hidden_states=text)
        return dict(bank.tokens)
    finally:
        bank.clear()


# -- rows of a batch ------------------------------------------------------------------------------
def _per_row(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flags.to(like.device).view(-1, *[1] * (like.ndim - 1))


def condition_rows(
    text: torch.Tensor | None, music: torch.Tensor | None, windows: torch.Tensor | None, *,
    unconditional: torch.Tensor, beats_unknown: torch.Tensor, null_text: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Apply each row's kind to batched conditions; returns (text, music, windows, keep).

    text [B, T, D], music [B, F, L, d], windows [B, F, W] (beat ids), each may be None (passed through);
    unconditional and beats_unknown are bool [B]. Unconditional rows get `null_text` (default zeros), zero
    music and unknown beats; beats-unknown rows get unknown beats. `keep` [B] marks the rows that see the
    reference (the bank's keep mask).
    """
    if text is not None:
        null = torch.zeros_like(text) if null_text is None else null_text.to(text).expand_as(text)
        text = torch.where(_per_row(unconditional, text), null, text)
    if music is not None:
        music = torch.where(_per_row(unconditional, music), torch.zeros_like(music), music)
    if windows is not None:
        unknown = _per_row(unconditional | beats_unknown, windows)
        windows = torch.where(unknown, torch.full_like(windows, UNKNOWN_BEAT), windows)
    return text, music, windows, ~unconditional


def frame_beats(config: UNetConfig, beats: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Beat ids [B, length, tokens] of frames start..start+length-1 of whole-song beat vectors `beats` [B, N]."""
    return beat_windows(beats, start, length, config.beat_window, config.beat_phase_bins)


def unknown_frame_beats(config: UNetConfig, batch: int, length: int, device=None) -> torch.Tensor:
    """Beat ids [batch, length, tokens] that say nothing: frames that sit at no time in the music."""
    return unknown_beats(batch, length, config.beat_window, config.beat_phase_bins, device)


# -- the motion context ---------------------------------------------------------------------------
@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run `module` in eval mode (no dropout) and restore every submodule's own mode afterwards."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def motion_context(
    unet: nn.Module, latents: torch.Tensor, text: torch.Tensor, music: torch.Tensor, windows: torch.Tensor
) -> MotionContext:
    """The hidden states entering each motion module for the M clean frames before a clip (latents
    [B, M, C, h, w] at t = 0), computed without gradients or dropout."""
    with torch.no_grad(), eval_mode(unet):
        _, context = unet(latents, 0, text, music, windows, return_motion_context=True)
    return context


# -- noise schedules ------------------------------------------------------------------------------
def _schedule(config) -> dict:
    return dict(**dataclasses.asdict(config.scheduler), clip_sample=False, prediction_type="epsilon")


def sampling_scheduler(config) -> DDIMScheduler:
    """DDIM over the training schedule of `config` (a MuseDanceConfig or FlowDanceConfig: its `scheduler`;
    epsilon prediction, no clipping, SD1.5's final alpha)."""
    return DDIMScheduler(**_schedule(config), set_alpha_to_one=False)


def training_scheduler(config) -> DDPMScheduler:
    """The forward process the trainer noises with: the same betas as `sampling_scheduler`."""
    return DDPMScheduler(**_schedule(config))
