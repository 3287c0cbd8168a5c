"""Music in: a file, a ComfyUI AUDIO value or a raw waveform, cut and turned into 16 kHz mono.

The beat tracker and the AST encoder both read mono float32 audio at 16 kHz (AST's rate), so every
source goes through `load_music`: take one item of a batch, select [start, start + duration)
seconds, average the channels, resample with soxr (linear phase, so beats keep their times).

Sources and their shapes:
- a path: decoded with PyAV (wav, mp3, flac, ogg, m4a and whatever else its FFmpeg reads);
- a ComfyUI AUDIO dict {"waveform": tensor [B, C, T], "sample_rate": int}; B is a batch, and
  `batch_index` picks one item. A waveform without a batch axis, [C, T] or [T], is read as one item
  (some custom nodes emit that), and then `batch_index` must be 0;
- a numpy array or torch tensor [T], [C, T] or [B, C, T] with its rate given as `source_rate`.
C must be 1 or 2: surround audio must be downmixed first, and channels-last [T, C] arrays must be
transposed. Float samples are taken as they are (nothing is clipped); integer PCM is scaled to
[-1, 1]. Silence is valid music here: the beat tracker decides what to do with it.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import librosa
import numpy as np
import torch

TARGET_SAMPLE_RATE = 16_000  # AST's feature extractor expects 16 kHz
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 96_000

Waveform = np.ndarray | torch.Tensor


@dataclass(frozen=True, eq=False)
class Music:
    """Mono float32 music [T] at `sample_rate` Hz, cut from a source starting `start` seconds in.

    `start` is where the first sample sat in the source (rounded to the source's sample grid), so
    times found in this waveform map back to the song by adding it.
    """

    waveform: np.ndarray
    sample_rate: int
    start: float = 0.0

    def __post_init__(self) -> None:
        wave = self.waveform
        if not isinstance(wave, np.ndarray) or wave.ndim != 1 or wave.dtype != np.float32 or wave.size == 0:
            raise ValueError(
                f"Music.waveform must be a non-empty float32 numpy array [T], got "
                f"{type(wave).__name__} {getattr(wave, 'dtype', '')} of shape {np.shape(wave)}; "
                "build Music with load_music."
            )
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"Music.sample_rate must be a positive integer in Hz, got {self.sample_rate!r}.")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.waveform.shape[0] / self.sample_rate


def load_music(
    source: str | os.PathLike | Mapping[str, Any] | Waveform,
    *,
    start: float = 0.0,
    duration: float | None = None,
    sample_rate: int = TARGET_SAMPLE_RATE,
    batch_index: int = 0,
    source_rate: int | None = None,
) -> Music:
    """Read music from a file path, a ComfyUI AUDIO dict or a raw waveform (with `source_rate`).

    Selects `duration` seconds from `start` (None: to the end; a duration reaching past the end
    stops at the end, and `Music.duration` says what was taken), averages the channels and
    resamples to `sample_rate`. Source and target rates must lie in 8-96 kHz.
    Raises ValueError for bad shapes, rates, non-finite samples or an empty selection.
    """
    target_rate = _check_rate(sample_rate, "sample_rate")
    start, duration = _check_segment(start, duration)
    if isinstance(batch_index, bool) or not isinstance(batch_index, (int, np.integer)) or batch_index < 0:
        raise ValueError(f"batch_index must be a non-negative integer, got {batch_index!r}.")

    if isinstance(source, (str, os.PathLike)):
        _no_source_rate(source_rate, "a file carries its own sample rate")
        wave, rate = decode_audio_file(source, max_duration=None if duration is None else start + duration)
        name = f"the audio of {os.fspath(source)}"
    elif isinstance(source, Mapping):
        _no_source_rate(source_rate, "an AUDIO dict carries its own sample_rate")
        missing = {"waveform", "sample_rate"} - set(source)
        if missing:
            raise ValueError(
                f"an AUDIO dict needs the keys 'waveform' and 'sample_rate', but {sorted(missing)} "
                f"is missing (keys given: {sorted(map(str, source))}); pass ComfyUI's AUDIO value."
            )
        wave, rate, name = source["waveform"], source["sample_rate"], "the AUDIO waveform"
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        if source_rate is None:
            raise ValueError("a raw waveform needs its sample rate: pass source_rate=<Hz>.")
        wave, rate, name = source, source_rate, "the waveform"
    else:
        raise TypeError(
            f"source must be a file path, a ComfyUI AUDIO dict or a numpy array / torch tensor, "
            f"got {type(source).__name__}."
        )
    if not isinstance(wave, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(wave).__name__}.")
    rate = _check_rate(rate, f"the sample rate of {name}")

    channels = _pick_item(wave, batch_index, name)  # [C, T], still the caller's type and dtype
    total = channels.shape[1]
    first = round(start * rate)
    last = None if duration is None else round((start + duration) * rate)
    if last is not None and last <= first:
        raise ValueError(f"duration {duration} s is shorter than one sample at {rate} Hz; ask for more.")
    if first >= total:
        raise ValueError(
            f"start {start} s is at or past the end of {name}, which is {total / rate:.2f} s long; "
            f"choose a start below {total / rate:.2f} s."
        )
    last = total if last is None else min(last, total)
    segment = _to_float32(channels[:, first:last], name)  # [C, n]
    bad = ~np.isfinite(segment).all(axis=0)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} NaN or infinite samples in the selected part, the first at "
            f"{(first + int(bad.argmax())) / rate:.3f} s; fix the node or file that produced it."
        )
    mono = segment.mean(axis=0)
    if rate != target_rate:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=target_rate, res_type="soxr_hq")
    return Music(np.ascontiguousarray(mono, dtype=np.float32), target_rate, start=first / rate)


def as_mono(waveform: Waveform, sample_rate: int, *, downmix: bool = True) -> np.ndarray:
    """Finite float32 mono audio [T] from numpy or torch audio [T], or with `downmix` [C, T] and ComfyUI's
    [1, C, T] with their channels averaged; a ValueError says what is wrong and how to mend it."""
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}.")
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().to("cpu", torch.float32).numpy()
    wave = np.asarray(waveform, dtype=np.float32)
    if downmix and wave.ndim == 3 and wave.shape[0] == 1:
        wave = wave[0]
    if downmix and wave.ndim == 2:
        if wave.shape[0] > wave.shape[1]:
            raise ValueError(
                f"waveform of shape {wave.shape} looks like [T, C] (more channels than samples); "
                "expected [C, T] or mono [T]: transpose it."
            )
        wave = wave.mean(axis=0)
    if wave.ndim != 1 or wave.size == 0:
        expected = "[T], [C, T] or [1, C, T]" if downmix else "mono audio [T]"
        raise ValueError(f"waveform must be a non-empty {expected} of samples at {sample_rate} Hz, got shape "
                         f"{np.shape(waveform)}" + ("." if downmix else "; downmix with waveform.mean(axis=0)."))
    bad = ~np.isfinite(wave)
    if bad.any():
        raise ValueError(
            f"waveform has {int(bad.sum())} NaN or infinite samples (first at index {int(np.argmax(bad))}); "
            "expected finite audio. Check the decoder or the effect that produced it."
        )
    return wave


def decode_audio_file(path: str | os.PathLike, *, max_duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file with PyAV: (float32 samples [C, T], sample rate).

    Integer PCM (s16, s32, u8, ...) is scaled to [-1, 1]; float formats are kept as stored.

    max_duration: decode only the first ceil(max_duration * rate) samples (a long song need not be
    decoded whole for a short clip). Samples are concatenated as decoded; the decoder already drops
    encoder priming (mp3 delay, AAC edit lists), and timestamp gaps are not filled.
    Raises FileNotFoundError for a missing file and ValueError for anything that is not audio.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}; check the path.")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; expected an audio file (wav, mp3, flac, ogg, m4a).")
    if max_duration is not None and not (max_duration > 0 and math.isfinite(max_duration)):
        raise ValueError(f"max_duration must be a positive number of seconds or None, got {max_duration!r}.")
    chunks: list[np.ndarray] = []
    rate = channels = limit = None
    decoded = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                kinds = sorted({stream.type for stream in container.streams}) or ["none"]
                raise ValueError(
                    f"{path} has no audio stream (streams: {', '.join(kinds)}); expected a file with music."
                )
            for frame in container.decode(container.streams.audio[0]):
                samples = _frame_samples(frame)
                if rate is None:
                    rate, channels = frame.sample_rate, samples.shape[0]
                    limit = None if max_duration is None else math.ceil(max_duration * rate)
                elif (frame.sample_rate, samples.shape[0]) != (rate, channels):
                    raise ValueError(
                        f"{path} changes from {channels} channels at {rate} Hz to {samples.shape[0]} "
                        f"at {frame.sample_rate} Hz mid-stream; convert it to one format first."
                    )
                chunks.append(samples)
                decoded += samples.shape[1]
                if limit is not None and decoded >= limit:
                    break
    except OSError:
        raise  # PyAV's file errors (permissions, ...) already name the file
    except av.error.FFmpegError as error:
        raise ValueError(
            f"could not decode {path} as audio ({error}); expected an audio file such as wav, mp3, "
            "flac, ogg or m4a. Check that the file is complete and really holds audio."
        ) from error
    if decoded == 0:
        raise ValueError(f"{path} has an audio stream but no samples could be decoded; the file may be truncated.")
    return np.concatenate(chunks, axis=1)[:, :limit], int(rate)


def _frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as float32 [C, n]. Packed formats come as [1, n * C], interleaved."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:
        array = array.reshape(-1, len(frame.layout.channels)).T
    return _to_float32(array, "decoded audio")


def _to_float32(wave: Waveform, name: str) -> np.ndarray:
    """Samples as a float32 numpy array: floats as they are, integer PCM scaled to [-1, 1]."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu()
        wave = (wave.float() if wave.is_floating_point() else wave).numpy()
    if np.issubdtype(wave.dtype, np.floating):
        return wave.astype(np.float32, copy=False)
    if wave.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        return (wave.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(wave.dtype, np.signedinteger):
        return wave.astype(np.float32) / float(2 ** (8 * wave.dtype.itemsize - 1))
    raise ValueError(f"{name} has dtype {wave.dtype}; expected float samples or integer PCM.")


def _pick_item(wave: Waveform, batch_index: int, name: str) -> Waveform:
    """Batch item `batch_index` of [B, C, T] (or the whole of [C, T] / [T]) as [C, T], C in {1, 2}."""
    shape = tuple(wave.shape)
    if wave.ndim == 3:
        if not batch_index < shape[0]:
            raise ValueError(
                f"batch_index {batch_index} is out of range: {name} holds a batch of {shape[0]} "
                f"(shape {shape}, [B, C, T]); use 0..{shape[0] - 1}."
                if shape[0]
                else f"{name} is an empty batch (shape {shape}); it holds no music."
            )
        wave = wave[batch_index]
    elif wave.ndim in (1, 2):
        if batch_index != 0:
            raise ValueError(
                f"batch_index {batch_index} given, but {name} has shape {shape}, read as "
                f"{'[T]' if wave.ndim == 1 else '[C, T]'} with no batch axis; use batch_index 0."
            )
        wave = wave[None] if wave.ndim == 1 else wave
    else:
        raise ValueError(f"{name} must have shape [B, C, T], [C, T] or [T], got {shape}.")
    if wave.shape[0] not in (1, 2):
        raise ValueError(
            f"expected mono or stereo, but {name} has {wave.shape[0]} channels (shape {shape}); "
            "downmix surround audio to stereo first, and transpose a channels-last [T, C] array."
        )
    if wave.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {shape}); it holds no samples.")
    return wave


def _check_rate(value: Any, name: str) -> int:
    """`value` as an int in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE], or a ValueError naming `name`."""
    try:
        rate = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        rate = None
    if rate is None:
        raise ValueError(f"{name} must be a whole number of Hz, got {value!r}.")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"{name} is {rate} Hz, outside the supported {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; "
            "resample the audio into that range first."
        )
    return rate


def _check_segment(start: Any, duration: Any) -> tuple[float, float | None]:
    """start >= 0 and duration > 0 (or None), both finite seconds."""

    def seconds(value: Any) -> float | None:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else None

    start_s = seconds(start)
    if start_s is None or start_s < 0:
        raise ValueError(f"start must be a finite number of seconds >= 0, got {start!r}.")
    if duration is None:
        return start_s, None
    duration_s = seconds(duration)
    if duration_s is None or duration_s <= 0:
        raise ValueError(f"duration must be a finite number of seconds > 0, or None for the rest, got {duration!r}.")
    return start_s, duration_s


def _no_source_rate(source_rate: int | None, why: str) -> None:
    """Refuse a source_rate given for a source that carries its own rate, rather than ignore it."""
    if source_rate is not None:
        raise ValueError(f"source_rate is only for raw waveforms: {why}. Leave source_rate as None.")
