"""Music against video frames: how many frames a span of music makes and which samples play during them.

One rule for the nodes and the main job; no heavy imports, so the nodes can use it at start-up.
"""

from __future__ import annotations


def frame_count(seconds: float, fps: float, *, to_the_end: bool = False) -> int:
    """Frames of a video of `seconds` at `fps`: the nearest whole number, or, for music that plays to its end,
    only the frames the music fully covers, so that the video never outlasts the music."""
    return int(seconds * fps + 1e-6) if to_the_end else round(seconds * fps)


def frame_samples(start: float, num_frames: int, fps: float, sample_rate: int) -> slice:
    """The samples of music at `sample_rate` that play during `num_frames` frames from `start` seconds."""
    first = round(start * sample_rate)
    return slice(first, first + round(num_frames / fps * sample_rate))
