"""The file types MuseDance reads weights from; torch-free, so that listing model folders loads no torch."""

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
TOKENIZER_FILES = ("vocab.json", "merges.txt")
CHECKPOINT_FORMAT = "musedance"  # a MuseDance checkpoint's metadata holds format=musedance (loading/checkpoint.py)
# The model family a checkpoint holds, in its metadata's "family" (files written before it was named: "musedance").
FAMILY_KEY = "family"
MUSEDANCE_FAMILY, FLOW_FAMILY = "musedance", "flow"  # MuseDance; DabFusion's flow family (loading/flow_checkpoint.py)


def checkpoint_family(metadata: dict | None) -> str:
    """The family a checkpoint's metadata names."""
    return (metadata or {}).get(FAMILY_KEY, MUSEDANCE_FAMILY)

_HEADER_LIMIT = 100 * 1024 * 1024  # the safetensors library's own limit on a header's size


class SafetensorsFileError(ValueError):
    """A file named as safetensors that is not one, or is cut short; the message says which and what to do."""


def safetensors_header(path) -> dict:
    """The JSON header of a .safetensors file, read without torch; SafetensorsFileError saying what is wrong.

    "not a safetensors file" (no header at its start: another format under this name, or a web page
    saved instead of the model) is told apart from "truncated" (a good header whose tensors run past
    the end of the file: a download or copy that stopped).
    """
    import json
    import os

    name = os.path.basename(path)
    size = os.path.getsize(path)
    if size < 8:
        raise SafetensorsFileError(f"{name} is empty or truncated ({size} bytes); copy or download it again.")
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        starts_like_a_header = f.read(1) == b"{"  # the format's header is JSON starting with "{"
        raw = b"{" + f.read(min(length, _HEADER_LIMIT) - 1) if starts_like_a_header else b""
    if starts_like_a_header and length <= _HEADER_LIMIT and len(raw) < length:
        raise SafetensorsFileError(f"{name} is truncated ({size} bytes, shorter than its own header); copy or download it again.")
    try:
        header = json.loads(raw) if starts_like_a_header and len(raw) == length else None
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict):
        raise SafetensorsFileError(f"{name} is not a safetensors file (no safetensors header at its start); it may be another "
                         "format under this name, or a web page saved in place of the model. Download the .safetensors "
                         "file itself.")
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets", ())) == 2]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        raise SafetensorsFileError(f"{name} is truncated: its header describes {needed} bytes but the file holds {size}; "
                         "copy or download it again.")
    return header


def safetensors_problem(path) -> str | None:
    """Why a .safetensors file cannot be read (None: its header is sound and its tensors are all there)."""
    try:
        safetensors_header(path)
    except (OSError, ValueError) as error:
        return str(error)
    return None


def musedance_checkpoint_problem(path) -> str | None:
    """Why a file cannot be a checkpoint of a family the pack loads (MuseDance or flow), from its header alone
    (None: it may be one)."""
    import os

    try:
        header = safetensors_header(path)
    except (OSError, ValueError) as error:
        return str(error)
    if (header.get("__metadata__") or {}).get("format") != CHECKPOINT_FORMAT:
        return (f"{os.path.basename(path)} is not a MuseDance checkpoint (its metadata has no "
                f"format={CHECKPOINT_FORMAT!r}). An SD1.5 checkpoint goes in models/checkpoints and an AnimateDiff "
                "motion module in models/animatediff_models.")
    family = checkpoint_family(header.get("__metadata__"))
    if family not in (MUSEDANCE_FAMILY, FLOW_FAMILY):
        return (f"{os.path.basename(path)} holds a model family this version of the pack does not know ({family!r}; "
                f"it reads {MUSEDANCE_FAMILY!r} and {FLOW_FAMILY!r}); update the MuseDance node pack.")
    return None
