"""The example workflows: each UI file (what users drag into ComfyUI) is sound and sends exactly its API twin.

Offline, object_info is built from the pack's own declarations; the server tests read it from a
real ComfyUI (see tests/comfy_server.py), whose combo lists hold the files that server sees.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from comfy_server import comfy_server_fixture
from tiny_files import WORKFLOW_AST, WORKFLOW_CHECKPOINT, WORKFLOW_FLOW_CHECKPOINT, write_workflow_models
from workflow_ui import check_ui_workflow, ui_to_api

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
# ComfyUI offers every workflows/*.json as a template (not subfolders): the UI files only; the API twins in api/.
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
API_FILES = sorted((WORKFLOWS / "api").glob("*.api.json"))
# The basic workflow as shipped before Dance Timing (2026-12-07): fps, start and duration typed in both music nodes.
BEFORE_TIMING = Path(__file__).resolve().parent / "data" / "musedance_basic.before_timing.json"
# The files the workflows expect in ComfyUI's input folder (workflows/README.md says so).
INPUT_FILES = ("musedance_reference.png", "musedance_music.wav")

# ComfyUI's own nodes the workflows use, as GET /object_info describes them. Written from LoadImage
# and PreviewImage in ComfyUI's nodes.py, the same in March 2024 and October 2025. LoadImage's combo
# lists the input folder's images; here the one the workflows name.
COMFY_NODES = {
    "LoadImage": {
        "input": {"required": {"image": [[INPUT_FILES[0]], {"image_upload": True}]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE", "MASK"], "output_name": ["IMAGE", "MASK"],
        "name": "LoadImage", "display_name": "Load Image", "output_node": False,
    },
    "PreviewImage": {
        "input": {"required": {"images": ["IMAGE"]}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}},
        "input_order": {"required": ["images"], "hidden": ["prompt", "extra_pnginfo"]},
        "output": [], "output_name": [],
        "name": "PreviewImage", "display_name": "Preview Image", "output_node": True,
    },
}  # fmt: skip


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def api_twin(ui_path: Path) -> Path:
    if ui_path.parent != WORKFLOWS:  # tests/data keeps a saved workflow and its API twin side by side
        return ui_path.with_suffix(".api.json")
    return ui_path.parent / "api" / (ui_path.stem + ".api.json")


def node_info(name: str, node_class: type, display_name: str | None) -> dict:
    """What GET /object_info says of a node class (as ComfyUI's server builds it), after the trip through JSON."""
    inputs = node_class.INPUT_TYPES()
    info = {
        "input": inputs,
        "input_order": {group: list(declared) for group, declared in inputs.items()},
        "output": node_class.RETURN_TYPES,
        "output_name": getattr(node_class, "RETURN_NAMES", node_class.RETURN_TYPES),
        "name": name,
        "display_name": display_name or name,
        "output_node": bool(getattr(node_class, "OUTPUT_NODE", False)),
    }
    return json.loads(json.dumps(info))


@pytest.fixture(scope="module")
def offline_info(pack, tmp_path_factory) -> dict:
    """object_info of a ComfyUI that has the workflows' input files and models, from the pack's own INPUT_TYPES.

    A stand-in `folder_paths` (the two functions the pack asks it) points the pack's file lists at
    a folder holding empty files under the workflows' names: the lists are all that is read here.
    """
    home = tmp_path_factory.mktemp("comfyui_home")
    (home / "input").mkdir()
    for name in INPUT_FILES:
        (home / "input" / name).write_bytes(b"")
    (home / "models" / "musedance").mkdir(parents=True)
    (home / "models" / "musedance" / WORKFLOW_CHECKPOINT).write_bytes(b"")
    (home / "models" / "musedance" / WORKFLOW_FLOW_CHECKPOINT).write_bytes(b"")
    (home / "models" / "audio_encoders" / WORKFLOW_AST).mkdir(parents=True)
    (home / "models" / "audio_encoders" / WORKFLOW_AST / "config.json").write_text("{}")
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_input_directory = lambda: str(home / "input")
    folder_paths.get_folder_paths = lambda kind: [str(home / "models" / kind)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "folder_paths", folder_paths)
        pack_info = {
            name: node_info(name, node_class, pack.NODE_DISPLAY_NAME_MAPPINGS.get(name))
            for name, node_class in pack.NODE_CLASS_MAPPINGS.items()
        }
    return {**COMFY_NODES, **pack_info}


@pytest.fixture
def basic() -> dict:
    return read(WORKFLOWS / "musedance_basic.json")


def test_every_ui_workflow_has_an_api_twin_and_every_api_workflow_a_ui_one():
    assert UI_FILES, f"no UI workflows in {WORKFLOWS}"
    assert sorted(api_twin(p) for p in UI_FILES) == API_FILES
    # what the template dialog offers loads: a UI workflow with its version (an API file there is a broken card)
    assert all({"version", "nodes", "links"} <= set(read(p)) for p in UI_FILES)


WIDGETS_ADDED_SINCE_BEFORE_TIMING = {
    "MuseDanceSampler": {"clip_ends": "every clip_length frames", "guidance_rows": "together", "decode_chunk_size": 8,
                         "vae_tile_size": 0, "compile": False},
    "MuseDanceASTEncode": {"speed": "accurate"},
}


def sent_for(path: Path) -> dict:
    """What the frontend sends for a UI workflow: its API twin. The one saved before Dance Timing (its twin is
    that day's API file) is completed with the defaults of the widgets added since, as the frontend does."""
    api = read(api_twin(path))
    if path == BEFORE_TIMING:
        for node in api.values():
            for name, default in WIDGETS_ADDED_SINCE_BEFORE_TIMING.get(node["class_type"], {}).items():
                node["inputs"].setdefault(name, default)
    return api


@pytest.mark.parametrize("path", [*UI_FILES, BEFORE_TIMING], ids=lambda p: p.name)
def test_ui_workflow_is_sound_and_sends_its_api_twin(path, offline_info):
    ui = read(path)
    assert check_ui_workflow(ui, offline_info) == []
    assert ui_to_api(ui, offline_info) == sent_for(path)


def test_the_example_workflows_take_their_timing_from_one_node(offline_info):
    """Beat Extract and AST Music Encode get fps, start_time and duration from the same Dance Timing outputs."""
    for path in API_FILES:
        graph = read(path)
        (timing,) = [key for key, node in graph.items() if node["class_type"] == "MuseDanceTiming"]
        music_nodes = [node for node in graph.values() if node["class_type"] in ("MuseDanceBeatExtract", "MuseDanceASTEncode")]
        assert len(music_nodes) == 2, path.name
        for node in music_nodes:
            assert [node["inputs"][name] for name in ("fps", "start_time", "duration")] == [
                [timing, 0], [timing, 1], [timing, 2]], path.name


def test_conversion_skips_the_frontend_only_values(basic, offline_info):
    """The sampler's seed is followed by its control value, Load Image's file by its upload button's."""
    nodes = {n["id"]: n for n in basic["nodes"]}
    assert nodes[9]["widgets_values"][:2] == [0, "fixed"] and nodes[1]["widgets_values"] == [INPUT_FILES[0], "image"]
    api = ui_to_api(basic, offline_info)
    assert api["9"]["inputs"]["seed"] == 0 and api["9"]["inputs"]["steps"] == 0  # auto
    assert api["1"]["inputs"] == {"image": INPUT_FILES[0]}
    assert api["10"]["inputs"]["fps"] == ["9", 2]  # the link wins over the widget's kept value


# ---- The checker catches what ComfyUI would refuse ----------------------------------------------


def node(ui: dict, node_id: int) -> dict:
    return next(n for n in ui["nodes"] if n["id"] == node_id)


def only_problem(ui: dict, object_info: dict, *words: str) -> None:
    problems = check_ui_workflow(ui, object_info)
    assert len(problems) == 1 and all(w in problems[0] for w in words), problems


def test_a_missing_widget_value_is_caught(basic, offline_info):
    node(basic, 13)["widgets_values"].pop()  # Dance Timing's duration, a required widget
    only_problem(basic, offline_info, "node 13", "2 widgets_values for 3 widgets")
    with pytest.raises(ValueError, match="2 widgets_values for 3"):
        ui_to_api(basic, offline_info)


def test_optional_widgets_missing_at_the_end_take_their_defaults(basic, offline_info):
    """A workflow saved before the sampler gained its last optional widgets: the frontend gives them defaults."""
    del node(basic, 9)["widgets_values"][-5:]  # reference_start, clip_ends, guidance_rows, decode_chunk_size, vae_tile_size
    assert check_ui_workflow(basic, offline_info) == []
    inputs = ui_to_api(basic, offline_info)["9"]["inputs"]
    assert [inputs[name] for name in ("reference_start", "clip_ends", "guidance_rows", "decode_chunk_size",
                                      "vae_tile_size")] == ["auto", "every clip_length frames", "together", 8, 0]


def test_a_value_out_of_range_is_caught(basic, offline_info):
    node(basic, 9)["widgets_values"][2] = -1  # steps, min 0 (auto)
    only_problem(basic, offline_info, "node 9", "'steps'", "outside its range [0, 1000]")


def test_a_value_of_the_wrong_type_is_caught(basic, offline_info):
    node(basic, 7)["widgets_values"][5] = 1  # keep_largest is BOOLEAN
    only_problem(basic, offline_info, "node 7", "'keep_largest'", "BOOLEAN")


def test_a_combo_value_not_in_the_list_is_caught(basic, offline_info):
    node(basic, 10)["widgets_values"][2] = "gif"  # format
    only_problem(basic, offline_info, "node 10", "'format'", "'gif'", "h264-mp4")


def test_a_link_between_other_types_is_caught(basic, offline_info):
    """The sampler's music input fed from Beat Extract's beats, the link recorded consistently at both ends."""
    link = next(l for l in basic["links"] if l[3] == 9 and node(basic, 9)["inputs"][l[4]]["name"] == "music")
    node(basic, link[1])["outputs"][link[2]]["links"].remove(link[0])
    link[1:3] = [5, 0]
    node(basic, 5)["outputs"][0]["links"].append(link[0])
    only_problem(basic, offline_info, f"link {link[0]}", "MuseDanceBeatExtract output 0 MUSEDANCE_BEATS",
                 "'music' MUSEDANCE_MUSIC")


def test_an_unconnected_required_input_is_caught(basic, offline_info):
    link = next(l for l in basic["links"] if l[3] == 9 and node(basic, 9)["inputs"][l[4]]["name"] == "beats")
    basic["links"].remove(link)
    node(basic, link[1])["outputs"][link[2]]["links"].remove(link[0])
    node(basic, 9)["inputs"][link[4]]["link"] = None
    only_problem(basic, offline_info, "node 9", "required input 'beats'", "not connected")


def test_an_unknown_node_type_is_caught(basic, offline_info):
    node(basic, 12)["type"] = "PreviewImageSomewhere"
    only_problem(basic, offline_info, "node 12", "unknown node type")
    with pytest.raises(ValueError, match="unknown node type"):
        ui_to_api(basic, offline_info)


# ---- A real ComfyUI server ----------------------------------------------------------------------

comfy = comfy_server_fixture(models=write_workflow_models)


@pytest.fixture(scope="module")
def server_info(comfy) -> dict:
    """The server's object_info once the workflows' input files are in its input folder (empty: only names are listed)."""
    for name in INPUT_FILES:
        (comfy.input_dir / name).write_bytes(b"")
    return comfy.object_info()


@pytest.mark.parametrize("path", [*UI_FILES, BEFORE_TIMING], ids=lambda p: p.name)
def test_ui_workflow_fits_a_real_server_and_sends_its_api_twin(path, server_info):
    ui = read(path)
    assert check_ui_workflow(ui, server_info) == []
    assert ui_to_api(ui, server_info) == sent_for(path)


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_every_template_has_a_thumbnail_of_its_own_output(path):
    """ComfyUI's template dialog shows workflows/<name>.jpg for each template; scripts/readme_pictures.sh makes it
    from four frames of the video the workflow writes. A real picture, not a flat placeholder."""
    import numpy as np
    from PIL import Image

    thumbnail = path.with_suffix(".jpg")
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.size == (256, 256)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    quarters = [pixels[y : y + 128, x : x + 128] for y in (0, 128) for x in (0, 128)]
    assert pixels.std() > 10 and max(abs(q.mean() - quarters[0].mean()) for q in quarters) < 60
