"""The memory estimate of a generation against what the real code allocates, tensor by tensor.

musedance_core.sampling.memory predicts the two transient peaks of sampling (a denoising step, a VAE
decode) from the settings alone; here one clip is sampled with three model widths, two sizes, one to
three guidance rows and two clip lengths, and the peaks that TensorMemory counts inside the UNet's
forward and the VAE decode must lie under the estimate and within 1.6x of it.
"""

from __future__ import annotations

import pytest

from live_memory import traced_peaks, wider_config
from musedance_core import MuseDanceConfig, MuseDancePipeline
from musedance_core.sampling.memory import decode_bytes, parameter_count, step_bytes

CONFIGS = {"tiny": MuseDanceConfig.tiny, "wider": wider_config}


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
    config = wider_config()
    pipe = MuseDancePipeline.from_config(config, text_encoder=True)
    assert parameter_count(config) == sum(p.numel() for m in pipe.modules().values() for p in m.parameters())
