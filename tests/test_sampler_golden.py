"""Fixed-seed videos of a tiny model match the ones the sampler made before its work per step was cut
(two clips with motion context, every guidance layout, a negative prompt and beat phases).

tests/data/sampler_golden_frames.safetensors holds each case's frames as the sampler of commit ad2a3a3
made them: before the reference's, text's, music's and beats' keys and values were projected once per
video or clip, before the unconditional row skipped its reference and music attention and before the
motion modules skipped their work on the context frames' outputs. Those changes reorder floating-point
sums only, and no two machines' kernels sum alike, so the frames are compared within TOLERANCE (in units
of the [0, 1] pixel range; the largest difference seen was 3e-6, and a real change of the arithmetic,
such as the unconditional row seeing the reference, moves frames by 0.1 or more).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import randomize_temporal_outputs
from musedance_core import MuseDanceConfig, MuseDancePipeline

RECORDED = Path(__file__).resolve().parent / "data" / "sampler_golden_frames.safetensors"
TOLERANCE = 1e-4
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
def test_fixed_seed_video_matches_the_recorded_one(golden_setup, case):
    pipe, inputs = golden_setup
    video = pipe(**inputs, seed=3, num_inference_steps=3, **CASES[case])
    assert video.shape == (11, 32, 32, 3) and video.dtype == torch.float32
    recorded = load_file(str(RECORDED))[case]
    assert recorded.std() > 0.05  # frames with content, so a difference would show
    torch.testing.assert_close(video, recorded, atol=TOLERANCE, rtol=0)
