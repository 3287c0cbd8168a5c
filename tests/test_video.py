"""write_video / read_video_info: round trip, audio muxing and trimming, atomic writes, input checks."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from musedance_core import video
from musedance_core.video import VideoWriter, read_video_info, video_format, write_video

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
    real_write = video.VideoWriter.write

    def write_then_fail(self, *args):
        real_write(self, *args)
        assert self.temporary.exists() and self.temporary.parent == tmp_path  # beside the target
        raise RuntimeError("disk full")

    monkeypatch.setattr(video.VideoWriter, "write", write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(target, np.zeros((60, 16, 16, 3), np.uint8), fps=12)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def _song(seconds: float, rate: int, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * 220 * (c + 1) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize("format", ["h264-mp4", "vp9-webm"])
def test_a_video_written_clip_by_clip_has_every_frame_and_the_music_of_exactly_those(tmp_path, format):
    """Clips of uneven length, each with the music of its frames (cut on the frame grid at 44.1 kHz, which
    Opus resamples): the file has every frame, and music as long as the frames within one frame."""
    from musedance_core.audio.timing import frame_samples

    fps, rate, lengths = 12.0, 44_100, [16, 16, 16, 5]
    song = _song(sum(lengths) / fps + 1.0, rate)  # longer than the video
    path = tmp_path / f"v{video_format(format).extension}"
    with VideoWriter(path, fps, format=format, sample_rate=rate, audio_channels=2, metadata={"k": "v"}) as writer:
        start = 0
        for i, length in enumerate(lengths):
            frames = np.full((length, 32, 24, 3), 40 * i, np.uint8)
            writer.write(frames, song[:, frame_samples(start / fps, length, fps, rate)])
            start += length
            assert writer.temporary.exists() and not path.exists()
    info = read_video_info(path)
    assert info.num_frames == sum(lengths) and (info.width, info.height) == (24, 32)
    assert abs(info.audio_duration - sum(lengths) / fps) < 1 / fps, info
    assert info.metadata.get("k") == "v" or info.metadata.get("K") == "v"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_stopped_video_is_kept_closed_or_removed_as_asked(tmp_path):
    """keep_on: the stop's exception closes the video so far (playable, music cut to its frames); any other
    exception, or a stop before the first frame, leaves nothing."""

    class Stopped(Exception):
        pass

    rate = 16_000
    song = _song(10.0, rate, channels=1)
    kept = tmp_path / "kept.mp4"
    with pytest.raises(Stopped):
        with VideoWriter(kept, 12, sample_rate=rate, audio_channels=1, keep_on=(Stopped,)) as writer:
            writer.write(np.zeros((16, 16, 16, 3), np.uint8), song[:, : 16 * rate // 12])
            writer.write(np.zeros((16, 16, 16, 3), np.uint8), song[:, 16 * rate // 12 : 40 * rate // 12])  # too much
            raise Stopped()
    info = read_video_info(kept)
    assert info.num_frames == 32 and abs(info.audio_duration - 32 / 12) < 1 / 12, info
    for error, name in ((RuntimeError, "crash.mp4"), (Stopped, "early.mp4")):
        with pytest.raises(error):
            with VideoWriter(tmp_path / name, 12, keep_on=(Stopped,)) as writer:
                if name == "crash.mp4":
                    writer.write(np.zeros((4, 16, 16, 3), np.uint8))
                raise error()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.mp4"]


def test_left_over_temporary_files_are_found_and_removed(tmp_path):
    """What a killed writer leaves (`.<name>.<8 hex>.part`) is removed; other files, and fresh ones when asked
    to spare them, stay."""
    import os

    from musedance_core.video import remove_partial_files

    writer = VideoWriter(tmp_path / "sub" / "dance_00001.mp4", 12)
    writer.write(np.zeros((60, 16, 16, 3), np.uint8))  # and then the process dies: never closed
    left = writer.temporary
    others = [tmp_path / "sub" / "dance_00002.mp4", tmp_path / ".notes.part", tmp_path / "x.abcdef12.part"]
    for other in others:
        other.write_bytes(b"x")
    assert left.exists()
    assert remove_partial_files(tmp_path, older_than=60) == []  # fresh: maybe still being written
    os.utime(left, (1, 1))
    assert remove_partial_files(tmp_path, older_than=60) == [left]
    assert not left.exists() and all(other.exists() for other in others)
