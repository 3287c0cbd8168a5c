"""Temporal modules: motion context, beat windows, identity at initialisation."""

from __future__ import annotations

import pytest
import torch

from musedance_core.temporal import (
    BEAT,
    NO_BEAT,
    UNKNOWN_BEAT,
    BeatEncoder,
    ConditionedTemporalModule,
    MotionModule,
    beat_windows,
)

from helpers import randomize_temporal_outputs


def _motion_module() -> MotionModule:
    torch.manual_seed(0)
    module = MotionModule(channels=16, num_heads=2, norm_num_groups=8, max_seq_length=64).eval()
    randomize_temporal_outputs(module)
    return module


def test_motion_module_keeps_k_frames_and_depends_on_the_previous_frames():
    module = _motion_module()
    batch, k, m = 2, 5, 2
    x = torch.randn(batch * k, 16, 3, 3)
    context = torch.randn(batch * m, 16, 3, 3)
    with torch.no_grad():
        out = module(x, num_frames=k, context=context)
        out_other_context = module(x, num_frames=k, context=context + torch.randn_like(context))
        out_no_context = module(x, num_frames=k)
    assert out.shape == x.shape
    assert (out - out_other_context).abs().max() > 1e-3
    assert (out - out_no_context).abs().max() > 1e-3


def test_motion_module_output_is_the_last_k_of_the_joined_sequence():
    module = _motion_module()
    k, m = 4, 2
    x = torch.randn(k, 16, 3, 3)
    context = torch.randn(m, 16, 3, 3)
    with torch.no_grad():
        joined = super(MotionModule, module).forward(torch.cat([context, x]), num_frames=k + m)
        out = module(x, num_frames=k, context=context)
    torch.testing.assert_close(out, joined[m:])


def test_motion_module_rejects_sequences_longer_than_its_positional_encoding():
    module = MotionModule(channels=16, num_heads=2, norm_num_groups=8, max_seq_length=8)
    with pytest.raises(ValueError, match="positional encoding"):
        module(torch.randn(7, 16, 2, 2), num_frames=7, context=torch.randn(2, 16, 2, 2))


def test_fresh_temporal_modules_are_identity():
    torch.manual_seed(0)
    x = torch.randn(6, 16, 3, 3)
    music = ConditionedTemporalModule(16, condition_dim=8, num_heads=2, norm_num_groups=8, max_seq_length=64).eval()
    motion = MotionModule(16, num_heads=2, norm_num_groups=8, max_seq_length=64).eval()
    with torch.no_grad():
        assert torch.equal(music(x, torch.randn(6, 5, 8), num_frames=3), x)
        assert torch.equal(motion(x, num_frames=3, context=torch.randn(4, 16, 3, 3)), x)


def test_music_cross_attention_is_per_frame():
    """Frame f's tokens attend to frame f's music only: with the temporal path removed, changing one
    frame's music changes only that frame."""
    torch.manual_seed(0)
    module = ConditionedTemporalModule(16, condition_dim=8, num_heads=2, norm_num_groups=8, max_seq_length=64).eval()
    randomize_temporal_outputs(module)
    with torch.no_grad():
        module.temporal_attn.to_out[0].weight.zero_()
        module.temporal_attn.to_out[0].bias.zero_()
    frames = 4
    x = torch.randn(frames, 16, 3, 3)
    music = torch.randn(frames, 5, 8)
    changed = music.clone()
    changed[2] += 1.0
    with torch.no_grad():
        diff = (module(x, music, frames) - module(x, changed, frames)).flatten(1).abs().amax(1)
    assert diff[2] > 1e-4
    assert torch.all(diff[[0, 1, 3]] < 1e-6)


def test_beat_windows_take_neighbours_from_the_whole_song():
    beats = torch.tensor([[1, 0, 0, 1, 0, 1, 0]], dtype=torch.float32)
    w = beat_windows(beats, start=0, length=3, window=2)
    assert w.shape == (1, 3, 5)
    assert w[0, 0].tolist() == [UNKNOWN_BEAT, UNKNOWN_BEAT, BEAT, NO_BEAT, NO_BEAT]
    # A clip starting mid-song sees the true beats before its first frame.
    w = beat_windows(beats, start=4, length=3, window=2)
    assert w[0, 0].tolist() == [NO_BEAT, BEAT, NO_BEAT, BEAT, NO_BEAT]
    assert w[0, 2].tolist() == [NO_BEAT, BEAT, NO_BEAT, UNKNOWN_BEAT, UNKNOWN_BEAT]
    with pytest.raises(ValueError, match="outside"):
        beat_windows(beats, start=5, length=3, window=2)


def test_beat_encoder_tokens_depend_on_beat_and_offset():
    enc = BeatEncoder(dim=8, window=1)
    windows = torch.tensor([[[0, 1, 0], [1, 0, 0]]])
    tokens = enc(windows)
    assert tokens.shape == (2, 3, 8)
    # Same beat id at different offsets gives different tokens; a beat differs from no beat.
    assert not torch.allclose(tokens[0, 0], tokens[1, 1])
    assert not torch.allclose(tokens[0, 1], tokens[1, 1])
    with pytest.raises(ValueError, match="windows of 3"):
        enc(torch.zeros(1, 2, 5, dtype=torch.long))
