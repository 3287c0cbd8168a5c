"""The peak of the memory that torch tensors take while some code runs, counted tensor by tensor.

Every tensor an operator makes is counted from its creation until its storage is freed; views and
in-place results share their input's storage and are not counted again. Tensors that existed before
(the model's weights) count only when an operator makes new ones. Unlike a process's high-water mark,
the count sees no allocator caching, no other thread and no Python objects: the same run gives the same number.
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorMemory(TorchDispatchMode):
    """with TensorMemory() as counted: ...   then counted.peak is the most bytes alive at once."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {t.untyped_storage()._cdata for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage._cdata
            if key in given or key in self._sizes:
                continue
            self._sizes[key] = storage.nbytes()
            self.live += self._sizes[key]
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key)
        return out


def wider_config():
    """The tiny model's configuration with twice its UNet and four times its VAE widths."""
    from musedance_core import MuseDanceConfig

    config = MuseDanceConfig.tiny()
    config.unet.block_out_channels = (64, 128)
    config.unet.num_attention_heads = config.unet.temporal_num_attention_heads = 4
    config.vae.block_out_channels = (32, 32, 64, 64)
    return config


def traced_peaks(pipe, size: int, clip_length: int, guidance: float, beat_guidance, decode_chunk_size: int = 8,
                 **options) -> dict[str, int]:
    """The largest TensorMemory peaks of the UNet's forward calls ("step") and of the VAE decodes ("decode")
    while one clip of `clip_length` frames at size x size is sampled (one step, M = 2), with `options` of
    iter_clips (one_row_at_a_time, vae_tile_size)."""
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
            beat_guidance_scale=beat_guidance, clip_length=clip_length, motion_frames=2,
            decode_chunk_size=decode_chunk_size, **options,
        ))
    return peaks
