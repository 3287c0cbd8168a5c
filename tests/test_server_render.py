"""Render Dance Video on a real ComfyUI server (each test host): a whole video written clip by clip, Cancel
keeping the video so far, and what a server killed in the middle of writing leaves (nothing, after its
next start). Servers are started here, one after another, over the same folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfy_server import ComfyServer, ComfyServerError, find_hosts, missing
from musedance_core.video import read_video_info
from sample_media import draw_reference, synth_music
from test_server_workflows import (
    BASIC,
    MUSIC,
    MUSIC_RATE,
    REFERENCE,
    REFERENCE_SIZE,
    ProgressMessages,
    load_fast,
    node,
    node_error_details,
    wav_bytes,
)
from tiny_files import write_workflow_models

HOSTS = find_hosts()
SONG_SECONDS = 8.0
TIMEOUT = 300


@pytest.fixture(params=list(HOSTS))
def folders(request, tmp_path_factory):
    """A host and the folders its servers share: models, input (the drawn figure and 8 s of music), output."""
    host = HOSTS[request.param]
    if host.problem:
        missing(host.problem)
    root = tmp_path_factory.mktemp(f"render-{request.param}")
    write_workflow_models(root / "models")
    image, _ = draw_reference(REFERENCE_SIZE)
    (root / "input").mkdir()
    Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(root / "input" / REFERENCE)
    (root / "input" / MUSIC).write_bytes(wav_bytes(synth_music(SONG_SECONDS, MUSIC_RATE), MUSIC_RATE))
    return host, root


def render_workflow(steps: int, duration: float = -1.0, prefix: str = "MuseDance/render") -> dict:
    """The basic workflow with Render Dance Video in place of the sampler and Save Dance Video."""
    workflow = load_fast(BASIC)
    node(workflow, "MuseDanceTiming")[1]["inputs"]["duration"] = duration
    sampler_id, sampler = node(workflow, "MuseDanceSampler")
    combine_id, _ = node(workflow, "MuseDanceVideoCombine")
    del workflow[combine_id]
    inputs = dict(sampler["inputs"], steps=steps, filename_prefix=prefix, format="h264-mp4", crf=23)
    workflow[sampler_id] = {"class_type": "MuseDanceRender", "inputs": inputs}
    return workflow


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def partial_files(output: Path) -> list[Path]:
    return sorted(output.rglob("*.part"))


def test_render_writes_the_whole_song_and_cancel_keeps_the_video_so_far(folders):
    host, root = folders
    server = ComfyServer.start(root, models_dir=root / "models", host=host)
    try:
        entry = server.wait(server.post_prompt(render_workflow(steps=2)), timeout=TIMEOUT)
        (shown,) = [out["images"][0] for out in entry["outputs"].values() if out.get("animated")]
        info = read_video_info(server.output_dir / shown["subfolder"] / shown["filename"])
        assert info.num_frames == int(SONG_SECONDS * 12) and abs(info.audio_duration - SONG_SECONDS) < 1 / 12, info
        # Cancel in the middle: the frames made so far stay, as a closed video with their music.
        prompt_id = server.post_prompt(render_workflow(steps=40, prefix="MuseDance/cancelled"))
        wait_for(lambda: partial_files(server.output_dir), 120, "the render's first clip")
        server._request("POST", "/interrupt", b"")
        server.wait(prompt_id, timeout=TIMEOUT, check=False)
        (kept,) = sorted((server.output_dir / "MuseDance").glob("cancelled_*.mp4"))
        info = read_video_info(kept)
        assert 0 < info.num_frames < int(SONG_SECONDS * 12), info  # whole clips, up to the one Cancel stopped
        assert abs(info.audio_duration - info.num_frames / 12) < 1 / 12, info
        assert not partial_files(server.output_dir)
    finally:
        server.stop()


def test_a_server_killed_while_writing_leaves_no_temporary_file_after_its_next_start(folders):
    host, root = folders
    server = ComfyServer.start(root, models_dir=root / "models", host=host)
    try:
        server.post_prompt(render_workflow(steps=40, prefix="MuseDance/killed"))
        (left,) = wait_for(lambda: partial_files(server.output_dir), 120, "the render's temporary file")
    finally:
        server.process.kill()  # no clean-up of any kind: as a crash or a power cut
        server.process.wait()
        server.stop()
    assert left.exists() and not list((server.output_dir / "MuseDance").glob("killed_*.mp4"))
    again = ComfyServer.start(root, models_dir=root / "models", host=host)
    try:
        assert not left.exists() and not partial_files(again.output_dir), again.log_tail()
        assert "left by a video that was never finished" in again.log_text()
        entry = again.wait(again.post_prompt(render_workflow(steps=2, duration=1.0)), timeout=TIMEOUT)
        assert json.dumps(entry["outputs"]).count("render_") == 1
    finally:
        again.stop()


# The most the server may hold (its high-water mark) while it works on an hour of music. Measured 3.0-3.2 GiB on
# the two hosts (2026-12-07): ComfyUI and torch, the decoded song (0.23 GB as AUDIO at 16 kHz mono) and its copies
# at the music nodes' rates, the whole-song beat analysis (about 1.1 GB) and the AST fbank (0.18 GB).
HOUR_CEILING = 4 * 2**30


def write_hour_of_music(path: Path, rate: int = 16_000) -> None:
    """One hour of the test music (4 s looped), mono 16-bit, written a loop at a time."""
    import wave

    loop = np.clip(np.rint(synth_music(4.0, rate) * 32767), -32768, 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        for _ in range(900):
            out.writeframes(loop)


def high_water_mark(pid: int) -> int:
    """A process's peak resident memory in bytes (Linux /proc: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def test_an_hour_of_music_at_60_fps_shows_progress_at_once_and_cancels_within_seconds(folders):
    """An hour of music at 60 fps (216,000 frames) through Render Dance Video: progress reaches the client within
    seconds of queueing (Beat Extract and AST Music Encode report from their start), Cancel during the music
    encoding ends the prompt within seconds, and the server's peak memory stays under HOUR_CEILING."""
    host, root = folders
    write_hour_of_music(root / "input" / "hour.wav")
    server = ComfyServer.start(root, models_dir=root / "models", host=host)
    try:
        workflow = render_workflow(steps=2, prefix="MuseDance/hour")
        node(workflow, "MuseDanceTiming")[1]["inputs"]["fps"] = 60.0
        node(workflow, "MuseDanceLoadMusic")[1]["inputs"]["audio"] = "hour.wav"
        (ast_id,) = [key for key, value in workflow.items() if value["class_type"] == "MuseDanceASTEncode"]
        with ProgressMessages(server) as progress:
            queued = time.monotonic()
            prompt_id = server.post_prompt(workflow)
            wait_for(lambda: [m for m in progress.messages("progress") if m.get("prompt_id") == prompt_id], 60,
                     "the first progress message")
            first_progress = time.monotonic() - queued
            wait_for(lambda: [m for m in progress.messages("progress") if m.get("node") == ast_id and m["value"] > 0],
                     180, "AST Music Encode's progress")
            pressed = time.monotonic()
            server._request("POST", "/interrupt", b"")
            entry = server.wait(prompt_id, timeout=120, check=False)
            stopped = time.monotonic() - pressed
        assert first_progress < 30, first_progress
        assert stopped < 15, stopped
        assert entry["status"]["status_str"] == "error" and ast_id not in entry["outputs"], entry["status"]
        peak = high_water_mark(server.process.pid)
        assert peak < HOUR_CEILING, f"{peak / 2**30:.2f} GiB"
        print(f"hour at 60 fps on {host.name}: first progress {first_progress:.1f} s, stopped {stopped:.1f} s after "
              f"Cancel, server peak {peak / 2**30:.2f} GiB")
    finally:
        server.stop()


