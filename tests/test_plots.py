"""musedance_core/plots.py: the contact sheet and the beat plot show what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from musedance_core.plots import BEAT, MOTION, ONSET, beat_plot, contact_sheet


def test_contact_sheet_places_frames_in_rows_and_frames_the_beats_in_red():
    frames = np.stack([np.full((4, 6, 3), k / 10, dtype=np.float32) for k in range(5)])
    beats = np.array([0, 1, 0, 0, 1])
    sheet = contact_sheet(frames, columns=3, beat_flags=beats, scale=2, gap=1)
    cell_h, cell_w = 4 * 2 + 2, 6 * 2 + 2
    assert sheet.shape == (2 * cell_h, 3 * cell_w, 3)
    for k in range(5):
        y, x = (k // 3) * cell_h, (k % 3) * cell_w
        np.testing.assert_allclose(sheet[y + 1:y + 9, x + 1:x + 13], k / 10)  # the frame, enlarged
        border = sheet[y, x]
        assert np.allclose(border, BEAT) == bool(beats[k])


def test_contact_sheet_refuses_what_is_not_a_video():
    with pytest.raises(ValueError, match=r"\[F, H, W, 3\]"):
        contact_sheet(np.zeros((4, 6, 3)))


def test_beat_plot_marks_the_beats_and_draws_the_motion():
    rate, seconds = 1000, 2.0
    wave = np.sin(np.linspace(0, 200, int(rate * seconds))).astype(np.float32)
    envelope = np.abs(np.sin(np.linspace(0, 6, 100)))
    beats = np.array([0.5, 1.5, 3.0])  # the last one is outside the stretch
    motion = np.linspace(0, 1, 24)
    image = beat_plot(wave, rate, envelope, 50.0, beats, 0.0, seconds, motion=motion, fps=12.0, width=200, height=90)
    assert image.shape == (90, 200, 3) and image.min() >= 0 and image.max() <= 1
    red = np.flatnonzero(np.all(np.isclose(image, BEAT), axis=2).all(axis=0))
    assert red.tolist() == [int(0.5 / seconds * 199), int(1.5 / seconds * 199)]
    green_rows = np.flatnonzero(np.all(np.isclose(image, MOTION), axis=2).any(axis=1))
    blue_rows = np.flatnonzero(np.all(np.isclose(image, ONSET), axis=2).any(axis=1))
    assert green_rows.min() > 60 and blue_rows.max() < 60  # motion under the music
    with pytest.raises(ValueError, match="fps"):
        beat_plot(wave, rate, envelope, 50.0, beats, 0.0, seconds, motion=motion)
