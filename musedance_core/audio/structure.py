"""A song's sections (intro, verse, chorus, ...): where the music changes, and which parts repeat.

Foote's method: timbre (MFCC) and harmony (chroma) features a second at a time, their self-similarity
matrix, and a checkerboard kernel slid along its diagonal; the novelty curve it gives peaks where one
stretch of music gives way to another. Peaks at least `min_seconds` apart become boundaries, moved to
the nearest bar line when the bars are known. Sections whose average features are alike get the same
letter (A, B, A, C, ...), in order of first appearance: the letters say what repeats, not which part
is the chorus.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

FEATURE_SECONDS = 1.0  # one feature vector per second of music
CHUNK_SECONDS = 60.0  # features are computed a minute at a time: an hour-long song stays small
HOP = 512


@dataclass(frozen=True)
class Section:
    """One section: from start to end (seconds from the start of the music), its number (1-based) and letter."""

    number: int
    start: float
    end: float
    label: str

    def describe(self) -> str:
        return f"section {self.number} ({self.label}) {_clock(self.start)}-{_clock(self.end)}"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def section_features(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """MFCC (timbre) and chroma (harmony) averaged over each second: [seconds, 25], each half scaled to unit norm."""
    import librosa

    wave = np.asarray(waveform, dtype=np.float32)
    per_second = int(round(FEATURE_SECONDS * sample_rate))
    chunk = int(CHUNK_SECONDS / FEATURE_SECONDS) * per_second
    rows = []
    for first in range(0, wave.size, chunk):
        part = wave[first : first + chunk]
        if part.size < per_second // 2:
            break
        mfcc = librosa.feature.mfcc(y=part, sr=sample_rate, n_mfcc=13, hop_length=HOP)
        chroma = librosa.feature.chroma_stft(y=part, sr=sample_rate, hop_length=HOP)
        frames_per_second = per_second / HOP
        count = max(1, int(np.ceil(part.size / per_second)))
        for second in range(count):
            lo, hi = int(second * frames_per_second), max(int((second + 1) * frames_per_second), int(second * frames_per_second) + 1)
            m, c = mfcc[1:, lo:hi].mean(1), chroma[:, lo:hi].mean(1)  # MFCC 0 is loudness alone: left out
            rows.append(np.concatenate([m / (np.linalg.norm(m) + 1e-9), c / (np.linalg.norm(c) + 1e-9)]))
    return np.asarray(rows, dtype=np.float32)


def novelty(features: np.ndarray, kernel_seconds: float = 8.0) -> np.ndarray:
    """Foote's novelty per second: a Gaussian-tapered checkerboard kernel along the self-similarity diagonal."""
    n = features.shape[0]
    unit = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-9)
    similarity = unit @ unit.T
    half = max(2, int(round(kernel_seconds / FEATURE_SECONDS / 2)))
    axis = np.arange(-half, half) + 0.5
    taper = np.exp(-((axis / (half / 2)) ** 2))
    kernel = np.outer(taper, taper) * np.outer(np.sign(axis), np.sign(axis))
    padded = np.pad(similarity, half, mode="edge")
    curve = np.array([np.sum(kernel * padded[i : i + 2 * half, i : i + 2 * half]) for i in range(n)])
    return np.maximum(curve, 0.0)


def find_sections(waveform: np.ndarray, sample_rate: int, *, bar_times: np.ndarray | None = None,
                  min_seconds: float = 8.0, max_sections: int = 16, threshold: float = 0.25,
                  same_label: float = 0.12) -> list[Section]:
    """The sections of a song (mono `waveform` at `sample_rate`), at least `min_seconds` long.

    bar_times: the bar lines in seconds (Beat Extract's downbeats); boundaries move to the nearest one.
    threshold: the least novelty, as a share of the largest, that makes a boundary. same_label: the
    largest cosine distance between two sections' average features that still gives them one letter.
    """
    duration = len(waveform) / sample_rate
    features = section_features(waveform, sample_rate)
    if features.shape[0] < 2 * min_seconds:
        return [Section(1, 0.0, duration, "A")]
    curve = novelty(features, kernel_seconds=min_seconds)
    peaks = [i for i in range(1, len(curve) - 1) if curve[i] >= curve[i - 1] and curve[i] > curve[i + 1]
             and curve[i] >= threshold * curve.max()]
    chosen: list[int] = []
    for i in sorted(peaks, key=lambda i: -curve[i]):  # strongest first, none closer than min_seconds
        if len(chosen) < max_sections - 1 and all(abs(i - j) * FEATURE_SECONDS >= min_seconds for j in chosen):
            if min_seconds <= i * FEATURE_SECONDS <= duration - min_seconds:
                chosen.append(i)
    times = sorted(i * FEATURE_SECONDS for i in chosen)
    if bar_times is not None and len(bar_times):
        bars = np.asarray(bar_times, dtype=np.float64)
        times = sorted({float(bars[np.argmin(np.abs(bars - t))]) for t in times} - {0.0})
    edges = [0.0, *[t for t in times if 0.0 < t < duration], duration]
    means = []
    for start, end in zip(edges[:-1], edges[1:]):
        rows = features[int(start / FEATURE_SECONDS) : max(int(end / FEATURE_SECONDS), int(start / FEATURE_SECONDS) + 1)]
        mean = rows.mean(0)
        means.append(mean / (np.linalg.norm(mean) + 1e-9))
    labels: list[str] = []
    letters = iter(string.ascii_uppercase)
    for i, mean in enumerate(means):
        alike = [labels[j] for j in range(i) if 1.0 - float(mean @ means[j]) <= same_label]
        labels.append(alike[0] if alike else next(letters, "Z"))
    return [Section(n + 1, start, end, label)
            for n, (start, end, label) in enumerate(zip(edges[:-1], edges[1:], labels))]
