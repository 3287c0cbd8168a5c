"""The MuseDance UNet against diffusers: names, shapes and outputs."""

from __future__ import annotations

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel

from helpers import randomize_temporal_outputs
from musedance_core.config import MuseDanceConfig
from musedance_core.models.temporal import beat_windows
from musedance_core.models.unet import MuseDanceUNet, is_temporal_parameter

# fp32 on CPU; the two models run the same ops on the same weights, so only summation order could differ.
TOLERANCE = 1e-5


def _conditions(config, batch: int, frames: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    u = config.unet
    text = torch.randn(batch, config.text_length, u.cross_attention_dim, generator=gen)
    music = torch.randn(batch, frames, 5, u.music_dim, generator=gen)
    beats = (torch.rand(batch, frames, generator=gen) > 0.5).float()
    return text, music, beat_windows(beats, 0, frames, u.beat_window)


@pytest.mark.parametrize("size", [(4, 4), (5, 7)])
def test_sd_weights_give_the_sd_unet_output_frame_by_frame(size):
    config = MuseDanceConfig.tiny()
    torch.manual_seed(0)
    sd_unet = UNet2DConditionModel(**config.unet.diffusers_kwargs()).eval()
    # diffusers initialises conv_out and some projections to non-zero values; make every weight random
    # so that a wrongly wired layer cannot hide behind a zero.
    with torch.no_grad():
        for p in sd_unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    unet = MuseDanceUNet(config.unet).eval()
    missing, unexpected = unet.load_state_dict(sd_unet.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(is_temporal_parameter(k) for k in missing)

    batch, frames = 2, 3
    sample = torch.randn(batch, frames, 4, *size)
    timesteps = torch.tensor([10, 700])
    text, music, beats = _conditions(config, batch, frames)
    with torch.no_grad():
        ours = unet(sample, timesteps, text, music, beats)
        for b in range(batch):
            for f in range(frames):
                theirs = sd_unet(sample[b, f][None], timesteps[b], encoder_hidden_states=text[b][None]).sample
                torch.testing.assert_close(ours[b, f][None], theirs, atol=TOLERANCE, rtol=0)


def test_temporal_modules_change_the_output_once_trained():
    """The identity above is due to the zero output projections, not to modules that never run."""
    config = MuseDanceConfig.tiny()
    torch.manual_seed(0)
    unet = MuseDanceUNet(config.unet).eval()
    sample = torch.randn(1, 3, 4, 4, 4)
    text, music, beats = _conditions(config, 1, 3)
    with torch.no_grad():
        before = unet(sample, 5, text, music, beats)
        randomize_temporal_outputs(unet)
        after = unet(sample, 5, text, music, beats)
        other_music = unet(sample, 5, text, music + 1.0, beats)
        other_beats = unet(sample, 5, text, music, beat_windows(torch.ones(1, 3), 0, 3, config.unet.beat_window))
    assert (after - before).abs().max() > 1e-3
    assert (other_music - after).abs().max() > 1e-4
    assert (other_beats - after).abs().max() > 1e-4


def test_phase_token_reaches_the_output():
    """With beat_phase_bins the beat modules see each frame's beat phase: the same beats in another phase
    (the same window ids, a shifted grid far away) change the prediction."""
    import dataclasses

    config = MuseDanceConfig.tiny()
    unet_config = dataclasses.replace(config.unet, beat_phase_bins=4)
    torch.manual_seed(0)
    unet = MuseDanceUNet(unet_config).eval()
    randomize_temporal_outputs(unet)
    sample = torch.randn(1, 3, 4, 4, 4)
    text, music, _ = _conditions(config, 1, 3)
    beats = torch.zeros(1, 12)
    beats[0, [0, 8]] = 1
    shifted = torch.zeros(1, 12)
    shifted[0, [0, 10]] = 1  # frames 3-5 keep the same +-2 window (no beat) but sit earlier in the beat
    first, second = beat_windows(beats, 3, 3, 2, 4), beat_windows(shifted, 3, 3, 2, 4)
    assert torch.equal(first[..., :5], second[..., :5]) and not torch.equal(first, second)
    with torch.no_grad():
        a = unet(sample, 5, text, music, first)
        b = unet(sample, 5, text, music, second)
    assert (a - b).abs().max() > 1e-4


def test_full_size_names_and_shapes_match_sd15_unet_and_animatediff_adapter():
    """At SD1.5 size (built on the meta device: no memory), every SD1.5 UNet and MotionAdapter key exists with its shape."""
    config = MuseDanceConfig.sd15()
    with torch.device("meta"):
        ours = MuseDanceUNet(config.unet).state_dict()
        sd = UNet2DConditionModel(**config.unet.diffusers_kwargs()).state_dict()
        adapter = MotionAdapter(
            block_out_channels=config.unet.block_out_channels,
            motion_max_seq_length=config.unet.temporal_max_seq_length,
        ).state_dict()
    assert len(sd) == 686  # the SD1.5 UNet state dict
    for key, value in sd.items():
        assert key in ours, key
        assert ours[key].shape == value.shape, key
    motion = {k for k in ours if ".motion_modules." in k}
    assert motion == set(adapter)  # 21 motion modules, AnimateDiff v2 layout incl. the mid block
    for key in motion:
        assert ours[key].shape == adapter[key].shape, key
    # Music, beat and motion modules each sit in all 21 slots.
    for kind in ("motion_modules", "music_modules", "beat_modules"):
        slots = {k for k in ours if f".{kind}." in k and k.endswith(".proj_out.weight")}
        assert len(slots) == 21
    params = sum(v.numel() for k, v in ours.items() if not k.endswith(".pe"))
    spatial = sum(v.numel() for v in sd.values())
    assert spatial == 859_520_964  # the SD1.5 UNet's parameter count
    assert params > spatial


def test_motion_module_positional_encoding_covers_64_frames():
    config = MuseDanceConfig.sd15()
    assert config.unet.temporal_max_seq_length >= 64
    with torch.device("meta"):
        unet = MuseDanceUNet(config.unet)
    pe = unet.down_blocks[0].motion_modules[0].transformer_blocks[0].pos_embed.pe
    assert pe.shape[1] >= 64


def test_gradient_checkpointing_gives_the_same_gradients():
    config = MuseDanceConfig.tiny()
    torch.manual_seed(0)
    unet = MuseDanceUNet(config.unet).train()
    randomize_temporal_outputs(unet)
    for m in unet.modules():  # dropout would make the two passes differ
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    sample = torch.randn(1, 3, 4, 4, 4)
    text, music, beats = _conditions(config, 1, 3)

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        unet.zero_grad()
        unet.gradient_checkpointing = checkpointing
        unet(sample, 50, text, music, beats).square().mean().backward()
        return {n: p.grad.clone() for n, p in unet.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 100
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)
