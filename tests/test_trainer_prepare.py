"""Dataset preparation (trainer/prepare.py) and reading it back (trainer/data.py), on generated clips.

The clips are tiny videos written with PyAV: a moving rectangle, a per-frame code in the corner (so
each source frame can be identified after decoding), and a click track at 120 BPM as the music.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from musedance_core.audio.ast_encoder import MusicEncoder, save_random_ast
from musedance_core.audio.music import load_music
from musedance_core.masks.framing import plan_framing
from musedance_core.masks.subject import foreground_mask
from musedance_core.video import write_video
from trainer import prepare
from trainer.clips import PreparedClip
from trainer.data import PreparedDataset
from trainer.prepare import PrepareSettings, frames_at, main, prepare_dataset

RATE = 16_000
HEIGHT, WIDTH = 32, 40  # source size; prepared at 32x32 by a centred crop of columns 4..35
SIZE = 32
CLICKS = np.arange(0.5, 4.9, 0.5)  # 120 BPM


def click_music(seconds: float) -> np.ndarray:
    wave = np.zeros(int(seconds * RATE), np.float32)
    t = np.arange(int(0.02 * RATE)) / RATE
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.005)
    for time in CLICKS[CLICKS < seconds - 0.1]:
        start = int(round(time * RATE))
        wave[start : start + click.size] += click[: wave.size - start]
    return 0.8 * wave


def drawn_frames(count: int) -> np.ndarray:
    """uint8 [count, 32, 40, 3]: a rectangle moving right, and frame j's number coded in two corner blocks."""
    frames = np.full((count, HEIGHT, WIDTH, 3), (40, 70, 110), np.uint8)
    for j in range(count):
        x = 8 + j % 16
        frames[j, 10:26, x : x + 8] = (230, 200, 60)
        frames[j, 0:8, 0:8] = (j % 32) * 8
        frames[j, 0:8, 8:16] = (j // 32) * 64
    return frames


def frame_code(frame: np.ndarray) -> int:
    """The source frame number drawn by `drawn_frames`, read back from a decoded frame."""
    return round(float(frame[2:6, 2:6].mean()) / 8) + 32 * round(float(frame[2:6, 10:14].mean()) / 64)


def mask_frames(count: int) -> np.ndarray:
    """The mask video of `drawn_frames`: white where the rectangle is, black elsewhere."""
    masks = np.zeros((count, HEIGHT, WIDTH, 3), np.uint8)
    for j in range(count):
        x = 8 + j % 16
        masks[j, 10:26, x : x + 8] = 255
    return masks


def decode_all(path: Path, fmt: str = "rgb24") -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format=fmt) for f in container.decode(container.streams.video[0])])


