"""MuseDance's own beat tracker: onset curves, tempo, metrical level, dynamic programme, attack times.

1. Onset curves (`onset_curves`) from a 64-band mel spectrogram at the analysis hop (512 samples, 32 ms
   at 16 kHz): the tempo envelope (median over bands of log-mel flux) and the tracking envelope (mean
   log-mel flux plus the flux of the kick/bass and of the snare/chord band, each scaled to unit
   deviation), which puts the beat on the drums and bass rather than on the hi-hats or a guitar's
   off-beat chops.
2. Tempo (`estimate_tempo`): the autocorrelation tempogram of the tempo envelope, averaged over the
   music, times a log-normal prior (centre PRIOR_BPM, one octave wide, or the user's preferred tempo
   half an octave wide), inside [min_bpm, max_bpm]; librosa's `feature.tempo` with a tempo range.
3. Metrical level (`choose_level`): a change of level only on strong evidence (see the function).
4. Beats (`track`): the dynamic programme of Ellis (2007), librosa's `beat_track`, at that tempo with
   tightness TIGHTNESS; weak beats at the edges are dropped (`trim_edges`).
5. Attack times (`attack_times`): each beat moves from its analysis frame to the start of the attack
   near it, found in the waveform at one-sample resolution, where there is a clear one.

Step 5 exists because steps 1 to 4 place beats on the 32 ms hop grid and a frame's log-mel flux rises
as soon as an onset enters its 64 ms window, so a beat can be up to a hop from its attack: at 30 fps,
often a video frame early. Tempo and programme stay on the hop grid (they need the wide window's
smoothing); only the final times are refined, within SEARCH_HOPS hops of the frame.
- The attack starts where the power of the waveform rises most: at the split point that maximises
  the mean power in the ATTACK_SECONDS after it, weighted by a ramp falling from 1 at the split to 0,
  over the mean power in the BEFORE_SECONDS before it. For a sound starting on a steady background
  that ratio grows while the split approaches the sound's first sample and falls once part of the
  sound is behind it, so its maximum is the first sample of the attack, where a listener (and beat
  annotations) put a percussive beat. The ramp keeps a short click in noise from pulling the maximum
  early; BEFORE_SECONDS spans a period of 20 Hz, so steady bass notes do not ripple the ratio.
- A beat moves only to a clear onset: a ratio of at least CLEAR_ONSET_DB at a maximum inside the
  search range, not on its edge (there the rise goes on beyond it). Otherwise it keeps its frame time:
  soft music (a tremolo pad, slow swells) has no attack to move to, and noise must not pick the time.
  Known limit: rumble below about 25 Hz swells within tens of ms and can qualify.

Where this departs from librosa's defaults:
- The envelopes use a 2-hop window (1024 samples), reflect padding and no extra "centre" shift; the
  defaults (2048-sample window, shifted by n_fft / (2 * hop) frames) put beats late, near the 70 ms
  tolerance of beat F-measure.
- The beat programme is a numpy port, with two fixes at the ends of the music (see `track`), rather
  than a call to `librosa.beat.beat_track`: importing `librosa.beat` compiles a numba gufunc declared
  `cache=False` at every process start. Elsewhere the port gives librosa's beats.
The librosa functions used here are numba-compiled with `cache=True`; NUMBA_CACHE_DIR chooses where
that cache goes. This module sets no environment variable. The measurements behind each choice are in
BENCHMARKS.md ("Beats on real recordings", "How the tracker's steps were chosen").
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import scipy.ndimage

N_MELS = 64
# Accent bands, in Hz: kick drum and bass below 200 Hz; snare body, chords and voice from 200 Hz
# to 2 kHz. Hi-hats and cymbals (above 2 kHz) are left out on purpose: they mark subdivisions.
ACCENT_BANDS_HZ = ((0.0, 200.0), (200.0, 2000.0))
BASELINE_SECONDS = 2.0  # moving-median window that removes the noise floor from onset curves
# Tempo prior: centre and width (octaves) with no preferred tempo, and the width around a preferred
# tempo. 110 BPM: the geometric mean of the annotated tempos of the tuning recordings is 108.
PRIOR_BPM = 110.0
PRIOR_OCTAVES = 1.0
PREFERRED_OCTAVES = 0.5
TEMPOGRAM_SECONDS = 8.0  # autocorrelation window of the tempogram (librosa's ac_size)
TIGHTNESS = 150.0  # tuning recordings: beat F 0.805 at 150, 0.796 at 100 (librosa's), 0.800 at 200
# Metrical level (`choose_level`): two interleaved sets of beats are "balanced" when, in some accent
# band, the weaker set's median accent reaches this fraction of the stronger's (see `balance`).
BALANCED = 0.9
HALVE_BELOW_BALANCE = 0.5  # even and odd beats this unbalanced are a beat and its off-beat
DOUBLE_BELOW_BPM = 90.0  # an estimate this slow with accented half-beats is half the tempo
DOUBLE_BALANCE = 0.8  # ... and half-beat points this balanced with the beats
LEVEL_EVIDENCE_BEATS = 8  # fewer beats than two bars of 4/4 at the estimate: too little to change the level
# Leading and trailing beats whose onset support is below this fraction of the median beat's are
# dropped: the programme extrapolates its grid into a silent or noisy lead-in and tail.
EDGE_SUPPORT = 0.25
# Attack times (the module docstring gives the measurements behind each value).
ATTACK_SECONDS = 0.020  # power after a candidate onset (ramp-weighted) ...
BEFORE_SECONDS = 0.050  # ... over the power before it
CLEAR_ONSET_DB = 6.0  # the least rise (after / before) that moves a beat
SEARCH_HOPS = 1.5  # how far from its analysis frame a beat's attack is looked for, in hops


@dataclass(frozen=True, eq=False)
class OnsetCurves:
    """Onset curves of one piece of music, one value per hop (frame j at j * hop / sample_rate).

    tempo_envelope float32 [N]: median over mel bands of log-mel flux, whose periodicity gives the
    tempo (the plotted onset strength). tracking float64 [N]: what the beat programme follows (module
    docstring, step 1). accents float64 [2, N]: flux on a loudness scale (mel power^(1/3), Stevens'
    law) in each ACCENT_BANDS_HZ band, noise floor removed; in dB a quiet bass note after a decayed one
    looks almost as strong as a kick. loudness float64 [N]: the same flux over all bands (beat strengths).
    """

    tempo_envelope: np.ndarray
    tracking: np.ndarray
    accents: np.ndarray
    loudness: np.ndarray
    frame_rate: float


def onset_curves(wave: np.ndarray, sample_rate: int, hop_length: int) -> OnsetCurves:
    """The onset curves of mono float32 audio (see `OnsetCurves`)."""
    n_fft = 2 * hop_length
    # Reflect padding: zero padding made the start of the audio an onset, and a beat there pulled
    # the first few tracked beats off the grid when a clip starts between beats.
    mel = librosa.feature.melspectrogram(
        y=wave, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=N_MELS, pad_mode="reflect"
    )
    common = dict(sr=sample_rate, hop_length=hop_length, center=False)
    log_mel = librosa.power_to_db(mel)
    tempo_envelope = librosa.onset.onset_strength(S=log_mel, aggregate=np.median, **common)
    mean_flux = librosa.onset.onset_strength(S=log_mel, aggregate=np.mean, **common).astype(np.float64)
    centres = librosa.mel_frequencies(N_MELS, fmax=sample_rate / 2)
    edges = [0, *(int(np.searchsorted(centres, high)) for _, high in ACCENT_BANDS_HZ), N_MELS]
    bands = librosa.onset.onset_strength_multi(S=mel ** (1 / 3), channels=edges, aggregate=np.mean, **common)
    loudness = np.diff(edges) @ bands / N_MELS  # mean over all mel bands
    accents = bands[: len(ACCENT_BANDS_HZ)].astype(np.float64)
    width = 2 * int(BASELINE_SECONDS * sample_rate / hop_length / 2) + 1
    accents = np.maximum(accents - scipy.ndimage.median_filter(accents, size=(1, width), mode="nearest"), 0.0)
    tracking = sum(curve / (curve.std() + 1e-12) for curve in (mean_flux, *accents))
    return OnsetCurves(tempo_envelope.astype(np.float32), tracking, accents, loudness.astype(np.float64),
                       sample_rate / hop_length)


def estimate_tempo(curves: OnsetCurves, *, min_bpm: float, max_bpm: float, preferred_bpm: float | None = None) -> float:
    """The most periodic tempo in [min_bpm, max_bpm], weighted by a log-normal prior (module docstring, step 2).

    With the default prior and range this is librosa's `feature.tempo(start_bpm=PRIOR_BPM)`.
    """
    frame_rate = curves.frame_rate
    window = int(np.floor(TEMPOGRAM_SECONDS * frame_rate))
    envelope = curves.tempo_envelope.astype(np.float64)
    # librosa's tempogram wants a sample rate and hop; only their ratio, the frame rate, matters.
    tempogram = librosa.feature.tempogram(onset_envelope=envelope, sr=frame_rate, hop_length=1, win_length=window)
    strength = tempogram.mean(axis=1)
    with np.errstate(divide="ignore"):
        bpms = 60.0 * frame_rate / np.arange(window)  # lag 0 is an infinite tempo
    centre, octaves = (PRIOR_BPM, PRIOR_OCTAVES) if preferred_bpm is None else (preferred_bpm, PREFERRED_OCTAVES)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.log1p(1e6 * strength) - 0.5 * ((np.log2(bpms) - np.log2(centre)) / octaves) ** 2
    score[~((bpms >= min_bpm) & (bpms <= max_bpm))] = -np.inf
    if not np.isfinite(score).any():  # a range narrower than one lag step: the nearest lag
        return float(bpms[1:][np.argmin(np.abs(np.log(bpms[1:] / centre)))])
    return float(bpms[int(np.argmax(score))])


def track(envelope: np.ndarray, frame_rate: float, bpm: float, tightness: float = TIGHTNESS) -> np.ndarray:
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


def onset_near(curves: np.ndarray, frames: np.ndarray, radius: int = 1) -> np.ndarray:
    """[bands, B]: the sum of each curve over +-radius frames around each beat frame.

    A sum, not the peak value: an onset that falls between two frames splits its flux over both, so
    the peak of identical clicks varied by up to 2x with their position against the frame grid.
    """
    index = frames[:, None] + np.arange(-radius, radius + 1)
    inside = (index >= 0) & (index < curves.shape[-1])
    return (curves[:, np.clip(index, 0, curves.shape[-1] - 1)] * inside).sum(axis=-1)


def balance(first: np.ndarray, second: np.ndarray, floor: np.ndarray) -> float | None:
    """How evenly two interleaved sets of grid positions are accented, in [0, 1]; None if it cannot tell.

    first, second: accents [bands, n] at each position. Each set scores its best band: the ratio of
    its median accent to the other set's there, capped at 1; the balance is the lower of the two
    scores. Kick and snare beats balance (the kick wins the low band, the snare the mid band);
    beats and off-beats do not when the off-beats carry only hi-hats and quieter notes. floor
    [bands]: the accent at a typical frame; a band counts only where one set's median exceeds twice
    that, so a band with nothing but noise in it does not make every grid look balanced. None with
    fewer than 4 positions in a set, or no band that counts.
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


