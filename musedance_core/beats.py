"""Music beats: where they are in time, how strong they are, and which video frames they fall on.

The paper's beat module (Sec. 3.2) takes a binary vector b in {0, 1}^K, one entry per generated
frame, with 1 where a beat falls. Sampler and trainer both build it here, from `analyze_beats`:

1. Onset curves (`_onset_curves`) from a mel spectrogram at the analysis hop (512 samples, 32 ms at
   16 kHz), not at the video fps, so beats keep their timing precision.
2. Tempo: librosa's autocorrelation estimate (`librosa.feature.tempo`), then a metrical-level check
   that fixes the octave errors of its 120-BPM prior (`_choose_level`).
3. Beats: the dynamic programme of Ellis (2007), the algorithm of `librosa.beat.beat_track`, run at
   that tempo (`_track`); weak beats at the edges are dropped (`_trim_edges`).
4. Attack times (`_attack_times`): each beat moves from its analysis frame to the start of the attack
   near it, found in the waveform at one-sample resolution, where there is a clear one.
5. Frames: each beat goes to the nearest video frame (`BeatAnalysis.vector`).

Why step 4. Steps 1 to 3 place beats on the 32 ms hop grid, and the log-mel flux of a frame rises
as soon as an onset enters its 64 ms window, so a frame's beat is up to a hop from the attack (clicks
in silence: 0 to 27 ms early; drum loops: within 22 ms either way). At 30 fps a frame is 33 ms, so
such a beat often went to the previous video frame. Tempo and programme stay on the hop grid (they
need the wide window's smoothing); only the final times are refined, within SEARCH_HOPS (1.5) hops
of the frame: one hop for the envelope's offset, half a hop more for the programme's own slips (the
last beat of a 10 s loop at 143 BPM was 35 ms early).
- The attack starts where the power of the waveform rises most: at the split point that maximises
  the mean power in the ATTACK_SECONDS (20 ms) after it, weighted by a ramp falling from 1 at the
  split to 0, over the mean power in the BEFORE_SECONDS (50 ms) before it. For a sound starting on
  a steady background that ratio grows while the split point approaches the sound's first sample
  and falls once part of the sound is behind it, so its maximum is the first sample of the attack:
  where a listener, and beat annotations for mir_eval, put a percussive beat. Measured: clicks
  within 0.1 ms, in silence or noise; drum loops with bass, chords and noise within 1 ms, down to
  0 dB SNR. The 50 ms "before" window is a period of 20 Hz, so steady bass notes do not ripple
  the ratio. The values are not critical (10 to 30 ms after, 50 to 80 ms before: worst loop error
  1.4 ms; 30 ms before: 1.6 ms); what matters is the ramp (equal weights let the maximum of a
  short click in noise wander up to 6 ms early) and the power of the waveform itself (that of the
  analytic, Hilbert, signal is spread by the transform: up to 10 ms early).
- A beat moves only to a clear onset: a ratio of at least CLEAR_ONSET_DB (6 dB, four times the
  power) at a maximum inside the search range, not on its edge (there the rise goes on beyond it).
  Otherwise it keeps its frame time: soft music (a tremolo pad, slow swells) has no attack to move
  to, and noise must not pick the time. Measured: every beat of the drum loops moves at 10 dB SNR
  (they score 9 dB and more), 96 % of them at 0 dB and a third at -5 dB, all to within 1 ms. Of
  positions in white noise, a chord pad with 150 ms attacks, that pad with bass and noise, and a
  tremolo chord, none qualify; in low-pass noise (one pole at 0.95) 1 to 2 in 100. Known limit:
  rumble below about 25 Hz swells within tens of ms, and a third of its positions qualify (a
  40 Hz high-pass cut that to 7 %, but left a fifth of the 0 dB loop beats unrefined).
The windows are in seconds, the search radius in hops: the tracker's error is set by the hop.

Where this departs from librosa's defaults, each time for a reason measured on 16 kHz test music:
- The onset envelope uses a 2-hop window (1024 samples), reflect padding and no extra "centre"
  shift. librosa's defaults (2048-sample window, shifted by n_fft / (2 * hop) frames) put beats 32
  to 54 ms late on drum loops with noise, near the 70 ms tolerance of beat F-measure; this
  envelope peaks on the onset frame (0 ms on the same loops, -10 ms on clicks in silence).
- The beat programme is a numpy port, with two fixes at the ends of the music (see `_track`),
  rather than a call to `librosa.beat.beat_track`: importing `librosa.beat` compiles a numba gufunc
  declared `cache=False`, about 2 s at every process start. Elsewhere the port gives librosa's
  beats (tests/test_beats.py checks it).
- Beat strengths and the level check use spectral flux on a loudness scale, not in dB.

The librosa functions used here are numba-compiled with `cache=True`. numba writes that cache next
to librosa (its `__pycache__`) or, when site-packages is read-only, in the user cache
(`~/.cache/numba`); NUMBA_CACHE_DIR chooses another place. This module sets no environment
variable. benchmarks/bench_beats.py measures the first call with and without a cache.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.ndimage

# A waveform whose peak is below this (-80 dBFS) is treated as silence: it is below 16-bit dither,
# and tracking it would put beats on noise.
SILENCE_PEAK = 1e-4
N_MELS = 64
# Accent bands for the metrical-level check, in Hz: kick drum and bass below 200 Hz, snare body,
# chords and voice from 200 Hz to 2 kHz. Hi-hats and cymbals (above 2 kHz) are left out on purpose:
# they mark subdivisions of the beat, not the beat.
ACCENT_BANDS_HZ = ((0.0, 200.0), (200.0, 2000.0))
# Two interleaved halves of a beat grid are "balanced" when, in some accent band, the weaker half's
# median accent reaches this fraction of the stronger half's. See `_balance`.
BALANCE_THRESHOLD = 0.6
# Leading and trailing beats whose onset support is below this fraction of the median beat's are
# dropped: the programme extrapolates its grid into a silent or noisy lead-in and tail.
EDGE_SUPPORT = 0.25
BASELINE_SECONDS = 2.0  # moving-median window that removes the noise floor from onset curves
# Attack times (`_attack_times`; the module docstring gives the measurements behind each value).
ATTACK_SECONDS = 0.020  # power after a candidate onset (ramp-weighted) ...
BEFORE_SECONDS = 0.050  # ... over the power before it
CLEAR_ONSET_DB = 6.0  # the least rise (after / before) that moves a beat
SEARCH_HOPS = 1.5  # how far from its analysis frame a beat's attack is looked for, in hops


@dataclass(frozen=True, eq=False)
class BeatAnalysis:
    """Beats of one piece of music, and the onset envelope they were found in.

    times: float64 [B] beat times in seconds, ascending: the start of the attack where a beat has a
    clear onset, else its analysis frame's time (see the module docstring). tempo: average BPM,
    from a straight-line fit of the beat times (0.0 with fewer than two beats). onset_envelope:
    float32 [N] onset strength (log-mel spectral flux) that the beats were tracked in, one value per
    hop. Frame j is at time j * hop_length / sample_rate, the centre of its analysis window; its
    value is the rise from the window before, and the log rises as soon as an onset enters the
    2-hop window, so an isolated onset peaks on a frame from 26 ms before it to 10 ms after it
    (measured at 16 kHz; `times` do not inherit this).
    strengths: float32 [B], how loud each beat's onset is (spectral flux on a loudness scale within
    one hop of the beat's frame), divided by the largest, in [0, 1]: downbeats and drum hits score
    higher than quiet beats. Arrays are read-only.
    """

    times: np.ndarray
    tempo: float
    onset_envelope: np.ndarray
    hop_length: int
    sample_rate: int
    strengths: np.ndarray

    def __post_init__(self) -> None:
        for name in ("times", "onset_envelope", "strengths"):
            array = np.array(getattr(self, name))  # a copy, so the caller's array stays writable
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def frame_rate(self) -> float:
        """Onset-envelope frames per second (sample_rate / hop_length)."""
        return self.sample_rate / self.hop_length

    def vector(self, fps: float, num_frames: int) -> np.ndarray:
        """The model's beat input: float32 [num_frames], 1.0 on each video frame with a beat (see `beat_vector`)."""
        return beat_vector(self.times, fps, num_frames)

    def strength_vector(self, fps: float, num_frames: int) -> np.ndarray:
        """float32 [num_frames]: each beat's strength on its nearest frame, 0 elsewhere (max where two meet)."""
        return _place_on_frames(self.times, self.strengths, fps, num_frames)