def nearest_source(k: int, fps: float, source_fps: int) -> int:
    """Source frame nearest time k / fps, ties to the earlier one."""
    return math.ceil(Fraction(k) / Fraction(fps) * source_fps - Fraction(1, 2))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")

    def clip(name: str, fps: int, seconds: float, audio: bool = True, caption: str | None = "a dancer spins") -> None:
        count = round(fps * seconds)
        write_video(folder / f"{name}.mp4", drawn_frames(count), fps, click_music(seconds) if audio else None,
                    RATE if audio else None, crf=0)
        if caption is not None:
            (folder / f"{name}.txt").write_text(caption + "\n")

    clip("a_mask", 25, 5.0, caption="arms up on every beat")
    write_video(folder / "a_mask.mask.mp4", mask_frames(125), 25, crf=0)
    clip("b_auto", 24, 4.0)
    (folder / "c_corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (folder / "c_corrupt.txt").write_text("broken")
    clip("d_silent", 24, 4.0, audio=False)
    clip("e_nocaption", 24, 4.0, caption=None)
    clip("f_short", 24, 1.0)
    return folder


@pytest.fixture(scope="module")
def ast_folder(tmp_path_factory) -> Path:
    return save_random_ast(tmp_path_factory.mktemp("models") / "tiny-ast", hidden_size=32)


SETTINGS = PrepareSettings(fps=12.0, height=SIZE, width=SIZE, resize="crop", masks="auto", min_frames=24,
                           clips_per_shard=2)


@pytest.fixture(scope="module")
def prepared(clips, ast_folder, tmp_path_factory) -> tuple[Path, prepare.PrepareReport]:
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare_dataset(clips, out, ast_folder, SETTINGS, progress=False)


def test_good_clips_prepared_and_bad_ones_skipped_with_reasons(prepared):
    out, report = prepared
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["name"] for c in manifest["clips"]] == report.prepared == ["a_mask", "b_auto"]
    reasons = {s["name"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"c_corrupt", "d_silent", "e_nocaption", "f_short"}
    assert reasons["c_corrupt"].startswith("unreadable video")
    assert reasons["d_silent"].startswith("no audio track")
    assert reasons["e_nocaption"].startswith("no caption file e_nocaption.txt")
    assert reasons["f_short"].startswith("too short: 12 frames")
    a, b = manifest["clips"]
    assert (a["num_frames"], b["num_frames"]) == (60, 48)
    assert a["caption"] == "arms up on every beat" and a["mask"] == "a_mask.mask.mp4" and b["mask"] == "automatic"
    assert a["shard"] == b["shard"] == "shards/shard-00000.safetensors"
    assert manifest["settings"]["music_shape"] == [62, 32] and manifest["settings"]["ast"] == "tiny-ast"
    assert not list(out.rglob("*.part"))


@pytest.mark.parametrize("name, source_fps", [("a_mask", 25), ("b_auto", 24)])
def test_frames_are_the_source_frames_nearest_k_over_fps(prepared, clips, name, source_fps):
    out, _ = prepared
    frames = load_file(out / "shards/shard-00000.safetensors")[f"{name}/frames"]
    source = decode_all(clips / f"{name}.mp4")
    picks = [nearest_source(k, 12.0, source_fps) for k in range(frames.shape[0])]
    assert [frame_code(source[j]) for j in picks] == picks  # the file really holds frame j at j / source_fps
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (len(picks), SIZE, SIZE, 3)
    assert torch.equal(frames, torch.from_numpy(source[picks][:, :, 4:36]))


def test_frames_at_never_passes_the_end(clips):
    picked = [j for j, _ in frames_at(clips / "b_auto.mp4", 7.0, 1000)]  # 96 frames at 24 fps = 4 s
    assert len(picked) == 28 and picked == [nearest_source(k, 7.0, 24) for k in range(28)]


def test_beats_music_and_masks_come_from_the_core(prepared, clips, ast_folder):
    out, _ = prepared
    shard = load_file(out / "shards/shard-00000.safetensors")
    beats = shard["a_mask/beats"]
    assert beats.dtype == torch.float32
    assert torch.nonzero(beats).flatten().tolist() == [round(t * 12) for t in CLICKS]

    music = load_music(clips / "a_mask.mp4")
    expected = MusicEncoder.from_folder(ast_folder).encode(music.waveform, 12.0, 60)
    assert shard["a_mask/music"].dtype == torch.float16 and tuple(shard["a_mask/music"].shape) == (60, 62, 32)
    assert torch.equal(shard["a_mask/music"], expected.half())

    picks = [nearest_source(k, 12.0, 25) for k in range(60)]
    grey = decode_all(clips / "a_mask.mask.mp4", "gray")[picks][:, :, 4:36]
    assert torch.equal(shard["a_mask/masks"], torch.from_numpy((grey >= 128).astype(np.uint8) * 255))

    source = decode_all(clips / "b_auto.mp4")
    framing = plan_framing((HEIGHT, WIDTH), (SIZE, SIZE), "crop")
    for k in (0, 17, 47):
        auto = framing.apply(foreground_mask(source[2 * k]).mask[None])[0]
        assert torch.equal(shard["b_auto/masks"][k], (auto * 255).round().to(torch.uint8))


def test_dataset_reads_prepared_clips(prepared):
    out, _ = prepared
    shard = load_file(out / "shards/shard-00000.safetensors")
    data = PreparedDataset(out)
    assert len(data) == 2 and data.music_shape == (62, 32) and data.fps == 12.0
    clip = data[0]
    assert isinstance(clip, PreparedClip) and clip.name == "a_mask" and clip.caption == "arms up on every beat"
    assert torch.equal(clip.frames, shard["a_mask/frames"]) and torch.equal(clip.beats, shard["a_mask/beats"])
    assert torch.equal(clip.masks, shard["a_mask/masks"].float() / 255)
    assert set(clip.masks.unique().tolist()) == {0.0, 1.0}
    assert clip.music.dtype == torch.float32 and torch.equal(clip.music, shard["a_mask/music"].float())
    part = data.clip(1, 10, 20)
    assert part.num_frames == 10 and torch.equal(part.frames, data[1].frames[10:20])
    assert torch.equal(part.music, data[1].music[10:20])
    with pytest.raises(IndexError):
        data.clip(1, 40, 60)


def test_interrupted_run_resumes_without_redoing_clips(clips, ast_folder, tmp_path, monkeypatch):
    settings = PrepareSettings(fps=12.0, height=SIZE, width=SIZE, masks="none", min_frames=24, clips_per_shard=1)
    straight = tmp_path / "straight"
    prepare_dataset(clips, straight, ast_folder, settings, progress=False)

    real = prepare.prepare_clip
    calls: list[str] = []

    def interrupted(clip, *args):
        calls.append(clip.name)
        if clip.name == "b_auto":
            raise KeyboardInterrupt
        return real(clip, *args)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(prepare, "prepare_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(clips, resumed, ast_folder, settings, progress=False)
    assert [c["name"] for c in json.loads((resumed / "manifest.json").read_text())["clips"]] == ["a_mask"]
    stale = resumed / "shards/shard-00007.safetensors"  # as if written just before a kill, never listed
    stale.write_bytes(b"partial")

    calls.clear()
    monkeypatch.setattr(prepare, "prepare_clip", lambda clip, *args: calls.append(clip.name) or real(clip, *args))
    report = prepare_dataset(clips, resumed, ast_folder, settings, progress=False)
    assert "a_mask" not in calls and report.reused == ["a_mask"] and report.prepared == ["b_auto"]
    assert not stale.exists()

    one, two = PreparedDataset(straight), PreparedDataset(resumed)
    assert one.manifest == two.manifest
    for i in range(len(one)):
        for key in ("frames", "masks", "beats", "music"):
            assert torch.equal(getattr(one[i], key), getattr(two[i], key))
    assert torch.equal(one[0].masks, torch.ones(60, SIZE, SIZE))


def test_other_settings_or_out_inside_clips_are_refused(prepared, clips, ast_folder):
    out, _ = prepared
    with pytest.raises(ValueError, match=r"other settings \(fps: 12.0 there, 10.0 now\).*another --out folder"):
        prepare_dataset(clips, out, ast_folder, PrepareSettings(fps=10.0, height=SIZE, width=SIZE), progress=False)
    with pytest.raises(ValueError, match="inside --clips"):
        prepare_dataset(clips, clips / "prepared", ast_folder, SETTINGS, progress=False)


def test_command_line_resumes_and_reports_skips(prepared, clips, ast_folder, capsys):
    out, _ = prepared
    args = ["--clips", str(clips), "--out", str(out), "--ast", str(ast_folder), "--size", "32", "--min-frames", "24",
            "--clips-per-shard", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "prepared 0 clips, 2 already done, 4 skipped" in printed and "skipped d_silent: no audio track" in printed
    with pytest.raises(SystemExit):
        main(args + ["--size", "30"])
    assert "multiples of 8" in capsys.readouterr().err


def test_a_clip_that_fails_unexpectedly_is_skipped_and_the_rest_kept(clips, ast_folder, tmp_path, monkeypatch):
    real = prepare.analyze_beats

    def analyze(wave, rate):
        if wave.size < 4.5 * rate:  # b_auto (4 s), not a_mask (5 s)
            raise RuntimeError("beat tracker broke")
        return real(wave, rate)

    monkeypatch.setattr(prepare, "analyze_beats", analyze)
    settings = PrepareSettings(fps=12.0, height=SIZE, width=SIZE, masks="none", min_frames=24)
    report = prepare_dataset(clips, tmp_path, ast_folder, settings, progress=False)
    assert report.prepared == ["a_mask"]
    assert {"name": "b_auto", "reason": "failed: RuntimeError: beat tracker broke"} in report.skipped
    assert len(PreparedDataset(tmp_path)) == 1


@pytest.mark.parametrize("stage", [1, 2])
def test_both_stages_train_on_the_prepared_dataset(prepared, tmp_path, stage, fresh_accelerate):
    """The command-line path end to end: prepared folder -> open_dataset -> a training step -> export."""
    from test_trainer import tiny_config

    from tiny_files import write_tiny_musedance
    from trainer.train import Trainer, open_dataset

    out, _ = prepared
    base = write_tiny_musedance(tmp_path / "base.safetensors")
    trainer = Trainer(tiny_config(stage, base, tmp_path / "run", steps=1, batch_size=1), open_dataset(out))
    trainer.train()
    assert trainer.step == 1 and list((tmp_path / "run").rglob("*.safetensors"))
