"""The example workflows run on a real ComfyUI server, and bad inputs fail there with clear messages.

One server (tests/comfy_server.py) serves the module, with tiny models under the names the workflows
use (tests/tiny_files.py) and a drawn reference image and synthesised music uploaded under theirs.
Every workflows/api/*.api.json is posted as a user's script would post it; the video it writes is
fetched through /view and read back. Each bad input is followed by a good prompt, which must still
run, and no bad input may leave a file in the output folder. Without a test host these tests skip;
under CI they fail. Prepare the host with `bash scripts/setup_comfyui.sh`.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import os
import socket
import struct
import threading
import wave
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from comfy_server import ComfyServer, ComfyServerError, comfy_server_fixture, execution_error
from musedance_core.config import MuseDanceConfig
from musedance_core.video import read_video_info
from sample_media import draw_reference, synth_music
from tiny_files import write_workflow_models

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows" / "api").glob("*.api.json"))
BASIC = ROOT / "workflows" / "api" / "musedance_basic.api.json"
REFERENCE = "musedance_reference.png"  # the input names the workflows load
MUSIC = "musedance_music.wav"
REFERENCE_SIZE = 96  # square, and not the video size: ReferenceNet Encode has to crop it
MUSIC_SECONDS = 6.0
MUSIC_RATE = 44_100
# What makes a workflow fast on a CPU with the tiny model; nothing else of a workflow is changed.
VIDEO_SIZE = 64
STEPS = 2
TIMEOUT = 300  # seconds for one prompt; a busy 2-core machine is slow
CLIENT_ID = "musedance-tests"  # the client id ComfyServer.post_prompt sends; progress goes to its websocket
SEEDS = itertools.count(1)  # a new seed per good prompt, so ComfyUI runs the sampler again instead of its cache

comfy = comfy_server_fixture(models=write_workflow_models)


@pytest.fixture(scope="module")
def server(comfy: ComfyServer) -> ComfyServer:
    """The module's server with the reference image and the music in its input folder."""
    image, _ = draw_reference(REFERENCE_SIZE)
    png = io.BytesIO()
    Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(png, format="PNG")
    assert comfy.upload(png.getvalue(), REFERENCE) == REFERENCE
    assert comfy.upload(wav_bytes(synth_music(MUSIC_SECONDS, MUSIC_RATE), MUSIC_RATE), MUSIC) == MUSIC
    return comfy


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).round().astype("<i2").tobytes())
    return out.getvalue()


# --- Workflows ------------------------------------------------------------------------------------


def nodes_of(workflow: dict, class_type: str) -> list[str]:
    return [key for key, n in workflow.items() if n["class_type"] == class_type]


def node(workflow: dict, class_type: str) -> tuple[str, dict]:
    """The id and node of the one node of `class_type` in an API workflow."""
    found = nodes_of(workflow, class_type)
    assert len(found) == 1, f"expected one {class_type} node, found {len(found)}"
    return found[0], workflow[found[0]]


def linked(workflow: dict, node_id: str, input_name: str, class_type: str) -> tuple[str, dict]:
    """The node (of `class_type`) whose output feeds `input_name` of `node_id`; a link is [node id, output]."""
    source = workflow[node_id]["inputs"][input_name][0]
    assert workflow[source]["class_type"] == class_type, (node_id, input_name, workflow[source])
    return source, workflow[source]


def load_fast(path: Path) -> dict:
    """An API workflow as shipped, except a 64x64 video and 2 sampler steps (the tiny model on a CPU)."""
    workflow = json.loads(path.read_text())
    for key in nodes_of(workflow, "MuseDanceReferenceEncode"):
        workflow[key]["inputs"]["width"] = workflow[key]["inputs"]["height"] = VIDEO_SIZE
    for key in nodes_of(workflow, "MuseDanceSampler") + nodes_of(workflow, "MuseDanceRender"):
        workflow[key]["inputs"]["steps"] = STEPS
    return workflow


def basic(duration: float = 1.0) -> dict:
    """The basic workflow made fast, `duration` seconds of music, a fresh seed: cheap, and never cached."""
    workflow = load_fast(BASIC)
    node(workflow, "MuseDanceTiming")[1]["inputs"]["duration"] = duration
    node(workflow, "MuseDanceSampler")[1]["inputs"]["seed"] = next(SEEDS)
    return workflow


