"""Model folders: names listed and resolved safely, and registered with ComfyUI's folder_paths without losing anything."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import types
from pathlib import Path

import pytest

from helpers import pack_module

_paths = pack_module("nodes.model_paths")
MODEL_KINDS, SHOWN_NAMES, ModelFolders = _paths.MODEL_KINDS, _paths.SHOWN_NAMES, _paths.ModelFolders
ModelNotFound, ModelPathError = _paths.ModelNotFound, _paths.ModelPathError

ROOT = Path(__file__).resolve().parents[1]
needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


# The smallest sound safetensors file: an 8-byte header length, then a header of metadata and no tensors.
_HEADER = b'{"__metadata__":{"format":"musedance"}}'
EMPTY_SAFETENSORS = len(_HEADER).to_bytes(8, "little") + _HEADER


def touch(path: Path, text: str | None = None) -> Path:
    """A file at `path`: `text`, else a sound empty safetensors file (for its suffix) or "x"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None and path.suffix.lower() in (".safetensors", ".sft"):
        path.write_bytes(EMPTY_SAFETENSORS)
    else:
        path.write_text("x" if text is None else text)
    return path


def ast_folder(path: Path) -> Path:
    touch(path / "config.json", '{"model_type": "audio-spectrogram-transformer"}')
    touch(path / "model.safetensors")
    return path


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A models/ folder with a few files of each kind, nested names and distractors."""
    base = tmp_path / "models"
    touch(base / "musedance" / "musedance_v1.safetensors")
    touch(base / "musedance" / "tokenizer" / "vocab.json")
    touch(base / "checkpoints" / "sd15.safetensors")
    touch(base / "checkpoints" / "old" / "v1-5.CKPT")
    touch(base / "checkpoints" / "notes.txt")
    touch(base / "checkpoints" / ".git" / "hidden.safetensors")
    touch(base / "animatediff_models" / "mm_sd_v15_v2.ckpt")
    touch(base / "animatediff_models" / "weights.bin")  # not a motion-module type
    touch(base / "densepose" / "densepose_r50.torchscript")
    ast_folder(base / "audio_encoders" / "ast-finetuned-audioset-10-10-0.4593")
    ast_folder(base / "audio_encoders" / "MIT" / "ast-small")
    touch(base / "audio_encoders" / "empty_folder" / "readme.md")
    touch(base / "audio_encoders" / "wav2vec2.safetensors")
    return base


# ---- plain paths ---------------------------------------------------------------------------------


def test_list_gives_sorted_forward_slash_names_of_the_kinds_file_types(models):
    folders = ModelFolders.from_models_dir(models)
    assert folders.list("checkpoints") == ["old/v1-5.CKPT", "sd15.safetensors"]
    assert folders.list("musedance") == ["musedance_v1.safetensors"]
    assert folders.list("animatediff_models") == ["mm_sd_v15_v2.ckpt"]
    assert folders.list("densepose") == ["densepose_r50.torchscript"]


def test_audio_encoders_are_folders_holding_config_json(models):
    folders = ModelFolders.from_models_dir(models)
    assert folders.list("audio_encoders") == ["MIT/ast-small", "ast-finetuned-audioset-10-10-0.4593"]
    # a folder name's dots are no file suffix
    path = folders.resolve("audio_encoders", "ast-finetuned-audioset-10-10-0.4593")
    assert path.is_dir() and (path / "config.json").is_file()
    assert folders.resolve("audio_encoders", "MIT/ast-small") == (models / "audio_encoders" / "MIT" / "ast-small").resolve()
    for not_a_model in ("empty_folder", "wav2vec2.safetensors", "MIT"):
        with pytest.raises(ModelNotFound, match="MIT/ast-small"):
            folders.resolve("audio_encoders", not_a_model)


def test_resolve_returns_the_file_for_every_listed_name(models):
    folders = ModelFolders.from_models_dir(models)
    for kind in MODEL_KINDS:
        for name in folders.list(kind):
            path = folders.resolve(kind, name)
            assert path == (models / kind / name).resolve() and path.exists()
    # ComfyUI on Windows lists nested names with backslashes
    assert folders.resolve("checkpoints", "old\\v1-5.CKPT") == (models / "checkpoints" / "old" / "v1-5.CKPT").resolve()


def test_earlier_folders_win_and_names_are_listed_once(tmp_path):
    first, second = touch(tmp_path / "a" / "m.safetensors").parent, touch(tmp_path / "b" / "m.safetensors").parent
    touch(second / "only_b.safetensors")
    folders = ModelFolders({"checkpoints": [first, second]})
    assert folders.roots("checkpoints") == [first, second]
    assert folders.list("checkpoints") == ["m.safetensors", "only_b.safetensors"]
    assert folders.resolve("checkpoints", "m.safetensors") == (first / "m.safetensors").resolve()
    assert folders.resolve("checkpoints", "only_b.safetensors") == (second / "only_b.safetensors").resolve()
    assert folders.roots("musedance") == [] and folders.list("musedance") == []


def test_from_models_dir_and_tokenizer_candidates(tmp_path):
    folders = ModelFolders.from_models_dir(tmp_path)
    assert {kind: folders.roots(kind) for kind in MODEL_KINDS} == {kind: [tmp_path / kind] for kind in MODEL_KINDS}
    assert folders.tokenizer_candidates() == [tmp_path / "musedance" / "tokenizer"]


def test_unknown_kinds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model kind 'loras'"):
        ModelFolders({"loras": [tmp_path]})
    with pytest.raises(ValueError, match="musedance, checkpoints"):
        ModelFolders.from_models_dir(tmp_path).list("loras")


# ---- the security boundary -----------------------------------------------------------------------

REFUSED = {
    "absolute": ("{outside}", "absolute path"),
    "drive letter": ("C:\\models\\x.safetensors", "absolute path"),
    "drive-relative": ("C:x.safetensors", "absolute path"),
    "UNC": ("\\\\server\\share\\x.safetensors", "absolute path"),
    "parent": ("../outside.safetensors", r"contains '\.\.'"),
    "parent after a folder": ("sub/../../outside.safetensors", r"contains '\.\.'"),
    "parent with backslashes": ("sub\\..\\..\\outside.safetensors", r"contains '\.\.'"),
    "parent that stays inside": ("sub/../m.safetensors", r"contains '\.\.'"),
    "empty": ("", "empty"),
    "blank": ("  ", "empty"),
    "only separators": ("./", "names no file"),
    "NUL byte": ("m.safetensors\0.txt", "NUL byte"),
    "unknown suffix": ("notes.txt", "unknown file type; expected .safetensors"),
    "no suffix": ("sub", "unknown file type"),
    "not a string": (None, "empty"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_resolve_refuses_names_that_are_not_plain_relative_names_of_the_kind(tmp_path, case):
    root = touch(tmp_path / "models" / "checkpoints" / "m.safetensors").parent
    touch(root / "sub" / "n.safetensors")
    touch(root / "notes.txt")
    outside = touch(tmp_path / "models" / "outside.safetensors")  # exists, so only the check stops it
    name, message = REFUSED[case]
    name = name.format(outside=outside) if name else name
    with pytest.raises(ModelPathError, match=message) as err:
        ModelFolders({"checkpoints": [root]}).resolve("checkpoints", name)
    assert not isinstance(err.value, ModelNotFound)


def test_a_name_too_long_for_the_file_system_is_not_found_rather_than_an_os_error(tmp_path):
    with pytest.raises(ModelNotFound):
        ModelFolders.from_models_dir(tmp_path).resolve("checkpoints", "x" * 5000 + ".safetensors")


@needs_symlinks
def test_links_leading_outside_the_folders_are_refused_and_not_listed(tmp_path):
    root = touch(tmp_path / "checkpoints" / "real.safetensors").parent
    outside = touch(tmp_path / "secret" / "stolen.safetensors")
    (root / "escape.safetensors").symlink_to(outside)
    (root / "escape_dir").symlink_to(outside.parent, target_is_directory=True)
    (root / "alias.safetensors").symlink_to(root / "real.safetensors")  # inside: fine
    folders = ModelFolders({"checkpoints": [root]})
    assert folders.list("checkpoints") == ["alias.safetensors", "real.safetensors"]
    assert folders.resolve("checkpoints", "alias.safetensors") == (root / "real.safetensors").resolve()
    for name in ("escape.safetensors", "escape_dir/stolen.safetensors"):
        with pytest.raises(ModelPathError, match="outside the checkpoints folders") as err:
            folders.resolve("checkpoints", name)
        assert not isinstance(err.value, ModelNotFound)


@needs_symlinks
def test_a_linked_folder_inside_another_root_of_the_kind_is_allowed(tmp_path):
    first, second = (tmp_path / "a").resolve(), touch(tmp_path / "b" / "m.safetensors").parent.resolve()
    first.mkdir()
    (first / "shared").symlink_to(second, target_is_directory=True)
    folders = ModelFolders({"checkpoints": [first, second]})
    assert folders.resolve("checkpoints", "shared/m.safetensors") == second / "m.safetensors"


@needs_symlinks
def test_a_linked_root_works_and_link_loops_end(tmp_path):
    real = touch(tmp_path / "disk" / "ckpts" / "m.safetensors").parent
    root = tmp_path / "models" / "checkpoints"
    root.parent.mkdir()
    root.symlink_to(real, target_is_directory=True)  # models/checkpoints -> a big disk
    (real / "loop").symlink_to(real, target_is_directory=True)
    folders = ModelFolders({"checkpoints": [root]})
    assert folders.list("checkpoints") == ["m.safetensors"]
    assert folders.resolve("checkpoints", "m.safetensors") == (real / "m.safetensors").resolve()


@needs_symlinks
def test_a_linked_audio_encoder_folder_outside_is_refused(tmp_path):
    root = (tmp_path / "audio_encoders").resolve()
    root.mkdir()
    (root / "ast").symlink_to(ast_folder(tmp_path / "elsewhere" / "ast"), target_is_directory=True)
    folders = ModelFolders({"audio_encoders": [root]})
    assert folders.list("audio_encoders") == []
    with pytest.raises(ModelPathError, match="outside the audio_encoders folders"):
        folders.resolve("audio_encoders", "ast")


def test_missing_model_message_names_kind_name_folders_and_what_is_there(models, tmp_path):
    folders = ModelFolders({"checkpoints": [models / "checkpoints", tmp_path / "nowhere"]})
    with pytest.raises(ModelNotFound) as err:
        folders.resolve("checkpoints", "sd14.safetensors")
    message = str(err.value)
    for part in ("checkpoints", "'sd14.safetensors'", str(models / "checkpoints"), str(tmp_path / "nowhere"),
                 "Available: old/v1-5.CKPT, sd15.safetensors."):
        assert part in message
    assert isinstance(err.value, ValueError)


def test_missing_model_message_shows_a_few_names_and_counts_the_rest(tmp_path):
    root = tmp_path / "checkpoints"
    for i in range(SHOWN_NAMES + 3):
        touch(root / f"m{i:02d}.safetensors")
    with pytest.raises(ModelNotFound, match=rf"m00.safetensors, .* and 3 more\.$") as err:
        ModelFolders({"checkpoints": [root]}).resolve("checkpoints", "gone.safetensors")
    assert f"m{SHOWN_NAMES - 1:02d}.safetensors" in str(err.value)
    assert f"m{SHOWN_NAMES:02d}.safetensors" not in str(err.value)


def test_missing_model_message_lists_broken_files_apart_with_their_problem(tmp_path):
    root = tmp_path / "musedance"
    touch(root / "good.safetensors")
    touch(root / "half.safetensors").write_bytes(EMPTY_SAFETENSORS[:12])
    touch(root / "page.safetensors", "<html>Sign in</html>")
    sd15 = b'{"__metadata__":{"format":"pt"}}'
    touch(root / "sd15.safetensors").write_bytes(len(sd15).to_bytes(8, "little") + sd15)
    with pytest.raises(ModelNotFound) as err:
        ModelFolders({"musedance": [root]}).resolve("musedance", "gone.safetensors")
    message = str(err.value)
    assert "Available: good.safetensors. Not loadable: " in message, message
    for words in ("half.safetensors is truncated", "page.safetensors is not a safetensors file",
                  "sd15.safetensors is not a MuseDance checkpoint"):
        assert words in message, message


def test_missing_model_message_says_what_to_put_where(tmp_path):
    with pytest.raises(ModelNotFound, match=r"holds no AnimateDiff motion modules; put them there"):
        ModelFolders.from_models_dir(tmp_path).resolve("animatediff_models", "mm.ckpt")
    with pytest.raises(ModelNotFound, match="no densepose folders are configured"):
        ModelFolders({}).resolve("densepose", "dp.torchscript")


# ---- ComfyUI's folder_paths ----------------------------------------------------------------------


def fake_folder_paths(base: Path, version: str) -> types.ModuleType:
    """A stand-in for ComfyUI's folder_paths.py with its real data shapes and behaviour.

    "2024-03": as shipped in March 2024 (no audio_encoders, no .sft, add_model_folder_path(name, path)
    appends even a path already listed). "2025-10": audio_encoders registered, .sft and .pt2,
    add_model_folder_path(name, path, is_default=False) skips listed paths.
    """
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(base / "models")
    if version == "2024-03":
        fp.supported_pt_extensions = {".ckpt", ".pt", ".bin", ".pth", ".safetensors"}
    else:
        fp.supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    fp.folder_names_and_paths = {
        "checkpoints": ([os.path.join(fp.models_dir, "checkpoints")], fp.supported_pt_extensions),
        "configs": ([os.path.join(fp.models_dir, "configs")], [".yaml"]),
        "loras": ([os.path.join(fp.models_dir, "loras")], fp.supported_pt_extensions),
    }
    if version != "2024-03":
        audio = os.path.join(fp.models_dir, "audio_encoders")
        fp.folder_names_and_paths["audio_encoders"] = ([audio], fp.supported_pt_extensions)
    fp.filename_list_cache = {}

    def add_model_folder_path(folder_name, full_folder_path, is_default=False):
        if folder_name not in fp.folder_names_and_paths:
            fp.folder_names_and_paths[folder_name] = ([full_folder_path], set())
            return
        paths = fp.folder_names_and_paths[folder_name][0]
        if version == "2024-03" or full_folder_path not in paths:
            paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)

    def get_folder_paths(folder_name):
        return fp.folder_names_and_paths[folder_name][0][:]

    def get_filename_list(folder_name):
        if folder_name not in fp.filename_list_cache:
            paths, extensions = fp.folder_names_and_paths[folder_name]
            found = set()
            for folder in paths:
                for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                    dirnames[:] = [d for d in dirnames if d != ".git"]
                    found.update(os.path.relpath(os.path.join(dirpath, f), folder) for f in filenames)
            keep = [f for f in found if os.path.splitext(f)[-1].lower() in extensions or len(extensions) == 0]
            fp.filename_list_cache[folder_name] = (sorted(keep), {}, time.perf_counter())
        return list(fp.filename_list_cache[folder_name][0])

    def get_full_path(folder_name, filename):
        if folder_name not in fp.folder_names_and_paths:
            return None
        filename = os.path.relpath(os.path.join("/", filename), "/")
        for folder in fp.folder_names_and_paths[folder_name][0]:
            if os.path.isfile(os.path.join(folder, filename)):
                return os.path.join(folder, filename)
        return None

    if version == "2024-03":
        fp.add_model_folder_path = lambda folder_name, full_folder_path: add_model_folder_path(folder_name, full_folder_path)
    else:
        fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths, fp.get_filename_list, fp.get_full_path = get_folder_paths, get_filename_list, get_full_path
    return fp


def load_pack(name: str) -> types.ModuleType:
    """The pack imported as ComfyUI imports it: a package from the folder's __init__.py."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def unload(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@pytest.fixture(scope="module")
