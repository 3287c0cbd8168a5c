"""Making a dance video with the flow family (DabFusion): flows generated from the music, the reference warped.

For each clip of K frames: DDIM over the clip's flow-and-occlusion volume [K, 3, h, w] with the flow
denoiser, conditioned on the reference's latent z_0 (the auto-encoder's encoder at `config.size`), the
frames' music tokens and their beat ids, with classifier-free guidance against a row of zero music and
unknown beats (and optionally the beats' own scale against a row with the music and unknown beats, as
MuseDance's `GuidedDenoiser`); then every frame is the reference moved by its flow: the reference's own
pixels at its own resolution where the occlusion map says they are visible, the auto-encoder's decoded
picture where they are not (`flow.compose`). Clips continue one another through a motion context: the motion modules
of each clip attend to the hidden states of the M frames before it (for the first clip, M still frames:
zero flow, nothing occluded, which is the reference itself), where DabFusion restarts from the last frame.
A mask limits the motion to the subject: elsewhere the frames are the reference's pixels, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MAX_GUIDANCE, FlowDanceConfig, SamplerSettings
from ..models.flow import LatentFlowAutoencoder, compose, limit_to_mask
from ..models.flow_unet import FLOW_CHANNELS, FlowUNet
from ..models.temporal import unknown_beats
from .conditioning import eval_mode, frame_beats, sampling_scheduler
from .guidance import GuidedDenoiser
from .pipeline import clip_plan


@dataclass
class FlowReference:
    """The reference as the flow family uses it: at full resolution, at the working size, its latent and mask."""

    image: torch.Tensor  # [1, 3, H, W] in [-1, 1], the user's resolution
    small: torch.Tensor  # [1, 3, S, S] in [-1, 1], config.size
    latent: torch.Tensor  # z_0 [1, C_z, h, w]
    mask: torch.Tensor | None  # [1, 1, H, W] in [0, 1]: where the subject is; None: everywhere

    def to(self, device: torch.device | str) -> "FlowReference":
        return FlowReference(self.image.to(device), self.small.to(device), self.latent.to(device),
                             None if self.mask is None else self.mask.to(device))


def flows_to_volume(flow: torch.Tensor, occlusion: torch.Tensor, scale: float) -> torch.Tensor:
    """(flow [..., 2, h, w], occlusion [..., 1, h, w]) -> the denoiser's [..., 3, h, w]: flow x scale, 2 (m - 1).

    Both channels are 0 for "nothing moves, everything visible", what most of a frame is: a diffusion
    model learns a whole channel's offset from 0 poorly (the lowest frequency is the last it fixes), and
    the motion context then carries the error from clip to clip."""
    return torch.cat([flow * scale, (occlusion - 1) * 2], dim=-3)


def volume_to_flows(volume: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    return volume[..., :2, :, :] / scale, (1 + volume[..., 2:3, :, :] / 2).clamp(0, 1)


class FlowDancePipeline:
    """The auto-encoder, the flow denoiser and the schedule; `iter_clips` makes a video clip by clip."""

    def __init__(self, config: FlowDanceConfig, autoencoder: LatentFlowAutoencoder, unet: FlowUNet) -> None:
        self.config = config
        self.autoencoder = autoencoder
        self.unet = unet
        self.recommended = SamplerSettings()  # a checkpoint's own come with load_flow_pipeline
        self.training_size: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, config: FlowDanceConfig, seed: int = 0) -> "FlowDancePipeline":
        """Random weights (seeded); the denoiser's temporal modules start as the identity."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            autoencoder = LatentFlowAutoencoder(config.autoencoder)
            unet = FlowUNet(config.unet, latent_channels=config.autoencoder.block_out_channels[-1])
        return cls(config, autoencoder.eval(), unet.eval())

    def modules(self) -> dict[str, nn.Module]:
        return {"autoencoder": self.autoencoder, "unet": self.unet}

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @torch.no_grad()
    def encode_reference(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> FlowReference:
        """image [H, W, 3] or [1, H, W, 3] in [0, 1] (any size: the video keeps it), mask [H, W] or [1, H, W]."""
        pixels = image if image.ndim == 4 else image[None]
        if pixels.ndim != 4 or pixels.shape[0] != 1 or pixels.shape[-1] != 3:
            raise ValueError(f"the reference must be one RGB image [H, W, 3]; got {tuple(image.shape)}.")
        full = pixels.permute(0, 3, 1, 2).float().to(self.device) * 2 - 1
        size = self.config.size
        small = F.interpolate(full, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if mask is not None:
            mask = (mask if mask.ndim == 3 else mask[None])[:, None].float().to(self.device)
            if mask.shape[-2:] != full.shape[-2:]:
                raise ValueError(f"the mask {tuple(mask.shape[-2:])} must have the image's size {tuple(full.shape[-2:])}.")
        return FlowReference(full, small, self.autoencoder.encoder(small.to(self.dtype)).float(), mask)

    @torch.no_grad()
    def frames(self, reference: FlowReference, volume: torch.Tensor) -> torch.Tensor:
        """The frames [F, H, W, 3] in [0, 1] (CPU) that a clip's volume [F, 3, h, w] makes of the reference."""
        flow, occlusion = volume_to_flows(volume.float(), self.config.flow_scale)
        if reference.mask is not None:
            flow, occlusion = limit_to_mask(flow, occlusion, reference.mask.expand(flow.shape[0], -1, -1, -1))
        dtype = self.dtype
        latent = reference.latent.expand(flow.shape[0], -1, -1, -1).to(dtype)
        decoded = self.autoencoder.animate(reference.small.to(dtype), flow.to(dtype), occlusion.to(dtype),
                                           latent=latent).float()
        out = compose(reference.image.expand(flow.shape[0], -1, -1, -1), flow, occlusion, decoded)
        return ((out + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()

    @torch.no_grad()
    def iter_clips(
        self,
        reference: FlowReference,
        music_tokens: torch.Tensor,
        beats: torch.Tensor,
        *,
        num_inference_steps: int = 25,
        guidance_scale: float = 2.0,
        beat_guidance_scale: float | None = None,
        seed: int = 0,
        clip_length: int | None = None,
        motion_frames: int | None = None,
        callback: Callable[[int, int], None] | None = None,
        interrupt: Callable[[], None] | None = None,
        beats_unknown: bool = False,
        bar_frames: list[int] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the video clip by clip, frames [K, H, W, 3] in [0, 1] at the reference's resolution.

        music_tokens [F, L, d] (or FrameTokens), beats [F] of 0/1: one per frame of the video.
        guidance_scale 1 disables guidance; beat_guidance_scale (None: guided with the rest) gives the beats
        a scale of their own, from the prediction with the music and unknown beats; callback(clip, step)
        after every step; interrupt() is called between steps and clips and raises to stop. beats_unknown:
        the beats withheld (the tokens of training's beat-dropped rows), the music kept: the control that
        shows what the beats do.
        bar_frames: frames where bars start; a clip then ends on the last bar line in its second half
        (`clip_plan`), so the seams fall where the dance's phrases change.
        """
        reference = reference.to(self.device)
        k = self.config.clip_length if clip_length is None else clip_length
        m = self.config.motion_frames if motion_frames is None else motion_frames
        num_frames = int(beats.shape[0])
        if music_tokens.shape[0] != num_frames:
            raise ValueError(f"music_tokens describe {music_tokens.shape[0]} frames and beats {num_frames}; give both "
                             "for the same frames.")
        if not 1.0 <= float(guidance_scale) <= MAX_GUIDANCE:
            raise ValueError(f"guidance_scale must be in [1, {MAX_GUIDANCE:g}], got {guidance_scale!r}.")
        if beat_guidance_scale is not None and not 0.0 <= float(beat_guidance_scale) <= MAX_GUIDANCE:
            raise ValueError(f"beat_guidance_scale must be in [0, {MAX_GUIDANCE:g}] or None, "
                             f"got {beat_guidance_scale!r}.")
        if not 1 <= k or k + m > self.config.unet.max_seq_length:
            raise ValueError(f"clip_length {k} + motion_frames {m} must fit the denoiser's {self.config.unet.max_seq_length}.")
        device = self.device
        guide = GuidedDenoiser(self.unet, guidance_scale, beat_guidance_scale)
        rows = guide.rows
        h = w = self.config.latent_size
        generator = torch.Generator(device="cpu").manual_seed(seed)
        scheduler = sampling_scheduler(self.config)
        beat_vector = beats.reshape(1, num_frames).float().to(device)
        dtype = self.dtype
        latent = reference.latent.expand(rows, -1, -1, -1).to(dtype)

        def conditions(start: int, length: int, known: bool = True):
            if known:
                tokens = (music_tokens[start : start + length] if isinstance(music_tokens, torch.Tensor)
                          else music_tokens.frames(start, length))[None].float().to(device)
                ids = (unknown_beats(1, length, self.config.unet.beat_window, self.config.unet.beat_phase_bins, device)
                       if beats_unknown else frame_beats(self.config.unet, beat_vector, start, length))
            else:  # frames at no time in the music: the still frames before the first clip
                tokens = torch.zeros(1, length, *music_tokens.shape[-2:], device=device)
                ids = unknown_beats(1, length, self.config.unet.beat_window, self.config.unet.beat_phase_bins, device)
            tokens, ids = guide.music_rows(tokens, ids)
            return tokens.to(dtype), ids

        still = flows_to_volume(torch.zeros(1, m, 2, h, w), torch.ones(1, m, 1, h, w), self.config.flow_scale)
        context_volume, context_known, context_start = still.to(device), False, 0
        _, todo = clip_plan(num_frames, k, bars=bar_frames or ())
        with eval_mode(self.unet):
            for clip_index, (start, length) in enumerate(todo):
                if interrupt is not None:
                    interrupt()
                context = None
                if m:
                    tokens, ids = conditions(context_start, m, context_known)
                    _, context = self.unet(context_volume.expand(rows, -1, -1, -1, -1).to(dtype), 0, latent, tokens,
                                           ids, return_motion_context=True)
                tokens, ids = conditions(start, length)
                scheduler.set_timesteps(num_inference_steps, device=device)
                volume = torch.randn((1, length, FLOW_CHANNELS, h, w), generator=generator).to(device)
                for step, t in enumerate(scheduler.timesteps):
                    model_in = volume.expand(rows, -1, -1, -1, -1).to(dtype)
                    eps = guide.combine(self.unet(model_in, t, latent, tokens, ids, motion_context=context).float())
                    volume = scheduler.step(eps, t, volume).prev_sample
                    if callback is not None:
                        callback(clip_index, step)
                    if interrupt is not None:
                        interrupt()
                if m:
                    joined = torch.cat([context_volume, volume], dim=1)[:, -m:]
                    context_volume, context_known = joined, length >= m
                    context_start = start + length - m
                yield self.frames(reference, volume[0])
