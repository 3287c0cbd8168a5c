"""Write generated frames (and the music) to a video file, and read back what a file holds.

PyAV encodes (no ffmpeg binary, no torchvision): H.264 + AAC in MP4, or VP9 + Opus in WebM.
Files are written atomically: a failed write never leaves a partial video behind.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class VideoFormat:
    """A container with its video and audio encoders (PyAV codec names) and the encoder's CRF range."""

    name: str
    extension: str
    video_codec: str
    audio_codec: str
    max_crf: int
    audio_rates: tuple[int, ...] = ()  # rates the audio encoder accepts; () = any. Others are resampled.


FORMATS = {
    "h264-mp4": VideoFormat("h264-mp4", ".mp4", "libx264", "aac", 51),
    "vp9-webm": VideoFormat("vp9-webm", ".webm", "libvpx-vp9", "libopus", 63, (48_000, 24_000, 16_000, 12_000, 8_000)),
}


def video_format(name: str) -> VideoFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown video format {name!r}; choose one of {', '.join(FORMATS)}.") from None


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as read from its container."""

    num_frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    audio_duration: float  # seconds; 0.0 when there is no audio stream
    metadata: dict[str, str] = field(default_factory=dict)  # the container's tags (e.g. "workflow", "prompt")


def write_video(
    path: str | os.PathLike,
    frames: ArrayLike,
    fps: float,
    audio: ArrayLike | None = None,
    sample_rate: int | None = None,
    crf: int = 18,
    format: str = "h264-mp4",
    metadata: dict[str, str] | None = None,
) -> Path:
    """Encode frames [F, H, W, 3] as a video (`format`, see FORMATS), with optional audio muxed in.

    frames: float in [0, 1] or uint8. H.264 with yuv420p needs even sizes, so an odd height
    or width is padded by repeating the last row or column (the output is then one pixel larger).
    audio: a waveform [T] (mono) or [C, T] with C in {1, 2}, float, at `sample_rate` Hz; samples
    are clipped to [-1, 1] and audio longer than the video (F / fps seconds) is trimmed.
    crf: constant quality, lower is better (H.264 0..51, VP9 0..63).
    metadata: text tags for the container (as ComfyUI stores "prompt" and "workflow" in its videos).
    The file is encoded next to `path` under a temporary name and moved into place at the end.
    Returns the path written.
    """
    path = Path(path)
    kind = video_format(format)
    video = _frames_to_uint8(frames)
    if not fps > 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    if not (isinstance(crf, int) and not isinstance(crf, bool) and 0 <= crf <= kind.max_crf):
        raise ValueError(f"crf must be an integer in 0..{kind.max_crf} for {kind.name} (lower is better quality), got {crf!r}.")
    wave = None
    if audio is not None:
        wave = _audio_to_planar(audio, sample_rate)
        wave = wave[:, : int(round(video.shape[0] / fps * sample_rate))]
    video = _pad_to_even(video)

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        _encode(temporary, kind, video, fps, wave, sample_rate, crf, metadata or {})
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
            else:  # WebM keeps no stream duration: the end of the last audio packet
                ends = [p.pts + (p.duration or 0) for p in container.demux(audio) if p.size and p.pts is not None]
                audio_duration = float(max(ends, default=0) * audio.time_base)
                container.seek(0)
        # Count packets rather than trusting the header's frame count, which some muxers leave at 0.
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        metadata = dict(container.metadata)
    return VideoInfo(num_frames, fps, width, height, has_audio, audio_duration, metadata)


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
    kind: VideoFormat,
    video: np.ndarray,
    fps: float,
    wave: np.ndarray | None,
    sample_rate: int | None,
    crf: int,
    metadata: dict[str, str],
) -> None:
    """Encode checked uint8 frames and an optional planar waveform into `kind`'s container at `path`."""
    # MP4 keeps free-form tags only with use_metadata_tags (what ComfyUI's own video saving uses).
    options = {"movflags": "use_metadata_tags"} if kind.extension == ".mp4" else {}
    with av.open(str(path), mode="w", format=kind.extension[1:], options=options) as container:
        for key, value in metadata.items():
            container.metadata[key] = value
        stream = container.add_stream(kind.video_codec, rate=Fraction(fps).limit_denominator(10_000))
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        if kind.video_codec == "libvpx-vp9":
            stream.bit_rate = 0  # constant quality: VP9 honours crf only without a target bit rate
        audio_stream = None
        if wave is not None:
            rate = int(sample_rate)
            if kind.audio_rates and rate not in kind.audio_rates:
                rate = kind.audio_rates[0]
            audio_stream = container.add_stream(kind.audio_codec, rate=rate)
            audio_stream.layout = "mono" if wave.shape[0] == 1 else "stereo"

        for image in video:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

        if audio_stream is not None:
            layout = audio_stream.layout.name
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout=layout)
            frame.sample_rate = int(sample_rate)
            frame.pts = 0
            frames = [frame]
            if audio_stream.rate != int(sample_rate):  # e.g. Opus takes 48 kHz, not 44.1 kHz
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=audio_stream.rate)
                frames = resampler.resample(frame) + resampler.resample(None)
            for chunk in frames:  # PyAV re-chunks long frames into the encoder's frame size
                container.mux(audio_stream.encode(chunk))
            container.mux(audio_stream.encode(None))
