"""The VAE of a model trained from scratch: a small `AutoencoderKL` fitted to the frames of a dataset.

Stable Diffusion's VAE comes with the SD1.5 checkpoint; a MuseDance model that does not start from
SD1.5 (the default model, trained on the synthetic dataset) needs its own, trained before stage 1 and
then frozen like SD's. The loss is the L1 reconstruction error of a posterior sample, weighted up on
the subject's mask (the dancer is a small part of the frame, and it is what the model must draw),
plus a small KL term (LDM's KL-f8 recipe uses 1e-6) that keeps the latent space smooth.
`latent_scaling_factor` is SD's recipe for its 0.18215: one over the standard deviation of the latents.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL

from musedance_core.config import VAEConfig
from musedance_core.sampling.conditioning import encode_frames, to_pixels

MASK_WEIGHT = 4.0  # extra weight of the L1 error on the subject's pixels
KL_WEIGHT = 1e-6


def frame_pool(clips, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Every `stride`-th frame and its mask of every clip: uint8 [N, H, W, 3] and float [N, H, W]."""
    frames, masks = [], []
    for index in range(len(clips)):
        clip = clips[index]
        frames.append(clip.frames[::stride])
        masks.append(clip.masks[::stride])
    return torch.cat(frames), torch.cat(masks)


def vae_loss(vae: AutoencoderKL, pixels: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mask-weighted L1 of the reconstruction of a posterior sample, plus KL_WEIGHT x KL; pixels in [-1, 1]."""
    posterior = vae.encode(pixels).latent_dist
    latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(pixels.device)
    reconstruction = vae.decode(latents).sample
    weight = 1.0 + MASK_WEIGHT * masks[:, None]
    l1 = (weight * (reconstruction - pixels).abs()).sum() / (weight.sum() * pixels.shape[1])
    return l1 + KL_WEIGHT * posterior.kl().mean()


def train_vae(frames: torch.Tensor, masks: torch.Tensor, config: VAEConfig, *, steps: int, batch_size: int = 16,
              lr: float = 1e-3, seed: int = 0, progress: Callable[[int, float], None] | None = None) -> AutoencoderKL:
    """An AutoencoderKL of `config` trained on `frames` (uint8 [N, H, W, 3]) with their `masks` ([N, H, W]).

    Adam with a cosine decay to a tenth of `lr`; batches drawn with replacement, half of them mirrored,
    from a generator seeded by `seed`, so a run is reproducible. `progress(step, loss)` is called after every step.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {tuple(frames.shape)}.")
    if tuple(masks.shape) != tuple(frames.shape[:3]):
        raise ValueError(f"masks must be [N, H, W] = {tuple(frames.shape[:3])}, got {tuple(masks.shape)}.")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1, got {steps} and {batch_size}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**config.diffusers_kwargs())
    vae.train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        index = torch.randint(0, frames.shape[0], (batch_size,), generator=generator)
        pixels = to_pixels(frames[index])
        weights = masks[index].float()
        flip = torch.rand(batch_size, generator=generator) < 0.5  # mirrored scenes: more to generalise from
        pixels[flip], weights[flip] = pixels[flip].flip(-1), weights[flip].flip(-1)
        loss = vae_loss(vae, pixels, weights, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, loss.item())
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKL, frames: torch.Tensor, chunk: int = 64) -> float:
    """PSNR (dB, pixels in [0, 1]) of decoding the posterior means of `frames` (uint8 [N, H, W, 3])."""
    errors = []
    for start in range(0, frames.shape[0], chunk):
        pixels = to_pixels(frames[start:start + chunk])
        decoded = vae.decode(vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
        errors.append(((decoded - pixels) / 2).pow(2).flatten(1).mean(1))
    mse = torch.cat(errors).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, frames: torch.Tensor, chunk: int = 64) -> float:
    """One over the standard deviation of the posterior means of `frames`, so scaled latents have unit variance."""
    return float(1.0 / encode_frames(vae, frames, 1.0, chunk).std())