def adapter():
    """nodes/model_folders.py as ComfyUI would load it, imported while no folder_paths exists."""
    assert "folder_paths" not in sys.modules
    name = "musedance_pack_model_folders"
    yield load_pack(name).nodes.model_folders
    unload(name)


@pytest.fixture(params=["2024-03", "2025-10"])
def comfy(request, tmp_path, monkeypatch):
    fp = fake_folder_paths(tmp_path, request.param)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return fp


def test_registration_adds_every_kind_with_its_default_folder_and_file_types(adapter, comfy):
    shared_before = set(comfy.supported_pt_extensions)
    own_audio_paths = comfy.get_folder_paths("audio_encoders") if "audio_encoders" in comfy.folder_names_and_paths else []
    assert adapter.register_model_folders() is True
    for kind in MODEL_KINDS.values():
        default = os.path.join(comfy.models_dir, kind.name)
        assert os.path.isdir(default)
        assert comfy.get_folder_paths(kind.name).count(default) == 1
        assert set(kind.suffixes) <= set(comfy.folder_names_and_paths[kind.name][1])
    # ComfyUI's own entries keep their folders and extensions; the shared extension set is untouched
    assert comfy.get_folder_paths("checkpoints") == [os.path.join(comfy.models_dir, "checkpoints")]
    assert shared_before <= set(comfy.folder_names_and_paths["checkpoints"][1])
    assert comfy.supported_pt_extensions == shared_before
    assert comfy.folder_names_and_paths["loras"][1] is comfy.supported_pt_extensions
    if own_audio_paths:  # ComfyUI's own audio_encoders folder, then the pack's shipped one
        assert comfy.get_folder_paths("audio_encoders") == [*own_audio_paths, str(adapter.PACK_MODELS / "audio_encoders")]
        assert comfy.folder_names_and_paths["audio_encoders"][1] == shared_before


