"""A real ComfyUI server loads the pack, lists its nodes and its model folders, and runs a workflow end to end.

The server (see tests/comfy_server.py) starts once for this module. Without a test host these tests
skip; under CI they fail. Prepare the host with `bash scripts/setup_comfyui.sh`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from comfy_server import (
    PACK_NAME,
    ComfyServerError,
    comfy_server_fixture,
    custom_node_import_failed,
    custom_node_imported,
)

ROOT = Path(__file__).resolve().parents[1]
# One model file of each kind in the models folder the server gets through extra_model_paths.yaml.
MODEL_FILES = {
    "checkpoints": "sd15/tiny.safetensors",
    "musedance": "tiny_musedance.safetensors",
    "animatediff_models": "mm_tiny.ckpt",
    "densepose": "densepose_tiny.pt",
    "audio_encoders": "ast_tiny/config.json",
}


def write_models(models_dir: Path) -> None:
    for kind, name in MODEL_FILES.items():
        path = models_dir / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a real model")


comfy = comfy_server_fixture(models=write_models)


def load_pack_mappings() -> dict:
    """The pack's NODE_CLASS_MAPPINGS, loaded from the checkout's __init__.py as ComfyUI loads it."""
    name = "musedance_pack_for_server_test"
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        return dict(module.NODE_CLASS_MAPPINGS)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_import_failures_are_read_from_comfyuis_log():
    """The log lines ComfyUI prints (nodes.load_custom_nodes' formats); no server needed."""
    ok = "Import times for custom nodes:\n   0.0 seconds: /c/custom_nodes/other\n   0.3 seconds: /c/custom_nodes/musedance\n"
    failed = (
        "Cannot import /c/custom_nodes/musedance module for custom nodes: No module named 'librosa'\n"
        "Import times for custom nodes:\n   0.0 seconds (IMPORT FAILED): /c/custom_nodes/musedance\n"
    )
    other_failed = "Import times for custom nodes:\n   0.0 seconds (IMPORT FAILED): /c/custom_nodes/musedance_extra\n"
    assert custom_node_imported(ok) and not custom_node_import_failed(ok)
    assert custom_node_import_failed(failed) and not custom_node_imported(failed)
    assert not custom_node_import_failed(other_failed) and not custom_node_imported(other_failed)


def test_pack_imports_in_comfyui(comfy):
    log = comfy.log_text()
    assert not custom_node_import_failed(log), f"ComfyUI could not import the pack:\n{log[-6000:]}"
    assert custom_node_imported(log), f"the pack is missing from ComfyUI's custom node import times:\n{log[-6000:]}"


def test_every_node_of_the_pack_is_listed(comfy):
    info = comfy.object_info()
    assert "SaveImage" in info  # ComfyUI's own nodes: the listing is real
    mappings = load_pack_mappings()
    missing = sorted(set(mappings) - set(info))
    assert not missing, f"nodes of the pack missing from /object_info: {missing}"
    for name, node in mappings.items():  # with the types the classes declare
        listed, declared = info[name], node.INPUT_TYPES()
        # Save Dance Video and Render Dance Video add ComfyUI's VIDEO where the host has it (not in this process).
        extra = ["VIDEO"] if name in ("MuseDanceVideoCombine", "MuseDanceRender") and listed["output"][-1:] == ["VIDEO"] else []
        assert listed["output"] == list(node.RETURN_TYPES) + extra, name
        assert listed["output_node"] == bool(getattr(node, "OUTPUT_NODE", False)), name
        assert listed["category"].startswith("MuseDance"), name
        for group in ("required", "optional"):  # a combo's choices depend on the folders: only "a list"
            def kinds(inputs):
                return {k: "COMBO" if isinstance(v[0], list) else v[0] for k, v in inputs.get(group, {}).items()}

            assert kinds(listed["input"]) == kinds(declared), (name, group)


def test_a_builtin_workflow_runs_through_prompt_history_and_view(comfy):
    """EmptyImage -> SaveImage: proves the harness (POST /prompt, /history, /view) on ComfyUI's own nodes."""
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 48, "height": 32, "batch_size": 1, "color": 0xFF0000}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "harness/empty"}},
    }
    entry = comfy.run(workflow, timeout=120)
    assert entry["status"]["status_str"] == "success"
    (saved,) = entry["outputs"]["2"]["images"]
    assert saved["subfolder"] == "harness" and saved["type"] == "output"
    image = Image.open(io.BytesIO(comfy.view(saved["filename"], saved["subfolder"], saved["type"])))
    assert image.format == "PNG" and image.size == (48, 32)
    assert image.convert("RGB").getpixel((10, 10)) == (255, 0, 0)


