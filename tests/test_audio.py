"""load_music / decode_audio_file: files of every format, resampling, selection, mixing, AUDIO dicts, bad input.

All audio is synthesised here and encoded with PyAV. Click times are the alignment probe: a click
written at t must come back at t after decoding, cutting and resampling.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from musedance_core.audio.music import TARGET_SAMPLE_RATE, Music, decode_audio_file, load_music
from musedance_core.audio.timing import frame_count, frame_samples
from musedance_core.video import write_video

SR = TARGET_SAMPLE_RATE


def sine(seconds: float, rate: int, freq: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


def clicks(seconds: float, rate: int, at: float, background: float = 0.0) -> np.ndarray:
    """A quiet 440 Hz tone (or silence) with one 0.8 click on the sample nearest `at` seconds."""
    wave = sine(seconds, rate, 440.0, background)
    wave[round(at * rate)] += 0.8
    return wave


def click_time(wave: np.ndarray, rate: int) -> float:
    return float(np.argmax(np.abs(wave))) / rate


def peak_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / rate)[spectrum.argmax()])


def encoder(*names: str) -> str:
    """The first of `names` that PyAV's FFmpeg can encode with, else skip the test saying so."""
    for name in names:
        try:
            av.Codec(name, "w")
            return name
        except Exception:
            continue
    pytest.skip(f"PyAV's FFmpeg has none of the encoders {names}")


