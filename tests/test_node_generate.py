"""Load MuseDance Model, ReferenceNet Encode, MuseDance Sampler and Save Dance Video called as ComfyUI calls them.

No server: the pack is imported as ComfyUI imports it (the `pack` fixture), with its model folders
pointed at tiny models written here and its output folder at a temporary one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from musedance_core.video import read_video_info
from sample_media import draw_reference, synth_music
from tiny_files import WORKFLOW_AST, WORKFLOW_CHECKPOINT, WORKFLOW_FLOW_CHECKPOINT, write_workflow_models

RATE = 22_050


def _module(pack, name):
    return sys.modules[f"{pack.__name__}.nodes.{name}"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    write_workflow_models(folder)
    return folder


def _model_folders(pack):
    """The pack's own ModelFolders class (the pack is imported under another name than musedance_core)."""
    return sys.modules[f"{pack.__name__}.nodes.model_paths"].ModelFolders


@contextlib.contextmanager
def _nodes_with_folders(pack, folders):
    """The node classes, with every node module's model folders replaced by `folders`."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("model", "music", "mask"):
            patch.setattr(_module(pack, name), "comfy_model_folders", lambda: folders)
        yield pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def module_nodes(pack, models_dir):
    """The node classes, with the model folders at `models_dir`."""
    with _nodes_with_folders(pack, _model_folders(pack).from_models_dir(models_dir)) as nodes:
        yield nodes


@pytest.fixture
def nodes(pack, module_nodes, tmp_path, monkeypatch):
    """As module_nodes, with ComfyUI's output folder at tmp_path/output."""
    monkeypatch.setattr(_module(pack, "comfy"), "output_folder", lambda: tmp_path / "output")
    return module_nodes


def _build_scene(nodes, checkpoint: str, ast_name: str, *, music_seconds: float, start: float, duration: float,
                 drawing: int, size: int, prompt: str) -> dict:
    """Load Model and AST, Beat Extract and AST Encode of synthesised music, ReferenceNet Encode of a drawn figure."""
    model = nodes["MuseDanceLoadModel"]().run(checkpoint, "none", "none", "auto", "default")[0]
    ast = nodes["MuseDanceLoadAST"]().run(ast_name)[0]
    audio = {"waveform": torch.from_numpy(synth_music(music_seconds, RATE))[None, None], "sample_rate": RATE}
    beats = nodes["MuseDanceBeatExtract"]().run(audio, 12.0, start, duration)["result"][0]
    music = nodes["MuseDanceASTEncode"]().run(ast, audio, 12.0, start, duration)[0]
    image, mask = (torch.from_numpy(a)[None] for a in draw_reference(drawing))
    reference, framed = nodes["MuseDanceReferenceEncode"]().run(model, image, prompt, size, size, "crop",
                                                                 mask=mask)["result"]
    return dict(model=model, reference=reference, framed=framed, music=music, beats=beats, audio=audio)


@pytest.fixture(scope="module")
def scene(module_nodes):
    """Model, reference, music tokens and beats for 3 s of synthesised music at 12 fps, 32x32 frames."""
    return _build_scene(module_nodes, WORKFLOW_CHECKPOINT, WORKFLOW_AST, music_seconds=3.5, start=0.5, duration=3.0,
                        drawing=48, size=32, prompt="a person dancing")


def _sample(nodes, scene, **overrides):
    args = dict(seed=3, steps=2, guidance=2.0, frame_count=0, clip_length=0, motion_frames=2)
    args.update(overrides)
    return nodes["MuseDanceSampler"]().run(scene["model"], scene["reference"], scene["music"], scene["beats"],
                                           **args)["result"]


def test_loader_lists_and_loads_the_checkpoint(nodes):
    loader = nodes["MuseDanceLoadModel"]
    required = loader.INPUT_TYPES()["required"]
    assert required["checkpoint"][0] == ["none", WORKFLOW_CHECKPOINT, WORKFLOW_FLOW_CHECKPOINT]
    assert required["checkpoint"][1]["default"] == WORKFLOW_CHECKPOINT
    model = loader().run(WORKFLOW_CHECKPOINT, "none", "none", "auto", "default")[0]
    assert model.pipeline.dtype == torch.float32  # auto on the CPU
    assert model.pipeline.tokenizer is not None and model.pipeline.text_encoder is not None
    assert "unet.spatial: " + WORKFLOW_CHECKPOINT in model.report
    bf16 = loader().run(WORKFLOW_CHECKPOINT, "none", "none", "bf16", "cpu")[0]
    assert bf16.pipeline.dtype == torch.bfloat16


@pytest.mark.parametrize("names, message, at_validation", [
    (dict(checkpoint="no_such.safetensors"), "not found", True),
    (dict(checkpoint="../musedance/" + WORKFLOW_CHECKPOINT), r"'\.\.'|outside|relative", True),
    (dict(checkpoint="/etc/passwd.safetensors"), "absolute", True),
    # ComfyUI's own list check refuses other names for these two at validation; the node checks again when it runs.
    (dict(checkpoint="none"), "both are 'none'", False),
    (dict(checkpoint=WORKFLOW_CHECKPOINT, motion_module="mm.ckpt"), "not found", False),
])
def test_loader_refuses_bad_model_names_before_loading(nodes, names, message, at_validation):
    loader = nodes["MuseDanceLoadModel"]
    args = dict(checkpoint=WORKFLOW_CHECKPOINT, base_checkpoint="none", motion_module="none")
    args.update(names)
    verdict = loader.VALIDATE_INPUTS(checkpoint=args["checkpoint"])
    if at_validation:
        assert verdict is not True and __import__("re").search(message, verdict), verdict
    else:
        assert verdict is True
    with pytest.raises(ValueError, match=message):
        loader().run(**args, precision="auto", device="default")


def test_loader_reads_the_chosen_checkpoints_header_at_validation(nodes, models_dir):
    """A checkpoint that is cut short, is no safetensors file, or is another model's is refused before any model
    loads, with the real problem; the not-found message lists such files apart from the loadable ones."""
    folder = models_dir / "musedance"
    good = (folder / WORKFLOW_CHECKPOINT).read_bytes()
    broken = {"cut.safetensors": (good[:-100], "cut.safetensors is truncated: its header describes"),
              "page.safetensors": (b"<html>Sign in</html>", "page.safetensors is not a safetensors file"),
              "sd15.safetensors": (len(b"{}").to_bytes(8, "little") + b"{}", "sd15.safetensors is not a MuseDance checkpoint")}
    loader = nodes["MuseDanceLoadModel"]
    try:
        for name, (content, _) in broken.items():
            (folder / name).write_bytes(content)
        for name, (_, words) in broken.items():
            assert loader.VALIDATE_INPUTS(checkpoint=name).startswith(words)
        missing = loader.VALIDATE_INPUTS(checkpoint="gone.safetensors")
        assert f"Available: {WORKFLOW_CHECKPOINT}, {WORKFLOW_FLOW_CHECKPOINT}. Not loadable: " in missing, missing
        assert all(words in missing for _, words in broken.values()), missing
    finally:
        for name in broken:
            (folder / name).unlink(missing_ok=True)


