"""The main job end to end on tiny settings: an MP4 with the music and one frame per 1/fps second."""

from __future__ import annotations

import numpy as np
import pytest

from musedance_core import demo
from musedance_core.beats import beat_times
from musedance_core.video import read_video_info


def test_demo_writes_video_with_music(tmp_path, capsys):
    output = tmp_path / "new_dir" / "demo.mp4"
    assert demo.main(["--output", str(output), "--seconds", "2", "--size", "32", "--steps", "2"]) == 0
    info = read_video_info(output)
    assert (info.num_frames, info.width, info.height) == (24, 32, 32)
    assert info.fps == pytest.approx(12.0)
    assert info.has_audio and info.audio_duration == pytest.approx(2.0, abs=0.05)
    assert "clip 1/" in capsys.readouterr().out  # progress was reported
    assert list(output.parent.iterdir()) == [output]  # no temporary file left


def test_synthesised_music_has_the_intended_tempo():
    music = demo.synth_music(6.0)
    assert music.dtype == np.float32 and np.abs(music).max() == pytest.approx(0.8)
    interval = np.median(np.diff(beat_times(music, demo.SAMPLE_RATE)))
    assert interval == pytest.approx(60.0 / demo.BPM, rel=0.05)


def test_reference_mask_covers_the_figure_only():
    image, mask = demo.draw_reference(64)
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert 0.05 < mask.mean() < 0.5
    assert mask[0, 0] == 0 and mask[20, 32] == 1  # a background corner; the torso


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--size", "30"])
    assert "multiple of 8" in capsys.readouterr().err