def expected_frames(workflow: dict, sampler_id: str) -> tuple[int, float]:
    """(frames, fps) of a sampler's video, from its Beat Extract's fps, start and duration and its frame_count."""
    inputs = linked(workflow, sampler_id, "beats", "MuseDanceBeatExtract")[1]["inputs"]

    def value(name: str):  # a widget's own value, or the Dance Timing output linked to it
        given = inputs[name]
        return workflow[given[0]]["inputs"][name] if isinstance(given, list) else given

    fps, start, duration = value("fps"), value("start_time"), value("duration")
    if duration == -1:  # the rest of the music, in whole frames
        frames = math.floor((MUSIC_SECONDS - start) * fps + 1e-6)
    else:
        frames = round(duration * fps)
    frame_count = workflow[sampler_id]["inputs"]["frame_count"]
    return (min(frames, frame_count) if frame_count else frames), fps


def check_video(comfy: ComfyServer, entry: dict, workflow: dict, combine_id: str, tmp_path: Path) -> Path:
    """What Save Dance Video (or Render Dance Video) `combine_id` wrote is a video of its sampler's frames with
    the music; its path."""
    ui = entry["outputs"][combine_id]
    assert ui.get("animated"), f"Save Dance Video's ui has no 'animated' entry, so the frontend shows no player: {ui}"
    (video,) = ui["images"]
    assert video["type"] == "output", video
    data = comfy.view(video["filename"], video["subfolder"], video["type"])
    on_disk = comfy.output_dir / video["subfolder"] / video["filename"]
    assert on_disk.is_file() and on_disk.read_bytes() == data, f"{on_disk} is not the file /view served"
    path = tmp_path / video["filename"]
    path.write_bytes(data)

    info = read_video_info(path)
    sampler_id = combine_id  # Render Dance Video samples itself
    if workflow[combine_id]["class_type"] == "MuseDanceVideoCombine":
        sampler_id, _ = linked(workflow, combine_id, "images", "MuseDanceSampler")
    frames, fps = expected_frames(workflow, sampler_id)
    assert info.num_frames == frames, info
    assert math.isclose(info.fps, fps, rel_tol=1e-3), info
    assert (info.width, info.height) == (VIDEO_SIZE, VIDEO_SIZE), info
    assert info.has_audio, info
    assert abs(info.audio_duration - frames / fps) <= 1 / fps, info
    # The prompt ComfyUI ran is in the video, as ComfyUI's own video saving stores it.
    stored = {key: {k: v for k, v in value.items() if k != "is_changed"}  # ComfyUI's own note on each node
              for key, value in json.loads(info.metadata["prompt"]).items()}
    assert stored == entry["prompt"][2], sorted(info.metadata)
    return on_disk