def test_sampler_makes_the_frames_of_the_music_with_its_audio(nodes, scene):
    frames, audio, fps = _sample(nodes, scene)
    assert frames.shape == (36, 32, 32, 3) and fps == 12.0
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    assert audio["sample_rate"] == RATE and audio["waveform"].shape[-1] == 3 * RATE
    start = int(0.5 * RATE)  # the stretch starts 0.5 s into the song
    assert torch.equal(audio["waveform"][0, 0], scene["audio"]["waveform"][0, 0, start : start + 3 * RATE])
    again = _sample(nodes, scene)[0]
    assert torch.equal(frames, again)  # same seed, same video
    assert not torch.equal(frames, _sample(nodes, scene, seed=4)[0])


def test_sampler_reference_start_reaches_the_sampler(nodes, scene, monkeypatch):
    optional = nodes["MuseDanceSampler"].INPUT_TYPES()["optional"]
    assert optional["reference_start"][0] == ["auto", "on", "off"] and optional["reference_start"][1]["default"] == "auto"
    seen = []
    call = type(scene["model"].pipeline).iter_clips

    def record(self, **kwargs):
        seen.append(kwargs["reference_start"])
        return call(self, **kwargs)

    monkeypatch.setattr(type(scene["model"].pipeline), "iter_clips", record)
    plain = _sample(nodes, scene, frame_count=4, reference_start="off")[0]
    started = _sample(nodes, scene, frame_count=4, reference_start="on")[0]
    _sample(nodes, scene, frame_count=4, reference_start=True)  # a workflow saved when it was a BOOLEAN
    assert seen == [False, True, True] and not torch.equal(plain, started)


def test_clips_on_bar_lines_take_beat_extracts_bar_lines(nodes, scene, monkeypatch):
    import dataclasses

    seen = []
    call = type(scene["model"].pipeline).iter_clips

    def record(self, **kwargs):
        seen.append(list(kwargs["bar_frames"]))
        return call(self, **kwargs)

    monkeypatch.setattr(type(scene["model"].pipeline), "iter_clips", record)
    frames = scene["beats"].vector.shape[0]
    downbeats = torch.zeros(frames)
    downbeats[::7] = 1  # a bar line every 7 frames
    barred = dataclasses.replace(scene["beats"], downbeats=downbeats, meter=4)
    answer = nodes["MuseDanceSampler"]().run(scene["model"], scene["reference"], scene["music"], barred, 3, 1,
                                             1.0, 0, 0, 2, clip_ends="on bar lines")
    assert seen == [list(range(0, frames, 7))] and answer["result"][0].shape[0] == frames
    _sample(nodes, scene, steps=1)
    assert seen[-1] == []  # the default: every clip_length frames
    no_bars = dataclasses.replace(scene["beats"], downbeats=None, meter=0)
    answer = nodes["MuseDanceSampler"]().run(scene["model"], scene["reference"], scene["music"], no_bars, 3, 1, 1.0,
                                             0, 0, 2, clip_ends="on bar lines")
    assert answer["ui"]["text"][1] == "Beat Extract found no bar lines in this music: clips end every 8 frames."


def test_a_prompt_longer_than_clip_reads_is_reported_with_what_was_cut(nodes, scene):
    model, image = scene["model"], scene["framed"]
    short = nodes["MuseDanceReferenceEncode"]().run(model, image, "a person dancing", 32, 32, "crop")
    assert short["ui"]["text"] == []
    words = " ".join(f"step{i}" for i in range(60)) + " finale"
    long = nodes["MuseDanceReferenceEncode"]().run(model, image, words, 32, 32, "crop")
    (note,) = long["ui"]["text"]
    assert "longer than the 77 tokens CLIP reads" in note and note.count("finale") == 1 and "step0 " not in note


def test_sampler_on_auto_uses_the_models_recommended_settings_and_shows_them(nodes, scene, monkeypatch):
    from musedance_core.config import SamplerSettings

    pipe = scene["model"].pipeline
    monkeypatch.setattr(pipe, "recommended", SamplerSettings(steps=1, guidance_scale=1.5, beat_guidance_scale=3.0,
                                                             noise_share=0.25, reference_start=True))
    seen = []
    call = type(pipe).iter_clips
    monkeypatch.setattr(type(pipe), "iter_clips", lambda self, **kw: (seen.append(kw), call(self, **kw))[1])
    node = nodes["MuseDanceSampler"]()
    out = node.run(scene["model"], scene["reference"], scene["music"], scene["beats"], seed=0, steps=0, guidance=0.0,
                   frame_count=2, clip_length=0, motion_frames=2)
    assert {k: seen[-1][k] for k in ("num_inference_steps", "guidance_scale", "beat_guidance_scale", "noise_share",
                                     "reference_start")} == dict(num_inference_steps=1, guidance_scale=1.5,
                                                                 beat_guidance_scale=3.0, noise_share=0.25,
                                                                 reference_start=True)
    assert out["ui"]["text"] == ["sampler: steps 1, guidance 1.5, beat guidance 3, noise share 0.25, reference start on"]
    node.run(scene["model"], scene["reference"], scene["music"], scene["beats"], seed=0, steps=2, guidance=2.0,
             frame_count=2, clip_length=0, motion_frames=2, noise_share=0.0, beat_guidance=0.0, reference_start="off")
    assert (seen[-1]["num_inference_steps"], seen[-1]["guidance_scale"], seen[-1]["beat_guidance_scale"],
            seen[-1]["noise_share"], seen[-1]["reference_start"]) == (2, 2.0, None, 0.0, False)
    assert "guidance 0.5" in nodes["MuseDanceSampler"].VALIDATE_INPUTS(guidance=0.5)


def test_sampler_frame_count_clips_and_reference_sharing(nodes, scene):
    frames, audio, _ = _sample(nodes, scene, frame_count=10, clip_length=4, motion_frames=1)
    assert frames.shape[0] == 10 and audio["waveform"].shape[-1] == round(10 / 12 * RATE)
    with pytest.raises(ValueError, match="more than the music's 36 frames"):
        _sample(nodes, scene, frame_count=37)
    other = nodes["MuseDanceLoadModel"]().run(WORKFLOW_CHECKPOINT, "none", "none", "fp32", "cpu")[0]
    with pytest.raises(ValueError, match="another MuseDance model"):
        nodes["MuseDanceSampler"]().run(other, scene["reference"], scene["music"], scene["beats"], 0, 1, 1.0, 0, 0, 2)


def test_sampler_advances_progress_every_step_and_stops_on_cancel(pack, nodes, scene, monkeypatch):
    comfy = _module(pack, "comfy")
    seen, checks = [], []

    class Bar:
        def __init__(self, total):
            self.total = total

        def set(self, value, preview=None):
            seen.append((value, self.total))
            previews.append(preview)

    previews = []
    monkeypatch.setattr(comfy, "Progress", Bar)
    frames = _sample(nodes, scene, clip_length=8, steps=3)[0]  # 36 frames: 5 clips of 3 steps
    assert seen == [(i, 15) for i in range(1, 16)]
    # each finished clip shows its last frame: frames 7, 15, 23, 31 and 35
    shown = [(i, p) for i, p in enumerate(previews) if p is not None]
    assert [i for i, _ in shown] == [2, 5, 8, 11, 14]
    for (_, preview), last in zip(shown, (7, 15, 23, 31, 35)):
        torch.testing.assert_close(preview, frames[last], atol=1e-5, rtol=0)

    class Interrupted(Exception):  # stands for comfy.model_management.InterruptProcessingException
        pass

    def cancel_at_fourth_check():
        checks.append(1)
        if len(checks) == 4:
            raise Interrupted

    monkeypatch.setattr(comfy, "throw_if_interrupted", cancel_at_fourth_check)
    seen.clear()
    with pytest.raises(Interrupted):
        _sample(nodes, scene, clip_length=8, steps=3)
    assert len(seen) == 3  # one check before sampling, then one per step: stopped after step 3
    assert not scene["model"].pipeline.bank.tokens  # no reference features left behind


