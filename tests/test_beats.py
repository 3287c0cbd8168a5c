"""beat_times finds the beats of a click track; beat_vector puts each beat on the nearest frame."""

from __future__ import annotations

import numpy as np
import pytest

from musedance_core.beats import beat_times, beat_vector

SR = 16_000


def click_track(bpm: float, seconds: float = 8.0, first: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Short 1 kHz clicks at a steady tempo; returns (waveform, true beat times)."""
    wave = np.zeros(int(seconds * SR), np.float32)
    truth = np.arange(first, seconds - 0.2, 60.0 / bpm)
    t = np.arange(int(0.02 * SR)) / SR
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.005)
    for time in truth:
        start = int(round(time * SR))
        wave[start : start + click.size] += click
    return wave, truth


@pytest.mark.parametrize("bpm", [120.0, 100.0])
def test_click_track_beats_found_within_70_ms(bpm):
    wave, truth = click_track(bpm)
    found = beat_times(wave, SR)
    gaps = np.abs(truth[:, None] - found[None, :])
    recall = (gaps.min(axis=1) < 0.07).mean()  # true beats with a detection nearby
    precision = (gaps.min(axis=0) < 0.07).mean()  # detections near a true beat
    assert recall >= 0.8 and precision >= 0.9, (recall, precision, found)
    assert np.all(np.diff(found) > 0)


def test_stereo_is_downmixed():
    wave, truth = click_track(120.0)
    np.testing.assert_allclose(beat_times(np.stack([wave, wave]), SR), beat_times(wave, SR))


def test_silence_has_no_beats():
    assert beat_times(np.zeros(4 * SR, np.float32), SR).size == 0


@pytest.mark.parametrize(
    "waveform, rate",
    [(np.full(SR, np.nan), SR), (np.zeros(0), SR), (np.zeros((2, 2, SR)), SR), (np.zeros(SR), 0)],
    ids=["nan", "empty", "3-d", "zero rate"],
)
def test_beat_times_rejects_bad_input(waveform, rate):
    with pytest.raises(ValueError):
        beat_times(waveform, rate)


def test_beat_vector_rounds_to_nearest_frame():
    fps = 12.0
    vector = beat_vector(np.array([0.99, 2.4, 4.5]) / fps, fps, 8)
    assert vector.dtype == np.float32 and vector.shape == (8,)
    # 0.99 frames -> 1 (truncation would give 0), 2.4 -> 2, 4.5 -> 5 (halves round up).
    np.testing.assert_array_equal(np.flatnonzero(vector), [1, 2, 5])
    assert set(np.unique(vector)) == {0.0, 1.0}


def test_beat_vector_drops_beats_outside_the_video():
    fps, n = 12.0, 10
    times = np.array([-0.1, 9.49 / fps, 9.5 / fps, 20.0])  # before, last frame, rounds to n, far after
    np.testing.assert_array_equal(np.flatnonzero(beat_vector(times, fps, n)), [9])
    assert beat_vector(np.array([]), fps, n).sum() == 0
    assert beat_vector(np.array([0.5]), fps, 0).shape == (0,)


@pytest.mark.parametrize(
    "times, fps, n",
    [(np.zeros(2), 0.0, 4), (np.zeros(2), 12.0, -1), (np.array([np.nan]), 12.0, 4), (np.zeros((2, 2)), 12.0, 4)],
    ids=["zero fps", "negative frames", "nan", "2-d"],
)
def test_beat_vector_rejects_bad_input(times, fps, n):
    with pytest.raises(ValueError):
        beat_vector(times, fps, n)
