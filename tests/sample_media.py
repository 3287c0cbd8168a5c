"""Synthesised sample media: a drum-and-bass loop and a drawn figure with its mask.

For the tests and the benchmarks that need music with known beats or a reference image with a known
mask, made here from numpy alone, so the repository holds no third-party media.
"""

from __future__ import annotations

import numpy as np

from scenes import capsule

SAMPLE_RATE = 16_000  # AST's rate, so the music needs no resampling
BPM = 120.0


def synth_music(seconds: float, sample_rate: int = SAMPLE_RATE, bpm: float = BPM, seed: int = 0) -> np.ndarray:
    """A drum-and-bass loop: kick on every beat, snare on 2 and 4, hi-hat on eighths, a bass line.

    Returns mono float32 [T] peaking at 0.8. The kick sits exactly on the beat grid, so a beat
    tracker should find beats every 60 / bpm seconds.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    beat = 60.0 / bpm

    def hit(start_s: float, sound: np.ndarray) -> None:
        start = int(round(start_s * sample_rate))
        end = min(n, start + sound.size)
        if start < end:
            out[start:end] += sound[: end - start]

    def envelope(length_s: float, decay_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Time axis and exponential decay of a sound `length_s` long."""
        t = np.arange(int(length_s * sample_rate)) / sample_rate
        return t, np.exp(-t / decay_s)

    t, env = envelope(0.3, 0.08)
    kick = np.sin(2 * np.pi * (50 * t + 100 * 0.03 * (1 - np.exp(-t / 0.03)))) * env  # 150 -> 50 Hz
    t, env = envelope(0.2, 0.05)
    snare = (0.6 * rng.standard_normal(t.size) + 0.4 * np.sin(2 * np.pi * 190 * t)) * env
    t, env = envelope(0.05, 0.01)
    hat = np.diff(rng.standard_normal(t.size + 1)) * 0.5 * env  # differenced noise: bright
    bass_notes = [55.0, 55.0, 65.41, 73.42]  # A1 A1 C2 D2, one per beat
    t, env = envelope(beat / 2, 0.15)

    for k in range(int(np.ceil(seconds / beat))):
        start = k * beat
        hit(start, kick)
        if k % 2 == 1:
            hit(start, 0.7 * snare)
        hit(start, 0.3 * hat)
        hit(start + beat / 2, 0.2 * hat)
        f0 = bass_notes[k % len(bass_notes)]
        bass = np.tanh(3 * np.sin(2 * np.pi * f0 * t)) * env  # soft-clipped sine: a warm square-ish tone
        hit(start, 0.4 * bass)
        hit(start + beat / 2, 0.25 * bass)
    return (0.8 * out / max(np.abs(out).max(), 1e-9)).astype(np.float32)


def draw_reference(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A stick figure on a gradient stage: image float32 [size, size, 3] in [0, 1] and its mask [size, size]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # unit square, y down
    top, bottom = np.array([0.10, 0.12, 0.30]), np.array([0.45, 0.25, 0.45])
    image = top + (bottom - top) * yy[..., None]
    image[yy > 0.85] = (0.30, 0.22, 0.18)  # floor

    def limb(p0: tuple[float, float], p1: tuple[float, float], radius: float) -> np.ndarray:
        return capsule(yy, xx, p0, p1, radius)  # points as (x, y)

    parts = [  # (shape, colour), drawn in order
        (limb((0.40, 0.62), (0.36, 0.88), 0.045) | limb((0.60, 0.62), (0.66, 0.88), 0.045), (0.15, 0.25, 0.70)),
        (limb((0.42, 0.36), (0.24, 0.22), 0.035) | limb((0.58, 0.36), (0.78, 0.48), 0.035), (0.90, 0.72, 0.58)),
        (limb((0.50, 0.36), (0.50, 0.60), 0.10), (0.85, 0.15, 0.20)),
        (limb((0.50, 0.20), (0.50, 0.20), 0.08), (0.90, 0.72, 0.58)),
    ]
    mask = np.zeros((size, size), dtype=bool)
    for shape, colour in parts:
        image[shape] = colour
        mask |= shape
    return image.astype(np.float32), mask.astype(np.float32)
