"""MuseDance's model folders inside ComfyUI: registered with `folder_paths`, read back as a `ModelFolders`.

Every function works without ComfyUI too (registration does nothing, the folders fall back to plain
paths), so the pack imports and its tests run anywhere.

ComfyUI's `folder_names_and_paths` maps a folder name to `(paths, extensions)`, the extensions a set
or a list. Several names share one set object (`supported_pt_extensions`), so extensions are added by
replacing the tuple, never by changing that set. A name first registered by `add_model_folder_path`
(extra_model_paths.yaml, other packs) has an empty set, which ComfyUI reads as "every file" until
someone adds extensions, as AnimateDiff-Evolved does for `animatediff_models`.
`add_model_folder_path(name, path)` exists in every ComfyUI version (`is_default` only since late
2024, and before December 2024 it appends a path even when it is already listed), so it is called
with two arguments and only for a path not yet there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType

from ..musedance_core.loading.formats import TOKENIZER_FILES
from .model_paths import MODEL_KINDS, ModelFolders

log = logging.getLogger(__name__)

# The default model and its music encoder ship inside the pack (trainer/default_model.py makes them).
PACK_MODELS = Path(__file__).resolve().parents[1] / "models"


def _folder_paths() -> ModuleType | None:
    """ComfyUI's `folder_paths` module, or None outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths


def register_model_folders() -> bool:
    """Make ComfyUI list `models/<kind>/` and MuseDance's file types for every kind; False outside ComfyUI.

    Paths and extensions already registered (by ComfyUI, extra_model_paths.yaml or another pack such
    as AnimateDiff-Evolved) are kept; the default folders are created when missing. The pack's own
    `models/<kind>/` (the shipped default model and its music encoder) comes last.
    """
    folder_paths = _folder_paths()
    if folder_paths is None:
        return False
    table = folder_paths.folder_names_and_paths
    for kind in MODEL_KINDS.values():
        default = os.path.join(folder_paths.models_dir, kind.name)
        try:
            os.makedirs(default, exist_ok=True)
        except OSError as err:  # a read-only install still lists the other folders
            log.warning("MuseDance: could not create the model folder %s (%s).", default, err)
        registered = folder_paths.get_folder_paths(kind.name) if kind.name in table else []
        if _same_path(default) not in {_same_path(p) for p in registered}:
            folder_paths.add_model_folder_path(kind.name, default)
        paths, extensions = table[kind.name]
        missing = {s for s in kind.suffixes if s not in extensions}
        if missing:  # a new set: the old one may be supported_pt_extensions, shared with other names
            table[kind.name] = (paths, set(extensions) | missing)
        shipped = PACK_MODELS / kind.name
        if shipped.is_dir() and _same_path(str(shipped)) not in {_same_path(p) for p in table[kind.name][0]}:
            # After ComfyUI's own folders: a user's file of the same name wins over the shipped one.
            folder_paths.add_model_folder_path(kind.name, str(shipped))
        getattr(folder_paths, "filename_list_cache", {}).pop(kind.name, None)  # listed with the old extensions
    return True


def _same_path(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def comfy_model_folders(models_dir: str | os.PathLike | None = None) -> ModelFolders:
    """The folders ComfyUI has registered for each kind (extra_model_paths.yaml included).

    Outside ComfyUI: `models_dir/<kind>/` when `models_dir` is given, else no folders at all.
    """
    folder_paths = _folder_paths()
    if folder_paths is None:
        return ModelFolders.from_models_dir(models_dir) if models_dir is not None else ModelFolders({})
    roots = {}
    for kind in MODEL_KINDS:
        try:
            roots[kind] = folder_paths.get_folder_paths(kind)
        except KeyError:  # not registered: register_model_folders did not run
            roots[kind] = []
    return ModelFolders(roots)


def comfy_tokenizer_folder() -> Path | None:
    """ComfyUI's own SD1 CLIP tokenizer folder (`comfy/sd1_tokenizer`), found without importing `comfy`; None if absent."""
    try:
        spec = importlib.util.find_spec("comfy")
    except (ImportError, ValueError):  # ValueError: a `comfy` in sys.modules without a spec
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "sd1_tokenizer"
        if all((folder / name).is_file() for name in TOKENIZER_FILES):
            return folder
    return None