def test_a_refused_prompt_raises_with_its_node_errors(comfy):
    workflow = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}  # `images` missing
    try:
        comfy.post_prompt(workflow)
    except ComfyServerError as err:
        assert err.status == 400 and "node_errors" in str(err) and "images" in str(err)
    else:
        raise AssertionError("a prompt without its required input was accepted")


def test_upload_puts_any_file_into_the_input_folder(comfy):
    data = bytes(range(256)) * 4  # not an image: ComfyUI must keep the bytes as they are
    name = comfy.upload(data, "music_test.wav")
    assert (comfy.input_dir / name).read_bytes() == data
    assert comfy.view(name, type="input") == data


def test_a_node_that_fails_while_running_raises_with_its_exception(comfy):
    name = comfy.upload(b"not a png", "broken.png")
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "broken"}},
    }
    prompt_id = comfy.post_prompt(workflow)  # valid: the file exists
    try:
        comfy.wait(prompt_id, timeout=60)
    except ComfyServerError as err:
        assert "LoadImage" in str(err) and "UnidentifiedImageError" in str(err)
    else:
        raise AssertionError("a LoadImage of a file that is no image succeeded")
    assert comfy.wait(prompt_id, check=False)["status"]["status_str"] == "error"


def test_model_files_in_extra_model_paths_are_listed_for_every_kind(comfy):
    """extra_model_paths.yaml registers our kinds before the pack does; the pack keeps those folders.

    Checkpoints are visible through a built-in loader; for the others ComfyUI's own start-up code
    (load_extra_path_config, nodes.load_custom_node) runs in the host's Python and reports
    folder_paths.get_filename_list and the pack's comfy_model_folders().list for each kind.
    """
    ckpt_names = comfy.object_info()["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert MODEL_FILES["checkpoints"] in ckpt_names

    comfyui = comfy.host.comfyui
    script = f"""
import asyncio, inspect, json, sys
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, ".")
import main, nodes, folder_paths
try:
    from utils.extra_config import load_extra_path_config  # ComfyUI since late 2024
except ImportError:
    from main import load_extra_path_config  # March 2024
load_extra_path_config({str(comfy.tmp_dir / "extra_model_paths.yaml")!r})
loaded = nodes.load_custom_node({str(comfyui / "custom_nodes" / PACK_NAME)!r})
assert asyncio.run(loaded) if inspect.iscoroutine(loaded) else loaded  # async since mid 2025
init = {str(comfyui / "custom_nodes" / PACK_NAME / "__init__.py")!r}  # its module name differs between versions
pack = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == init)
folders = pack.nodes.model_folders.comfy_model_folders()
kinds = {list(MODEL_FILES)!r}
print("RESULT " + json.dumps({{k: [folder_paths.get_filename_list(k), folders.list(k)] for k in kinds}}))
"""
    result = subprocess.run(
        [str(comfy.host.python), "-c", script], cwd=comfyui, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    listed = json.loads(line[len("RESULT ") :])
    for kind, name in MODEL_FILES.items():
        comfy_list, pack_list = listed[kind]
        if kind == "audio_encoders":  # a folder kind: the pack lists the model folder
            assert "ast_tiny" in pack_list, listed
        else:
            assert name in comfy_list and name in pack_list, listed


def test_the_web_extension_is_served(comfy):
    """WEB_DIRECTORY: ComfyUI lists web/musedance.js among its extensions and serves it unchanged."""
    listed = json.loads(comfy._request("GET", "/extensions"))
    (url,) = [u for u in listed if u.endswith("/musedance.js")]
    assert comfy._request("GET", url) == (ROOT / "web" / "musedance.js").read_bytes()
