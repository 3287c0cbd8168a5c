"""Music beats: where they are in time, and which video frames they fall on.

The paper's beat module (Sec. 3.2) takes a binary vector b in {0, 1}^K, one entry per
generated frame, with 1 where a librosa beat falls. Sampler and trainer both build it here.
"""

from __future__ import annotations

import librosa
import numpy as np


def beat_times(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times in seconds (float64, ascending) found by librosa's dynamic-programming tracker.

    waveform: mono [T] or multi-channel [C, T] float audio (channels are averaged).
    Silence or very short clips give an empty array.
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}.")
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=0)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(
            f"waveform must be a non-empty array [T] or [C, T], got shape {np.shape(waveform)}."
        )
    if not np.isfinite(wave).all():
        raise ValueError("waveform contains NaN or infinite samples.")
    _, times = librosa.beat.beat_track(y=wave, sr=int(sample_rate), units="time")
    return np.asarray(times, dtype=np.float64)


def beat_vector(times: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """A float32 vector [num_frames] with 1.0 on every frame that has a beat, else 0.0.

    Frame k shows time k / fps, so a beat at t goes to the nearest frame, floor(t * fps + 0.5)
    (rounding, not truncation: truncation would move beats up to a whole frame early).
    Beats that land outside [0, num_frames) are dropped.
    """
    if not fps > 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 0:
        raise ValueError(f"num_frames must be a non-negative integer, got {num_frames!r}.")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"times must be a 1-D array of seconds, got shape {times.shape}.")
    if not np.isfinite(times).all():
        raise ValueError("times contain NaN or infinite values.")
    frames = np.floor(times * fps + 0.5).astype(np.int64)
    frames = frames[(frames >= 0) & (frames < num_frames)]
    vector = np.zeros(num_frames, dtype=np.float32)
    vector[frames] = 1.0
    return vector
