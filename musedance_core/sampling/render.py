"""A video file straight from the sampler: each clip is encoded with its music as soon as it is made.

`render_video` (and `write_clips`, for clips from elsewhere) holds one clip of frames (and the sampler one clip of latents) whatever the length of
the music, so a whole song at any size takes the memory of a few seconds of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..audio.timing import frame_samples
from ..video import VideoWriter


def render_video(pipe, path: str | os.PathLike, *, fps: float, audio=None, sample_rate: int | None = None,
                 format: str = "h264-mp4", crf: int = 18, metadata: dict[str, str] | None = None,
                 keep_on: tuple[type[BaseException], ...] = (), **sampling) -> Path:
    """Sample with `pipe.iter_clips(**sampling)` and write every clip to the video at `path` as it comes
    (see `write_clips`). Returns the path."""
    return write_clips(pipe.iter_clips(**sampling), path, fps=fps, audio=audio, sample_rate=sample_rate,
                       format=format, crf=crf, metadata=metadata, keep_on=keep_on)


def write_clips(
    clips: Iterable[torch.Tensor],
    path: str | os.PathLike,
    *,
    fps: float,
    audio: np.ndarray | torch.Tensor | None = None,
    sample_rate: int | None = None,
    format: str = "h264-mp4",
    crf: int = 18,
    metadata: dict[str, str] | None = None,
    keep_on: tuple[type[BaseException], ...] = (),
) -> Path:
    """Write clips of frames [K, H, W, 3] to the video at `path`, each as soon as it comes, with its music.

    audio: the music of the video's frames from its first frame on ([T] or [C, T] at `sample_rate`; more
    than two channels are mixed down); each clip gets exactly its frames' samples. keep_on: exceptions (a
    stop, a Cancel) after which the video so far is closed and kept; any other leaves nothing (see
    VideoWriter). Returns the path.
    """
    wave = None
    if audio is not None:
        wave = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
        wave = wave[None] if wave.ndim == 1 else wave
        if wave.shape[0] > 2:
            wave = wave.mean(0, keepdims=True)
    channels = 0 if wave is None else wave.shape[0]
    done = 0
    with VideoWriter(path, fps, crf=crf, format=format, metadata=metadata, sample_rate=sample_rate,
                     audio_channels=channels, keep_on=keep_on) as writer:
        for clip in clips:
            music = None if wave is None else wave[:, frame_samples(done / fps, clip.shape[0], fps, sample_rate)]
            writer.write(clip, music)
            done += clip.shape[0]
    return writer.path
