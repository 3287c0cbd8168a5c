"""Render a synthetic song with the tiny model through `render_video` and print the process's peak memory.

    python tests/render_peak.py SECONDS SIZE OUT.mp4   ->  prints the peak resident set in bytes

Run in a fresh process by tests/test_render.py, so that its high-water mark is this render's alone.
"""

from __future__ import annotations

import resource
import sys

import numpy as np
import torch

from musedance_core import MuseDanceConfig, MuseDancePipeline
from musedance_core.audio.ast_encoder import FrameTokens, MusicEncoder, random_ast
from musedance_core.sampling.render import render_video

FPS, RATE = 12.0, 16_000


def main(seconds: float, size: int, out: str) -> None:
    torch.set_num_threads(1)
    config = MuseDanceConfig.tiny()
    pipe = MuseDancePipeline.from_config(config)
    encoder = MusicEncoder(*random_ast(config.unet.music_dim))
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    frames = int(seconds * FPS)
    beats = torch.zeros(frames)
    beats[::6] = 1
    generator = torch.Generator().manual_seed(0)
    render_video(
        pipe, out, fps=FPS, audio=wave, sample_rate=RATE,
        reference_image=torch.rand(size, size, 3, generator=generator),
        text_embeds=torch.randn(1, config.text_length, config.unet.cross_attention_dim, generator=generator),
        music_tokens=FrameTokens(encoder.encode_music(wave), FPS, frames), beats=beats,
        num_inference_steps=1, guidance_scale=1.0,
    )
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux reports KiB


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