def test_cancel_during_the_first_step_of_a_large_render_returns_within_seconds(folders):
    """At 512x512 one step of even the tiny model takes several seconds on a CPU (about 5 s here): Cancel pressed
    1.5 s after Render Dance Video starts stops it inside its first step (no step is reported done) within seconds."""
    host, root = folders
    server = ComfyServer.start(root, models_dir=root / "models", host=host)
    try:
        workflow = render_workflow(steps=2, duration=1.0, prefix="MuseDance/large")
        encode = node(workflow, "MuseDanceReferenceEncode")[1]
        encode["inputs"]["width"] = encode["inputs"]["height"] = 512
        (render_id,) = [key for key, value in workflow.items() if value["class_type"] == "MuseDanceRender"]
        with ProgressMessages(server) as progress:
            prompt_id = server.post_prompt(workflow)
            wait_for(lambda: [m for m in progress.messages("executing") if m.get("node") == render_id], 180,
                     "Render Dance Video starting")
            time.sleep(1.5)
            pressed = time.monotonic()
            server._request("POST", "/interrupt", b"")
            entry = server.wait(prompt_id, timeout=120, check=False)
            stopped = time.monotonic() - pressed
            steps = [m for m in progress.messages("progress") if m.get("node") == render_id and m["value"] > 0]
        assert entry["status"]["status_str"] == "error" and render_id not in entry["outputs"], entry["status"]
        assert not steps, f"a step finished before Cancel took effect: {steps}"
        assert stopped < 3, stopped
        print(f"large render on {host.name}: stopped {stopped:.2f} s after Cancel, inside the first step")
    finally:
        server.stop()


