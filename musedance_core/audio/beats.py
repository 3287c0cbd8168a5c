"""Music beats: where they are in time, how strong they are, where the bars begin, and which video frames they fall on.

The paper's beat module (Sec. 3.2) takes a binary vector b in {0, 1}^K, one entry per generated
frame, with 1 where a beat falls. Sampler and trainer both build it here, from `analyze_beats`:

1. Beat times from one of three methods: "musedance", this package's own tracker (`beat_tracker`,
   the default, measured on real recordings in BENCHMARKS.md); "librosa", `librosa.beat.beat_track`
   at librosa's tempo estimate; "madmom", madmom's RNN + DBN trackers (`madmom_beats`, optional, its
   models non-commercial). Or from a user's beat list (`beats_from_list`, `beat_files`).
2. Bars: each beat's place in its bar and the meter, from madmom's downbeat tracker or, for the
   other methods, from the audio (`downbeats`).
3. The user's corrections, in this order: half or double tempo (bar lines stay where they are: half
   keeps the beats of the downbeats' parity, double adds the midpoints), then an offset that moves
   every beat; beats moved outside the music are dropped.
4. Strengths: how loud each beat's onset is, for the plot and the strength vector.
5. Frames: each beat goes to the nearest video frame (`BeatAnalysis.vector`).

All analysis runs on 16 kHz mono (AST's rate, what `audio.load_music` gives); madmom gets the music
at its own 44.1 kHz when the caller has it (`sample_rate_for`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import librosa
import numpy as np

from . import beat_tracker, downbeats, madmom_beats
from .beat_files import BeatList
from .music import as_mono

METHODS = ("musedance", "librosa", "madmom")
TEMPO_CHANGES = ("as found", "half", "double")
ANALYSIS_RATE = 16_000
HOP_LENGTH = 512  # 32 ms at 16 kHz: the onset curves' hop (beat_tracker's measurements assume it)
DEFAULT_MIN_BPM = 50.0  # the "musedance" tracker's range when none is given; librosa and madmom keep their own
DEFAULT_MAX_BPM = 240.0
BPM_LIMITS = (30.0, 300.0)  # tempos a range may ask for: beyond these, no music has a danceable beat
MAX_OFFSET_SECONDS = 5.0
# Each method's own tempo range: ours, librosa's tempo estimator (no floor, max_tempo 320, within
# BPM_LIMITS here) and madmom's DBN beat tracker (its MIN_BPM and MAX_BPM).
METHOD_RANGES = {"musedance": (DEFAULT_MIN_BPM, DEFAULT_MAX_BPM), "librosa": BPM_LIMITS, "madmom": (55.0, 215.0)}
# A waveform whose peak is below this (-80 dBFS) is treated as silence: it is below 16-bit dither,
# and tracking it would put beats on noise.
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class BeatOptions:
    """How to find the beats: method, tempo range and preference, tempo change, offset (seconds).

    min_bpm, max_bpm: None keeps the method's own bound (musedance 50-240 BPM, librosa none below
    and 320 above, madmom 55-215). Constructing one validates it (ValueError naming the setting and
    the fix), so the node can check a user's settings before any music is read.
    """

    method: str = "musedance"
    min_bpm: float | None = None
    max_bpm: float | None = None
    preferred_bpm: float | None = None
    tempo_change: str = "as found"
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"beat method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        low, high = BPM_LIMITS
        for name in ("min_bpm", "max_bpm", "preferred_bpm"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                          and low <= value <= high):
                raise ValueError(f"{name} must be a tempo from {low:g} to {high:g} BPM, got {value!r}.")
        floor, ceiling = self.tempo_range
        if not floor < ceiling:
            raise ValueError(f"the tempo range {floor:g}-{ceiling:g} BPM is empty: min_bpm must be below "
                             "max_bpm. Widen the range, or leave it to the method.")
        if self.preferred_bpm is not None and not floor <= self.preferred_bpm <= ceiling:
            raise ValueError(f"preferred tempo {self.preferred_bpm:g} BPM lies outside the tempo range "
                             f"{floor:g}-{ceiling:g} BPM; move it inside, or widen the range.")
        if self.tempo_change not in TEMPO_CHANGES:
            raise ValueError(f"tempo_change must be one of {', '.join(TEMPO_CHANGES)}, got {self.tempo_change!r}.")
        if not (isinstance(self.offset, (int, float)) and abs(self.offset) <= MAX_OFFSET_SECONDS):
            raise ValueError(f"beat offset must be within +-{MAX_OFFSET_SECONDS:g} s, got {self.offset!r}.")

    @property
    def tempo_range(self) -> tuple[float, float]:
        """(min, max) BPM the method searches: the user's bounds, the method's own where none is given."""
        floor, ceiling = METHOD_RANGES[self.method]
        return (floor if self.min_bpm is None else self.min_bpm, ceiling if self.max_bpm is None else self.max_bpm)


@dataclass(frozen=True, eq=False)
class BeatAnalysis:
    """Beats of one piece of music, their bars, and the onset envelope they were found in.

    times: float64 [B] beat times in seconds, ascending. tempo: average BPM, from a straight-line fit
    of the beat times (0.0 with fewer than two beats). onset_envelope: float32 [N] onset strength
    (median log-mel flux), one value per hop, frame j at j * hop_length / sample_rate (for plots).
    strengths: float32 [B], how loud each beat's onset is (spectral flux on a loudness scale within
    one hop of the beat), divided by the largest, in [0, 1]. beat_numbers: int64 [B], each beat's
    place in its bar (1 = downbeat), or None where no bars could be told (fewer than a few bars of
    beats); meter: beats per bar (0 when unknown). method: what found the beats ("file" for a list).
    Arrays are read-only.
    """

    times: np.ndarray
    tempo: float
    onset_envelope: np.ndarray
    hop_length: int
    sample_rate: int
    strengths: np.ndarray
    beat_numbers: np.ndarray | None = None
    meter: int = 0
    method: str = "musedance"

    def __post_init__(self) -> None:
        for name in ("times", "onset_envelope", "strengths", "beat_numbers"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.array(value)  # a copy, so the caller's array stays writable
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def frame_rate(self) -> float:
        """Onset-envelope frames per second (sample_rate / hop_length)."""
        return self.sample_rate / self.hop_length

    @property
    def downbeats(self) -> np.ndarray:
        """float64 [D]: the times of the first beats of the bars (empty when bars are unknown)."""
        if self.beat_numbers is None:
            return self.times[:0]
        return self.times[self.beat_numbers == 1]

    def vector(self, fps: float, num_frames: int) -> np.ndarray:
        """The model's beat input: float32 [num_frames], 1.0 on each video frame with a beat (see `beat_vector`)."""
        return beat_vector(self.times, fps, num_frames)

    def strength_vector(self, fps: float, num_frames: int) -> np.ndarray:
        """float32 [num_frames]: each beat's strength on its nearest frame, 0 elsewhere (max where two meet)."""
        return _place_on_frames(self.times, self.strengths, fps, num_frames)

    def downbeat_vector(self, fps: float, num_frames: int) -> np.ndarray:
        """float32 [num_frames]: 1.0 on each frame with a downbeat (bar line), else 0.0."""
        return beat_vector(self.downbeats, fps, num_frames)