def test_registration_keeps_folders_and_extensions_another_pack_registered(adapter, comfy, tmp_path):
    # what AnimateDiff-Evolved does at import: its own folder first, then models_dir's, extensions added in place
    own = str(tmp_path / "custom_nodes" / "AnimateDiff-Evolved" / "models")
    default = os.path.join(comfy.models_dir, "animatediff_models")
    comfy.add_model_folder_path("animatediff_models", own)
    comfy.add_model_folder_path("animatediff_models", default)
    comfy.folder_names_and_paths["animatediff_models"][1].update(comfy.supported_pt_extensions)
    comfy.add_model_folder_path("musedance", str(tmp_path / "extra" / "musedance"))  # as extra_model_paths.yaml does
    adapter.register_model_folders()
    adapter.register_model_folders()  # twice: no path listed twice, even where ComfyUI would append it again
    assert comfy.get_folder_paths("animatediff_models") == [own, default]
    assert set(comfy.folder_names_and_paths["animatediff_models"][1]) == comfy.supported_pt_extensions
    extra, default = str(tmp_path / "extra" / "musedance"), os.path.join(comfy.models_dir, "musedance")
    assert comfy.get_folder_paths("musedance") == [extra, default, str(adapter.PACK_MODELS / "musedance")]
    assert comfy.folder_names_and_paths["musedance"][1] == {".safetensors", ".sft"}