def test_reference_encode_frames_the_image_and_checks_the_mask(nodes, scene):
    model, encode = scene["model"], nodes["MuseDanceReferenceEncode"]()
    image = torch.rand(1, 40, 80, 3)
    _, framed = encode.run(model, image, "", 32, 48, "pad")["result"]
    assert framed.shape == (1, 48, 32, 3)
    with pytest.raises(ValueError, match="aspect ratios differ"):
        encode.run(model, image, "", 32, 32, "crop", mask=torch.ones(1, 40, 40))
    with pytest.warns(Warning, match="resizing"):
        encode.run(model, image, "", 32, 32, "crop", mask=torch.ones(1, 20, 40))
    with pytest.raises(ValueError, match="one image"):
        encode.run(model, torch.rand(2, 32, 32, 3), "", 32, 32, "crop")
    placeholder = torch.zeros(1, 64, 64)  # Load Image's MASK for an image without alpha
    reference, _ = encode.run(model, image, "", 32, 32, "crop", mask=placeholder)["result"]
    unmasked, _ = encode.run(model, image, "", 32, 32, "crop")["result"]
    for name, tokens in unmasked.encoding.tokens.items():
        assert torch.equal(tokens, reference.encoding.tokens[name])


def test_video_combine_writes_mp4_and_webm_with_the_music(nodes, scene, tmp_path):
    frames, audio, fps = _sample(nodes, scene, frame_count=12)
    combine = nodes["MuseDanceVideoCombine"]()
    for counter, (fmt, ext) in enumerate((("h264-mp4", ".mp4"), ("vp9-webm", ".webm")), 1):
        out = combine.run(frames, fps, "MuseDance/dance", fmt, 30, audio=audio)
        (entry,) = out["ui"]["images"]
        name = f"dance_{counter:05d}{ext}"  # one counter across formats, as ComfyUI's save nodes count
        assert entry == {"filename": name, "subfolder": "MuseDance", "type": "output"}
        assert out["ui"]["animated"] == (True,) and out["result"] == (f"MuseDance/{name}",)
        info = read_video_info(tmp_path / "output" / "MuseDance" / entry["filename"])
        assert (info.num_frames, info.width, info.height) == (12, 32, 32)
        assert info.has_audio and abs(info.audio_duration - 1.0) <= 1 / fps
    second = combine.run(frames, fps, "MuseDance/dance", "h264-mp4", 30)["ui"]["images"][0]
    assert second["filename"] == "dance_00003.mp4"  # a counter, never an overwrite
    assert not read_video_info(tmp_path / "output" / "MuseDance" / second["filename"]).has_audio


@pytest.mark.parametrize("prefix", ["../escape/dance", "/tmp/escape/dance", "C:\\escape\\dance", "a/../../dance",
                                    "", "./"])
def test_video_combine_refuses_prefixes_that_leave_the_output_folder(nodes, tmp_path, prefix):
    with pytest.raises(ValueError, match="filename_prefix"):
        nodes["MuseDanceVideoCombine"]().run(torch.rand(2, 16, 16, 3), 12.0, prefix, "h264-mp4", 30)
    assert not (tmp_path / "escape").exists()
    assert not any(p.is_file() for p in (tmp_path / "output").rglob("*")) if (tmp_path / "output").exists() else True


