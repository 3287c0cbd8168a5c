"""The tiny model's video in a fixed set-up, compared with a file the sampler wrote before its work was cut down.

tests/data/golden_frames_tiny.safetensors holds the frames this render gave at commit 8f6372e, before the
sampler projected the reference, music and beat keys and values once and skipped the unconditional row's
reference attention and the motion modules' work on context frames (issue 26). Those changes keep the
outputs; the test of this file (test_sampler_work.py) checks that they still do.

    python tests/golden_render.py   # writes the file again from the current code (only on purpose)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import randomize_temporal_outputs  # noqa: E402

from musedance_core.config import MuseDanceConfig  # noqa: E402
from musedance_core.sampling.pipeline import MuseDancePipeline  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_frames_tiny.safetensors"


def golden_render() -> torch.Tensor:
    """14 frames (two clips, motion context, three guidance rows) of the seeded tiny model, [14, 32, 32, 3]."""
    config = MuseDanceConfig.tiny()
    pipe = MuseDancePipeline.from_config(config, seed=0)
    randomize_temporal_outputs(pipe.unet)
    gen = torch.Generator().manual_seed(0)
    size, frames = 32, 14
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    mask = ((xx**2 + yy**2) < 0.4).float()
    image = torch.rand(size, size, 3, generator=gen) * 0.3 + mask[..., None] * 0.6
    beats = torch.zeros(frames)
    beats[::6] = 1
    text = torch.randn(1, config.text_length, config.unet.cross_attention_dim, generator=gen)
    music = torch.randn(frames, 6, config.unet.music_dim, generator=gen)
    return pipe(reference_image=image, mask=mask, text_embeds=text, music_tokens=music, beats=beats,
                num_inference_steps=4, guidance_scale=3.0, beat_guidance_scale=5.0, seed=0)


if __name__ == "__main__":
    save_file({"frames": golden_render().contiguous()}, str(GOLDEN))
    print(f"wrote {GOLDEN}")