def test_comfyui_lists_and_finds_what_the_pack_resolves(adapter, comfy, tmp_path):
    adapter.register_model_folders()
    assert comfy.get_filename_list("densepose") == []  # listed once, before the model arrives
    extra = tmp_path / "extra" / "densepose"
    comfy.add_model_folder_path("densepose", str(extra))
    touch(extra / "body" / "densepose.torchscript")
    touch(Path(comfy.models_dir) / "densepose" / "notes.txt")
    comfy.filename_list_cache.clear()
    folders = adapter.comfy_model_folders()
    assert folders.roots("densepose") == [Path(p) for p in comfy.get_folder_paths("densepose")]
    assert folders.list("densepose") == comfy.get_filename_list("densepose") == ["body/densepose.torchscript"]
    assert folders.resolve("densepose", "body/densepose.torchscript") == Path(
        comfy.get_full_path("densepose", "body/densepose.torchscript")
    ).resolve()


def test_the_shipped_default_model_is_listed_after_the_users_folders(adapter, comfy):
    """The pack's models/ (default model, its AST) comes last: a user's file of the same name wins."""
    shipped = adapter.PACK_MODELS
    assert (shipped / "musedance" / "musedance_default.safetensors").is_file()
    assert (shipped / "audio_encoders" / "musedance_default_ast" / "config.json").is_file()
    adapter.register_model_folders()
    for kind in ("musedance", "audio_encoders"):
        assert comfy.get_folder_paths(kind)[-1] == str(shipped / kind)
    assert "musedance_default.safetensors" in comfy.get_filename_list("musedance")
    assert "musedance_default_ast" in adapter.comfy_model_folders().list("audio_encoders")
    own = touch(Path(comfy.models_dir) / "musedance" / "musedance_default.safetensors")
    assert adapter.comfy_model_folders().resolve("musedance", "musedance_default.safetensors") == own.resolve()
    assert comfy.get_full_path("musedance", "musedance_default.safetensors") == str(own)