def test_video_combine_refuses_a_link_out_of_the_output_folder(nodes, tmp_path):
    (tmp_path / "output").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "output" / "link")
    with pytest.raises(ValueError, match="outside ComfyUI's output folder"):
        nodes["MuseDanceVideoCombine"]().run(torch.rand(2, 16, 16, 3), 12.0, "link/dance", "h264-mp4", 30)
    assert not list((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("inputs, words", [
    (dict(filename_prefix="Muse\x00Dance/dance"), "NUL character"),
    (dict(filename_prefix="   "), "is empty"),
    (dict(filename_prefix="../escape/dance"), "tries to leave"),
    (dict(filename_prefix="x" * 300), "part of 300 bytes"),
    (dict(format="h264-mp4", crf=52), "outside 0..51 for h264-mp4"),
    (dict(format="vp9-webm", crf=64), "outside 0..63 for vp9-webm"),
    (dict(format="gif"), "format 'gif' is unknown"),
])
def test_video_settings_are_checked_before_any_frame_exists(nodes, tmp_path, inputs, words):
    validate = nodes["MuseDanceVideoCombine"].VALIDATE_INPUTS
    assert words in validate(**inputs)
    assert validate(filename_prefix="MuseDance/dance", format="vp9-webm", crf=63) is True
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").rglob("*"))  # validation writes nothing


def test_the_video_carries_its_workflow_unless_told_not_to(nodes, tmp_path):
    import json

    combine = nodes["MuseDanceVideoCombine"]()
    prompt, workflow = {"1": {"class_type": "X", "inputs": {}}}, {"nodes": [], "links": [], "version": 0.4}
    for fmt in ("h264-mp4", "vp9-webm"):
        path = tmp_path / "output" / combine.run(torch.rand(2, 16, 16, 3), 12.0, "MuseDance/wf", fmt, 30, prompt=prompt,
                                                 extra_pnginfo={"workflow": workflow})["result"][0]
        tags = {k.lower(): v for k, v in read_video_info(path).metadata.items()}  # WebM's muxer writes them in capitals
        assert json.loads(tags["workflow"]) == workflow and json.loads(tags["prompt"]) == prompt
    path = tmp_path / "output" / combine.run(torch.rand(2, 16, 16, 3), 12.0, "MuseDance/wf", "h264-mp4", 30,
                                             save_workflow=False, prompt=prompt,
                                             extra_pnginfo={"workflow": workflow})["result"][0]
    assert not {"workflow", "prompt"} & set(read_video_info(path).metadata)


def test_video_combine_leaves_nothing_when_encoding_fails(nodes, tmp_path):
    bad = torch.full((2, 16, 16, 3), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        nodes["MuseDanceVideoCombine"]().run(bad, 12.0, "MuseDance/dance", "h264-mp4", 30)
    assert [p for p in (tmp_path / "output").rglob("*") if p.is_file()] == []


def test_music_nodes_take_the_rest_of_the_song(nodes):
    audio = {"waveform": torch.zeros(1, 2, int(5.05 * RATE)), "sample_rate": RATE}
    music_module = sys.modules[nodes["MuseDanceBeatExtract"].__module__]
    span = music_module.frame_span(audio, 12.0, 1.0, -1.0)
    assert span.num_frames == 48  # 4.05 s left: whole frames only, never past the end of the music
    with pytest.raises(ValueError, match="duration must be more than 0 seconds, or -1"):
        music_module.frame_span(audio, 12.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="at or past the end"):
        music_module.frame_span(audio, 12.0, 5.5, -1.0)
    segment = music_module.span_audio(audio, span)
    assert segment["waveform"].shape == (1, 2, 4 * RATE) and segment["sample_rate"] == RATE
    assert np.isclose(span.duration, 4.0)


def test_the_shipped_default_model_runs_through_the_nodes(pack):
    """What the example workflows do with the pack's own models/ folder: the default model and its AST."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "models"
    folders = _model_folders(pack)({"musedance": [root / "musedance"], "audio_encoders": [root / "audio_encoders"]})
    with _nodes_with_folders(pack, folders) as nodes:
        assert "musedance_default.safetensors" in nodes["MuseDanceLoadModel"].INPUT_TYPES()["required"]["checkpoint"][0]
        shipped = _build_scene(nodes, "musedance_default.safetensors", "musedance_default_ast", music_seconds=1.5,
                               start=0.0, duration=1.0, drawing=64, size=64, prompt="a figure pumps its arms")
        frames, sound, fps = nodes["MuseDanceSampler"]().run(
            shipped["model"], shipped["reference"], shipped["music"], shipped["beats"], seed=0, steps=2,
            guidance=2.5, frame_count=0, clip_length=0, motion_frames=2)["result"]
    assert frames.shape == (12, 64, 64, 3) and fps == 12.0 and torch.isfinite(frames).all()
    assert sound["waveform"].shape[-1] == RATE  # one second of the music, trimmed to the frames


def test_progress_sends_previews_in_the_form_comfyui_samplers_use(pack, monkeypatch):
    comfy = _module(pack, "comfy")
    sent = []

    class ProgressBar:  # comfy.utils.ProgressBar's interface, early 2024 to today
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            sent.append((value, total, preview))

    monkeypatch.setattr(comfy, "_module", lambda name: type("utils", (), {"ProgressBar": ProgressBar}))
    bar = comfy.Progress(4)
    bar.set(1)
    bar.set(2, torch.full((8, 6, 3), 0.5))
    assert sent[0] == (1, 4, None)
    kind, image, size = sent[1][2]
    assert (kind, image.size, size) == ("JPEG", (6, 8), comfy.PREVIEW_SIZE) and image.getpixel((0, 0)) == (128,) * 3


def test_on_a_comfyui_with_the_video_type_the_video_node_also_outputs_video(tmp_path, monkeypatch):
    """Where `comfy_api.input_impl.VideoFromFile` exists (current ComfyUI), Save Dance Video also returns the
    file as ComfyUI's VIDEO; without it (ComfyUI of early 2024, the unit tests) only the path."""
    import importlib.util
    import types

    class VideoFromFile:  # the interface ComfyUI's video nodes use: made from a path
        def __init__(self, file):
            self.file = file

    fake = types.ModuleType("comfy_api.input_impl")
    fake.VideoFromFile = VideoFromFile
    monkeypatch.setitem(sys.modules, "comfy_api", types.ModuleType("comfy_api"))
    monkeypatch.setitem(sys.modules, "comfy_api.input_impl", fake)
    root = Path(__file__).resolve().parents[1]
    name = "musedance_pack_with_video_type"
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    pack = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, pack)
    spec.loader.exec_module(pack)
    try:
        node = pack.NODE_CLASS_MAPPINGS["MuseDanceVideoCombine"]
        assert node.RETURN_TYPES == ("STRING", "VIDEO") and node.RETURN_NAMES == ("filename", "video")
        monkeypatch.setattr(sys.modules[f"{name}.nodes.comfy"], "output_folder", lambda: tmp_path)
        relative, video = node().run(torch.rand(2, 16, 16, 3), 12.0, "MuseDance/v", "h264-mp4", 30)["result"]
        assert isinstance(video, VideoFromFile) and Path(video.file) == tmp_path / relative
    finally:
        for key in [k for k in sys.modules if k.startswith(name + ".")]:
            del sys.modules[key]


def _render(nodes, scene, **overrides):
    args = dict(seed=3, steps=2, guidance=2.0, frame_count=0, clip_length=8, motion_frames=2,
                filename_prefix="MuseDance/render", format="h264-mp4", crf=20)
    args.update(overrides)
    return nodes["MuseDanceRender"]().run(scene["model"], scene["reference"], scene["music"], scene["beats"], **args)


def test_render_writes_the_samplers_video_clip_by_clip_with_its_music(pack, nodes, scene, tmp_path, monkeypatch):
    """Render Dance Video makes the frames MuseDance Sampler makes (same seed and settings), writing each clip
    with the music of its frames as soon as it is finished: the file grows while the sampler runs."""
    written = []
    video_module = __import__(f"{pack.__name__}.musedance_core.video", fromlist=["_"])
    real_write = video_module.VideoWriter.write
    monkeypatch.setattr(video_module.VideoWriter, "write",
                        lambda self, frames, audio=None: (written.append(frames.shape[0]), real_write(self, frames, audio)))
    out = _render(nodes, scene, crf=0)
    (entry,) = out["ui"]["images"]
    assert entry == {"filename": "render_00001.mp4", "subfolder": "MuseDance", "type": "output"}
    assert out["ui"]["animated"] == (True,) and out["result"][0] == "MuseDance/render_00001.mp4"
    assert written == [8, 8, 8, 8, 4]  # 36 frames, one clip at a time
    info = read_video_info(tmp_path / "output" / "MuseDance" / "render_00001.mp4")
    assert (info.num_frames, info.width, info.height) == (36, 32, 32) and "prompt" not in info.metadata
    assert info.has_audio and abs(info.audio_duration - 3.0) <= 1 / 12, info
    with av.open(str(tmp_path / "output" / "MuseDance" / "render_00001.mp4")) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]) / 255.0

    def blocks(frames):  # 4x4 block means: what H.264's 4:2:0 colour (2x2 chroma) keeps
        return frames.reshape(frames.shape[0], 8, 4, 8, 4, 3).mean((2, 4))

    same = np.abs(blocks(decoded) - blocks(_sample(nodes, scene, clip_length=8)[0].numpy())).mean()
    other = np.abs(blocks(decoded) - blocks(_sample(nodes, scene, clip_length=8, seed=4)[0].numpy())).mean()
    assert same < other / 5, (same, other)  # the sampler's own frames


@pytest.mark.parametrize("on_cancel", ["keep the video so far", "remove the video"])
def test_cancel_during_a_render_keeps_the_video_so_far_or_nothing(pack, nodes, scene, tmp_path, monkeypatch, on_cancel):
    comfy = _module(pack, "comfy")

    class Interrupted(Exception):  # stands for comfy.model_management.InterruptProcessingException
        pass

    checks = []

    def cancel_in_the_third_clip():
        checks.append(1)
        if len(checks) == 1 + 2 * 2 + 1:  # one check before sampling, two steps per clip
            raise Interrupted

    monkeypatch.setattr(comfy, "throw_if_interrupted", cancel_in_the_third_clip)
    monkeypatch.setattr(comfy, "interrupt_exceptions", lambda: (Interrupted,))
    with pytest.raises(Interrupted):
        _render(nodes, scene, on_cancel=on_cancel)
    folder = tmp_path / "output" / "MuseDance"
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    if on_cancel == "remove the video":
        assert left == []
    else:
        assert left == ["render_00001.mp4"]
        info = read_video_info(folder / left[0])
        assert info.num_frames == 16 and abs(info.audio_duration - 16 / 12) <= 1 / 12, info


def test_the_sampler_refuses_an_image_too_large_to_hold_and_names_the_streamed_way(nodes, scene, monkeypatch):
    monkeypatch.setenv("MUSEDANCE_IMAGE_LIMIT_GB", str(35 * 32 * 32 * 3 * 4 / 2**30))  # 35 frames' worth
    with pytest.raises(ValueError, match=r"36 frames of 32x32 need .* GiB as one IMAGE.*Render Dance Video"):
        _sample(nodes, scene)
    assert _sample(nodes, scene, frame_count=35)[0].shape[0] == 35