@pytest.mark.parametrize("saved", ["before_auto_settings", "before_timing"])
def test_a_workflow_saved_before_still_runs(server, saved, tmp_path):
    """The basic API workflow as shipped on 2026-12-06 (before_auto_settings: sampler steps 20, guidance 2.5,
    beat guidance 5 and reference_start true as a BOOLEAN; no save_workflow) and on 2026-12-07 (before_timing:
    fps, start and duration typed in both music nodes, no Dance Timing) is accepted and makes its video."""
    workflow = load_fast(ROOT / "tests" / "data" / f"musedance_basic.{saved}.api.json")
    assert not nodes_of(workflow, "MuseDanceTiming")
    if saved == "before_auto_settings":
        assert node(workflow, "MuseDanceSampler")[1]["inputs"]["reference_start"] is True  # a BOOLEAN then
    for music_node in ("MuseDanceBeatExtract", "MuseDanceASTEncode"):
        node(workflow, music_node)[1]["inputs"]["duration"] = 1.0  # its own widget; 4 s takes long on a CPU
    node(workflow, "MuseDanceSampler")[1]["inputs"]["seed"] = next(SEEDS)
    entry = server.wait(server.post_prompt(workflow), timeout=TIMEOUT)
    (combine_id,) = nodes_of(workflow, "MuseDanceVideoCombine")
    check_video(server, entry, workflow, combine_id, tmp_path)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_runs_and_writes_its_video_with_the_music(server, path, tmp_path):
    workflow = load_fast(path)
    with ProgressMessages(server) as progress:
        prompt_id = server.post_prompt(workflow)
        entry = server.wait(prompt_id, timeout=TIMEOUT)
    assert entry["status"]["status_str"] == "success"
    combine_ids = nodes_of(workflow, "MuseDanceVideoCombine") + nodes_of(workflow, "MuseDanceRender")
    assert combine_ids, f"{path.name} writes no video"
    for combine_id in combine_ids:
        check_video(server, entry, workflow, combine_id, tmp_path)

    for preview_id in nodes_of(workflow, "PreviewImage"):
        images = entry["outputs"][preview_id]["images"]
        assert images, f"PreviewImage {preview_id} showed nothing"
        for image in images:
            Image.open(io.BytesIO(server.view(image["filename"], image["subfolder"], image["type"]))).verify()

    # Each sampler reports every step of every clip to ComfyUI's progress bar, up to its total.
    for sampler_id in nodes_of(workflow, "MuseDanceSampler") + nodes_of(workflow, "MuseDanceRender"):
        frames, _ = expected_frames(workflow, sampler_id)
        clip_length = workflow[sampler_id]["inputs"]["clip_length"] or MuseDanceConfig.tiny().clip_length
        total = -(-frames // clip_length) * STEPS
        steps = [m for m in progress.messages("progress") if m["node"] == sampler_id and m["prompt_id"] == prompt_id]
        assert [m["value"] for m in steps] == list(range(1, total + 1)), steps
        assert {m["max"] for m in steps} == {total}, steps
    # A finished clip's last frame is sent as a progress preview (ComfyUI's binary PREVIEW_IMAGE, a JPEG).
    jpegs = [frame[8:] for frame in progress.previews if struct.unpack(">II", frame[:8]) == (1, 1)]
    assert jpegs, f"no preview image during sampling ({len(progress.previews)} binary frames)"
    width, height = Image.open(io.BytesIO(jpegs[-1])).size
    assert width == height > 0  # the square frame, which ComfyUI scales to its preview size


def test_comfyuis_own_video_nodes_take_the_packs_video(server, tmp_path):
    """Where the host has ComfyUI's VIDEO type (0.3.3x and later), Save Dance Video's VIDEO output goes into
    ComfyUI's own Get Video Components, which gives back the frames and the music."""
    info = server.object_info()
    if info["MuseDanceVideoCombine"]["output"][-1:] != ["VIDEO"] or "GetVideoComponents" not in info:
        assert server.host.name != "current", "ComfyUI 0.3.75 has the VIDEO type; the pack must output it there"
        pytest.skip("this ComfyUI has no VIDEO type (ComfyUI of early 2024)")
    workflow = basic()
    (combine_id,) = nodes_of(workflow, "MuseDanceVideoCombine")
    workflow["200"] = {"class_type": "GetVideoComponents", "inputs": {"video": [combine_id, 1]}}
    workflow["201"] = {"class_type": "PreviewImage", "inputs": {"images": ["200", 0]}}
    entry = server.wait(server.post_prompt(workflow), timeout=TIMEOUT)
    frames, _ = expected_frames(workflow, nodes_of(workflow, "MuseDanceSampler")[0])
    assert len(entry["outputs"]["201"]["images"]) == frames  # every frame of the pack's video, read by ComfyUI


def test_comfyuis_own_load_audio_drives_the_pack(server, tmp_path):
    """Where the host has ComfyUI's LoadAudio (mid-2024 and later), it can take Load Song's place: the same
    music reaches Beat Extract and AST Music Encode, and the video carries it."""
    info = server.object_info()
    if "LoadAudio" not in info:
        assert server.host.name != "current", "ComfyUI 0.3.75 has LoadAudio (torchaudio missing on the host?)"
        pytest.skip("this ComfyUI has no LoadAudio (ComfyUI of early 2024)")
    workflow = basic()
    song_id, song = node(workflow, "MuseDanceLoadMusic")
    workflow[song_id] = {"class_type": "LoadAudio", "inputs": {"audio": song["inputs"]["audio"]}}
    entry = server.wait(server.post_prompt(workflow), timeout=TIMEOUT)
    (combine_id,) = nodes_of(workflow, "MuseDanceVideoCombine")
    check_video(server, entry, workflow, combine_id, tmp_path)


# --- Bad input ------------------------------------------------------------------------------------


def output_files(comfy: ComfyServer) -> set[str]:
    """Everything under the output folder, hidden and partial files and folders included."""
    return {str(p.relative_to(comfy.output_dir)) for p in comfy.output_dir.rglob("*")}


def inputs_of(workflow: dict, node_id: str) -> list[str]:
    """The ids of the nodes whose outputs `node_id` takes (a link is [node id, output index])."""
    return [value[0] for value in workflow[node_id]["inputs"].values() if isinstance(value, list)]


def only_what_needs(workflow: dict, bad_id: str) -> dict:
    """The nodes that depend on `bad_id`, and what they take: every output left needs the bad node.

    ComfyUI accepts a prompt (200) when some of its outputs are valid, runs those and lists the
    others in node_errors; it refuses the prompt (400) only when no output can run.
    """

    def needs(node_id: str, seen: set) -> bool:
        seen.add(node_id)
        return node_id == bad_id or any(needs(i, seen) for i in inputs_of(workflow, node_id) if i not in seen)

    keep: set[str] = set()
    stack = [node_id for node_id in workflow if needs(node_id, set())]
    while stack:
        node_id = stack.pop()
        if node_id not in keep:
            keep.add(node_id)
            stack.extend(inputs_of(workflow, node_id))
    return {node_id: workflow[node_id] for node_id in keep}


def refused(comfy: ComfyServer, workflow: dict) -> dict:
    """POST /prompt must answer 400; ComfyUI's JSON answer ({"error", "node_errors"})."""
    with pytest.raises(ComfyServerError) as caught:
        comfy.post_prompt(workflow)
    assert caught.value.status == 400, caught.value
    return json.loads(caught.value.body)


def node_error_details(answer: dict, node_id: str, class_type: str) -> str:
    """The details of every error ComfyUI reported for one node, which must be the only failing node."""
    assert set(answer["node_errors"]) == {node_id}, answer
    errors = answer["node_errors"][node_id]
    assert errors["class_type"] == class_type, errors
    return "\n".join(e["details"] for e in errors["errors"])


def refused_at_validation(comfy: ComfyServer, workflow: dict, node_id: str, class_type: str) -> str:
    """POST /prompt reports `node_id` as failing validation, its details; nothing after it runs.

    ComfyUI refuses the whole prompt (400) when no output node is valid; when other output nodes are
    (the previews of the example workflows), it answers 200 with the same node_errors and runs only
    those: the refused node and everything only it needs (the sampler) never run.
    """
    try:
        answer = comfy._json("POST", "/prompt", {"prompt": workflow, "client_id": "musedance-tests"})
    except ComfyServerError as err:
        assert err.status == 400, err
        answer = json.loads(err.body)
    details = node_error_details(answer, node_id, class_type)
    if "prompt_id" in answer:
        entry = comfy.wait(answer["prompt_id"], timeout=TIMEOUT, check=False)
        (sampler_id,) = nodes_of(workflow, "MuseDanceSampler")  # its fresh seed: it would have run, not cached
        assert node_id not in entry["outputs"] and sampler_id not in entry["outputs"], entry["outputs"]
    return details


def failed(comfy: ComfyServer, workflow: dict, class_type: str) -> str:
    """The prompt is accepted, then fails in a node of `class_type`; ComfyUI's exception message."""
    entry = comfy.wait(comfy.post_prompt(workflow), timeout=TIMEOUT, check=False)
    assert entry["status"]["status_str"] == "error", entry["status"]
    error = execution_error(entry)
    assert error["node_type"] == class_type, error
    assert error["exception_type"].endswith("ValueError"), error
    return error["exception_message"]


def still_runs_a_good_prompt(comfy: ComfyServer, before: set[str], tmp_path: Path) -> None:
    """After a bad input: nothing was written, and the basic workflow still makes its video (one new file)."""
    assert output_files(comfy) == before, "a failed prompt left files in the output folder"
    workflow = basic()
    entry = comfy.run(workflow, timeout=TIMEOUT)
    video = check_video(comfy, entry, workflow, node(workflow, "MuseDanceVideoCombine")[0], tmp_path)
    added = {name for name in output_files(comfy) - before if (comfy.output_dir / name).is_file()}
    assert added == {str(video.relative_to(comfy.output_dir))}, added


def test_missing_music_file_is_refused_naming_the_file_and_the_input_folder(server, tmp_path):
    before = output_files(server)
    workflow = basic()
    music_id, music = node(workflow, "MuseDanceLoadMusic")
    music["inputs"]["audio"] = "no_such_music.wav"
    details = node_error_details(refused(server, only_what_needs(workflow, music_id)), music_id, "MuseDanceLoadMusic")
    assert "no_such_music.wav" in details and "input folder" in details and "upload" in details, details
    still_runs_a_good_prompt(server, before, tmp_path)


def test_corrupt_music_file_fails_in_load_music_saying_it_is_no_audio(server, tmp_path):
    name = server.upload(b"not audio" * 100, "bad.wav")
    before = output_files(server)
    workflow = basic()
    node(workflow, "MuseDanceLoadMusic")[1]["inputs"]["audio"] = name
    message = failed(server, workflow, "MuseDanceLoadMusic")
    assert "bad.wav" in message and "could not decode" in message and "audio" in message, message
    still_runs_a_good_prompt(server, before, tmp_path)


def test_a_beat_file_from_the_input_folder_drives_the_video(server, tmp_path):
    name = server.upload("Time (s),Beat\n0.25,1\n0.5,2\n0.75,3\n1.0,4\n".encode(), "taps.csv")
    workflow = basic()
    beat_id, beat_extract = node(workflow, "MuseDanceBeatExtract")
    beat_extract["inputs"].update(beat_file=name, offset_ms=-20.0, tempo="double")
    entry = server.run(workflow, timeout=TIMEOUT)
    assert entry["status"]["status_str"] == "success", entry["status"]
    check_video(server, entry, workflow, node(workflow, "MuseDanceVideoCombine")[0], tmp_path)


def test_a_malformed_beat_file_is_refused_at_queue_time_naming_the_line(server, tmp_path):
    name = server.upload(b"0.5\n0.25\n", "backwards.beats")
    before = output_files(server)
    workflow = basic()
    beat_id, beat_extract = node(workflow, "MuseDanceBeatExtract")
    beat_extract["inputs"]["beat_file"] = name
    details = node_error_details(refused(server, only_what_needs(workflow, beat_id)), beat_id, "MuseDanceBeatExtract")
    assert "backwards.beats, line 2" in details and "in time order" in details, details
    beat_extract["inputs"].update(beat_file="none", min_bpm=200.0, max_bpm=100.0)
    details = node_error_details(refused(server, only_what_needs(workflow, beat_id)), beat_id, "MuseDanceBeatExtract")
    assert "200-100 BPM is empty" in details, details
    still_runs_a_good_prompt(server, before, tmp_path)


def test_unknown_checkpoint_is_refused_listing_the_available_ones(server, tmp_path):
    before = output_files(server)
    workflow = basic()
    model_id, model = node(workflow, "MuseDanceLoadModel")
    available = model["inputs"]["checkpoint"]
    model["inputs"]["checkpoint"] = "no_such_model.safetensors"
    details = node_error_details(refused(server, only_what_needs(workflow, model_id)), model_id, "MuseDanceLoadModel")
    assert "no_such_model.safetensors" in details and available in details, details
    assert len(details.splitlines()) == 1 and details.startswith("checkpoint - "), details  # said once
    still_runs_a_good_prompt(server, before, tmp_path)


def test_a_truncated_checkpoint_is_refused_at_validation_saying_so_once(server, tmp_path):
    before = output_files(server)
    (folder,) = {path.parent for path in server.tmp_dir.glob("models/musedance/*.safetensors")}
    good = next(folder.glob("*.safetensors")).read_bytes()
    (folder / "half_copied.safetensors").write_bytes(good[: len(good) // 2])
    try:
        workflow = basic()
        model_id, model = node(workflow, "MuseDanceLoadModel")
        model["inputs"]["checkpoint"] = "half_copied.safetensors"
        details = node_error_details(refused(server, only_what_needs(workflow, model_id)), model_id, "MuseDanceLoadModel")
        assert details.startswith("checkpoint - half_copied.safetensors is truncated: its header describes"), details
        assert len(details.splitlines()) == 1 and "copy or download it again" in details, details
    finally:
        (folder / "half_copied.safetensors").unlink()
    still_runs_a_good_prompt(server, before, tmp_path)


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_filename_prefix_outside_the_output_folder_is_refused_before_any_work(server, where, tmp_path):
    outside = tmp_path / "escape"  # absolute, and nowhere near the server's folders
    prefix = {"parent": "../escape/dance", "absolute": str(outside / "dance")}[where]
    before = output_files(server)
    workflow = basic()
    combine_id, combine = node(workflow, "MuseDanceVideoCombine")
    combine["inputs"]["filename_prefix"] = prefix
    details = refused_at_validation(server, workflow, combine_id, "MuseDanceVideoCombine")
    assert prefix in details and "tries to leave ComfyUI's output folder" in details, details
    assert not (server.output_dir.parent / "escape").exists() and not outside.exists()
    still_runs_a_good_prompt(server, before, tmp_path)


@pytest.mark.parametrize("inputs, words", [
    ({"filename_prefix": "Muse\x00Dance/dance"}, "NUL character"),
    ({"filename_prefix": "d" * 300}, "file names allow at most"),
    ({"format": "h264-mp4", "crf": 60}, "outside 0..51 for h264-mp4"),
])
def test_video_settings_are_refused_at_validation_with_their_real_problem(server, inputs, words, tmp_path):
    """A bad prefix or crf is refused by POST /prompt (HTTP 400), before the sampler runs, saying what is wrong."""
    before = output_files(server)
    workflow = basic()
    combine_id, combine = node(workflow, "MuseDanceVideoCombine")
    combine["inputs"].update(inputs)
    details = refused_at_validation(server, workflow, combine_id, "MuseDanceVideoCombine")
    assert words in details, details
    assert details.count(words) == 1 or len({line.split(" - ")[0] for line in details.splitlines()}) > 1, details
    still_runs_a_good_prompt(server, before, tmp_path)


def test_mask_of_another_aspect_fails_naming_both_sizes(server, tmp_path):
    before = output_files(server)
    workflow = basic()
    # ComfyUI's SolidMask (a core node since 2023): a 64x32 mask for the square reference image.
    workflow["100"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 32}}
    node(workflow, "MuseDanceReferenceEncode")[1]["inputs"]["mask"] = ["100", 0]
    message = failed(server, workflow, "MuseDanceReferenceEncode")
    assert "64x32" in message and f"{REFERENCE_SIZE}x{REFERENCE_SIZE}" in message, message
    assert "aspect" in message, message
    still_runs_a_good_prompt(server, before, tmp_path)


@pytest.mark.parametrize("class_type", ["MuseDanceTiming", "MuseDanceBeatExtract", "MuseDanceASTEncode"])
def test_zero_duration_is_refused_at_validation_saying_it_must_be_more_than_zero(server, class_type, tmp_path):
    before = output_files(server)
    workflow = basic()
    node_id, found = node(workflow, class_type)
    found["inputs"]["duration"] = 0.0
    message = refused_at_validation(server, workflow, node_id, class_type)
    assert "duration must be more than 0" in message, message
    still_runs_a_good_prompt(server, before, tmp_path)


# --- Progress over the websocket ------------------------------------------------------------------


class ProgressMessages:
    """The JSON messages ComfyUI sends to this client's websocket (/ws?clientId=...) while the block runs.

    A minimal RFC 6455 client on the standard library: ComfyUI's server sends unmasked, unfragmented
    frames; text frames hold the JSON events ("progress", "executing", ...), binary ones previews.
    """

    def __init__(self, comfy: ComfyServer) -> None:
        self._address = urlsplit(comfy.url)
        self._received: list[dict] = []
        self.previews: list[bytes] = []  # binary frames: preview images (event type, format, then the image)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressMessages:
        host, port = self._address.hostname, self._address.port
        self._sock = socket.create_connection((host, port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        try:
            self._sock.sendall(
                f"GET /ws?clientId={CLIENT_ID} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            self._buffer = b""
            while b"\r\n\r\n" not in self._buffer:
                self._buffer += self._recv()
            head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), f"ComfyUI refused the websocket: {head!r}"
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=10)

    def messages(self, kind: str) -> list[dict]:
        return [m["data"] for m in list(self._received) if m.get("type") == kind]

    def _recv(self) -> bytes:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _read(self) -> None:
        try:
            while True:
                first, second = self._take(2)
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack(">H", self._take(2))
                elif length == 127:
                    (length,) = struct.unpack(">Q", self._take(8))
                payload = self._take(length)
                opcode = first & 0x0F
                if opcode == 0x8:  # close
                    return
                if opcode == 0x1:
                    self._received.append(json.loads(payload))
                elif opcode == 0x2:
                    self.previews.append(payload)
        except (OSError, EOFError):  # closed by __exit__
            return
