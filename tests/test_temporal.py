"""Temporal modules: motion context, beat windows, identity at initialisation."""

from __future__ import annotations

import pytest
import torch

from helpers import randomize_temporal_outputs
from musedance_core.models.temporal import (
    BEAT,
    NO_BEAT,
    PHASE_OFFSET,
    UNKNOWN_BEAT,
    BeatEncoder,
    ConditionedTemporalModule,
    MotionModule,
    beat_phase_ids,
    beat_windows,
    unknown_beats,
)


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
    with pytest.raises(ValueError, match="expected 3 beat ids"):
        enc(torch.zeros(1, 2, 5, dtype=torch.long))


def _phase(parity: int, bin_: int, bins: int) -> int:
    return PHASE_OFFSET + parity * bins + bin_


def test_beat_phase_ids_place_every_frame_in_the_beat_grid():
    beats = torch.zeros(1, 20)
    beats[0, [3, 7, 11, 15]] = 1  # a beat every 4 frames; 4 bins: one bin per frame
    ids = beat_phase_ids(beats, 4)[0].tolist()
    # Frames 0-2 come before the first beat (beat -1, odd, extended backwards), the beats themselves
    # are bin 0 and alternate in parity, frames after the last beat carry the grid on.
    expected = [_phase(1, 1, 4), _phase(1, 2, 4), _phase(1, 3, 4)]
    for beat in range(4):
        expected += [_phase(beat % 2, b, 4) for b in range(4)]
    expected += [_phase(0, 0, 4)]  # frame 19 is where beat 4 would fall
    assert ids == expected


def test_beat_phase_ids_follow_uneven_intervals_and_need_two_beats():
    beats = torch.zeros(2, 12)
    beats[0, [0, 2, 8]] = 1  # a 2-frame beat, then a 6-frame one
    beats[1, 5] = 1  # one beat: no grid
    ids = beat_phase_ids(beats, 2)
    assert ids[0, :3].tolist() == [_phase(0, 0, 2), _phase(0, 1, 2), _phase(1, 0, 2)]
    # 6 frames from 2 to 8: frames 2-4 in the first half, 5-7 in the second
    assert ids[0, 2:9].tolist() == [_phase(1, 0, 2)] * 3 + [_phase(1, 1, 2)] * 3 + [_phase(0, 0, 2)]
    assert ids[1].tolist() == [UNKNOWN_BEAT] * 12
    with pytest.raises(ValueError, match="phase_bins must be at least 1"):
        beat_phase_ids(beats, 0)


def test_beat_windows_with_phase_add_the_phase_of_the_whole_song():
    beats = torch.zeros(1, 30)
    beats[0, 2::5] = 1
    whole = beat_windows(beats, 0, 30, window=1, phase_bins=5)
    assert whole.shape == (1, 30, 4)
    assert torch.equal(whole[..., :3], beat_windows(beats, 0, 30, window=1))
    assert torch.equal(whole[..., 3], beat_phase_ids(beats, 5))
    # A clip cut from the middle sees the phase the song gives it, not one restarted at its first frame.
    assert torch.equal(beat_windows(beats, 11, 9, window=1, phase_bins=5), whole[:, 11:20])
    assert unknown_beats(2, 3, window=1, phase_bins=5).shape == (2, 3, 4)
    assert unknown_beats(2, 3, window=1).shape == (2, 3, 3)


def test_beat_encoder_phase_token_depends_on_the_phase_only():
    torch.manual_seed(0)
    enc = BeatEncoder(dim=8, window=1, phase_bins=3)
    windows = torch.tensor([[[0, 1, 0, _phase(0, 0, 3)], [0, 1, 0, _phase(1, 0, 3)],
                             [1, 0, 0, _phase(0, 0, 3)], [2, 2, 2, UNKNOWN_BEAT]]])
    tokens = enc(windows)
    assert tokens.shape == (4, 4, 8)
    assert torch.equal(tokens[0, :3], tokens[1, :3])  # same window, same window tokens
    assert not torch.allclose(tokens[0, 3], tokens[1, 3])  # the parity changes the phase token
    assert torch.equal(tokens[0, 3], tokens[2, 3])  # the phase token ignores the window
    assert torch.equal(tokens[3, 3], enc.phase_embedding.weight[0])  # unknown phase: its own row
    with pytest.raises(ValueError, match=r"expected 4 beat ids per frame \(window 1 and a phase column"):
        enc(windows[..., :3])