def analyze_beats(
    waveform: np.ndarray,
    sample_rate: int,
    *,
    hop_length: int = 512,
    tightness: float = 100.0,
    start_bpm: float = 120.0,
    min_bpm: float = 50.0,
    max_bpm: float = 240.0,
) -> BeatAnalysis:
    """Find the beats, tempo and per-beat strengths of a piece of music.

    waveform: mono [T] or multi-channel [C, T] float audio (channels are averaged), any sample rate.
    hop_length: samples between onset frames (tempo and beat programme run on this grid, 32 ms at
    16 kHz; beat times are then refined to the attack within 1.5 hops).
    tightness: how strictly beats keep to the tempo (librosa's default, 100). start_bpm: centre of
    the tempo prior. The metrical-level check halves or doubles the estimated tempo only into
    [min_bpm, max_bpm]; a beat faster than max_bpm is reported at half speed.
    Silence (peak below -80 dBFS, or no onsets) and audio shorter than one analysis window
    (2 * hop_length samples) give an analysis with no beats and tempo 0, and a warning.
    Raises ValueError for an empty waveform, NaN or infinite samples, or bad parameters.
    """
    wave = _as_mono(waveform, sample_rate)
    wave = wave - wave.mean()  # a constant offset is not sound
    if not (isinstance(hop_length, (int, np.integer)) and hop_length > 0):
        raise ValueError(f"hop_length must be a positive integer number of samples, got {hop_length!r}.")
    for name, value in (("tightness", tightness), ("start_bpm", start_bpm), ("min_bpm", min_bpm)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if not (np.isfinite(max_bpm) and max_bpm > 2 * min_bpm):
        raise ValueError(
            f"max_bpm must be more than twice min_bpm so that halving and doubling fit, "
            f"got min_bpm={min_bpm!r}, max_bpm={max_bpm!r}."
        )
    sample_rate, hop_length = int(sample_rate), int(hop_length)

    def empty(reason: str, envelope: np.ndarray) -> BeatAnalysis:
        warnings.warn(f"analyze_beats: {reason}; returning no beats (tempo 0, all-zero beat vectors).", stacklevel=3)
        no_beats = np.zeros(0, np.float32)
        return BeatAnalysis(np.zeros(0), 0.0, envelope.astype(np.float32), hop_length, sample_rate, no_beats)

    if wave.size < 2 * hop_length:
        return empty(
            f"the audio is {wave.size} samples ({wave.size / sample_rate:.3f} s), shorter than one analysis "
            f"window of {2 * hop_length} samples",
            np.zeros(1 + wave.size // hop_length),
        )
    if np.abs(wave).max() < SILENCE_PEAK:
        return empty(f"the audio is silent (peak below {SILENCE_PEAK:g})", np.zeros(1 + wave.size // hop_length))

    envelope, accents, loudness = _onset_curves(wave, sample_rate, hop_length)
    if not envelope.any():
        return empty("the audio has no onsets", envelope)
    frame_rate = sample_rate / hop_length
    estimate = librosa.feature.tempo(
        onset_envelope=envelope, sr=sample_rate, hop_length=hop_length, start_bpm=start_bpm
    )
    frames = _choose_level(envelope, accents, frame_rate, float(estimate[0]), tightness, min_bpm, max_bpm)
    frames = _trim_edges(frames, loudness, frame_rate)

    times = _attack_times(wave, frames, hop_length, sample_rate)
    strengths = _onset_near(loudness[None], frames)[0]
    if strengths.size and strengths.max() > 0:
        strengths = strengths / strengths.max()
    tempo = 60.0 / np.polyfit(np.arange(times.size), times, 1)[0] if times.size >= 2 else 0.0
    return BeatAnalysis(
        times.astype(np.float64), float(tempo), envelope, hop_length, sample_rate, strengths.astype(np.float32)
    )


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


def _as_mono(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Validated float32 mono [T]: channels of [C, T] are averaged."""
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}.")
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim == 2:
        if wave.shape[0] > wave.shape[1]:
            raise ValueError(
                f"waveform of shape {wave.shape} looks like [T, C] (more channels than samples); "
                "expected [C, T] or mono [T]: transpose it."
            )
        wave = wave.mean(axis=0)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(
            f"waveform must be a non-empty array [T] or [C, T] of samples, got shape {np.shape(waveform)}."
        )
    bad = ~np.isfinite(wave)
    if bad.any():
        raise ValueError(
            f"waveform has {int(bad.sum())} NaN or infinite samples (first at index {int(np.argmax(bad))}); "
            "expected finite audio. Check the decoder or the effect that produced it."
        )
    return wave


def _onset_curves(wave: np.ndarray, sample_rate: int, hop_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset curves, one value per hop: the envelope float32 [N], band accents [bands, N], loudness flux [N].

    The envelope is librosa's median-over-mel-bands spectral flux of the log-mel spectrogram, which
    the beat programme follows. The other two are spectral flux on a loudness scale (mel power^(1/3),
    Stevens' law), where an onset counts by how loud it is; in dB, flux measures relative change,
    so a quiet bass note after a decayed one looks almost as strong as a kick, and a click in silence
    as strong as one four times louder. Accents are the mean flux inside each ACCENT_BANDS_HZ band
    with its moving median (the noise floor) removed; they say which instruments made an onset, for
    `_choose_level`. The loudness flux is the mean over all mel bands; it gives the beat strengths.
    """
    n_fft = 2 * hop_length
    # Reflect padding: zero padding made the start of the audio an onset, and a beat there pulled
    # the first few tracked beats off the grid when a clip starts between beats.
    mel = librosa.feature.melspectrogram(
        y=wave, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=N_MELS, pad_mode="reflect"
    )
    common = dict(sr=sample_rate, hop_length=hop_length, center=False)
    envelope = librosa.onset.onset_strength(S=librosa.power_to_db(mel), aggregate=np.median, **common)
    centres = librosa.mel_frequencies(N_MELS, fmax=sample_rate / 2)
    edges = [0, *(int(np.searchsorted(centres, high)) for _, high in ACCENT_BANDS_HZ), N_MELS]
    bands = librosa.onset.onset_strength_multi(S=mel ** (1 / 3), channels=edges, aggregate=np.mean, **common)
    loudness = np.diff(edges) @ bands / N_MELS  # mean over all mel bands
    accents = bands[: len(ACCENT_BANDS_HZ)].astype(np.float64)
    width = 2 * int(BASELINE_SECONDS * sample_rate / hop_length / 2) + 1
    accents = np.maximum(accents - scipy.ndimage.median_filter(accents, size=(1, width), mode="nearest"), 0.0)
    return envelope.astype(np.float32), accents, loudness.astype(np.float64)


def _track(envelope: np.ndarray, frame_rate: float, bpm: float, tightness: float) -> np.ndarray:
    """Beat frames (int64, ascending) from Ellis's dynamic programme at a fixed tempo.

    Same steps and constants as librosa 0.11's `beat_track(..., trim=False)`: normalise the envelope
    by its standard deviation, smooth it with a Gaussian of width period/32 (the local score), then
    for each frame keep the best predecessor between period/2 and 2*period back, penalised by
    tightness * log(interval / period)^2, and backtrack from the last strong local maximum of the
    cumulative score. Two changes, both at the ends of the music:
    - A frame whose best predecessor scores below zero starts a new chain of beats instead of
      taking that predecessor. librosa always takes one once a frame is period/2 into the audio,
      paying a penalty of up to ~50 for a predecessor at the wrong distance, so a first beat later
      than period/2 was pulled earlier (80 ms early at 65 BPM on a test loop).
    - The local score is extended by two periods of zeros, and beats found there are dropped.
      librosa starts the backtrack at the final frame when the cumulative score is still rising
      there, which forced a beat onto it and misplaced the last two or three beats of test loops
      that end half a beat after their last hit.
    """
    period = float(np.round(frame_rate * 60.0 / bpm))
    onsets = envelope.astype(np.float64)
    onsets = onsets / (onsets.std(ddof=1) + np.finfo(np.float64).tiny)
    offsets = np.arange(-period, period + 1)
    local = np.convolve(onsets, np.exp(-0.5 * (offsets * 32.0 / period) ** 2), mode="same")
    real = local.size
    local = np.concatenate([local, np.zeros(2 * int(period))])

    n = local.size
    gaps = np.arange(int(np.round(period / 2)), int(2 * period) + 1)  # predecessor distances, nearest first
    penalty = tightness * (np.log(gaps) - np.log(period)) ** 2
    cumulative = np.empty(n)
    backlink = np.full(n, -1, dtype=np.int64)
    threshold, started = 0.01 * local.max(), False
    for i in range(n):
        usable = np.searchsorted(gaps, i, side="right")  # gaps that do not reach before frame 0
        best = -1
        if usable:
            scores = cumulative[i - gaps[:usable]] - penalty[:usable]
            j = int(np.argmax(scores))  # first maximum: the nearest predecessor wins ties, as in librosa
        if usable and scores[j] > 0:
            best, cumulative[i] = i - gaps[j], local[i] + scores[j]
        else:  # no worthwhile predecessor: a chain of beats may start here
            cumulative[i] = local[i]
        if started or local[i] >= threshold:  # the first beat must have some onset support
            backlink[i], started = best, True

    peaks = np.zeros(n, dtype=bool)
    peaks[1:-1] = (cumulative[1:-1] > cumulative[:-2]) & (cumulative[1:-1] >= cumulative[2:])
    peaks[-1] = n > 1 and cumulative[-1] > cumulative[-2]
    tail = n - 1
    if peaks.any():
        good = np.flatnonzero(peaks & (cumulative >= 0.5 * np.median(cumulative[peaks])))
        tail = int(good[-1]) if good.size else n - 1
    beats = []
    while tail >= 0:
        beats.append(tail)
        tail = int(backlink[tail])
    frames = np.array(beats[::-1], dtype=np.int64)
    frames = frames[frames < real]
    positive = np.flatnonzero(local > 0)  # no beats where the smoothed envelope is exactly zero at the edges
    if positive.size == 0:
        return frames[:0]
    return frames[(frames >= positive[0]) & (frames <= positive[-1])]


def _onset_near(curves: np.ndarray, frames: np.ndarray, radius: int = 1) -> np.ndarray:
    """[bands, B]: the sum of each curve over +-radius frames around each beat frame.

    A sum, not the peak value: an onset that falls between two frames splits its flux over both, so
    the peak of identical clicks varied by up to 2x with their position against the frame grid.
    """
    index = frames[:, None] + np.arange(-radius, radius + 1)
    inside = (index >= 0) & (index < curves.shape[-1])
    return (curves[:, np.clip(index, 0, curves.shape[-1] - 1)] * inside).sum(axis=-1)


def _attack_times(wave: np.ndarray, frames: np.ndarray, hop_length: int, sample_rate: int) -> np.ndarray:
    """float64 [B] beat times in seconds: each beat frame's nearest clear attack, or the frame's time.

    Every sample within `radius` of a beat's frame is a candidate onset, scored by its rise: the
    ramp-weighted mean power over the ATTACK_SECONDS after it divided by the mean power over the
    BEFORE_SECONDS before it. The best candidate is kept if its rise reaches CLEAR_ONSET_DB and it
    is not on the edge of the candidates (the module docstring says why, with measurements).
    Candidates whose windows would reach outside the audio are skipped, so the start of a clip is
    not taken for an attack. The radius is SEARCH_HOPS hops, or less than half the gap between
    the two closest beat frames where that is smaller, so that beats keep their order.
    """
    times = frames * (hop_length / sample_rate)
    radius = int(SEARCH_HOPS * hop_length)
    if frames.size > 1:
        radius = min(radius, (int(np.diff(frames).min()) * hop_length - 1) // 2)
    for start in range(0, frames.size, 256):  # blocks of beats: tens of MB at most, for any length
        block = slice(start, start + 256)
        attacks = _clear_attacks(wave, frames[block] * hop_length, radius, sample_rate)
        times[block] = np.where(attacks >= 0, attacks / sample_rate, times[block])
    return times


def _clear_attacks(wave: np.ndarray, centres: np.ndarray, radius: int, sample_rate: int) -> np.ndarray:
    """int64 [B]: the sample where the clear attack within `radius` of each centre starts, -1 if none.

    The rule is `_attack_times`'; this is its arithmetic, on prefix sums of the power.
    """
    after = max(1, int(round(ATTACK_SECONDS * sample_rate)))
    before = max(1, int(round(BEFORE_SECONDS * sample_rate)))
    width = 2 * radius + 1
    candidates = centres[:, None] + np.arange(-radius, radius + 1)  # onset samples [B, width]

    # Per beat, the power from `before` samples ahead of its first candidate to `after` past its
    # last, and prefix sums of power and of power times n (the column): column i of a prefix sum
    # holds the sum over columns before i. Candidate k splits the stretch at column before + k.
    index = np.clip(candidates[:, :1] + np.arange(-before, 2 * radius + after + 1), 0, wave.size - 1)
    power = wave[index].astype(np.float64) ** 2
    zeros = np.zeros((centres.size, 1))
    cumulative = np.concatenate([zeros, np.cumsum(power, axis=1)], axis=1)
    moment = np.concatenate([zeros, np.cumsum(power * np.arange(power.shape[1]), axis=1)], axis=1)
    split = np.arange(before, before + width)
    power_before = (cumulative[:, before : before + width] - cumulative[:, :width]) / before
    # After the split, power weighted by a ramp from 1 at the split down to 0 `after` samples later,
    # so that the first milliseconds count most: with equal weights, a click shorter than the window
    # scored alike from every split up to (window - click) ahead of it, and in noise the maximum
    # wandered up to 6 ms early. Weighted sum: total - sum((n - split) power[n]) / after.
    total = cumulative[:, before + after : before + after + width] - cumulative[:, before : before + width]
    spread = moment[:, before + after : before + after + width] - moment[:, before : before + width] - split * total
    power_after = (total - spread / after) / ((after + 1) / 2)
    # A floor 60 dB under the loudest stretch of this beat's candidates, so that an attack out of
    # digital silence has a finite (high) rise and an all-zero stretch a rise of 1 (0 dB).
    floor = 1e-6 * power_after.max(axis=1, keepdims=True) + 1e-20
    rise = (power_after + floor) / (power_before + floor)
    inside = (candidates >= before) & (candidates + after <= wave.size)
    rise[~inside] = 0.0

    best = rise.argmax(axis=1)
    rows = np.arange(centres.size)
    interior = (best > 0) & (best < width - 1)
    interior &= inside[rows, np.maximum(best - 1, 0)] & inside[rows, np.minimum(best + 1, width - 1)]
    clear = interior & (rise[rows, best] >= 10 ** (CLEAR_ONSET_DB / 10))
    return np.where(clear, candidates[rows, best], -1)


def _balance(first: np.ndarray, second: np.ndarray, floor: np.ndarray) -> float | None:
    """How evenly two interleaved sets of grid positions are accented, in [0, 1]; None if it cannot tell.

    first, second: accents [bands, n] at each position. Each set scores its best band: the ratio of
    its median accent to the other set's there, capped at 1; the balance is the lower of the two
    scores. Kick and snare beats balance (the kick wins the low band, the snare the mid band);
    beats and off-beats do not, since off-beats carry only hi-hats and quieter notes, weaker than
    the beats in every band below 2 kHz. floor [bands]: the accent at a typical frame; a band counts
    only where one set's median exceeds twice that, so a band with nothing but noise in it (both
    sets equal) does not make every grid look balanced. None with fewer than 4 positions in a set,
    or no band that counts.
    """
    if min(first.shape[1], second.shape[1]) < 4:
        return None
    a, b = np.median(first, axis=1), np.median(second, axis=1)
    informative = np.maximum(a, b) > 2 * floor
    if not informative.any():
        return None
    a, b = a[informative], b[informative]
    with np.errstate(divide="ignore", invalid="ignore"):
        a_score = np.max(np.minimum(np.where(b > 0, a / b, 1.0), 1.0))
        b_score = np.max(np.minimum(np.where(a > 0, b / a, 1.0), 1.0))
    return float(min(a_score, b_score))


def _choose_level(
    envelope: np.ndarray,
    accents: np.ndarray,
    frame_rate: float,
    tempo: float,
    tightness: float,
    min_bpm: float,
    max_bpm: float,
) -> np.ndarray:
    """Beat frames at the metrical level of the beat: the estimated tempo, its half or its double.

    librosa's tempo prior is centred on 120 BPM, so it often locks to eighth notes at 60 BPM and to
    half notes at 130-180 BPM (beat F-measure about 0.65 instead of about 1 on the test loops). In
    popular music the beat is carried by kick, snare, bass and chords, and the subdivisions by
    hi-hats and quieter notes, so the beat is the fastest grid whose interleaved halves are equally
    accented below 2 kHz (`_balance` >= BALANCE_THRESHOLD):
    - the beats tracked at the estimated tempo are split into even and odd; if these halves are
      unbalanced (one half is off-beats), the beats are tracked again at half the tempo, and
      the halved grid is kept only if its own halves balance: a grid whose downbeats are louder than
      its other beats also looks unbalanced, and halving it would give a bar-level grid;
    - otherwise the points halfway between beats are compared with the beats; if they balance (the
      estimate skipped every other kick or snare, or every other click of a metronome whose
      downbeat is louder), the beats are tracked again at double the tempo.
      Halfway points, not a grid tracked at double tempo: the tracker may skip empty points, and
      then that grid looks balanced.
    The decision uses only the audio; where `_balance` cannot tell, the estimate stands. Known
    limit: downbeats some 12 dB louder than the other beats in every band below 2 kHz can still be
    taken for a slower beat.
    """
    floor = np.median(_onset_near(accents, np.arange(accents.shape[1])), axis=1)
    frames = _track(envelope, frame_rate, tempo, tightness)
    beats = _onset_near(accents, frames)
    halves = _balance(beats[:, 0::2], beats[:, 1::2], floor)
    if halves is None:
        return frames
    if halves < BALANCE_THRESHOLD and tempo / 2 >= min_bpm:
        slower = _track(envelope, frame_rate, tempo / 2, tightness)
        slower_beats = _onset_near(accents, slower)
        slower_halves = _balance(slower_beats[:, 0::2], slower_beats[:, 1::2], floor)
        if slower_halves is not None and slower_halves >= BALANCE_THRESHOLD:
            return slower
    halfway = np.round((frames[:-1] + frames[1:]) / 2).astype(np.int64)
    between = _balance(beats, _onset_near(accents, halfway), floor)
    if between is not None and between >= BALANCE_THRESHOLD and 2 * tempo <= max_bpm:
        return _track(envelope, frame_rate, 2 * tempo, tightness)
    return frames


def _trim_edges(frames: np.ndarray, loudness: np.ndarray, frame_rate: float) -> np.ndarray:
    """Drop leading and trailing beats with little onset support (the grid extended into a lead-in or tail).

    Support is the loudness flux above its moving median (the noise floor); a beat needs
    EDGE_SUPPORT of the median beat's. The dB envelope would not do: there, noise in a quiet
    intro shows onsets almost as strong as the drums.
    """
    if frames.size == 0:
        return frames
    width = 2 * int(BASELINE_SECONDS * frame_rate / 2) + 1
    above_floor = np.maximum(loudness - scipy.ndimage.median_filter(loudness, size=width, mode="nearest"), 0.0)
    support = _onset_near(above_floor[None], frames)[0]
    strong = np.flatnonzero(support >= EDGE_SUPPORT * np.median(support))
    if strong.size == 0:
        return frames
    return frames[strong[0] : strong[-1] + 1]
