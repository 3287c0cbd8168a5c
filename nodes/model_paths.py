"""Where MuseDance finds its models, and the one place that turns a chosen model name into a path.

A node's model input is a name picked from a list (`"sd15/dreamshaper.safetensors"`), but anything
can be sent to ComfyUI's HTTP API. `ModelFolders.resolve` is therefore the security boundary: it
returns a path only for a plain relative name, of a known file type, whose real path (links
followed) lies inside one of that kind's folders. `list` shows exactly the names `resolve` accepts.

Inside ComfyUI the folders come from `folder_paths` (see `model_folders.py` beside this file); elsewhere,
`ModelFolders.from_models_dir("models")` uses `models/<kind>/` for each kind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..musedance_core.loading.formats import (
    SAFETENSORS_SUFFIXES,
    WEIGHT_SUFFIXES,
    musedance_checkpoint_problem,
    safetensors_problem,
)


@dataclass(frozen=True)
class ModelKind:
    """One model folder: files with these suffixes, or (marker set) folders holding the marker file."""

    name: str
    what: str  # for messages: what belongs in the folder
    suffixes: tuple[str, ...] = ()
    marker: str | None = None

    @property
    def is_folder_kind(self) -> bool:
        return self.marker is not None


MODEL_KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            "musedance",
            "MuseDance checkpoints (.safetensors); a tokenizer/ folder with CLIP's vocab.json and merges.txt "
            "may sit beside them",
            SAFETENSORS_SUFFIXES,  # what checkpoint.read_checkpoint_info accepts
        ),
        ModelKind("checkpoints", "Stable Diffusion 1.5 single-file checkpoints", WEIGHT_SUFFIXES),
        ModelKind("animatediff_models", "AnimateDiff motion modules", (".safetensors", ".ckpt", ".pt", ".pth")),
        ModelKind(
            "audio_encoders",
            "Audio Spectrogram Transformer folders in Hugging Face layout (config.json, model.safetensors, "
            "preprocessor_config.json), one folder per model",
            marker="config.json",
        ),
        ModelKind("densepose", "DensePose TorchScript models", (".pt", ".pth", ".torchscript")),
    )
}

SHOWN_NAMES = 10  # how many available names a "not found" message lists
CHECKED_NAMES = 50  # how many files a "not found" message reads the headers of, to tell the broken ones apart


class ModelPathError(ValueError):
    """A model name that is refused: not a plain relative name, of an unknown type, or leading outside its folders."""


class ModelNotFound(ModelPathError):
    """A valid model name that none of its kind's folders holds; the message lists what they do hold."""


def model_kind(kind: str) -> ModelKind:
    """The `ModelKind` called `kind`, or a ValueError naming the known ones."""
    try:
        return MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; MuseDance uses {', '.join(MODEL_KINDS)}.") from None