def write_audio(path: Path, wave: np.ndarray, rate: int, codec: str) -> Path:
    """Encode float [C, T] (or [T]) audio to `path`; the container follows the extension."""
    wave = np.ascontiguousarray(np.atleast_2d(wave), dtype=np.float32)
    layout = {1: "mono", 2: "stereo", 3: "3.0"}[wave.shape[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        if codec == "vorbis":  # FFmpeg's native Vorbis encoder is marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout=layout)  # PyAV converts and re-chunks
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# ---------------------------------------------------------------- files

# (extension, encoder candidates, rate, lossless). Lossy encoders prepend priming samples (mp3 1105,
# AAC 1024 = 21-25 ms) that the decoder must drop, so a 5 ms tolerance shows they were dropped.
FORMATS = {
    "wav": ("wav", ("pcm_s16le",), 44_100, True),
    "flac": ("flac", ("flac",), 44_100, True),
    "ogg": ("ogg", ("libvorbis", "vorbis"), 44_100, False),
    "mp3": ("mp3", ("libmp3lame", "mp3"), 44_100, False),
    "m4a": ("m4a", ("aac",), 48_000, False),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_file_keeps_duration_and_click_time(tmp_path, name):
    ext, codecs, rate, lossless = FORMATS[name]
    left = clicks(2.0, rate, at=1.25, background=0.1)
    path = write_audio(tmp_path / f"music.{ext}", np.stack([left, 0.5 * left]), rate, encoder(*codecs))

    decoded, decoded_rate = decode_audio_file(path)
    assert decoded.dtype == np.float32 and decoded.shape[0] == 2 and decoded_rate == rate
    if lossless:
        assert decoded.shape[1] == left.size
    else:  # encoders pad the last frame; never more than one frame (~25 ms)
        assert 0 <= decoded.shape[1] - left.size < 0.03 * rate

    music = load_music(path)
    assert music.sample_rate == SR and music.start == 0.0
    assert music.duration == pytest.approx(decoded.shape[1] / rate, abs=1 / SR)
    written = round(1.25 * rate) / rate
    assert click_time(music.waveform, SR) == pytest.approx(written, abs=0.001 if lossless else 0.005)


@pytest.mark.parametrize("codec", ["pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_u8", "pcm_f32le", "flac"])
def test_sample_formats_decode_to_float_with_channels_apart(tmp_path, codec):
    """s16, s32, u8 and float PCM all come back in [-1, 1]; packed stereo is de-interleaved."""
    rate = 22_050
    wave = np.stack([sine(1.0, rate, 440.0, 0.5), sine(1.0, rate, 1000.0, 0.25)])
    path = write_audio(tmp_path / f"{codec}.{'flac' if codec == 'flac' else 'wav'}", wave, rate, encoder(codec))
    decoded, _ = decode_audio_file(path)
    assert decoded.dtype == np.float32 and decoded.shape == wave.shape
    tolerance = 0.02 if codec == "pcm_u8" else 1e-3  # 8-bit steps are 1/128
    np.testing.assert_allclose(decoded, wave, atol=tolerance)
    assert peak_frequency(decoded[0], rate) == pytest.approx(440.0, abs=2)
    assert peak_frequency(decoded[1], rate) == pytest.approx(1000.0, abs=2)


def test_file_selection_decodes_only_what_it_needs_and_matches_the_array(tmp_path):
    rate = 44_100
    wave = clicks(5.0, rate, at=3.0, background=0.1)
    path = write_audio(tmp_path / "long.wav", wave, rate, "pcm_s16le")

    head, _ = decode_audio_file(path, max_duration=2.5)
    assert head.shape == (1, int(np.ceil(2.5 * rate)))
    np.testing.assert_allclose(head[0], wave[: head.shape[1]], atol=1e-4)

    from_file = load_music(path, start=2.0, duration=1.5)
    from_array = load_music(wave, source_rate=rate, start=2.0, duration=1.5)
    assert from_file.start == from_array.start == 2.0
    np.testing.assert_allclose(from_file.waveform, from_array.waveform, atol=1e-4)
    assert click_time(from_file.waveform, SR) == pytest.approx(1.0, abs=0.001)


# ---------------------------------------------------------------- resampling, selection, mixing


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000, 96_000])
def test_resampling_keeps_frequency_amplitude_and_timing(rate):
    music = load_music(sine(1.0, rate, 1000.0, 0.5), source_rate=rate)
    assert music.sample_rate == SR and music.waveform.dtype == np.float32
    assert abs(music.waveform.size - SR) <= 1
    assert peak_frequency(music.waveform, SR) == pytest.approx(1000.0, abs=1.5)
    middle = music.waveform[SR // 10 : -SR // 10]  # away from the cut edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)

    at = round(0.6137 * rate) / rate  # a click off the 16 kHz grid
    music = load_music(clicks(1.0, rate, at=at), source_rate=rate)
    assert click_time(music.waveform, SR) == pytest.approx(at, abs=0.001)


def test_other_target_rate():
    music = load_music(sine(1.0, 48_000, 440.0), source_rate=48_000, sample_rate=24_000)
    assert music.sample_rate == 24_000 and music.waveform.size == 24_000
    assert peak_frequency(music.waveform, 24_000) == pytest.approx(440.0, abs=1.5)


@pytest.mark.parametrize("rate", [SR, 44_100])
def test_start_and_duration_select_the_right_samples(rate):
    wave = clicks(5.0, rate, at=3.0)
    rest = load_music(wave, source_rate=rate, start=2.0)
    assert rest.start == 2.0 and rest.duration == pytest.approx(3.0, abs=1 / SR)
    assert click_time(rest.waveform, SR) == pytest.approx(1.0, abs=0.001)

    part = load_music(wave, source_rate=rate, start=2.0, duration=1.5)
    assert part.waveform.size == round(1.5 * SR)
    assert click_time(part.waveform, SR) == pytest.approx(1.0, abs=0.001)

    past_the_end = load_music(wave, source_rate=rate, start=4.0, duration=10.0)
    assert past_the_end.duration == pytest.approx(1.0, abs=1 / SR)  # stops at the end of the music

    before = load_music(wave, source_rate=rate, duration=2.5)
    assert np.abs(before.waveform).max() < 0.01  # the click is not in [0, 2.5) s


def test_stereo_mixes_to_the_mean_of_its_channels():
    rng = np.random.default_rng(0)
    left, right = sine(1.0, SR, 300.0, 0.6), (0.2 * rng.standard_normal(SR)).astype(np.float32)
    music = load_music(np.stack([left, right]), source_rate=SR)
    np.testing.assert_allclose(music.waveform, (left + right) / 2, atol=1e-7)


def test_silence_is_valid_music():
    music = load_music(np.zeros((2, 3 * SR), np.float32), source_rate=SR)
    assert music.duration == 3.0 and not music.waveform.any()


def test_integer_pcm_arrays_are_scaled():
    music = load_music(np.full(SR, 16_384, np.int16), source_rate=SR)
    np.testing.assert_allclose(music.waveform, 0.5)


# ---------------------------------------------------------------- ComfyUI AUDIO


def test_comfy_audio_batch_item_and_round_trip():
    rate = 22_050
    item = torch.from_numpy(np.stack([sine(1.0, rate, 500.0), sine(1.0, rate, 700.0, 0.3)]))
    batch = torch.stack([torch.zeros_like(item), item])  # [B=2, C=2, T]
    audio = {"waveform": batch, "sample_rate": rate}

    assert not load_music(audio).waveform.any()  # item 0 is silence
    music = load_music(audio, batch_index=1)
    expected = load_music(item.numpy(), source_rate=rate)
    np.testing.assert_array_equal(music.waveform, expected.waveform)
    np.testing.assert_array_equal(load_music({"waveform": item, "sample_rate": rate}).waveform, expected.waveform)



def test_comfy_audio_tensor_dtypes_and_grad():
    wave = torch.from_numpy(sine(0.5, SR, 440.0)).double().requires_grad_()
    music = load_music({"waveform": wave[None, None], "sample_rate": SR})
    assert music.waveform.dtype == np.float32
    np.testing.assert_allclose(music.waveform, wave.detach().numpy(), atol=1e-6)
    half = load_music({"waveform": wave.detach().half()[None, None], "sample_rate": SR})
    np.testing.assert_allclose(half.waveform, music.waveform, atol=1e-3)


# ---------------------------------------------------------------- bad input


def _with(index: int, value: float) -> np.ndarray:
    wave = sine(1.0, SR, 440.0)
    wave[index] = value
    return wave


BAD_ARRAYS = {
    "NaN": (dict(source=_with(8_000, np.nan)), "1 NaN or infinite samples.*first at 0.500 s"),
    "infinity": (dict(source=_with(100, np.inf)), "NaN or infinite"),
    "empty": (dict(source=np.zeros((1, 0), np.float32)), "is empty"),
    "three channels": (dict(source=np.zeros((3, SR), np.float32)), "expected mono or stereo.*3 channels"),
    "channels last": (dict(source=np.zeros((SR, 2), np.float32)), "transpose a channels-last"),
    "4-D": (dict(source=np.zeros((1, 1, 1, SR), np.float32)), r"must have shape \[B, C, T\]"),
    "start past the end": (dict(start=1.5), "start 1.5 s is at or past the end.*1.00 s long"),
    "negative start": (dict(start=-0.1), "start must be a finite number of seconds >= 0"),
    "NaN start": (dict(start=float("nan")), "start must be"),
    "zero duration": (dict(duration=0.0), "duration must be a finite number of seconds > 0"),
    "negative duration": (dict(duration=-1.0), "duration must be"),
    "duration under a sample": (dict(duration=1e-6), "shorter than one sample"),
    "rate too low": (dict(source_rate=4_000), "4000 Hz, outside the supported 8000-96000 Hz"),
    "rate too high": (dict(source_rate=192_000), "192000 Hz, outside"),
    "rate not whole": (dict(source_rate=16_000.5), "must be a whole number of Hz"),
    "target rate": (dict(sample_rate=4_000), "sample_rate is 4000 Hz"),
    "missing source_rate": (dict(source_rate=None), "pass source_rate"),
    "batch index without batch": (dict(batch_index=1), "batch_index 1 given.*no batch axis"),
    "batch index out of range": (
        dict(source=np.zeros((2, 1, SR), np.float32), batch_index=2),
        r"batch_index 2 is out of range.*batch of 2.*use 0\.\.1",
    ),
    "empty batch": (dict(source=np.zeros((0, 1, SR), np.float32)), "empty batch"),
    "boolean samples": (dict(source=np.zeros(SR, bool)), "dtype bool"),
    "AUDIO dict without rate": (
        dict(source={"waveform": torch.zeros(1, 1, SR)}, source_rate=None),
        r"\['sample_rate'\] is missing",
    ),
    "AUDIO dict with source_rate": (
        dict(source={"waveform": torch.zeros(1, 1, SR), "sample_rate": SR}, source_rate=SR),
        "source_rate is only for raw waveforms",
    ),
    "AUDIO dict with a list": (
        dict(source={"waveform": [0.0] * 10, "sample_rate": SR}, source_rate=None),
        "numpy array or torch tensor",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_bad_waveforms_raise_clear_errors(case):
    kwargs, message = BAD_ARRAYS[case]
    kwargs = {"source": sine(1.0, SR, 440.0), "source_rate": SR, **kwargs}
    with pytest.raises(ValueError, match=message):
        load_music(kwargs.pop("source"), **kwargs)


def test_unknown_source_type_is_a_type_error():
    with pytest.raises(TypeError, match="file path, a ComfyUI AUDIO dict or a numpy array"):
        load_music([0.0] * 100, source_rate=SR)


def test_bad_files_raise_clear_errors(tmp_path):
    missing = tmp_path / "nowhere.wav"
    with pytest.raises(FileNotFoundError, match="nowhere.wav"):
        load_music(missing)

    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n" * 50)
    with pytest.raises(ValueError, match="could not decode .*notes.wav as audio"):
        load_music(text)

    with pytest.raises(ValueError, match="is not a file"):
        load_music(tmp_path)

    silent_video = write_video(tmp_path / "silent.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match="has no audio stream"):
        load_music(silent_video)

    surround = write_audio(tmp_path / "surround.wav", np.zeros((3, SR), np.float32), SR, "pcm_s16le")
    assert decode_audio_file(surround)[0].shape == (3, SR)  # decoding keeps every channel...
    with pytest.raises(ValueError, match="expected mono or stereo"):
        load_music(surround)  # ...and the music front end refuses more than two

    short = write_audio(tmp_path / "short.wav", np.zeros(SR, np.float32), SR, "pcm_s16le")
    with pytest.raises(ValueError, match="1.00 s long"):
        load_music(short, start=2.0)
    with pytest.raises(ValueError, match="source_rate is only for raw waveforms"):
        load_music(short, source_rate=SR)


def test_music_checks_its_fields():
    with pytest.raises(ValueError, match="float32 numpy array"):
        Music(np.zeros(10), SR)  # float64
    with pytest.raises(ValueError, match="positive integer"):
        Music(np.zeros(10, np.float32), 0)


def test_frames_and_their_samples_are_cut_by_one_rule():
    assert frame_count(4.0, 12.0) == 48 and frame_count(1.04, 12.0) == 12  # nearest: 12.48 frames
    assert frame_count(1.99, 12.0, to_the_end=True) == 23  # music to its end: whole frames only (23.88)
    assert frame_count(1.5, 12.0, to_the_end=True) == 18  # exactly 18 frames of music: all of them
    cut = frame_samples(1.5, 18, 12.0, 16_000)
    assert (cut.start, cut.stop) == (24_000, 48_000)