def choose_level(curves: OnsetCurves, tempo: float, *, min_bpm: float, max_bpm: float) -> tuple[np.ndarray, float]:
    """Beat frames and their tempo at the metrical level of the beat: the estimate, its half or its double.

    The estimate stands unless one of two signs says otherwise:
    - halve when the even and odd beats are as unbalanced as a beat and its off-beat (`balance`
      below HALVE_BELOW_BALANCE: the odd "beats" carry only hi-hats) while the halved grid's own
      halves balance (at least BALANCED: kick and snare);
    - double a slow estimate (below DOUBLE_BELOW_BPM) whose half-beat points are as accented
      (`balance` at least DOUBLE_BALANCE) as its beats, or as either half of them (a metronome
      with a louder downbeat): dance music at 130-180 BPM taken at half speed.
    Both stay inside [min_bpm, max_bpm]; where `balance` cannot tell, or the music holds fewer than
    LEVEL_EVIDENCE_BEATS beats at the estimate (a clip of a few seconds), the estimate stands.
    """
    accents, frame_rate = curves.accents, curves.frame_rate
    floor = np.median(onset_near(accents, np.arange(accents.shape[1])), axis=1)
    frames = track(curves.tracking, frame_rate, tempo)
    if frames.size < LEVEL_EVIDENCE_BEATS:
        return frames, tempo
    beats = onset_near(accents, frames)
    halves = balance(beats[:, 0::2], beats[:, 1::2], floor)
    if halves is not None and halves < HALVE_BELOW_BALANCE and tempo / 2 >= min_bpm:
        slower = track(curves.tracking, frame_rate, tempo / 2)
        slower_beats = onset_near(accents, slower)
        slower_halves = balance(slower_beats[:, 0::2], slower_beats[:, 1::2], floor)
        if slower_halves is not None and slower_halves >= BALANCED:
            return slower, tempo / 2
    if tempo < DOUBLE_BELOW_BPM and 2 * tempo <= max_bpm and frames.size > 1:
        halfway = onset_near(accents, np.round((frames[:-1] + frames[1:]) / 2).astype(np.int64))
        # Against all beats, and against each half of them: louder downbeats must not hide a pulse.
        evidence = [balance(group, halfway, floor) for group in (beats, beats[:, 0::2], beats[:, 1::2])]
        if max((e for e in evidence if e is not None), default=0.0) >= DOUBLE_BALANCE:
            return track(curves.tracking, frame_rate, 2 * tempo), 2 * tempo
    return frames, tempo