def test_a_cancelled_render_is_continued_into_a_whole_video(pack, nodes, scene, tmp_path, monkeypatch):
    """Cancel after two clips keeps 16 frames; Render Dance Video with continue_from that file writes a new video
    of all 36 frames: the kept frames, then clips from frame 16 whose motion context is the kept video's last
    frames, with the music of every frame. A video of other timing, or not the node's, is refused."""
    comfy = _module(pack, "comfy")

    class Interrupted(Exception):
        pass

    checks = []

    def cancel_in_the_third_clip():
        checks.append(1)
        if len(checks) == 6:
            raise Interrupted

    monkeypatch.setattr(comfy, "interrupt_exceptions", lambda: (Interrupted,))
    with monkeypatch.context() as patch:
        patch.setattr(comfy, "throw_if_interrupted", cancel_in_the_third_clip)
        with pytest.raises(Interrupted):
            _render(nodes, scene, filename_prefix="MuseDance/part")
    kept = tmp_path / "output" / "MuseDance" / "part_00001.mp4"
    assert read_video_info(kept).num_frames == 16
    seen = []
    pipe_type = type(scene["model"].pipeline)
    real = pipe_type.iter_clips
    monkeypatch.setattr(pipe_type, "iter_clips", lambda self, **kw: (seen.append(kw), real(self, **kw))[1])
    out = _render(nodes, scene, filename_prefix="MuseDance/whole", continue_from="MuseDance/part_00001.mp4")
    whole = tmp_path / "output" / "MuseDance" / "whole_00001.mp4"
    assert out["result"][0] == "MuseDance/whole_00001.mp4"
    info = read_video_info(whole)
    assert info.num_frames == 36 and abs(info.audio_duration - 3.0) <= 1 / 12, info
    (call,) = seen
    assert call["start_frame"] == 16 and call["context_frames"].shape == (2, 32, 32, 3)
    with av.open(str(kept)) as container:
        last = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])[-2:]
    assert torch.equal(call["context_frames"], torch.from_numpy(last).float() / 255)
    render = nodes["MuseDanceRender"]
    assert "no video 'MuseDance/none.mp4'" in render.VALIDATE_INPUTS(continue_from="MuseDance/none.mp4")
    assert "tries to leave" in render.VALIDATE_INPUTS(continue_from="../part_00001.mp4")
    write_video = __import__("musedance_core.video", fromlist=["_"]).write_video
    write_video(tmp_path / "output" / "MuseDance" / "other.mp4", np.zeros((4, 32, 32, 3), np.uint8), 12)
    assert "is not a video Render Dance Video wrote" in render.VALIDATE_INPUTS(continue_from="MuseDance/other.mp4")
    with pytest.raises(ValueError, match="already has 36 frames"):
        _render(nodes, scene, continue_from="MuseDance/whole_00001.mp4")


def test_song_sections_and_a_motion_schedule_give_each_section_its_prompt(nodes, scene, monkeypatch):
    """Song Sections finds the two halves of an A-then-B song on its bar lines; Motion Schedule turns 'A: ...' and
    'B: ...' into a prompt change at the B section's first frame, which the sampler receives with the prompts'
    CLIP encodings (the reference's prompt where a line gives none); a line naming no section is refused."""
    from test_schedule import _part

    song = np.concatenate([_part("A", 8, 0), _part("B", 8, 1)])
    audio = {"waveform": torch.from_numpy(song)[None, None], "sample_rate": 16_000}
    beats = nodes["MuseDanceBeatExtract"]().run(audio, 12.0, 0.0, -1.0)["result"][0]
    out = nodes["MuseDanceSections"]().run(audio, beats, 4.0, 0.75)
    sections, plot, listing = out["result"]
    assert [(round(s.start), round(s.end), s.label) for s in sections.sections] == [(0, 8, "A"), (8, 16, "B")]
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and listing.splitlines()[1].startswith("section 2 (B)")
    schedule_node = nodes["MuseDanceSchedule"]
    assert "is not a place in the song" in schedule_node.VALIDATE_INPUTS(schedule="the drop: jumps")
    assert schedule_node.VALIDATE_INPUTS(schedule="A: steps\nB: spins") is True
    model = scene["model"]
    schedule = schedule_node().run(model, beats, "B: spins", sections)["result"][0]
    first_b = round(sections.sections[1].start * 12)
    assert [(first, text) for first, text, _ in schedule.changes] == [(0, None), (first_b, "spins")]
    music = nodes["MuseDanceASTEncode"]().run(nodes["MuseDanceLoadAST"]().run(WORKFLOW_AST)[0], audio, 12.0, 0.0, -1.0)[0]
    seen = []
    pipe_type = type(model.pipeline)
    real = pipe_type.iter_clips
    monkeypatch.setattr(pipe_type, "iter_clips", lambda self, **kw: (seen.append(kw), real(self, **kw))[1])
    frames = nodes["MuseDanceSampler"]().run(model, scene["reference"], music, beats, seed=1, steps=1, guidance=1.0,
                                             frame_count=0, clip_length=16, motion_frames=2,
                                             schedule=schedule)["result"][0]
    assert frames.shape[0] == 192
    (pairs,) = [kw["text_schedule"] for kw in seen]
    assert [first for first, _ in pairs] == [0, first_b]
    assert torch.equal(pairs[0][1], scene["reference"].text_embeds)
    assert torch.equal(pairs[1][1], model.pipeline.encode_prompt("spins").float())
    assert seen[0]["guidance_schedule"] == []
    # Settings of a section's own: the sampler gets them from the section's first frame on.
    answer = schedule_node().run(model, beats, "B: spins [guidance 3, beat guidance 6]", sections)
    assert answer["ui"]["text"][-1] == f"{first_b / 12:7.2f} s (frame {first_b}): guidance 3, beat guidance 6"
    nodes["MuseDanceSampler"]().run(model, scene["reference"], music, beats, seed=1, steps=1, guidance=1.0,
                                    frame_count=first_b + 4, clip_length=16, motion_frames=2,
                                    schedule=answer["result"][0])
    assert seen[-1]["guidance_schedule"] == [(0, {}), (first_b, {"guidance_scale": 3.0, "beat_guidance_scale": 6.0})]
    notes = schedule_node().run(model, beats, "C: spins", sections)["ui"]["text"]
    assert notes[-1] == "line 1 (C) applies to no frame of this stretch of the song."
    with pytest.raises(ValueError, match="the song has 2 sections"):
        schedule_node().run(model, beats, "section 3: spins", sections)


def test_cancel_takes_effect_inside_the_first_step(pack, nodes, scene, monkeypatch):
    """Cancel pressed while the first step runs stops the sampler between two UNet blocks of that step, before
    it reports the step done (ComfyUI's flag is read between blocks, its exception raised there)."""
    comfy = _module(pack, "comfy")

    class Interrupted(Exception):
        pass

    state = {"reads": 0, "pressed": False}

    def interrupt_requested():
        state["reads"] += 1
        state["pressed"] = state["pressed"] or state["reads"] == 7  # pressed during the first UNet pass
        return state["pressed"]

    def throw_if_interrupted():
        if state["pressed"]:
            raise Interrupted

    steps = []

    class Bar:
        def __init__(self, total):
            pass

        def set(self, value, preview=None):
            steps.append(value)

    monkeypatch.setattr(comfy, "interrupt_requested", interrupt_requested)
    monkeypatch.setattr(comfy, "throw_if_interrupted", throw_if_interrupted)
    monkeypatch.setattr(comfy, "Progress", Bar)
    with pytest.raises(Interrupted):
        _sample(nodes, scene, clip_length=8, steps=3)
    assert steps == [] and state["reads"] == 7
    assert not scene["model"].pipeline.bank.tokens


