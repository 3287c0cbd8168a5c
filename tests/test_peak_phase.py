"""benchmarks/peak_phase.py: where a dance's flow maxima fall in the beat, on synthetic dances whose timing is known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import load_benchmark
from trainer.synthetic import make_clip, make_track


@pytest.fixture(scope="module")
def peak_phase():
    return load_benchmark("peak_phase")


@pytest.fixture(scope="module")
def dance():
    """A dancer on a house beat (rests on the beat, moves fastest on the off-beat), as the evaluation's clip."""
    track = make_track(5, 0, seconds=4.0, style="house")
    clip = next(c for c in (make_clip(track, i) for i in range(12)) if c.figure == "human")
    music = SimpleNamespace(name="house", waveform=track.waveform, sample_rate=track.sample_rate,
                            music_beats=track.beat_times)
    return torch.from_numpy(clip.frames).float() / 255.0, music, clip.fps, track


def circular_distance(phase: np.ndarray, to: float) -> np.ndarray:
    d = np.abs(np.asarray(phase) - to) % 1.0
    return np.minimum(d, 1.0 - d)


def test_a_dance_on_the_beat_peaks_on_the_off_beat_and_hits_onsets_above_chance(peak_phase, dance):
    frames, music, fps, _ = dance
    record = peak_phase.clip_record(frames, music, fps)
    peaks, minima = np.array(record["phases"]["peaks"]), np.array(record["phases"]["minima"])
    assert record["peaks"] >= 6 and peaks.size >= 6
    assert np.median(circular_distance(peaks, 0.5)) < 0.15  # fastest on the off-beat
    assert np.median(circular_distance(minima, 0.0)) < 0.1  # at rest on the beat
    assert record["matches"] / record["peaks"] > record["coverage"] + 0.1


def test_half_a_beat_late_the_peaks_move_to_the_beat_and_the_summary_pools_clips(peak_phase, dance):
    frames, music, fps, track = dance
    late = int(round(track.beat_period * fps / 2))
    shifted = torch.cat([frames[:1].expand(late, -1, -1, -1), frames[:-late]])
    on_time, off_time = peak_phase.clip_record(frames, music, fps), peak_phase.clip_record(shifted, music, fps)
    peaks = np.array(off_time["phases"]["peaks"])
    assert np.median(circular_distance(peaks, 0.0)) < 0.2
    row = peak_phase.summary("both", [on_time, off_time])
    assert row["clips"] == 2 and row["peaks_per_clip"] == (on_time["peaks"] + off_time["peaks"]) / 2
    assert row["hit_rate"] == pytest.approx(
        (on_time["matches"] + off_time["matches"]) / (on_time["peaks"] + off_time["peaks"]))
    assert sum(row["histograms"]["peaks"]) == len(on_time["phases"]["peaks"]) + peaks.size
    assert "| both | 2 |" in peak_phase.table([row])
