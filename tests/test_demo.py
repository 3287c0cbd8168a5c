"""The main job end to end with the shipped default model."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from musedance_core.video import read_video_info
from musedance_demo import demo
from trainer.synthetic import make_track


def test_demo_writes_the_video_the_contact_sheet_and_the_beat_plot(tmp_path, capsys):
    out = tmp_path / "new_dir"
    assert demo.main(["--out", str(out), "--seconds", "2", "--steps", "2"]) == 0
    names = {f"{demo.NAME}.mp4", f"{demo.NAME}_contact.png", f"{demo.NAME}_beats.png"}
    assert {p.name for p in out.iterdir()} == names  # nothing else, no temporary file
    info = read_video_info(out / f"{demo.NAME}.mp4")
    assert (info.num_frames, info.width, info.height) == (24, 64, 64)
    assert info.fps == pytest.approx(12.0)
    assert info.has_audio and info.audio_duration == pytest.approx(2.0, abs=1 / 12)
    sheet = np.asarray(Image.open(out / f"{demo.NAME}_contact.png"))
    assert sheet.shape == (2 * (64 * 2 + 4), 12 * (64 * 2 + 4), 3)  # 24 frames in two rows of 12, enlarged twice
    assert np.asarray(Image.open(out / f"{demo.NAME}_beats.png")).shape == (192, 768, 3)
    printed = capsys.readouterr().out
    assert "prompt: 'a red human-like figure" in printed  # the sample's own caption
    assert "beat alignment: AV-Align" in printed and "clip 2/2 done" in printed
    assert f"model: {demo.DEFAULT_CHECKPOINT_NAME} (auto: the sample dancer" in printed


def test_demo_takes_the_users_image_and_music(tmp_path, capsys):
    image = np.zeros((96, 80, 4), dtype=np.uint8)
    image[..., :3] = 90
    image[20:80, 30:50] = (230, 40, 40, 255)  # the subject, opaque on a transparent background
    Image.fromarray(image, "RGBA").save(tmp_path / "me.png")
    track = make_track(seed=0, index=0, seconds=3.0)
    music = (track.waveform * 32767).astype("<i2")
    with wave.open(str(tmp_path / "song.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(track.sample_rate)
        f.writeframes(music.tobytes())
    common = ["--image", str(tmp_path / "me.png"), "--music", str(tmp_path / "song.wav"), "--start", "1.5",
              "--seconds", "4", "--steps", "1"]
    # Your own picture goes to the flow default (model auto), which keeps the picture's size (its shorter side).
    assert demo.main([*common, "--out", str(tmp_path / "o"), "--beat-guidance", "4"]) == 0
    info = read_video_info(tmp_path / "o" / f"{demo.NAME}.mp4")
    assert info.num_frames == 18 and info.audio_duration == pytest.approx(1.5, abs=1 / 12)  # to the music's end
    assert (info.width, info.height) == (80, 80)
    printed = capsys.readouterr().out
    assert f"model: {demo.DEFAULT_FLOW_CHECKPOINT_NAME} (auto: your own picture goes to the flow default" in printed
    assert "prompt: unused by the flow family" in printed and "appearance against the picture: structure" in printed
    assert "sampler: steps 1, guidance 2, beat guidance 4" in printed
    # The MuseDance default on the same picture, asked for by name, at its own size, with its own options.
    assert demo.main([*common, "--out", str(tmp_path / "m"), "--model", str(demo.DEFAULT_MODEL),
                      "--beat-guidance", "4"]) == 0
    info = read_video_info(tmp_path / "m" / f"{demo.NAME}.mp4")
    assert (info.num_frames, info.width, info.height) == (18, 64, 64)
    assert "'a figure dancing to the beat'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo.main([*common, "--out", str(tmp_path / "x"), "--noise-share", "0.5"])
    assert "--noise-share: MuseDance's sampler options; musedance_flow_default.safetensors is a flow-family model" \
        in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_starts_from_the_noised_reference_unless_told_not_to(tmp_path, monkeypatch, capsys):
    from musedance_core import MuseDancePipeline

    seen, call = [], MuseDancePipeline.__call__

    def record(self, **kwargs):
        seen.append(kwargs["reference_start"])
        return call(self, **kwargs)

    monkeypatch.setattr(MuseDancePipeline, "__call__", record)
    for extra in ([], ["--no-reference-start"]):
        assert demo.main(["--out", str(tmp_path / "o"), "--seconds", "1", "--steps", "1", *extra]) == 0
    assert seen == [True, False]


@pytest.mark.parametrize("argv, message", [
    (["--size", "30"], "multiple of 8"),
    (["--image", "no/such.png"], "--image no/such.png does not exist"),
    (["--model", "none.safetensors"], "--model none.safetensors does not exist; give a MuseDance or flow"),
    (["--seconds", "0"], "--seconds must be in"),
    (["--beat-guidance", "-1"], "--beat-guidance must be in [0, 30]"),
])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.main(argv)
    assert message in capsys.readouterr().err


def test_the_main_job_runs_from_a_plain_pip_install(tmp_path):
    """Installed (not run from the checkout), the main job finds its sample as package data and says which flags
    give the model, which lives in the checkout's models/ folder."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source, site = tmp_path / "source", tmp_path / "site"  # a copy, so that the build leaves the checkout alone
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("musedance_core", "musedance_demo", "nodes", "trainer"):
        shutil.copytree(root / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, source / name)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--target", str(site), str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    assert (site / "musedance_demo" / "assets" / "sample_reference.png").is_file()
    assert not (site / "nodes").exists() and not (site / "trainer").exists()
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, "-m", "musedance_demo", "--seconds", "1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "--model" in run.stderr and "the default models ship in the checkout's models/ folder" in run.stderr
    models = root / "models"
    run = subprocess.run([sys.executable, "-m", "musedance_demo", "--seconds", "1", "--steps", "1", "--out", "o",
                          "--model", str(models / "musedance" / "musedance_default.safetensors"),
                          "--ast", str(models / "audio_encoders" / "musedance_default_ast")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sampler: steps 1, guidance 2.5, beat guidance 5" in run.stdout
    assert (tmp_path / "o" / f"{demo.NAME}.mp4").is_file()
