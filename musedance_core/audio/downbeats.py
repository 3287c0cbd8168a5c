"""Bars from audio and beats: the meter (3 or 4 beats to the bar) and where each bar's first beat falls.

For beat lists without beat numbers (our tracker, librosa, a user's file of plain times). Bar lines
are where the harmony changes and the kick and bass land, and where the snare's backbeat does not:
per beat, the change of the chroma (the pitch-class profile) from the beat before to the beat after
plus the bass-band onset minus the snare/chord-band onset, each standardised over the piece. For
each meter and phase the bar-line score is the mean of that feature on the beats the phase calls
downbeats minus its mean elsewhere; the best phase of each meter wins, and 3/4 is chosen over 4/4
only by a clear margin (THREE_MARGIN), since most popular music is in four. BENCHMARKS.md ("Beats on
real recordings") has how well it finds the bars.
"""

from __future__ import annotations

import librosa
import numpy as np

from .beat_tracker import onset_near

METERS = (3, 4)
THREE_MARGIN = 0.15  # 3/4 must beat 4/4's bar-line score by this much (in standard deviations)
MIN_BARS = 2  # fewer whole bars than this of the longest meter: no meter can be told
CHROMA_BLOCK_SECONDS = 60.0


def number_beats(wave: np.ndarray, sample_rate: int, times: np.ndarray, accents: np.ndarray,
                 frame_rate: float) -> tuple[np.ndarray | None, int]:
    """Each beat's place in its bar (int64 [B], 1 = downbeat) and the meter; (None, 0) when too few beats.

    wave: mono float32 at sample_rate; times: beat times in seconds, ascending; accents: the bass-band
    and snare/chord-band onset curves [2, N] at frame_rate (beat_tracker.OnsetCurves.accents).
    """
    if times.size < MIN_BARS * max(METERS) + 1:
        return None, 0
    features = _bar_line_features(wave, sample_rate, times, accents, frame_rate)
    best = {}
    for meter in METERS:
        scores = []
        for phase in range(meter):
            on = np.arange(times.size) % meter == phase
            scores.append(features[on].mean() - features[~on].mean())
        best[meter] = (max(scores), int(np.argmax(scores)))
    meter = 3 if best[3][0] > best[4][0] + THREE_MARGIN else 4
    phase = best[meter][1]
    return (np.arange(times.size) - phase) % meter + 1, meter


def _bar_line_features(wave: np.ndarray, sample_rate: int, times: np.ndarray, accents: np.ndarray,
                       frame_rate: float) -> np.ndarray:
    """float64 [B]: chroma change plus bass onset minus snare/chord onset at each beat, each standardised."""
    hop = 512
    block = hop * int(CHROMA_BLOCK_SECONDS * sample_rate / hop)
    pieces = []  # in blocks, so that a long song never holds its whole spectrogram at once
    for at in range(0, wave.size, block):
        piece = librosa.feature.chroma_stft(y=wave[at:at + block], sr=sample_rate, hop_length=hop, n_fft=2048)
        last = at + block >= wave.size
        pieces.append(piece if last else piece[:, : block // hop])  # frame j at at + j * hop; the next block has the rest
    chroma = np.concatenate(pieces, axis=1)  # [12, N]
    frames = np.clip(np.round(times * sample_rate / hop).astype(np.int64), 0, chroma.shape[1] - 1)
    edges = np.concatenate([[0], frames, [chroma.shape[1]]])
    segments = np.stack([chroma[:, a:max(b, a + 1)].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    segments /= np.linalg.norm(segments, axis=0, keepdims=True) + 1e-9
    change = 1.0 - np.sum(segments[:, :-1] * segments[:, 1:], axis=0)  # [B]: before beat k vs after it
    index = np.clip(np.round(times * frame_rate).astype(np.int64), 0, accents.shape[1] - 1)
    near = onset_near(accents, index)  # [2, B]
    return _standard(change) + _standard(near[0]) - _standard(near[1])


def _standard(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)
