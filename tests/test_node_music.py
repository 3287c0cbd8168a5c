"""Music nodes called as ComfyUI calls them (AUDIO dicts), without a server."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from test_beats import SR, click_track


def _audio(wave: np.ndarray, rate: int = SR) -> dict:
    return {"waveform": torch.from_numpy(wave).reshape(1, 1, -1), "sample_rate": rate}


def test_beat_extract_puts_beats_on_frames_of_the_chosen_stretch(pack):
    wave, truth = click_track(120, seconds=12.0, first=0.5)
    node = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]()
    beats, tempo, plot = node.run(_audio(wave), fps=12.0, start_time=2.0, duration=4.0)
    assert beats.span.num_frames == 48 and beats.vector.shape == (48,)
    expected = np.zeros(48, np.float32)
    frames = np.floor((truth - 2.0) * 12 + 0.5).astype(int)
    expected[frames[(frames >= 0) & (frames < 48)]] = 1
    assert np.array_equal(beats.vector.numpy(), expected)  # 2.5, 3.0, ... s -> frames 6, 12, ...
    assert tempo == pytest.approx(120, abs=1)
    assert plot.shape == (1, 192, 768, 3) and float(plot.max()) <= 1.0
    red = (plot[0, :, :, 0] == 1.0) & torch.isclose(plot[0, :, :, 1], torch.tensor(0.2))
    assert int(red.all(0).sum()) == int(expected.sum())  # one red line per beat


@pytest.mark.parametrize("start, duration, message", [(0.0, 0.0, "duration must be more than 0"),
                                                       (3.0, 5.0, "runs past the end of the music")])
def test_bad_stretches_are_explained(pack, start, duration, message):
    wave, _ = click_track(120, seconds=6.0)
    with pytest.raises(ValueError, match=message):
        pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 12.0, start, duration)


def test_ast_encode_gives_tokens_for_the_same_frames(pack, tmp_path):
    from musedance_core.ast_encoder import MusicEncoder, save_tiny_ast

    encoder = MusicEncoder.from_folder(save_tiny_ast(tmp_path / "ast"))
    wave, _ = click_track(120, seconds=8.0)
    music = pack.NODE_CLASS_MAPPINGS["MuseDanceASTEncode"]().run(encoder, _audio(wave), 12.0, 1.0, 3.0)[0]
    assert music.tokens.shape[0] == 36 and music.span.num_frames == 36
    beats = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 12.0, 1.0, 3.0)[0]
    check = __import__(f"{pack.__name__}.nodes.music", fromlist=["_"]).check_same_frames
    assert check(beats, music) == music.span
    other = pack.NODE_CLASS_MAPPINGS["MuseDanceBeatExtract"]().run(_audio(wave), 24.0, 1.0, 3.0)[0]
    with pytest.raises(ValueError, match="describe different frames"):
        check(other, music)


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
