"""The memory estimate of a generation against what the real code allocates, tensor by tensor.

musedance_core.sampling.memory predicts the two transient peaks of sampling (a denoising step, a VAE
decode) from the settings alone; here one clip is sampled with three model widths, two sizes, one to
three guidance rows and two clip lengths, and the peaks that TensorMemory counts inside the UNet's
forward and the VAE decode must lie under the estimate and within 1.6x of it.
"""

from __future__ import annotations

import pytest
import torch

from live_memory import TensorMemory
from musedance_core import MuseDanceConfig, MuseDancePipeline
from musedance_core.sampling.memory import decode_bytes, parameter_count, step_bytes


def _wider() -> MuseDanceConfig:
    config = MuseDanceConfig.tiny()
    config.unet.block_out_channels = (64, 128)
    config.unet.num_attention_heads = config.unet.temporal_num_attention_heads = 4
    config.vae.block_out_channels = (32, 32, 64, 64)
    return config


CONFIGS = {"tiny": MuseDanceConfig.tiny, "wider": _wider}


def traced_peaks(pipe: MuseDancePipeline, size: int, clip_length: int, guidance: float, beat_guidance):
    """The largest TensorMemory peak of the UNet's forward calls and of the VAE decodes while one clip is sampled."""
    peaks = {"step": 0, "decode": 0}

    def traced(name, function):
        def run(*args, **kwargs):
            with TensorMemory() as counted:
                result = function(*args, **kwargs)
            peaks[name] = max(peaks[name], counted.peak)
            return result
        return run

    config = pipe.config
    generator = torch.Generator().manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipe.unet, "forward", traced("step", pipe.unet.forward))
        patch.setattr(pipe, "decode", traced("decode", pipe.decode))
        list(pipe.iter_clips(
            reference_image=torch.rand(size, size, 3, generator=generator),
            text_embeds=torch.randn(1, config.text_length, config.unet.cross_attention_dim, generator=generator),
            music_tokens=torch.randn(clip_length, 4, config.unet.music_dim, generator=generator),
            beats=(torch.arange(clip_length) % 4 == 0).float(), num_inference_steps=1, guidance_scale=guidance,
            beat_guidance_scale=beat_guidance, clip_length=clip_length, motion_frames=2, decode_chunk_size=8,
        ))
    return peaks


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("size, clip_length, guidance, beat_guidance, rows", [
    (64, 8, 2.0, None, 2),
    (128, 8, 1.0, None, 1),
    (128, 8, 2.0, 4.0, 3),
    (128, 16, 2.0, None, 2),
])
def test_the_estimate_covers_the_traced_peaks_of_a_step_and_a_decode(name, size, clip_length, guidance,
                                                                      beat_guidance, rows):
    config = CONFIGS[name]()
    pipe = MuseDancePipeline.from_config(config)
    peaks = traced_peaks(pipe, size, clip_length, guidance, beat_guidance)
    step = step_bytes(config, size, size, rows, clip_length)
    decode = decode_bytes(config, size, size, 8)
    assert peaks["step"] <= step <= 1.6 * peaks["step"], (peaks, step)
    assert peaks["decode"] <= decode <= 1.6 * peaks["decode"], (peaks, decode)


def test_the_weights_are_counted_from_the_configuration():
    config = _wider()
    pipe = MuseDancePipeline.from_config(config, text_encoder=True)
    assert parameter_count(config) == sum(p.numel() for m in pipe.modules().values() for p in m.parameters())
