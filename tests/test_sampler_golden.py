"""Fixed-seed videos of a tiny model are bit-identical to the ones recorded before the sampler was
split into conditioning, guidance and stepping (two clips with motion context, every guidance layout)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from helpers import randomize_temporal_outputs
from musedance_core import MuseDanceConfig, MuseDancePipeline

# sha256 of the float32 frames' bytes, first 16 hex digits; recorded at commit 7aae423 (torch 2.x, CPU).
RECORDED = {
    "plain": "b7ef40ecb6eaed11",
    "cfg": "b80b2029fca416ad",
    "cfg_beats": "721ca1fae905f1fa",
    "beats_only": "a5466fc6dc50fe9f",
}
CASES = {
    "plain": dict(guidance_scale=1.0),
    "cfg": dict(guidance_scale=3.0),
    "cfg_beats": dict(guidance_scale=2.5, beat_guidance_scale=5.0, noise_share=0.3, reference_start=True),
    "beats_only": dict(guidance_scale=1.0, beat_guidance_scale=2.0, eta=0.5),
}


@pytest.fixture(scope="module")
def golden_setup():
    config = MuseDanceConfig.tiny()
    config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, beat_phase_bins=4))
    pipe = MuseDancePipeline.from_config(config, seed=0)
    randomize_temporal_outputs(pipe.unet, seed=0)
    randomize_temporal_outputs(pipe.mask_encoder, seed=1)
    frames, size = 11, 32  # two clips of K = 8, the second with M = 2 generated context frames
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    mask = ((xx**2 + yy**2) < 0.4).float()
    image = torch.rand(size, size, 3, generator=gen) * 0.3 + mask[..., None] * 0.6
    beats = torch.zeros(frames)
    beats[::4] = 1
    text_shape = (1, config.text_length, config.unet.cross_attention_dim)
    inputs = dict(
        reference_image=image, mask=mask, text_embeds=torch.randn(text_shape, generator=gen),
        negative_text_embeds=torch.randn(text_shape, generator=gen),
        music_tokens=torch.randn(frames, 6, config.unet.music_dim, generator=gen), beats=beats,
    )
    return pipe, inputs


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_seed_video_is_bit_identical_to_the_recorded_one(golden_setup, case):
    pipe, inputs = golden_setup
    video = pipe(**inputs, seed=3, num_inference_steps=3, **CASES[case])
    assert video.shape == (11, 32, 32, 3) and video.dtype == torch.float32
    assert hashlib.sha256(video.numpy().tobytes()).hexdigest()[:16] == RECORDED[case]