def method_available(method: str) -> bool:
    """Whether `method` can run here (madmom is optional)."""
    return method != "madmom" or madmom_beats.available()


def sample_rate_for(method: str) -> int:
    """The rate to load music at for `method`: madmom's models want 44.1 kHz, the rest 16 kHz."""
    return madmom_beats.SAMPLE_RATE if method == "madmom" else ANALYSIS_RATE


def analyze_beats(
    waveform: np.ndarray,
    sample_rate: int,
    *,
    method: str = "musedance",
    min_bpm: float | None = None,
    max_bpm: float | None = None,
    preferred_bpm: float | None = None,
    tempo_change: str = "as found",
    offset: float = 0.0,
) -> BeatAnalysis:
    """Find the beats, bars, tempo and per-beat strengths of a piece of music.

    waveform: mono [T] or multi-channel [C, T] float audio (channels are averaged), any sample rate.
    method: "musedance" (default), "librosa" or "madmom" (module docstring). min_bpm, max_bpm: the
    tempo range searched (None: the method's own, `BeatOptions`); preferred_bpm: the tempo to prefer
    when the music allows several (it also fixes the metrical level). tempo_change: "as found", "half" or "double". offset: seconds added
    to every beat (negative: earlier); beats moved outside the music are dropped.
    Silence (peak below -80 dBFS, or no onsets) and audio shorter than one analysis window give an
    analysis with no beats and tempo 0, and a warning. Raises ValueError for an empty waveform, NaN
    or infinite samples or bad options, and RuntimeError when the method is not installed.
    """
    number = lambda value: None if value is None else float(value)  # noqa: E731
    options = BeatOptions(method, number(min_bpm), number(max_bpm), number(preferred_bpm), tempo_change, float(offset))
    wave, original = _analysis_audio(waveform, sample_rate)
    curves = _curves_or_none(wave)
    if isinstance(curves, str):
        return _no_beats(curves, wave, options.method)

    if options.method == "musedance":
        floor, ceiling = options.tempo_range
        frames = beat_tracker.track_beats(curves, min_bpm=floor, max_bpm=ceiling, preferred_bpm=options.preferred_bpm)
        times, numbers = beat_tracker.attack_times(wave, frames, HOP_LENGTH, ANALYSIS_RATE), None
    elif options.method == "librosa":
        times, numbers = _librosa_beats(wave, options), None
    else:  # madmom's DBNs know no preferred tempo: it narrows their range to half an octave around it
        floor, ceiling = options.min_bpm, options.max_bpm
        if options.preferred_bpm is not None:
            floor = floor or max(options.preferred_bpm / 2 ** 0.5, BPM_LIMITS[0])
            ceiling = ceiling or min(options.preferred_bpm * 2 ** 0.5, BPM_LIMITS[1])
        times, numbers = madmom_beats.track(original, int(sample_rate), min_bpm=floor, max_bpm=ceiling)
        numbers = numbers if numbers.size and numbers.min() >= 1 else None
    return _finish(wave, curves, np.asarray(times, np.float64), numbers, options, options.method)


