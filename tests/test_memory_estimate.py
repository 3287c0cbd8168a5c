"""The memory estimate of a generation against what the real code allocates, tensor by tensor.

musedance_core.sampling.memory predicts the two transient peaks of sampling (a denoising step, a VAE
decode) from the settings alone; here one clip is sampled with three model widths, two sizes, one to
three guidance rows and two clip lengths, and with the low-memory options (guidance rows one at a time,
smaller decode chunks, tiles), and the peaks that TensorMemory counts inside the UNet's forward and the
VAE decode must lie under the estimate and within 1.6x of it.
"""

from __future__ import annotations

import pytest

from live_memory import traced_peaks, wider_config
from musedance_core import MuseDanceConfig, MuseDancePipeline
from musedance_core.sampling.memory import (
    DEVICE,
    HOST,
    decode_bytes,
    idle_parameter_count,
    parameter_count,
    sampling_memory,
    step_bytes,
)

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


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("size, options", [
    (128, dict(one_row_at_a_time=True)),
    (128, dict(vae_tile_size=64, decode_chunk_size=3)),
    (192, dict(vae_tile_size=128)),
])
def test_the_estimate_covers_the_traced_peaks_with_the_low_memory_options(name, size, options):
    """Three guidance rows one at a time peak as one row; a tiled decode at one tile's layers and the tiles held."""
    config = CONFIGS[name]()
    pipe = MuseDancePipeline.from_config(config)
    peaks = traced_peaks(pipe, size, 8, 2.0, 4.0, **options)
    step = step_bytes(config, size, size, 1 if options.get("one_row_at_a_time") else 3, 8)
    decode = decode_bytes(config, size, size, options.get("decode_chunk_size", 8), tile_size=options.get("vae_tile_size", 0))
    assert peaks["step"] <= step <= 1.6 * peaks["step"], (peaks, step)
    assert peaks["decode"] <= decode <= 1.6 * peaks["decode"], (peaks, decode)


def test_each_low_memory_option_lowers_its_part_of_the_estimate():
    """At the paper's size (SD1.5 widths, 512x512, 24 frames a clip, three guidance rows, bf16 on a GPU)."""
    config = MuseDanceConfig.sd15()
    job = dict(height=512, width=512, rows=3, clip_length=24, element_size=2, on_cpu=False)
    base = sampling_memory(config, **job)
    step = step_bytes(config, 512, 512, 3, 24, 2)
    assert base.total(DEVICE) == parameter_count(config) * 2 + step  # the step is the larger peak
    one_row = sampling_memory(config, **job, one_row_at_a_time=True)
    assert base.total(DEVICE) - one_row.total(DEVICE) == step - max(step // 3, decode_bytes(config, 512, 512, 8, 2))
    offloaded = sampling_memory(config, **job, offload_idle=True)
    assert base.total(DEVICE) - offloaded.total(DEVICE) == idle_parameter_count(config) * 2
    assert offloaded.total(HOST) - base.total(HOST) == idle_parameter_count(config) * 2
    assert offloaded.total() == base.total()  # moved, not saved, on a machine whose device is the host's memory
    whole, fewer, tiled, both = (decode_bytes(config, 512, 512, chunk, 2, tile)
                                 for chunk, tile in ((8, 0), (2, 0), (8, 256), (2, 256)))
    assert fewer == whole // 4 and tiled < whole / 3 and both < min(fewer, tiled)
    assert decode_bytes(config, 256, 256, 8, 2, 256) == whole // 4  # a frame no larger than a tile: not tiled
    # When the decode is the larger peak (one row at a time, short clips), its options lower the whole estimate.
    short = dict(job, clip_length=8)
    decode_bound = [sampling_memory(config, **short, one_row_at_a_time=True, decode_chunk_size=chunk,
                                    vae_tile_size=tile).total(DEVICE) for chunk, tile in ((8, 0), (2, 0), (8, 256))]
    assert decode_bound[1] < decode_bound[0] and decode_bound[2] < decode_bound[0]
    assert "in 256-pixel tiles" in sampling_memory(config, **short, one_row_at_a_time=True, vae_tile_size=256).describe()