def validation_answer(server: ComfyServer, workflow: dict) -> tuple[dict, float]:
    """POST /prompt's JSON answer, refused (400) or accepted with node_errors (200), and how long it took."""
    started = time.monotonic()
    try:
        answer = server._json("POST", "/prompt", {"prompt": workflow, "client_id": "musedance-tests"})
    except ComfyServerError as err:
        assert err.status == 400, err
        answer = json.loads(err.body)
    return answer, time.monotonic() - started


def test_a_job_over_the_memory_budget_is_refused_at_validation_with_its_estimate(folders, monkeypatch):
    """With a 1 GiB budget: a render at 1024x1024 in clips of 64 frames, and an hour at 60 fps held as one IMAGE by
    the sampler, are refused when posted (the estimate and the ways to lower it in node_errors), before any node
    runs and without loading a model; a job within the budget then runs on the same server."""
    host, root = folders
    monkeypatch.setenv("MUSEDANCE_MEMORY_BUDGET_GB", "1")
    server = ComfyServer.start(root, models_dir=root / "models", host=host)
    try:
        big = render_workflow(steps=1, duration=1.0, prefix="MuseDance/big")
        encode = node(big, "MuseDanceReferenceEncode")[1]
        encode["inputs"]["width"] = encode["inputs"]["height"] = 1024
        render_id, render = node(big, "MuseDanceRender")
        render["inputs"]["clip_length"] = 64
        answer, took = validation_answer(server, big)
        details = node_error_details(answer, render_id, "MuseDanceRender")
        for words in ("This job needs about", "GiB of RAM", "one denoising step at 1024x1024 (64 frames",
                      "budget of 1.0 GiB (MUSEDANCE_MEMORY_BUDGET_GB=1)", "a smaller size"):
            assert words in details, (words, details)

        hour = load_fast(BASIC)
        node(hour, "MuseDanceTiming")[1]["inputs"].update(fps=60.0, duration=3600.0)
        sampler_id = node(hour, "MuseDanceSampler")[0]
        hour_answer, hour_took = validation_answer(server, hour)
        details = node_error_details(hour_answer, sampler_id, "MuseDanceSampler")
        assert "216000 frames of 64x64 need 9.9 GiB as one IMAGE" in details and "Render Dance Video" in details
        for refused in (answer, hour_answer):
            if "prompt_id" in refused:  # other outputs (previews) were valid: they ran, the refused node did not
                entry = server.wait(refused["prompt_id"], timeout=TIMEOUT, check=False)
                assert render_id not in entry["outputs"] and sampler_id not in entry["outputs"], entry["outputs"]
        assert not list(server.output_dir.rglob("*.mp4")) and not partial_files(server.output_dir)
        assert "MuseDance: loaded" not in server.log_tail(20000), "a model was loaded for a refused job"

        entry = server.run(render_workflow(steps=1, duration=1.0, prefix="MuseDance/fits"), timeout=TIMEOUT)
        (video,) = entry["outputs"][render_id]["images"]
        assert read_video_info(server.output_dir / video["subfolder"] / video["filename"]).num_frames == 12
        print(f"memory refusal on {host.name}: answered in {took:.2f} s and {hour_took:.2f} s")
    finally:
        server.stop()


def test_a_flow_family_model_renders_through_the_server(folders):
    """A flow-family checkpoint in models/musedance, chosen in Load MuseDance Model of the render workflow: the
    prompt validates (its memory estimated from the flow file's header) and the server writes its video."""
    from musedance_core.config import FlowDanceConfig
    from musedance_core.loading.flow_checkpoint import save_flow_checkpoint
    from musedance_core.sampling.flow_pipeline import FlowDancePipeline

    host, root = folders
    save_flow_checkpoint(root / "models" / "musedance" / "flow_tiny.safetensors",
                         FlowDancePipeline.from_config(FlowDanceConfig.tiny()), training_size=(32, 32))
    server = ComfyServer.start(root, models_dir=root / "models", host=host)
    try:
        workflow = render_workflow(steps=2, duration=2.0, prefix="MuseDance/flow")
        node(workflow, "MuseDanceLoadModel")[1]["inputs"]["checkpoint"] = "flow_tiny.safetensors"
        render_id = node(workflow, "MuseDanceRender")[0]
        entry = server.wait(server.post_prompt(workflow), timeout=TIMEOUT)
        (video,) = entry["outputs"][render_id]["images"]
        info = read_video_info(server.output_dir / video["subfolder"] / video["filename"])
        assert info.num_frames == 24 and abs(info.audio_duration - 2.0) < 1 / 12, info
        assert "loaded the flow-family model flow_tiny.safetensors" in server.log_tail(20000)
    finally:
        server.stop()