def test_cancel_takes_effect_inside_the_reference_encoding(pack, nodes, scene, monkeypatch):
    """Cancel pressed while ReferenceNet Encode runs the ReferenceNet stops it between two of its blocks' parts;
    the model is handed back and no reference features are left behind."""
    comfy = _module(pack, "comfy")

    class Interrupted(Exception):
        pass

    state = {"reads": 0}

    def interrupt_requested():
        state["reads"] += 1
        return state["reads"] >= 3

    def throw_if_interrupted():
        if state["reads"] >= 3:
            raise Interrupted

    done = []
    monkeypatch.setattr(comfy, "interrupt_requested", interrupt_requested)
    monkeypatch.setattr(comfy, "throw_if_interrupted", throw_if_interrupted)
    monkeypatch.setattr(type(scene["model"]), "done", lambda self: done.append(True))
    image, mask = (torch.from_numpy(a)[None] for a in draw_reference(32))
    with pytest.raises(Interrupted):
        nodes["MuseDanceReferenceEncode"]().run(scene["model"], image, "a person dancing", 32, 32, "crop", mask=mask)
    assert state["reads"] == 3 and done == [True] and not scene["model"].pipeline.bank.tokens


def _api_workflow(name: str) -> dict:
    import json

    return json.loads((Path(__file__).resolve().parents[1] / "workflows" / "api" / f"{name}.api.json").read_text())


def _node_id(workflow: dict, class_type: str) -> str:
    (found,) = [key for key, value in workflow.items() if value["class_type"] == class_type]
    return found


