"""Write generated frames (and the music) to an MP4 file, and read back what a file holds.

PyAV encodes H.264 video and AAC audio, so no ffmpeg binary and no torchvision are needed.
Files are written atomically: a failed write never leaves a partial video behind.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as read from its container."""

    num_frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    audio_duration: float  # seconds; 0.0 when there is no audio stream


def write_video(
    path: str | os.PathLike,
    frames: ArrayLike,
    fps: float,
    audio: ArrayLike | None = None,
    sample_rate: int | None = None,
    crf: int = 18,
) -> Path:
    """Encode frames [F, H, W, 3] as an H.264 MP4, with optional audio muxed in as AAC.

    frames: float in [0, 1] or uint8. H.264 with yuv420p needs even sizes, so an odd height
    or width is padded by repeating the last row or column (the output is then one pixel larger).
    audio: a waveform [T] (mono) or [C, T] with C in {1, 2}, float, at `sample_rate` Hz; samples
    are clipped to [-1, 1] and audio longer than the video (F / fps seconds) is trimmed.
    The file is encoded next to `path` under a temporary name and moved into place at the end.
    Returns the path written.
    """
    path = Path(path)
    video = _frames_to_uint8(frames)
    if not fps > 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    if not (isinstance(crf, int) and 0 <= crf <= 51):
        raise ValueError(f"crf must be an integer in 0..51 (lower is better quality), got {crf!r}.")
    wave = None
    if audio is not None:
        wave = _audio_to_planar(audio, sample_rate)
        wave = wave[:, : int(round(video.shape[0] / fps * sample_rate))]
    video = _pad_to_even(video)

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        _encode(temporary, video, fps, wave, sample_rate, crf)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_video_info(path: str | os.PathLike) -> VideoInfo:
    """Count the frames and read size, frame rate and audio duration of a video file."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream.")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
        audio_duration = 0.0
        has_audio = bool(container.streams.audio)
        if has_audio:
            audio = container.streams.audio[0]
            # The stream duration honours the MP4 edit list, so AAC priming samples are not counted.
            if audio.duration is not None:
                audio_duration = float(audio.duration * audio.time_base)
        # Count packets rather than trusting the header's frame count, which some muxers leave at 0.
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
    return VideoInfo(num_frames, fps, width, height, has_audio, audio_duration)


def _frames_to_uint8(frames: ArrayLike) -> np.ndarray:
    """Check frames and return them as a contiguous uint8 array [F, H, W, 3]."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        frames = frames.numpy() if frames.dtype == torch.uint8 else frames.float().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise ValueError(
            f"frames must have shape [F, H, W, 3] with F, H, W > 0 (RGB, channels last), "
            f"got {tuple(frames.shape)}."
        )
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be float in [0, 1] or uint8, got dtype {frames.dtype}.")
    if not np.isfinite(frames).all():
        raise ValueError("frames contain NaN or infinite values; check the decoder output.")
    low, high = float(frames.min()), float(frames.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float frames must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "clamp them (e.g. frames.clamp(0, 1)) or convert to uint8 first."
        )
    return np.ascontiguousarray(np.rint(frames * 255.0).astype(np.uint8))


def _audio_to_planar(audio: ArrayLike, sample_rate: int | None) -> np.ndarray:
    """Check a waveform and return it as float32 [C, T], C in {1, 2}, clipped to [-1, 1]."""
    if sample_rate is None or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"audio needs a positive integer sample_rate in Hz, got {sample_rate!r}.")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2 or wave.shape[0] not in (1, 2) or wave.shape[1] == 0:
        raise ValueError(
            f"audio must be a waveform [T] or [C, T] with C = 1 or 2 channels and T > 0, "
            f"got shape {tuple(np.shape(audio))}."
        )
    if not np.isfinite(wave).all():
        raise ValueError("audio contains NaN or infinite samples.")
    return np.ascontiguousarray(np.clip(wave, -1.0, 1.0))


def _pad_to_even(video: np.ndarray) -> np.ndarray:
    """Repeat the last row/column where height/width is odd (yuv420p halves both)."""
    pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2
    if pad_h or pad_w:
        video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return video


def _encode(
    path: Path,
    video: np.ndarray,
    fps: float,
    wave: np.ndarray | None,
    sample_rate: int | None,
    crf: int,
) -> None:
    """Encode checked uint8 frames and an optional planar waveform into an MP4 at `path`."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(10_000))
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        audio_stream = None
        if wave is not None:
            audio_stream = container.add_stream("aac", rate=int(sample_rate))
            audio_stream.layout = "mono" if wave.shape[0] == 1 else "stereo"

        for image in video:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

        if audio_stream is not None:
            # PyAV re-chunks one long frame into the encoder's frame size.
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout=audio_stream.layout.name)
            frame.sample_rate = int(sample_rate)
            frame.pts = 0
            container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))
