"""Pictures that let a person check the beats and the dance: a beat plot and a contact sheet.

Drawn with numpy alone (no plotting library), as float RGB images [H, W, 3] in [0, 1]; the node pack
turns them into ComfyUI IMAGEs, the main job writes them as PNG files.
"""

from __future__ import annotations

import numpy as np

BACKGROUND = 0.12
WAVE = 0.55
ONSET = (0.3, 0.6, 1.0)
BEAT = (1.0, 0.2, 0.2)
DOWNBEAT = (1.0, 0.85, 0.2)
MOTION = (0.3, 0.9, 0.35)


def _curve(image: np.ndarray, values: np.ndarray, colour: tuple[float, float, float], top: int, bottom: int) -> None:
    """Draw `values` (one per column, scaled to their maximum) between rows top (high) and bottom (zero)."""
    peak = max(float(np.max(values, initial=0.0)), 1e-9)
    rows = (bottom - values / peak * (bottom - top)).round().astype(int).clip(top, bottom)
    columns = np.arange(values.size)
    for x in columns[1:]:  # vertical runs join neighbouring points, so steep edges stay visible
        lo, hi = sorted((rows[x - 1], rows[x]))
        image[lo:hi + 1, x] = colour
    image[rows, columns] = colour


def beat_plot(wave: np.ndarray, rate: int, onset_envelope: np.ndarray, frame_rate: float, beats: np.ndarray,
              start: float, seconds: float, *, motion: np.ndarray | None = None, fps: float | None = None,
              downbeats: np.ndarray | None = None, width: int = 768, height: int = 192) -> np.ndarray:
    """The stretch [start, start + seconds) of the music: waveform (grey), onset strength (blue), beats (red).

    downbeats (seconds), where given, are drawn three pixels wide in yellow over their beats: the bar lines.
    onset_envelope is sampled at frame_rate per second from time 0 (`beats.BeatAnalysis`); beats are in
    seconds. With `motion` (one value per video frame at `fps`, e.g. the mean optical-flow magnitude
    between frame k-1 and k, placed at k / fps) a green motion curve is drawn under the music, so that a
    dance that hits the beats shows its motion minima or peaks on the red lines.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}.")
    image = np.full((height, width, 3), BACKGROUND, dtype=np.float32)
    music_bottom = height if motion is None else (2 * height) // 3
    first, last = start, start + seconds
    edges = np.linspace(first * rate, last * rate, width + 1).astype(int).clip(0, len(wave))
    mid = music_bottom // 2
    peak = max(float(np.abs(wave[edges[0]:edges[-1]]).max(initial=0.0)), 1e-6)
    for x in range(width):
        chunk = wave[edges[x]:max(edges[x + 1], edges[x] + 1)]
        if chunk.size:
            top = mid - int(chunk.max() / peak * (mid - 4))
            bottom = mid - int(chunk.min() / peak * (mid - 4))
            image[max(top, 0):min(bottom + 1, music_bottom), x] = WAVE
    xs = np.linspace(first, last, width)
    times = np.arange(len(onset_envelope)) / frame_rate
    _curve(image, np.interp(xs, times, onset_envelope), ONSET, 2, music_bottom - 2)
    if motion is not None:
        if fps is None or fps <= 0:
            raise ValueError("a motion curve needs the video's fps.")
        image[music_bottom] = 0.3
        frame_times = start + np.arange(len(motion)) / fps
        _curve(image, np.interp(xs, frame_times, motion), MOTION, music_bottom + 3, height - 2)
    for t in beats:
        if first <= t < last:
            image[:, int((t - first) / seconds * (width - 1))] = BEAT
    for t in () if downbeats is None else downbeats:
        if first <= t < last:
            x = int((t - first) / seconds * (width - 1))
            image[:, max(x - 1, 0):x + 2] = DOWNBEAT
    return image


def contact_sheet(frames: np.ndarray, columns: int = 12, *, beat_flags: np.ndarray | None = None,
                  scale: int = 2, gap: int = 2) -> np.ndarray:
    """Frames [F, H, W, 3] in [0, 1] in rows of `columns`, each enlarged `scale` times (nearest).

    Frames whose `beat_flags` entry is 1 get a red frame around them, so one sees what the dancer does
    on the beats.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got {frames.shape}.")
    if columns < 1 or scale < 1 or gap < 0:
        raise ValueError("columns and scale must be at least 1 and gap at least 0.")
    count, h, w = frames.shape[:3]
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    rows = -(-count // columns)
    cell_h, cell_w = h + 2 * gap, w + 2 * gap
    sheet = np.full((rows * cell_h, min(count, columns) * cell_w, 3), BACKGROUND, dtype=np.float32)
    for k in range(count):
        y, x = (k // columns) * cell_h, (k % columns) * cell_w
        if beat_flags is not None and k < len(beat_flags) and beat_flags[k] > 0.5:
            sheet[y:y + cell_h, x:x + cell_w] = BEAT
        sheet[y + gap:y + gap + h, x + gap:x + gap + w] = big[k]
    return sheet


# One colour per section letter (A, B, C, ...), repeating after eight.
SECTION_COLOURS = ((0.85, 0.35, 0.3), (0.3, 0.6, 0.9), (0.4, 0.75, 0.35), (0.85, 0.7, 0.25),
                   (0.65, 0.4, 0.85), (0.3, 0.8, 0.8), (0.9, 0.5, 0.7), (0.6, 0.6, 0.6))


def section_plot(wave: np.ndarray, rate: int, sections, start: float, seconds: float, *,
                 bar_times: np.ndarray | None = None, width: int = 768, height: int = 160) -> np.ndarray:
    """The stretch [start, start + seconds) of the music: its waveform over bands coloured by section letter
    (a letter's colour again where that music comes again), section starts as white lines, bar lines as
    short yellow ticks along the top."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}.")
    image = np.full((height, width, 3), BACKGROUND, dtype=np.float32)
    xs = start + (np.arange(width) + 0.5) / width * seconds
    for section in sections:
        colour = SECTION_COLOURS[(ord(section.label[0]) - ord("A")) % len(SECTION_COLOURS)]
        inside = (xs >= section.start) & (xs < section.end)
        image[12:, inside] = np.asarray(colour, dtype=np.float32) * 0.45
        if start <= section.start < start + seconds:
            image[:, int((section.start - start) / seconds * (width - 1))] = 1.0
    edges = np.linspace(start * rate, (start + seconds) * rate, width + 1).astype(int).clip(0, len(wave))
    mid = (height + 12) // 2
    peak = max(float(np.abs(wave[edges[0]:edges[-1]]).max(initial=0.0)), 1e-6)
    for x in range(width):
        chunk = wave[edges[x]:max(edges[x + 1], edges[x] + 1)]
        if chunk.size:
            top = mid - int(chunk.max() / peak * (mid - 16))
            bottom = mid - int(chunk.min() / peak * (mid - 16))
            image[max(top, 12):min(bottom + 1, height), x] = WAVE
    for t in () if bar_times is None else bar_times:
        if start <= t < start + seconds:
            image[:10, int((t - start) / seconds * (width - 1))] = DOWNBEAT
    return image