@pytest.fixture
def song_in_input_folder(pack, tmp_path, monkeypatch):
    """10 s of music as the example workflows' musedance_music.wav, in a temporary ComfyUI input folder."""
    import wave

    monkeypatch.setattr(_module(pack, "comfy"), "input_folder", lambda: tmp_path)
    samples = (synth_music(10.0, RATE) * 32767).astype(np.int16)
    with wave.open(str(tmp_path / "musedance_music.wav"), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes(samples.tobytes())
    return 10.0


def test_a_jobs_size_is_read_from_the_whole_prompt(pack, nodes, song_in_input_folder):
    """Size from ReferenceNet Encode, frames from Dance Timing through AST Music Encode (or, for -1, the song
    file's own length), guidance rows from the sampler's widgets, the model's configuration from its file."""
    memory = _module(pack, "job_memory")
    basic = _api_workflow("musedance_basic")
    sampler = _node_id(basic, "MuseDanceSampler")
    basic[sampler]["inputs"].update(guidance=3.0, beat_guidance=6.0, clip_length=6)
    basic[_node_id(basic, "MuseDanceReferenceEncode")]["inputs"].update(width=96, height=80)
    job = memory.job_from_prompt(basic, sampler)
    assert (job.width, job.height, job.rows, job.clip_length, job.frames) == (96, 80, 3, 6, 48)
    assert job.holds_every_frame and job.config.unet.block_out_channels == (32, 64)
    basic[sampler]["inputs"].update(guidance=1.0, beat_guidance=0.0, clip_length=0, frame_count=20)
    job = memory.job_from_prompt(basic, sampler)
    assert (job.rows, job.clip_length, job.frames) == (1, job.config.clip_length, 20)

    song = _api_workflow("musedance_song_sections")
    render = _node_id(song, "MuseDanceRender")
    timing = song[_node_id(song, "MuseDanceTiming")]["inputs"]
    assert timing["duration"] == -1
    job = memory.job_from_prompt(song, render)
    assert not job.holds_every_frame and job.song_seconds == pytest.approx(song_in_input_folder, abs=0.01)
    assert job.frames == int((song_in_input_folder - timing["start_time"]) * timing["fps"] + 1e-6)
    # A Motion Schedule line with settings of its own counts with the most rows it asks for.
    song[render]["inputs"].update(guidance=1.0, beat_guidance=0.0)
    assert memory.job_from_prompt(song, render).rows == 1
    schedule = song[_node_id(song, "MuseDanceSchedule")]["inputs"]
    schedule["schedule"] += "\nbars 1-2: jumps [guidance 3, beat guidance 6]"
    assert memory.job_from_prompt(song, render).rows == 3


def test_a_job_over_the_memory_budget_is_refused_at_validation_with_its_estimate(pack, nodes, song_in_input_folder,
                                                                                 monkeypatch):
    memory = _module(pack, "job_memory")
    basic = _api_workflow("musedance_basic")
    sampler = _node_id(basic, "MuseDanceSampler")
    validate = nodes["MuseDanceSampler"].VALIDATE_INPUTS
    request = {"prompt": basic, "client_id": "tests"}
    assert memory.check_prompt(request) is request and validate(guidance=0.0, unique_id=sampler) is True

    monkeypatch.setenv("MUSEDANCE_MEMORY_BUDGET_GB", "0.01")
    memory.check_prompt(request)
    message = validate(guidance=0.0, unique_id=sampler)
    assert isinstance(message, str) and message.startswith("This job needs about"), message
    for words in ("MiB of RAM", "model weights", "one VAE decode at 64x64 (8 frames)", "48 frames held as one IMAGE",
                  "budget of 10 MiB (MUSEDANCE_MEMORY_BUDGET_GB=0.01)", "Render Dance Video", "smaller size"):
        assert words in message, (words, message)
    assert validate(guidance=0.0, unique_id="another node") is True

    monkeypatch.delenv("MUSEDANCE_MEMORY_BUDGET_GB")
    timing = basic[_node_id(basic, "MuseDanceTiming")]["inputs"]
    timing.update(fps=60.0, duration=3600.0)  # an hour at 60 fps, held as one IMAGE
    memory.check_prompt(request)
    message = validate(guidance=0.0, unique_id=sampler)
    assert "216000 frames of 64x64 need 9.9 GiB as one IMAGE" in message and "Render Dance Video" in message
    timing.update(fps=12.0, duration=4.0)
    memory.check_prompt(request)  # the next prompt's verdict replaces the last one's
    assert validate(guidance=0.0, unique_id=sampler) is True


def test_the_sampler_checks_the_memory_again_before_it_loads_the_model(nodes, scene, monkeypatch):
    monkeypatch.setenv("MUSEDANCE_MEMORY_BUDGET_GB", "0.001")
    with pytest.raises(ValueError, match=r"^This job needs about .* MiB of RAM .*one (denoising step|VAE decode) at 32x32"):
        _sample(nodes, scene)


def test_a_flow_family_model_runs_through_the_same_nodes(pack, nodes, scene, models_dir, tmp_path):
    """A flow-family checkpoint (DabFusion) in models/musedance: Load MuseDance Model loads it, ReferenceNet Encode
    keeps the picture's size and says the prompt is not used, the sampler and Render Dance Video make the frames of
    the music with progress, and what the family cannot take (a schedule, an SD1.5 base) is refused by name."""
    import dataclasses

    from musedance_core.config import FlowDanceConfig
    from musedance_core.loading.flow_checkpoint import save_flow_checkpoint
    from musedance_core.sampling.flow_pipeline import FlowDancePipeline

    name = "flow_tiny.safetensors"
    save_flow_checkpoint(models_dir / "musedance" / name, FlowDancePipeline.from_config(FlowDanceConfig.tiny()),
                         training_size=(32, 32))
    loader = nodes["MuseDanceLoadModel"]
    assert name in loader.INPUT_TYPES()["required"]["checkpoint"][0] and loader.VALIDATE_INPUTS(checkpoint=name) is True
    model = loader().run(name, "none", "none", "auto", "default")[0]
    image, mask = (torch.from_numpy(a)[None] for a in draw_reference(48))
    encoded = nodes["MuseDanceReferenceEncode"]().run(model, image, "a person dancing", 48, 40, "crop", mask=mask)
    reference, framed = encoded["result"]
    assert framed.shape == (1, 40, 48, 3)
    assert encoded["ui"]["text"][0] == "The flow-family model follows the music alone: the prompt is not used."
    answer = nodes["MuseDanceSampler"]().run(model, reference, scene["music"], scene["beats"], seed=0, steps=2,
                                             guidance=2.0, frame_count=0, clip_length=0, motion_frames=2,
                                             beat_guidance=3.0)
    frames = answer["result"][0]
    assert frames.shape == (scene["beats"].vector.shape[0], 40, 48, 3) and torch.isfinite(frames).all()
    assert answer["ui"]["text"][0] == "sampler: flow family: steps 2, guidance 2, beat guidance 3"
    pipeline = type(model.pipeline)  # the pack's own import of FlowDancePipeline
    seen, iter_clips = [], pipeline.iter_clips
    with pytest.MonkeyPatch.context() as patch:  # clips on bar lines: the bars of Beat Extract reach the flow sampler
        patch.setattr(pipeline, "iter_clips", lambda self, *a, **k: seen.append(k["bar_frames"]) or
                      iter_clips(self, *a, **k))
        downbeats = torch.zeros(scene["beats"].vector.shape[0])
        downbeats[::7] = 1  # a bar line every 7 frames
        barred = dataclasses.replace(scene["beats"], downbeats=downbeats, meter=4)
        nodes["MuseDanceSampler"]().run(model, reference, scene["music"], barred, 0, 1, 1.0, 0, 0, 2,
                                        clip_ends="on bar lines")
    assert seen == [list(range(0, downbeats.shape[0], 7))]
    rendered = _render(nodes, scene | {"model": model, "reference": reference}, steps=1, filename_prefix="flow/render")
    info = read_video_info(tmp_path / "output" / "flow" / rendered["ui"]["images"][0]["filename"])
    assert (info.num_frames, info.width, info.height) == (frames.shape[0], 48, 40)
    with pytest.raises(ValueError, match="flow-family model follows the music alone"):
        nodes["MuseDanceSampler"]().run(model, reference, scene["music"], scene["beats"], 0, 1, 1.0, 0, 0, 2,
                                        schedule=object())
    paths = {"checkpoint": models_dir / "musedance" / name, "base_checkpoint": tmp_path / "sd15.safetensors",
             "motion_module": None}
    with pytest.raises(ValueError, match="complete in itself: set base_checkpoint to none"):
        _module(pack, "model").load_flow_model(paths, torch.device("cpu"), torch.device("cpu"), "fp32")


def test_a_flow_family_job_is_estimated_at_validation(pack, nodes, models_dir, song_in_input_folder):
    from musedance_core.config import FlowDanceConfig
    from musedance_core.loading.flow_checkpoint import save_flow_checkpoint
    from musedance_core.sampling.flow_pipeline import FlowDancePipeline

    save_flow_checkpoint(models_dir / "musedance" / "flow_tiny.safetensors",
                         FlowDancePipeline.from_config(FlowDanceConfig.tiny()))
    memory = _module(pack, "job_memory")
    basic = _api_workflow("musedance_basic")
    basic[_node_id(basic, "MuseDanceLoadModel")]["inputs"]["checkpoint"] = "flow_tiny.safetensors"
    sampler = _node_id(basic, "MuseDanceSampler")
    basic[sampler]["inputs"].update(guidance=3.0, beat_guidance=6.0)
    job = memory.job_from_prompt(basic, sampler)
    assert type(job.config).__name__ == "FlowDanceConfig" and job.rows == 3 and job.frames == 48  # beats' own row
    parts = job.estimate().describe()
    assert "model weights" in parts and "48 frames held as one IMAGE" in parts, parts


LOW_MEMORY_WIDGETS = [("guidance_rows", ["together", "one at a time"], "together"), ("decode_chunk_size", "INT", 8),
                      ("vae_tile_size", "INT", 0)]


def test_the_low_memory_inputs_come_last_and_reach_the_sampler_with_the_same_frames(nodes, scene, monkeypatch):
    """Both generating nodes end with guidance_rows, decode_chunk_size and vae_tile_size (widgets are saved by
    position); the sampler and the renderer hand them to iter_clips, and rows one at a time or smaller decode
    chunks make the same frames."""
    for name in ("MuseDanceSampler", "MuseDanceRender"):
        optional = nodes[name].INPUT_TYPES()["optional"]
        last = list(optional.items())[-4:-1]
        assert [(key, spec[0], spec[1]["default"]) for key, spec in last] == LOW_MEMORY_WIDGETS, name
        assert all(spec[1]["tooltip"] for _, spec in last)
    seen = []
    pipe_type = type(scene["model"].pipeline)
    real = pipe_type.iter_clips
    monkeypatch.setattr(pipe_type, "iter_clips", lambda self, **kw: (seen.append(kw), real(self, **kw))[1])
    plain = _sample(nodes, scene, frame_count=12, beat_guidance=4.0)[0]
    lean = _sample(nodes, scene, frame_count=12, beat_guidance=4.0, guidance_rows="one at a time",
                   decode_chunk_size=3)[0]
    tiled = _sample(nodes, scene, frame_count=12, beat_guidance=4.0, vae_tile_size=64)[0]  # no frame larger
    _render(nodes, scene, frame_count=12, guidance_rows="one at a time", decode_chunk_size=2, vae_tile_size=128)
    options = [{key: kw[key] for key in ("one_row_at_a_time", "decode_chunk_size", "vae_tile_size")} for kw in seen]
    assert options == [dict(one_row_at_a_time=False, decode_chunk_size=8, vae_tile_size=0),
                       dict(one_row_at_a_time=True, decode_chunk_size=3, vae_tile_size=0),
                       dict(one_row_at_a_time=False, decode_chunk_size=8, vae_tile_size=64),
                       dict(one_row_at_a_time=True, decode_chunk_size=2, vae_tile_size=128)]
    torch.testing.assert_close(lean, plain, atol=1e-5, rtol=0)
    assert torch.equal(tiled, plain)


def test_compile_comes_last_and_reaches_the_sampler(nodes, scene, monkeypatch):
    for name in ("MuseDanceSampler", "MuseDanceRender"):
        key, spec = list(nodes[name].INPUT_TYPES()["optional"].items())[-1]
        assert (key, spec[0], spec[1]["default"]) == ("compile", "BOOLEAN", False) and spec[1]["tooltip"]
    seen = []
    pipe_type = type(scene["model"].pipeline)
    real = pipe_type.iter_clips
    monkeypatch.setattr(pipe_type, "iter_clips", lambda self, **kw: (seen.append(kw["compile_unet"]), real(self, **kw))[1])
    monkeypatch.setattr(scene["model"].pipeline, "_compiled_unet", None)  # restored after the test
    monkeypatch.setattr(pipe_type, "compile_unet", lambda self, **kw: setattr(self, "_compiled_unet", self.unet))
    plain = _sample(nodes, scene, frame_count=4)[0]
    compiled = _sample(nodes, scene, frame_count=4, compile=True)[0]  # the "compiled" UNet is the plain one here
    assert seen == [False, True]
    assert torch.equal(compiled, plain)
    with pytest.raises(ValueError, match="compile must be true or false"):
        _sample(nodes, scene, frame_count=4, compile="yes")


def test_a_failing_compile_names_the_input_to_turn_off(nodes, scene, monkeypatch):
    def no_compiler(graph, example_inputs):
        raise OSError("no C++ compiler found")

    pipe = scene["model"].pipeline
    monkeypatch.setattr(pipe, "_compiled_unet", None)  # restored after the test
    monkeypatch.setattr(type(pipe), "compile_unet",
                        lambda self, **kw: setattr(self, "_compiled_unet", torch.compile(self.unet, backend=no_compiler)))
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match="torch.compile could not compile the UNet on this machine "
                                           r"\(OSError: no C\+\+ compiler found\); turn the sampler's compile input off"):
        _sample(nodes, scene, frame_count=4, compile=True)
    torch._dynamo.reset()
    plain = _sample(nodes, scene, frame_count=4)[0]  # the model still samples without it
    assert plain.shape[0] == 4


