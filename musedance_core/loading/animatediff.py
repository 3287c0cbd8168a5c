"""AnimateDiff motion modules (`mm_sd_v15_v2`, `v3_sd15_mm`, `mm_sd_v15`) into MuseDance's motion modules.

The paper initialises the motion module from AnimateDiff (section 4.2). The original files name each
module `{down,up}_blocks.N.motion_modules.M.temporal_transformer...` with `attention_blocks.{0,1}`,
`norms.{0,1}`, `ff_norm` and a sinusoidal table `pos_encoder.pe` of shape [1, L, C] per attention
block. diffusers' `convert_animatediff_checkpoint_to_diffusers` renames them to `MotionAdapter`'s
names, which `MuseDanceUNet` shares. Versions, as AnimateDiff-Evolved tells them apart: v2 has a
mid-block module and L = 32; v3 has no mid block and L = 32; v1 has no mid block and L = 24.

The positional table: rows 0..L-1 come from the file; when K + M is longer than L, the rows beyond are
the same sinusoid continued (the model's own table), so clips longer than AnimateDiff's 16 or 32
frames get encodings the trained ones extend smoothly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

from ..models.unet import MuseDanceUNet
from .weights import WeightsFileError, WeightsMapping

_MODULE = re.compile(r"(.*\.motion_modules\.\d+)\.")


@dataclass
class MotionModuleInfo:
    version: str  # "v1", "v2" or "v3"
    pe_length: int  # rows of the file's positional table
    has_mid_block: bool
    modules: int  # motion modules in the file


def inspect_motion_module(weights: WeightsMapping) -> MotionModuleInfo:
    """Recognise an original-layout AnimateDiff file from its names and shapes (reads the header only)."""
    keys = list(weights.keys())
    if not any(".motion_modules." in k and ".temporal_transformer." in k for k in keys):
        hint = ""
        if any(".motion_modules." in k for k in keys):
            hint = " It looks like a diffusers MotionAdapter; use the original AnimateDiff file (.ckpt or .safetensors)."
        elif any(k.startswith("model.diffusion_model.") for k in keys):
            hint = " It is a Stable Diffusion checkpoint; it belongs in models/checkpoints."
        raise WeightsFileError(
            f"{weights.path.name} is not an AnimateDiff motion module (no motion_modules.*.temporal_transformer "
            f"weights).{hint}"
        )
    pe_keys = [k for k in keys if k.endswith("pos_encoder.pe")]
    pe_length = weights.shape(pe_keys[0])[1] if pe_keys else 0
    has_mid = any(k.startswith("mid_block.") for k in keys)
    modules = len({k.split(".temporal_transformer.")[0] for k in keys if ".temporal_transformer." in k})
    version = "v2" if has_mid else ("v3" if pe_length == 32 else "v1")
    return MotionModuleInfo(version, pe_length, has_mid, modules)


def motion_module_weights(weights: WeightsMapping, unet: MuseDanceUNet) -> tuple[dict[str, torch.Tensor], MotionModuleInfo]:
    """The file's motion modules under `unet`'s parameter names, with positional tables of the UNet's length."""
    info = inspect_motion_module(weights)
    # Anything else in the file (some exports carry extra entries) is not a motion module.
    motion_only = {k: weights[k] for k in weights.keys() if ".motion_modules." in k}
    converted = convert_animatediff_checkpoint_to_diffusers(motion_only)
    own_buffers = dict(unet.named_buffers())
    for name in sorted({_MODULE.match(k).group(1) for k in converted}):
        file_key = f"{name}.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
        table_name = f"{name}.transformer_blocks.0.pos_embed.pe"
        if file_key in motion_only and table_name in own_buffers:
            converted[table_name] = _extend_table(motion_only[file_key], own_buffers[table_name], weights.path.name)
    return converted, info


def _extend_table(file_table: torch.Tensor, own_table: torch.Tensor, filename: str) -> torch.Tensor:
    """The model's table [1, max_len, C] with its first rows replaced by the file's [1, L, C]."""
    if file_table.shape[-1] != own_table.shape[-1]:
        raise WeightsFileError(
            f"{filename}: motion-module weights have other shapes than the model expects (a positional table "
            f"{file_table.shape[-1]} wide, the model's {own_table.shape[-1]}); the motion module was made for a "
            "UNet of another size (SDXL?)."
        )
    rows = min(file_table.shape[1], own_table.shape[1])
    table = own_table.detach().clone()
    table[:, :rows] = file_table[:, :rows].to(table.dtype)
    return table
