"""write_video / read_video_info: round trip, audio muxing and trimming, atomic writes, input checks."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from musedance_core import video
from musedance_core.video import read_video_info, write_video

SR = 16_000


def tone(seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels)


def test_round_trip_with_audio_trimmed_to_video(tmp_path):
    frames = torch.rand(24, 48, 64, 3)
    path = write_video(tmp_path / "a.mp4", frames, fps=12, audio=tone(3.0), sample_rate=SR)
    info = read_video_info(path)
    assert (info.num_frames, info.width, info.height) == (24, 64, 48)
    assert info.fps == pytest.approx(12.0)
    assert info.has_audio
    assert info.audio_duration == pytest.approx(24 / 12, abs=0.05)  # 3 s of audio cut to 2 s


def test_stereo_audio_and_fractional_fps(tmp_path):
    frames = np.random.default_rng(0).random((10, 32, 32, 3))
    info = read_video_info(write_video(tmp_path / "b.mp4", frames, fps=12.5, audio=tone(1.0, 2), sample_rate=SR))
    assert info.num_frames == 10 and info.fps == pytest.approx(12.5)
    assert info.has_audio and info.audio_duration == pytest.approx(0.8, abs=0.05)


def test_without_audio(tmp_path):
    info = read_video_info(write_video(tmp_path / "c.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=8))
    assert info.num_frames == 3 and not info.has_audio and info.audio_duration == 0.0


def test_colours_and_orientation_survive(tmp_path):
    """Left half red, right half blue, top rows white: decoded pixels must match (H.264 is lossy)."""
    frame = np.zeros((48, 64, 3), np.float32)
    frame[:, :32] = (1.0, 0.0, 0.0)
    frame[:, 32:] = (0.0, 0.0, 1.0)
    frame[:8] = 1.0
    path = write_video(tmp_path / "d.mp4", np.stack([frame] * 4), fps=12)
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32) / 255
    assert np.abs(decoded[12:, 4:28] - (1, 0, 0)).max() < 0.1
    assert np.abs(decoded[12:, 36:60] - (0, 0, 1)).max() < 0.1
    assert np.abs(decoded[:6, 4:60] - 1).max() < 0.1


def test_odd_size_is_padded_to_even(tmp_path):
    info = read_video_info(write_video(tmp_path / "e.mp4", np.ones((2, 33, 47, 3), np.float32), fps=12))
    assert (info.width, info.height) == (48, 34)


def test_creates_parent_directories(tmp_path):
    path = tmp_path / "x" / "y" / "f.mp4"
    write_video(path, np.zeros((2, 16, 16, 3), np.uint8), fps=12)
    assert read_video_info(path).num_frames == 2


GOOD = np.full((4, 16, 16, 3), 0.5, np.float32)
BAD_CALLS = {
    "no channel axis": dict(frames=np.zeros((4, 16, 16), np.float32)),
    "four channels": dict(frames=np.zeros((4, 16, 16, 4), np.float32)),
    "no frames": dict(frames=np.zeros((0, 16, 16, 3), np.float32)),
    "nan": dict(frames=np.where(np.arange(3) == 1, np.nan, GOOD)),
    "above one": dict(frames=GOOD * 2.5),
    "below zero": dict(frames=GOOD - 0.6),
    "integer not uint8": dict(frames=np.zeros((4, 16, 16, 3), np.int32)),
    "zero fps": dict(fps=0),
    "negative fps": dict(fps=-12),
    "bad crf": dict(crf=60),
    "audio without rate": dict(audio=tone(1.0)),
    "audio nan": dict(audio=np.full(SR, np.nan, np.float32), sample_rate=SR),
    "audio three channels": dict(audio=tone(1.0, 3), sample_rate=SR),
    "audio zero rate": dict(audio=tone(1.0), sample_rate=0),
}


@pytest.mark.parametrize("case", BAD_CALLS, ids=list(BAD_CALLS))
def test_bad_input_raises_and_writes_nothing(tmp_path, case):
    kwargs = dict(frames=GOOD, fps=12) | BAD_CALLS[case]
    with pytest.raises(ValueError):
        write_video(tmp_path / "out" / "v.mp4", **kwargs)
    assert not (tmp_path / "out" / "v.mp4").exists()
    assert list(tmp_path.rglob("*.mp4*")) == []


def test_failure_while_encoding_leaves_no_partial_file(tmp_path, monkeypatch):
    """An error after encoding started removes the temporary file and keeps an older video intact."""
    target = tmp_path / "v.mp4"
    write_video(target, GOOD, fps=12)
    before = target.read_bytes()
    real_encode = video._encode

    def encode_then_fail(path, *args):
        real_encode(path, *args)
        assert path.exists() and path.parent == tmp_path  # the temporary file sits beside the target
        raise RuntimeError("disk full")

    monkeypatch.setattr(video, "_encode", encode_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(target, np.zeros((30, 16, 16, 3), np.uint8), fps=12)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