@pytest.mark.parametrize("inputs, words", [
    (dict(vae_tile_size=100), "vae_tile_size 100: give 0 to decode whole frames, or a tile side in pixels that is a "
                              "multiple of 8 from 64 to 4096, e.g. 96."),
    (dict(vae_tile_size=32), "e.g. 64."),
    (dict(vae_tile_size=8192), "e.g. 4096."),
    (dict(decode_chunk_size=0), "decode_chunk_size 0: give the number of frames the VAE decodes at once, 1 to 256"),
])
def test_bad_low_memory_inputs_are_refused_at_validation_and_when_run(nodes, scene, inputs, words):
    for name in ("MuseDanceSampler", "MuseDanceRender"):
        verdict = nodes[name].VALIDATE_INPUTS(**inputs)
        assert isinstance(verdict, str) and words in verdict, (name, verdict)
        assert nodes[name].VALIDATE_INPUTS(vae_tile_size=256, decode_chunk_size=1) is True
    with pytest.raises(ValueError, match=words.split(":")[0]):
        _sample(nodes, scene, frame_count=4, **inputs)
    with pytest.raises(ValueError, match="guidance_rows must be one of"):
        _sample(nodes, scene, frame_count=4, guidance_rows="in turn")


def test_a_job_refused_for_memory_is_accepted_with_a_low_memory_option(pack, nodes, song_in_input_folder, monkeypatch):
    """At 512x512 with three guidance rows a step is the larger peak: one row at a time lowers it below the
    decode's, which fewer frames per decode or tiles lower in turn. A budget between a job's estimate with and
    without the option refuses it at validation, naming the option, and accepts it with the option."""
    memory = _module(pack, "job_memory")
    basic = _api_workflow("musedance_basic")
    sampler = _node_id(basic, "MuseDanceSampler")
    basic[_node_id(basic, "MuseDanceReferenceEncode")]["inputs"].update(width=512, height=512)
    inputs = basic[sampler]["inputs"]
    inputs.update(guidance=3.0, beat_guidance=6.0, clip_length=16)
    validate = nodes["MuseDanceSampler"].VALIDATE_INPUTS
    request = {"prompt": basic, "client_id": "tests"}
    for option, value, named in (("guidance_rows", "one at a time", 'guidance_rows "one at a time"'),
                                 ("decode_chunk_size", 2, "a smaller decode_chunk_size (now 8)"),
                                 ("vae_tile_size", 256, "vae_tile_size 256")):
        if option != "guidance_rows":
            inputs.update(guidance_rows="one at a time", decode_chunk_size=8, vae_tile_size=0)
        without = memory.job_from_prompt(basic, sampler).estimate().total()
        with_option = memory.job_from_prompt(basic | {sampler: {**basic[sampler], "inputs": {**inputs, option: value}}},
                                             sampler).estimate().total()
        assert with_option < without, option
        monkeypatch.setenv("MUSEDANCE_MEMORY_BUDGET_GB", str((with_option + without) / 2 / 2**30))
        memory.check_prompt(request)
        message = validate(guidance=3.0, unique_id=sampler)
        assert isinstance(message, str) and message.startswith("This job needs about") and named in message, message
        inputs[option] = value
        memory.check_prompt(request)
        assert validate(guidance=3.0, unique_id=sampler) is True, option


def test_the_sampler_loads_what_sampling_uses_and_leaves_comfyui_room_for_its_work(pack, nodes, scene, monkeypatch):
    """Load MuseDance Model makes two groups that ComfyUI manages apart: what sampling uses (UNet, VAE decoder) and
    the encoders, idle while the sampler runs. ReferenceNet Encode loads the encoders; the sampler loads the
    sampling group alone (the encoders too only to continue a video), asking ComfyUI for room for its working
    memory, so ComfyUI can unload the idle encoders to make it."""
    comfy, generate, memory = (_module(pack, name) for name in ("comfy", "generate", "job_memory"))
    model = scene["model"]
    pipe = model.pipeline
    assert list(model.managed.container) == list(pipe.used_while_sampling())
    assert list(model.encoders.container) == list(pipe.idle_while_sampling())
    loads, working = [], []

    class ModelManagement:  # the calls of comfy.model_management the pack makes here
        def load_models_gpu(self, models, memory_required=0, force_full_load=False):
            loads.append((list(models), memory_required))

        def soft_empty_cache(self):
            pass

        def processing_interrupted(self):
            return False

        def throw_exception_if_processing_interrupted(self):
            pass

    real_working = memory.JobSize.working_bytes
    monkeypatch.setattr(memory.JobSize, "working_bytes", lambda self: working.append(real_working(self)) or working[-1])
    monkeypatch.setattr(comfy, "model_management", ModelManagement)
    monkeypatch.setattr(model.managed, "patcher", "sampling")
    monkeypatch.setattr(model.encoders, "patcher", "encoders")
    nodes["MuseDanceReferenceEncode"]().run(model, scene["framed"], "a person dancing", 32, 32, "crop")
    assert loads == [(["encoders"], 0)]
    _sample(nodes, scene, frame_count=4)
    _sample(nodes, scene, frame_count=4, decode_chunk_size=2)
    assert loads[1:] == [(["sampling"], working[0]), (["sampling"], working[1])] and 0 < working[1] < working[0]
    job = generate.Generation(model, scene["reference"], scene["music"], scene["beats"], 0, 1, 1.0, 12, 4, 2, 0.0,
                              -1.0, -1.0, "auto", holds_every_frame=False, continuing=True)
    assert not job.memory.offload_idle
    next(job.clips(4, torch.rand(4, 32, 32, 3)))
    assert loads[-1] == (["sampling", "encoders"], working[-1])
