"""The MuseDance checkpoint format: one `.safetensors` file with the trained parts and what they are.

Tensors are named `<component>.<parameter>` with the components
- `unet` (the denoising UNet with its music, beat and motion modules; `MuseDanceUNet` names),
- `reference_net` (diffusers `UNet2DConditionModel` names), `mask_encoder` (F_m),
- optionally `vae` (diffusers `AutoencoderKL`) and `text_encoder` (transformers `CLIPTextModel`).
A stage-2 file may hold only the temporal part of the UNet: component `unet.temporal`, tensors still
named `unet.<parameter>`, and it loads on top of a base that provides the rest.

The safetensors metadata (strings) holds `format` = "musedance", `family` = "musedance" (the other family,
"flow", is loading/flow_checkpoint.py's; files without it are MuseDance's), `format_version`, `config` (the
`MuseDanceConfig` as JSON), `components` (JSON list), `dtype` (storage precision), optionally `sampler`
(the `SamplerSettings` the model is best sampled with, as JSON), `training_size` (the frames it was trained
on, {"height": H, "width": W}) and, for a self-contained file, the CLIP tokenizer's files as
`tokenizer/vocab.json` and `tokenizer/merges.txt`.
Any other metadata the writer passes (training step, dataset) is kept under its own name.

Saving writes a temporary file beside the target and renames it, so an interrupted save never leaves
a broken checkpoint under the real name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..config import MuseDanceConfig, SamplerSettings
from ..models.text_encoder import match_text_encoder_names
from ..models.unet import is_temporal_parameter
from ..sampling.conditioning import DTYPES
from .formats import CHECKPOINT_FORMAT, FAMILY_KEY, MUSEDANCE_FAMILY, SAFETENSORS_SUFFIXES, checkpoint_family
from .weights import WeightsFileError, WeightsMapping, open_weights

FORMAT_NAME = CHECKPOINT_FORMAT
FORMAT_VERSION = 1
COMPONENTS = ("unet", "reference_net", "mask_encoder", "vae", "text_encoder")
TEMPORAL_ONLY = "unet.temporal"
TOKENIZER_KEY = "tokenizer/"
TRAINING_SIZE = "training_size"
_RESERVED = {"format", "format_version", "config", "components", "dtype", "sampler", TRAINING_SIZE, FAMILY_KEY}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass
class CheckpointInfo:
    """What a MuseDance checkpoint holds, from its header alone."""

    path: Path
    format_version: int
    config: MuseDanceConfig
    components: list[str]
    dtype: str
    tokenizer_files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    sampler: SamplerSettings | None = None  # the sampler settings the file recommends, if any
    training_size: tuple[int, int] | None = None  # (height, width) of the frames it was trained on, if known


def save_checkpoint(
    path: str | Path,
    config: MuseDanceConfig,
    modules: dict[str, nn.Module],
    *,
    temporal_only: bool = False,
    dtype: torch.dtype | None = None,
    tokenizer_files: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    sampler: SamplerSettings | None = None,
    training_size: tuple[int, int] | None = None,
) -> Path:
    """Write `modules` (names from COMPONENTS) as one MuseDance checkpoint; returns the path written.

    temporal_only: store only the UNet's music, beat and motion modules (component `unet.temporal`).
    dtype: storage precision of floating tensors (float32, float16, bfloat16); None keeps each as is.
    tokenizer_files: {"vocab.json": ..., "merges.txt": ...} to make the file self-contained.
    sampler: the sampler settings to recommend with this model.
    training_size: (height, width) of the frames it was trained on.
    """
    path = Path(path)
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise ValueError(f"a MuseDance checkpoint is a .safetensors file; got {path.name}.")
    unknown = set(modules) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown checkpoint components {sorted(unknown)}; expected names from {COMPONENTS}.")
    if temporal_only and set(modules) != {"unet"}:
        raise ValueError("a temporal-only checkpoint holds just the UNet's temporal modules: pass modules={'unet': unet}.")
    if dtype is not None and dtype not in _DTYPE_NAMES:
        raise ValueError(f"dtype must be torch.float32, float16 or bfloat16, got {dtype}.")
    tensors: dict[str, torch.Tensor] = {}
    dtypes = set()
    for component, module in modules.items():
        state = module.state_dict()
        if component == "text_encoder":
            state = match_text_encoder_names(state)  # canonical names, whatever transformers wrote them
        for name, tensor in state.items():
            if temporal_only and not is_temporal_parameter(name):
                continue
            if tensor.is_floating_point():
                tensor = tensor.to(dtype) if dtype is not None else tensor
                dtypes.add(_DTYPE_NAMES.get(tensor.dtype, str(tensor.dtype)))
            tensors[f"{component}.{name}"] = tensor.detach().to("cpu").contiguous()
    meta = dict(metadata or {})
    clash = _RESERVED & set(meta) or {k for k in meta if k.startswith(TOKENIZER_KEY)}
    if clash:
        raise ValueError(f"metadata names {sorted(clash)} are reserved by the checkpoint format.")
    meta.update(
        format=FORMAT_NAME,
        family=MUSEDANCE_FAMILY,
        format_version=str(FORMAT_VERSION),
        config=config.to_json(),
        components=json.dumps([TEMPORAL_ONLY] if temporal_only else sorted(modules)),
        dtype=dtypes.pop() if len(dtypes) == 1 else "mixed",
    )
    if sampler is not None:
        meta["sampler"] = sampler.to_json()
    if training_size is not None:
        meta[TRAINING_SIZE] = json.dumps({"height": int(training_size[0]), "width": int(training_size[1])})
    for name, text in (tokenizer_files or {}).items():
        meta[TOKENIZER_KEY + name] = text
    return write_safetensors(path, tensors, meta)


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a .safetensors file atomically (a temporary file beside it, then renamed); returns the path.

    A failed or interrupted write leaves no partial file under `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint_info(weights: WeightsMapping | str | Path) -> CheckpointInfo:
    """Check that a file is a MuseDance checkpoint this code can read, and describe it."""
    if not isinstance(weights, WeightsMapping):
        weights = open_weights(weights)
    meta = weights.metadata
    name = weights.path.name
    if meta.get("format") != FORMAT_NAME:
        raise WeightsFileError(
            f"{name} is not a MuseDance checkpoint (its metadata has no format={FORMAT_NAME!r}). An SD1.5 "
            "checkpoint goes in models/checkpoints and an AnimateDiff motion module in models/animatediff_models."
        )
    family = checkpoint_family(meta)
    if family != MUSEDANCE_FAMILY:
        raise WeightsFileError(f"{name} holds the {family!r} model family, not MuseDance; load it with "
                               "musedance_core.loading.flow_checkpoint.load_flow_pipeline.")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError as err:
        raise WeightsFileError(f"{name}: format_version {meta.get('format_version')!r} is not a number.") from err
    if version > FORMAT_VERSION:
        raise WeightsFileError(
            f"{name} uses MuseDance checkpoint format {version}, newer than this version of the pack reads "
            f"({FORMAT_VERSION}); update the MuseDance node pack."
        )
    try:
        config = MuseDanceConfig.from_json(meta["config"])
        components = json.loads(meta["components"])
    except (KeyError, ValueError, TypeError) as err:
        raise WeightsFileError(f"{name}: its model configuration in the metadata is unreadable ({err}).") from err
    unknown = set(components) - set(COMPONENTS) - {TEMPORAL_ONLY}
    if unknown:
        raise WeightsFileError(f"{name}: unknown components {sorted(unknown)}.")
    try:
        sampler = SamplerSettings.from_json(meta["sampler"]) if "sampler" in meta else None
    except (ValueError, TypeError) as err:
        raise WeightsFileError(f"{name}: its recommended sampler settings are unreadable ({err}).") from err
    training_size = None
    if TRAINING_SIZE in meta:
        try:
            size = json.loads(meta[TRAINING_SIZE])
            training_size = (int(size["height"]), int(size["width"]))
        except (ValueError, TypeError, KeyError) as err:
            raise WeightsFileError(f"{name}: its training size is unreadable ({err}).") from err
    tokenizer = {k[len(TOKENIZER_KEY):]: v for k, v in meta.items() if k.startswith(TOKENIZER_KEY)}
    extra = {k: v for k, v in meta.items() if k not in _RESERVED and not k.startswith(TOKENIZER_KEY)}
    return CheckpointInfo(weights.path, version, config, components, meta.get("dtype", ""), tokenizer, extra, sampler,
                          training_size)


def component_weights(weights: WeightsMapping, component: str) -> dict[str, torch.Tensor]:
    """One component's tensors (names without the component prefix), read and cast one by one."""
    prefix = component + "."
    return {k[len(prefix):]: weights[k] for k in weights.keys() if k.startswith(prefix)}