def beats_from_list(beat_list: BeatList, waveform: np.ndarray, sample_rate: int, *,
                    tempo_change: str = "as found", offset: float = 0.0, name: str = "the beat file") -> BeatAnalysis:
    """A BeatAnalysis of the user's beats (`beat_files.read_beat_file`) for this music.

    The music gives the onset envelope, the strengths and, where the list has no beat numbers, the
    bars. Beats after the end of the music are an error: the list belongs to other music, or to a
    longer version of it. tempo_change and offset act as in `analyze_beats`.
    """
    options = BeatOptions(tempo_change=tempo_change, offset=float(offset))
    wave, _ = _analysis_audio(waveform, sample_rate)
    duration = wave.size / ANALYSIS_RATE
    late = np.flatnonzero(beat_list.times > duration)
    if late.size:
        raise ValueError(f"{name} has {late.size} beat(s) after the end of the music ({duration:.2f} s), the first "
                         f"at {beat_list.times[late[0]]:.2f} s; it belongs to other music, or to a longer version "
                         "of this one. Give the beats of this music, or trim the list.")
    curves = _curves_or_none(wave)
    if isinstance(curves, str):
        curves = None
    return _finish(wave, curves, beat_list.times, beat_list.numbers, options, "file")


def beat_times(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times in seconds (float64, ascending): `analyze_beats(waveform, sample_rate).times`."""
    return analyze_beats(waveform, sample_rate).times


def beat_vector(times: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """A float32 vector [num_frames] with 1.0 on every frame that has a beat, else 0.0.

    Frame k shows time k / fps, so a beat at t goes to the nearest frame, floor(t * fps + 0.5)
    (rounding, not truncation: truncation would move beats up to a whole frame early).
    Beats that land outside [0, num_frames) are dropped; two beats on one frame give one 1.0.
    """
    times = np.asarray(times, dtype=np.float64)
    return _place_on_frames(times, np.ones(times.shape, np.float32), fps, num_frames)


def _place_on_frames(times: np.ndarray, values: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """float32 [num_frames] with each value on the frame nearest its time (max where several meet)."""
    if not (isinstance(fps, (int, float, np.integer, np.floating)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 0:
        raise ValueError(f"num_frames must be a non-negative integer, got {num_frames!r}.")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"times must be a 1-D array of seconds, got shape {times.shape}.")
    if not np.isfinite(times).all():
        raise ValueError("times contain NaN or infinite values; pass beat times in seconds.")
    frames = np.floor(times * fps + 0.5).astype(np.int64)
    keep = (frames >= 0) & (frames < num_frames)
    out = np.zeros(num_frames, dtype=np.float32)
    np.maximum.at(out, frames[keep], np.asarray(values, dtype=np.float32)[keep])
    return out


def _analysis_audio(waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(16 kHz mono without its constant offset, the validated mono waveform at its own rate)."""
    original = as_mono(waveform, sample_rate)
    wave = original - original.mean()  # a constant offset is not sound
    if int(sample_rate) != ANALYSIS_RATE:
        wave = librosa.resample(wave, orig_sr=int(sample_rate), target_sr=ANALYSIS_RATE, res_type="soxr_hq")
    return np.ascontiguousarray(wave, dtype=np.float32), original


def _curves_or_none(wave: np.ndarray) -> beat_tracker.OnsetCurves | str:
    """The onset curves, or why there are no beats to find (too short, silent, no onsets)."""
    if wave.size < 2 * HOP_LENGTH:
        return (f"the audio is {wave.size / ANALYSIS_RATE:.3f} s long, shorter than one analysis window "
                f"of {2 * HOP_LENGTH / ANALYSIS_RATE:.3f} s")
    if np.abs(wave).max() < SILENCE_PEAK:
        return f"the audio is silent (peak below {SILENCE_PEAK:g})"
    curves = beat_tracker.onset_curves(wave, ANALYSIS_RATE, HOP_LENGTH)
    if not curves.tempo_envelope.any():
        return "the audio has no onsets"
    return curves


def _no_beats(reason: str, wave: np.ndarray, method: str) -> BeatAnalysis:
    warnings.warn(f"analyze_beats: {reason}; returning no beats (tempo 0, all-zero beat vectors).", stacklevel=3)
    envelope = np.zeros(1 + wave.size // HOP_LENGTH, np.float32)
    return BeatAnalysis(np.zeros(0), 0.0, envelope, HOP_LENGTH, ANALYSIS_RATE, np.zeros(0, np.float32), method=method)


def _librosa_beats(wave: np.ndarray, options: BeatOptions) -> np.ndarray:
    """librosa's beat tracker as librosa runs it by default (22.05 kHz, its onset envelope and tempo
    estimate), with the tempo range and preferred tempo; an estimate below the range is doubled into it."""
    import librosa.beat  # compiles a numba function on import (about 2 s): only when asked for

    rate = 22_050
    audio = librosa.resample(wave, orig_sr=ANALYSIS_RATE, target_sr=rate, res_type="soxr_hq")
    envelope = librosa.onset.onset_strength(y=audio, sr=rate)
    floor, ceiling = options.tempo_range
    tempo = float(librosa.feature.tempo(onset_envelope=envelope, sr=rate, start_bpm=options.preferred_bpm or 120.0,
                                        max_tempo=320.0 if options.max_bpm is None else ceiling)[0])
    while tempo < floor and 2 * tempo <= ceiling:
        tempo *= 2
    _, frames = librosa.beat.beat_track(onset_envelope=envelope, sr=rate, bpm=tempo)
    return librosa.frames_to_time(frames, sr=rate)


def _finish(wave: np.ndarray, curves: beat_tracker.OnsetCurves | None, times: np.ndarray,
            numbers: np.ndarray | None, options: BeatOptions, method: str) -> BeatAnalysis:
    """Bars, the user's tempo change and offset, strengths and tempo (module docstring, steps 2 to 4)."""
    if numbers is None and curves is not None:
        numbers, _ = downbeats.number_beats(wave, ANALYSIS_RATE, times, curves.accents, curves.frame_rate)
    if options.tempo_change != "as found" and times.size >= 2:
        times, numbers = _change_tempo(times, numbers, options.tempo_change, curves)
    if options.offset:
        times, numbers = _shift(times, numbers, options.offset, wave.size / ANALYSIS_RATE)
    meter = int(numbers.max()) if numbers is not None and numbers.size else 0
    if curves is None:
        envelope = np.zeros(1 + wave.size // HOP_LENGTH, np.float32)
        strengths = np.ones(times.size, np.float32)
    else:
        envelope = curves.tempo_envelope
        strengths = _loudness_at(times, curves)
        if strengths.size and strengths.max() > 0:
            strengths = strengths / strengths.max()
    tempo = 60.0 / np.polyfit(np.arange(times.size), times, 1)[0] if times.size >= 2 else 0.0
    return BeatAnalysis(times.astype(np.float64), float(tempo), envelope, HOP_LENGTH, ANALYSIS_RATE,
                        np.asarray(strengths, np.float32), numbers, meter, method)


def _loudness_at(times: np.ndarray, curves: beat_tracker.OnsetCurves) -> np.ndarray:
    """float64 [B]: the loudness flux around each beat (its onset's strength)."""
    frames = np.clip(np.round(times * curves.frame_rate).astype(np.int64), 0, curves.loudness.size - 1)
    return beat_tracker.onset_near(curves.loudness[None], frames)[0]


def _change_tempo(times: np.ndarray, numbers: np.ndarray | None, change: str,
                  curves: beat_tracker.OnsetCurves | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Half (every other beat) or double (beats plus midpoints) tempo; the downbeats stay bar lines."""
    downbeat_times = times[numbers == 1] if numbers is not None else times[:0]
    if change == "double":
        new = np.empty(2 * times.size - 1)
        new[0::2], new[1::2] = times, (times[:-1] + times[1:]) / 2
    else:
        if downbeat_times.size:
            parity = int(np.flatnonzero(numbers == 1)[0] % 2)
        elif curves is not None:  # the louder half of the beats
            loud = _loudness_at(times, curves)
            parity = int(loud[1::2].sum() > loud[0::2].sum())
        else:
            parity = 0
        new = times[parity::2]
    return new, _renumber(new, downbeat_times)


def _renumber(times: np.ndarray, downbeat_times: np.ndarray) -> np.ndarray | None:
    """Beat numbers counted from the bar lines (`downbeat_times`) that are among `times`; None without any."""
    is_down = np.isin(times, downbeat_times)
    first = np.flatnonzero(is_down)
    if first.size == 0:
        return None
    index = np.arange(times.size)
    last = np.maximum.accumulate(np.where(is_down, index, -1))
    bar = int(round(np.median(np.diff(first)))) if first.size > 1 else int(index[-1] - first[0] + 1)
    numbers = index - last + 1
    before = index < first[0]
    numbers[before] = (index[before] - first[0]) % max(bar, 1) + 1
    return numbers.astype(np.int64)


def _shift(times: np.ndarray, numbers: np.ndarray | None, offset: float,
           duration: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Every beat moved by `offset` seconds; those that leave [0, duration) are dropped."""
    moved = times + offset
    keep = (moved >= 0.0) & (moved < duration)
    if times.size and not keep.any():
        raise ValueError(f"a beat offset of {offset * 1000:.0f} ms moves all {times.size} beats outside the music "
                         f"({duration:.2f} s long); use a smaller offset.")
    return moved[keep], None if numbers is None else numbers[keep]
