"""benchmarks/figure_steps.py: the main job's visible check, on synthetic dances whose steps are known."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import load_benchmark
from musedance_core.video import write_video
from trainer.default_model import write_wav
from trainer.synthetic import make_clip, make_track


@pytest.fixture(scope="module")
def figure_steps():
    return load_benchmark("figure_steps")


@pytest.fixture(scope="module")
def dance(tmp_path_factory):
    """A human-like dancer stepping with a house beat, the music as WAV, and the same frames off the beat."""
    root = tmp_path_factory.mktemp("steps")
    track = make_track(5, 0, seconds=3.0, style="house")
    clip = next(c for c in (make_clip(track, i) for i in range(12)) if c.figure == "human")
    write_video(root / "dance.mp4", clip.frames, clip.fps, crf=12)
    # Half a beat later: the figure is between its sides on every beat, then on the other side at the next.
    late = int(round(track.beat_period * clip.fps / 2))
    shifted = np.concatenate([clip.frames[:1].repeat(late, axis=0), clip.frames[:-late]])
    write_video(root / "late.mp4", shifted, clip.fps, crf=12)
    one_beat = int(round(track.beat_period * clip.fps))
    swapped = np.concatenate([clip.frames[:1].repeat(one_beat, axis=0), clip.frames[:-one_beat]])
    write_video(root / "swapped.mp4", swapped, clip.fps, crf=12)
    write_wav(root / "music.wav", track.waveform, track.sample_rate)
    return root, clip


def test_a_dance_on_the_beat_changes_sides_on_every_beat(figure_steps, dance):
    root, clip = dance
    result = figure_steps.measure(root / "dance.mp4", root / "music.wav")
    assert result["frames"] == clip.frames.shape[0] and result["pairs"] >= 4
    assert result["alternations"] == result["pairs"]
    assert result["mean_step_px"] > 6  # the synthetic step is +-5.8 px at 64 (more at downbeats, with the arms)
    # The mask's centroid follows the drawn figure's own.
    drawn = np.array([np.flatnonzero(m.any(axis=0)).mean() for m in clip.masks])
    measured = np.array(result["positions_px"])
    assert np.corrcoef(drawn, measured)[0, 1] > 0.9


def test_the_step_direction_is_compared_with_the_truth(figure_steps, dance, capsys):
    root, _ = dance
    assert figure_steps.main(["--video", str(root / "dance.mp4"), "--music", str(root / "music.wav"),
                              "--truth", str(root / "dance.mp4"), "--json", str(root / "same.json")]) == 0
    same = figure_steps.json.loads((root / "same.json").read_text())
    assert same["same_side_as_truth"] == len(same["sides"])
    # One beat late: still changes sides on the beat, but always on the wrong one.
    assert figure_steps.main(["--video", str(root / "swapped.mp4"), "--music", str(root / "music.wav"),
                              "--truth", str(root / "dance.mp4"), "--json", str(root / "swapped.json")]) == 0
    swapped = figure_steps.json.loads((root / "swapped.json").read_text())
    assert swapped["same_side_as_truth"] <= 1 and swapped["alternations"] >= swapped["pairs"] - 1
    # Half a beat late: on the beats the figure is mid-step, so the sides no longer alternate with them.
    late = figure_steps.measure(root / "late.mp4", root / "music.wav")
    assert late["alternations"] < late["pairs"] or late["mean_step_px"] < 0.5 * same["mean_step_px"]
    assert "same side on" in capsys.readouterr().out


def test_missing_files_are_named(figure_steps, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        figure_steps.main(["--video", str(tmp_path / "none.mp4"), "--music", str(tmp_path / "none.wav")])
    assert exit_info.value.code == 2 and "none.mp4 does not exist" in capsys.readouterr().err