def trim_edges(frames: np.ndarray, curves: OnsetCurves) -> np.ndarray:
    """Drop leading and trailing beats with little onset support (the grid extended into a lead-in or tail).

    Support is the loudness flux above its moving median (the noise floor); a beat needs
    EDGE_SUPPORT of the median beat's. The dB envelope would not do: there, noise in a quiet
    intro shows onsets almost as strong as the drums.
    """
    if frames.size == 0:
        return frames
    width = 2 * int(BASELINE_SECONDS * curves.frame_rate / 2) + 1
    loudness = curves.loudness
    above_floor = np.maximum(loudness - scipy.ndimage.median_filter(loudness, size=width, mode="nearest"), 0.0)
    support = onset_near(above_floor[None], frames)[0]
    strong = np.flatnonzero(support >= EDGE_SUPPORT * np.median(support))
    if strong.size == 0:
        return frames
    return frames[strong[0] : strong[-1] + 1]


def track_beats(curves: OnsetCurves, *, min_bpm: float, max_bpm: float,
                preferred_bpm: float | None = None) -> np.ndarray:
    """Beat frames of the music (steps 2 to 4 of the module docstring). A preferred tempo fixes the
    level: the user's choice is not second-guessed by `choose_level`."""
    tempo = estimate_tempo(curves, min_bpm=min_bpm, max_bpm=max_bpm, preferred_bpm=preferred_bpm)
    if preferred_bpm is None:
        frames, tempo = choose_level(curves, tempo, min_bpm=min_bpm, max_bpm=max_bpm)
    else:
        frames = track(curves.tracking, curves.frame_rate, tempo)
    return trim_edges(frames, curves)


def attack_times(wave: np.ndarray, frames: np.ndarray, hop_length: int, sample_rate: int) -> np.ndarray:
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

    The rule is `attack_times`'; this is its arithmetic, on prefix sums of the power.
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
