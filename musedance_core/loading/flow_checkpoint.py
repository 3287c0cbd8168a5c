"""The flow family's checkpoint: one `.safetensors` file with DabFusion's auto-encoder and flow denoiser.

The same container as a MuseDance checkpoint (loading/checkpoint.py): metadata `format` = "musedance",
`family` = "flow", `format_version`, `config` (a `FlowDanceConfig` as JSON), `components`, `dtype`, and
optionally `sampler` and `training_size`; tensors named `autoencoder.<parameter>` and `unet.<parameter>`.
Model folders hold both families side by side; each loader refuses the other's files by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import FlowDanceConfig, SamplerSettings
from ..sampling.conditioning import DTYPES
from ..sampling.flow_pipeline import FlowDancePipeline
from .checkpoint import TRAINING_SIZE, write_safetensors
from .formats import CHECKPOINT_FORMAT, FAMILY_KEY, FLOW_FAMILY, SAFETENSORS_SUFFIXES, checkpoint_family
from .weights import WeightsFileError, assign_weights, open_weights

FORMAT_VERSION = 1
COMPONENTS = ("autoencoder", "unet")


def save_flow_checkpoint(path: str | Path, pipe: FlowDancePipeline, *, dtype: torch.dtype | None = None,
                         sampler: SamplerSettings | None = None, training_size: tuple[int, int] | None = None,
                         metadata: dict[str, str] | None = None) -> Path:
    """Write the pipeline's auto-encoder and denoiser as one flow-family checkpoint; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise ValueError(f"a checkpoint is a .safetensors file; got {path.name}.")
    tensors = {}
    for component, module in pipe.modules().items():
        for name, tensor in module.state_dict().items():
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            tensors[f"{component}.{name}"] = tensor.detach().to("cpu").contiguous()
    stored = {str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()}
    meta = dict(metadata or {})
    meta.update({"format": CHECKPOINT_FORMAT, FAMILY_KEY: FLOW_FAMILY, "format_version": str(FORMAT_VERSION),
                 "config": pipe.config.to_json(), "components": json.dumps(list(COMPONENTS)),
                 "dtype": stored.pop() if len(stored) == 1 else "mixed"})
    if sampler is not None:
        meta["sampler"] = sampler.to_json()
    if training_size is not None:
        meta[TRAINING_SIZE] = json.dumps({"height": int(training_size[0]), "width": int(training_size[1])})
    return write_safetensors(path, tensors, meta)


def load_flow_pipeline(path: str | Path, device: torch.device | str = "cpu",
                       dtype: torch.dtype | str | None = "fp32") -> FlowDancePipeline:
    """A flow-family checkpoint as a FlowDancePipeline in eval mode; WeightsFileError names what is wrong.

    dtype: the precision to compute in (fp32 by default, as `load_pipeline`: a CPU computes fp16 slowly);
    None keeps the file's own."""
    weights = open_weights(path, device=device, dtype=DTYPES[dtype] if isinstance(dtype, str) else dtype)
    meta, name = weights.metadata, Path(path).name
    if meta.get("format") != CHECKPOINT_FORMAT or checkpoint_family(meta) != FLOW_FAMILY:
        raise WeightsFileError(f"{name} is not a flow-family checkpoint (its metadata names family "
                               f"{checkpoint_family(meta)!r}); MuseDance checkpoints load with load_pipeline.")
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise WeightsFileError(f"{name} uses flow checkpoint format {meta['format_version']}, newer than this version "
                               f"of the pack reads ({FORMAT_VERSION}); update the MuseDance node pack.")
    try:
        config = FlowDanceConfig.from_json(meta["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise WeightsFileError(f"{name}: its model configuration in the metadata is unreadable ({err}).") from err
    with torch.device("meta"):
        skeleton = FlowDancePipeline.from_config(config)
    for component, module in skeleton.modules().items():
        prefix = component + "."
        state = {k[len(prefix):]: weights[k] for k in weights.keys() if k.startswith(prefix)}
        expected = set(module.state_dict())
        if set(state) != expected:
            missing = sorted(expected - set(state))[:3]
            raise WeightsFileError(f"{name}: the {component} tensors do not match its configuration "
                                   f"(missing {missing}, {len(set(state) - expected)} unknown).")
        assign_weights(module, state, component, Path(path))
    pipe = FlowDancePipeline(config, skeleton.autoencoder.eval(), skeleton.unet.eval())
    if "sampler" in meta:
        pipe.recommended = SamplerSettings.from_json(meta["sampler"])
    if TRAINING_SIZE in meta:
        size = json.loads(meta[TRAINING_SIZE])
        pipe.training_size = (int(size["height"]), int(size["width"]))
    return pipe