class ModelFolders:
    """The folders of each model kind, searched in order; a name in an earlier folder wins."""

    def __init__(self, roots: Mapping[str, Iterable[str | os.PathLike]]) -> None:
        for kind in roots:
            model_kind(kind)
        self._roots = {kind: tuple(Path(root) for root in roots.get(kind, ())) for kind in MODEL_KINDS}

    @classmethod
    def from_models_dir(cls, models_dir: str | os.PathLike) -> ModelFolders:
        """`models_dir/<kind>/` for every kind: ComfyUI's layout, for use without ComfyUI."""
        return cls({kind: [Path(models_dir) / kind] for kind in MODEL_KINDS})

    def __repr__(self) -> str:
        roots = {kind: [str(root) for root in roots] for kind, roots in self._roots.items()}
        return f"ModelFolders({roots})"

    def roots(self, kind: str) -> list[Path]:
        """The folders searched for `kind`, in order."""
        return list(self._roots[model_kind(kind).name])

    def list(self, kind: str) -> list[str]:
        """The names `resolve(kind, name)` accepts, sorted: paths relative to their folder, with forward slashes.

        File kinds list matching files in subfolders too; `audio_encoders` lists model folders.
        Links that lead outside the kind's folders are left out, as `resolve` refuses them.
        """
        spec = model_kind(kind)
        names: set[str] = set()
        real_roots = self._real_roots(kind)
        for root in self._roots[kind]:
            for path in _walk(root, spec, real_roots):
                names.add(path.relative_to(root).as_posix())
        return sorted(names)

    def resolve(self, kind: str, name: str) -> Path:
        """The real path of model `name` of `kind`; `ModelPathError` for a refused name, `ModelNotFound` if absent.

        Refused: empty names, NUL bytes, absolute paths, drive letters, `..` components, suffixes
        other than the kind's, and names whose real path (links followed) leaves the kind's folders.
        """
        spec = model_kind(kind)
        parts = _safe_parts(kind, name)
        if not spec.is_folder_kind and PurePosixPath(parts[-1]).suffix.lower() not in spec.suffixes:
            raise ModelPathError(
                f"{kind} model {name!r} has an unknown file type; expected {', '.join(spec.suffixes)} ({spec.what})."
            )
        real_roots = self._real_roots(kind)
        for root in self._roots[kind]:
            candidate = root.joinpath(*parts)
            if not _is_model(candidate, spec):
                continue
            real = os.path.realpath(candidate)
            if not any(_inside(real, r) for r in real_roots):
                raise ModelPathError(
                    f"{kind} model {name!r} is a link to {real}, outside the {kind} folders; links may only "
                    f"point inside them. To use models kept elsewhere, add their folder to the {kind} paths "
                    "(in ComfyUI: extra_model_paths.yaml)."
                )
            return Path(real)
        raise ModelNotFound(self._not_found_message(spec, name))

    def problem(self, kind: str, path: Path) -> str | None:
        """Why the file `path` of `kind` cannot be loaded, from its header alone (None: nothing found).

        Safetensors files are checked (not one, truncated; for `musedance`, not a MuseDance checkpoint);
        other types are read only when they load.
        """
        if path.suffix.lower() not in SAFETENSORS_SUFFIXES or not path.is_file():
            return None
        return musedance_checkpoint_problem(path) if kind == "musedance" else safetensors_problem(path)

    def tokenizer_candidates(self) -> list[Path]:
        """Folders that may hold CLIP's tokenizer files without ComfyUI, in search order: `<musedance folder>/tokenizer`.

        Check them with `text_encoder.tokenizer_folder`; inside ComfyUI prefer its own `comfy/sd1_tokenizer`.
        """
        return [root / "tokenizer" for root in self._roots["musedance"]]

    def _real_roots(self, kind: str) -> list[str]:
        return [os.path.realpath(root) for root in self._roots[kind]]

    def _not_found_message(self, spec: ModelKind, name: str) -> str:
        roots = self._roots[spec.name]
        if not roots:
            return f"{spec.name} model {name!r} not found: no {spec.name} folders are configured."
        available = self.list(spec.name)
        where = ", ".join(str(root) for root in roots)
        if not available:
            return f"{spec.name} model {name!r} not found: {where} holds no {spec.what}; put them there."
        broken = {}
        for candidate in available[:CHECKED_NAMES]:
            problem = self.problem(spec.name, self.resolve(spec.name, candidate))
            if problem is not None:
                broken[candidate] = problem
        loadable = [candidate for candidate in available if candidate not in broken]
        shown = ", ".join(loadable[:SHOWN_NAMES]) or "none"
        more = f" and {len(loadable) - SHOWN_NAMES} more" if len(loadable) > SHOWN_NAMES else ""
        message = f"{spec.name} model {name!r} not found in {where}. Available: {shown}{more}."
        if broken:
            message += " Not loadable: " + "; ".join(broken.values())
        return message


def _safe_parts(kind: str, name: str) -> list[str]:
    """`name`'s components, after refusing anything but a plain relative path (`/` or `\\` as separators)."""
    if not isinstance(name, str) or not name.strip():
        raise ModelPathError(f"the {kind} model name is empty; pick a model from the list.")
    if "\0" in name:
        raise ModelPathError(f"{kind} model name {name!r} contains a NUL byte.")
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.drive or windows.root:
        raise ModelPathError(f"{kind} model name {name!r} is an absolute path; give a name relative to the {kind} folder.")
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ModelPathError(f"{kind} model name {name!r} contains '..'; names may not leave the {kind} folders.")
    if not parts:
        raise ModelPathError(f"{kind} model name {name!r} names no file; pick a model from the list.")
    return parts


def _inside(path: str, root: str) -> bool:
    path, root = os.path.normcase(path), os.path.normcase(root)
    return os.path.commonpath([path, root]) == root


def _is_model(path: Path, spec: ModelKind) -> bool:
    try:
        if spec.is_folder_kind:
            return path.is_dir() and (path / spec.marker).is_file()
        return path.is_file()
    except OSError:  # a name too long for the file system, for one
        return False


def _walk(root: Path, spec: ModelKind, real_roots: list[str]) -> Iterator[Path]:
    """The models under `root`: files of the kind's suffixes, or folders holding its marker (not descended into).

    Linked folders are followed while they stay inside the kind's folders; each real folder is
    visited once (by its first name in sorted order), so link loops end. Hidden folders (.git,
    .cache) are skipped.
    """
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real_dir = os.path.realpath(dirpath)
        if real_dir in seen or not any(_inside(real_dir, r) for r in real_roots):
            dirnames[:] = []
            continue
        seen.add(real_dir)
        here = Path(dirpath)
        if spec.is_folder_kind:
            if here != root and spec.marker in filenames and _is_model(here, spec):
                dirnames[:] = []
                yield here
        else:
            for filename in filenames:
                path = here / filename
                if path.suffix.lower() in spec.suffixes and path.is_file():
                    if any(_inside(os.path.realpath(path), r) for r in real_roots):
                        yield path
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
