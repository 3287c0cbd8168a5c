"""Write generated frames (and the music) to a video file, and read back what a file holds.

PyAV encodes (no ffmpeg binary, no torchvision): H.264 + AAC in MP4, or VP9 + Opus in WebM.
Files are written atomically: a failed write never leaves a partial video behind. `VideoWriter` writes a
video as its frames come, with the music of exactly those frames, so its memory does not grow with length.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
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
    video = _frames_to_uint8(frames)
    wave = None if audio is None else _audio_to_planar(audio, sample_rate)
    channels = 0 if wave is None else wave.shape[0]
    with VideoWriter(path, fps, crf=crf, format=format, metadata=metadata, sample_rate=sample_rate,
                     audio_channels=channels) as writer:
        writer.write(video, wave)
    return writer.path


class VideoWriter:
    """A video written as its frames come: each `write` encodes frames and the music of exactly those frames.

    Nothing is kept in memory but the encoder's own buffers, so a song of any length takes the memory
    of one chunk. The file is encoded under a temporary name beside `path` (`.<name>.<hex>.part`,
    which `remove_partial_files` finds) and appears under its own name only on `close`; used as a
    context manager, an exception removes the temporary file instead, unless `keep_on` names that
    exception's type and frames were written: then the video so far is closed properly (its music
    cut to its frames) and kept, and the exception goes on.
    audio_channels: 0 for no audio, else 1 or 2; each `write` then gives the waveform [C, T] of its frames.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int = 18, format: str = "h264-mp4",
                 metadata: dict[str, str] | None = None, sample_rate: int | None = None, audio_channels: int = 0,
                 keep_on: tuple[type[BaseException], ...] = ()) -> None:
        self.path = Path(path)
        self.kind = video_format(format)
        if not fps > 0 or not np.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps!r}.")
        if not (isinstance(crf, int) and not isinstance(crf, bool) and 0 <= crf <= self.kind.max_crf):
            raise ValueError(f"crf must be an integer in 0..{self.kind.max_crf} for {self.kind.name} (lower is "
                             f"better quality), got {crf!r}.")
        if audio_channels not in (0, 1, 2):
            raise ValueError(f"audio_channels must be 0 (no audio), 1 or 2, got {audio_channels!r}.")
        if audio_channels and (sample_rate is None or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0):
            raise ValueError(f"audio needs a positive integer sample_rate in Hz, got {sample_rate!r}.")
        self.fps, self.crf, self.metadata = float(fps), crf, dict(metadata or {})
        self.sample_rate, self.audio_channels, self.keep_on = sample_rate, audio_channels, keep_on
        self.frames_written = 0
        self.samples_written = 0
        self.temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}{PART_SUFFIX}")
        self._container = None
        self._video = self._audio = self._resampler = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()
        elif self.keep_on and isinstance(error, self.keep_on) and self.frames_written:
            self.close()
        else:
            self.abort()

    def write(self, frames: ArrayLike, audio: ArrayLike | None = None) -> None:
        """Encode frames [F, H, W, 3] (float in [0, 1] or uint8) and, with audio, their waveform [C, T]."""
        video = _pad_to_even(_frames_to_uint8(frames))
        if self._size is None:
            self._open(video.shape[2], video.shape[1])
        elif (video.shape[2], video.shape[1]) != self._size:
            raise ValueError(f"frames of {video.shape[2]}x{video.shape[1]} after frames of "
                             f"{self._size[0]}x{self._size[1]}; a video has one size.")
        for image in video:
            self._container.mux(self._video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        self.frames_written += video.shape[0]
        if self.audio_channels:
            if audio is None:
                raise ValueError("this video has audio: give the waveform of the frames with them.")
            wave = _audio_to_planar(audio, self.sample_rate)
            if wave.shape[0] != self.audio_channels:
                raise ValueError(f"audio has {wave.shape[0]} channels; this video's audio has {self.audio_channels}.")
            # Never more music than the frames so far play for.
            room = int(round(self.frames_written / self.fps * self.sample_rate)) - self.samples_written
            self._encode_audio(wave[:, : max(room, 0)])

    def close(self) -> Path:
        """Finish the file and give it its name; the path. A writer that received no frames raises."""
        if self._container is None:
            self.abort()
            raise ValueError("no frames were written; a video needs at least one frame.")
        try:
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                if self._resampler is not None:
                    for chunk in self._resampler.resample(None):
                        self._container.mux(self._audio.encode(chunk))
                self._container.mux(self._audio.encode(None))
            self._container.close()
            self._container = None
            os.replace(self.temporary, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop and remove the temporary file; nothing of this video is left."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is removed anyway
                pass
            self._container = None
        self.temporary.unlink(missing_ok=True)

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # MP4 keeps free-form tags only with use_metadata_tags (what ComfyUI's own video saving uses).
        options = {"movflags": "use_metadata_tags"} if self.kind.extension == ".mp4" else {}
        self._container = av.open(str(self.temporary), mode="w", format=self.kind.extension[1:], options=options)
        for key, value in self.metadata.items():
            self._container.metadata[key] = value
        stream = self._container.add_stream(self.kind.video_codec, rate=Fraction(self.fps).limit_denominator(10_000))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf)}
        if self.kind.video_codec == "libvpx-vp9":
            stream.bit_rate = 0  # constant quality: VP9 honours crf only without a target bit rate
        self._video, self._size = stream, (width, height)
        if self.audio_channels:
            rate = int(self.sample_rate)
            if self.kind.audio_rates and rate not in self.kind.audio_rates:
                rate = self.kind.audio_rates[0]
            self._audio = self._container.add_stream(self.kind.audio_codec, rate=rate)
            self._audio.layout = "mono" if self.audio_channels == 1 else "stereo"
            if rate != int(self.sample_rate):  # e.g. Opus takes 48 kHz, not 44.1 kHz
                self._resampler = av.AudioResampler(format="fltp", layout=self._audio.layout.name, rate=rate)

    def _encode_audio(self, wave: np.ndarray) -> None:
        if wave.shape[1] == 0:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="fltp", layout=self._audio.layout.name)
        frame.sample_rate = int(self.sample_rate)
        frame.pts = self.samples_written
        self.samples_written += wave.shape[1]
        chunks = self._resampler.resample(frame) if self._resampler is not None else [frame]
        for chunk in chunks:  # PyAV re-chunks long frames into the encoder's frame size
            self._container.mux(self._audio.encode(chunk))


PART_SUFFIX = ".part"
_PART_NAME = re.compile(r"^\..+\.[0-9a-f]{8}" + re.escape(PART_SUFFIX) + "$")


def remove_partial_files(folder: str | os.PathLike, older_than: float = 0.0) -> list[Path]:
    """Remove the temporary files of videos whose writing never ended (a killed process) under `folder`,
    those untouched for `older_than` seconds or more; the paths removed."""
    import time

    removed = []
    now = time.time()
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if _PART_NAME.match(name):
                path = Path(root) / name
                try:
                    if now - path.stat().st_mtime >= older_than:
                        path.unlink()
                        removed.append(path)
                except OSError:  # gone already, or not ours to remove
                    pass
    return removed


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


def iter_video_frames(path: str | os.PathLike, chunk: int = 16) -> Iterator[np.ndarray]:
    """The frames of a video file, decoded `chunk` at a time: uint8 [n, H, W, 3] each (the last may be shorter)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream.")
        batch = []
        for frame in container.decode(video=0):
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == chunk:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)


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