def test_registration_drops_comfyuis_cached_listing_of_a_kind(adapter, comfy):
    touch(Path(comfy.models_dir) / "checkpoints" / "flux.sft")
    comfy.get_filename_list("checkpoints")  # cached before the pack loads
    adapter.register_model_folders()
    assert "flux.sft" in comfy.get_filename_list("checkpoints")


def test_importing_the_pack_inside_comfyui_registers_the_folders(comfy):
    name = "musedance_pack_in_comfyui"
    try:
        load_pack(name)
    finally:
        unload(name)
    assert os.path.join(comfy.models_dir, "musedance") in comfy.get_folder_paths("musedance")


def test_without_comfyui_nothing_is_registered_and_folders_are_plain_paths(adapter, tmp_path):
    assert "folder_paths" not in sys.modules
    assert adapter.register_model_folders() is False
    assert all(adapter.comfy_model_folders().roots(kind) == [] for kind in MODEL_KINDS)
    assert adapter.comfy_model_folders(tmp_path).roots("musedance") == [tmp_path / "musedance"]


@pytest.fixture
def comfy_package(tmp_path, monkeypatch):
    """A `comfy` package on sys.path whose import would fail, to prove it is found without being imported."""
    package = touch(tmp_path / "site" / "comfy" / "__init__.py", "raise RuntimeError('comfy was imported')").parent
    monkeypatch.delitem(sys.modules, "comfy", raising=False)
    monkeypatch.syspath_prepend(str(package.parent))
    importlib.invalidate_caches()
    return package


def test_comfy_tokenizer_folder_is_comfys_sd1_tokenizer(adapter, comfy_package):
    assert adapter.comfy_tokenizer_folder() is None  # no tokenizer files yet
    touch(comfy_package / "sd1_tokenizer" / "vocab.json", "{}")
    assert adapter.comfy_tokenizer_folder() is None  # merges.txt missing
    touch(comfy_package / "sd1_tokenizer" / "merges.txt", "#version: 0.2\n")
    assert adapter.comfy_tokenizer_folder() == comfy_package / "sd1_tokenizer"
    assert "comfy" not in sys.modules


def test_comfy_tokenizer_folder_is_none_without_comfyui(adapter, monkeypatch):
    monkeypatch.delitem(sys.modules, "comfy", raising=False)
    assert importlib.util.find_spec("comfy") is None
    assert adapter.comfy_tokenizer_folder() is None
