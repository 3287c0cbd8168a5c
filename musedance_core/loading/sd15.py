"""Stable Diffusion 1.5 single-file checkpoints (the original LDM layout) as diffusers-named weights.

The paper initialises both the denoising UNet and the ReferenceNet from SD1.5 (section 4.2). Users keep
SD1.5 as one `.safetensors` (or `.ckpt`) file in ComfyUI's `models/checkpoints`, with the original
key names (`model.diffusion_model.input_blocks.1.1...`, `first_stage_model.encoder...`,
`cond_stage_model.transformer.text_model...`). diffusers' own conversion functions rename them for
the UNet, the VAE and the CLIP text encoder; the layouts they convert to come from this project's
`MuseDanceConfig` (no hub look-up). Before anything is converted, `check_sd15` recognises the other
checkpoint families users are likely to pick by mistake and says so.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)

from ..config import MuseDanceConfig
from ..models.text_encoder import match_text_encoder_names
from .weights import WeightsFileError, WeightsMapping

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
_FIRST_CROSS_ATTENTION = UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def checkpoint_family(weights: WeightsMapping) -> str:
    """Name the kind of checkpoint from marker keys and shapes (reads the header only)."""
    keys = set(weights.keys())
    if any(k.startswith("conditioner.embedders.") for k in keys) or UNET_PREFIX + "label_emb.0.0.weight" in keys:
        return "SDXL"
    if _CONV_IN not in keys:
        if weights.metadata.get("format") == "musedance":
            return "MuseDance"
        if any(".motion_modules." in k for k in keys):
            return "AnimateDiff motion module"
        if "conv_in.weight" in keys and any(k.startswith("down_blocks.") for k in keys):
            return "diffusers UNet"
        return "unknown"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "SD2"  # OpenCLIP text encoder
    if _FIRST_CROSS_ATTENTION in keys and weights.shape(_FIRST_CROSS_ATTENTION)[-1] == 1024:
        return "SD2"
    if weights.shape(_CONV_IN)[1] != 4:
        return "SD1 inpainting" if weights.shape(_CONV_IN)[1] == 9 else "SD1 with extra input channels"
    return "SD1"


def check_sd15(weights: WeightsMapping, config: MuseDanceConfig) -> None:
    """Raise a `WeightsFileError` unless `weights` is an SD1.x single-file checkpoint of `config`'s size."""
    name = weights.path.name
    family = checkpoint_family(weights)
    hints = {
        "SDXL": "an SDXL checkpoint",
        "SD2": "a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder, 1024-wide cross-attention)",
        "SD1 inpainting": "an SD1 inpainting checkpoint (9 input channels)",
        "SD1 with extra input channels": "an SD1 variant with extra UNet input channels",
        "MuseDance": "a MuseDance checkpoint (load it as the MuseDance model, not as the SD1.5 base)",
        "AnimateDiff motion module": "an AnimateDiff motion module (it belongs in models/animatediff_models)",
        "diffusers UNet": "a diffusers-format UNet; use the single-file SD1.5 checkpoint",
        "unknown": "not a Stable Diffusion single-file checkpoint",
    }
    if family != "SD1":
        raise WeightsFileError(
            f"{name} is {hints[family]}. MuseDance is built on Stable Diffusion 1.5: choose an SD1.5 "
            "single-file checkpoint (for example v1-5-pruned-emaonly.safetensors) from models/checkpoints."
        )
    width = weights.shape(_CONV_IN)[0]
    expected = config.unet.block_out_channels[0]
    context = weights.shape(_FIRST_CROSS_ATTENTION)[-1] if _FIRST_CROSS_ATTENTION in weights else None
    if width != expected or (context is not None and context != config.unet.cross_attention_dim):
        raise WeightsFileError(
            f"{name} is an SD1-layout checkpoint of another size (first block {width} wide, text width "
            f"{context}); this model configuration needs {expected} and {config.unet.cross_attention_dim}."
        )


def _diffusers_unet_config(config: MuseDanceConfig) -> dict[str, Any]:
    # The conversion reads the block layout from this; SD1.5 has no class or addition embeddings.
    return dict(config.unet.diffusers_kwargs(), num_class_embeds=None, class_embed_type=None, addition_embed_type=None)


def unet_weights(weights: WeightsMapping, config: MuseDanceConfig) -> dict[str, torch.Tensor]:
    """The UNet's weights under diffusers' `UNet2DConditionModel` names (which `MuseDanceUNet` shares)."""
    check_sd15(weights, config)
    # Only the UNet's own keys go through the conversion, so no other tensor is read.
    unet_only = _Prefixed(weights, UNET_PREFIX)
    converted = convert_ldm_unet_checkpoint(unet_only, _diffusers_unet_config(config))
    _check_all_converted(weights, "UNet", len(unet_only), len(converted))
    return converted


def _check_all_converted(weights: WeightsMapping, what: str, found: int, converted: int) -> None:
    if converted != found:
        raise WeightsFileError(
            f"{weights.path.name}: {found - converted} of its {found} {what} weights did not convert; the "
            f"checkpoint's {what} layout differs from the SD1.5 layout this model configuration describes."
        )


def vae_weights(weights: WeightsMapping, config: MuseDanceConfig) -> dict[str, torch.Tensor]:
    """The VAE's weights under diffusers' `AutoencoderKL` names; empty when the file has no VAE."""
    vae_only = _Prefixed(weights, VAE_PREFIX)
    if not len(vae_only):
        return {}
    converted = convert_ldm_vae_checkpoint(vae_only, config.vae.diffusers_kwargs())
    _check_all_converted(weights, "VAE", len(vae_only), len(converted))
    return converted


def text_encoder_weights(weights: WeightsMapping) -> dict[str, torch.Tensor]:
    """The CLIP text encoder's weights under the canonical `text_model.*` names; empty when absent.

    (`match_text_encoder_names` adapts them to the installed transformers.) position_ids, a buffer some
    files carry, is left out: transformers rebuilds it.
    """
    clip_only = _Prefixed(weights, CLIP_PREFIX)
    converted = convert_ldm_clip_checkpoint(clip_only)  # strips CLIP_PREFIX
    return match_text_encoder_names({k: v for k, v in converted.items() if not k.endswith("position_ids")})


class _Prefixed(WeightsMapping):
    """The part of a weights mapping whose names start with `prefix` (names unchanged, read lazily)."""

    def __init__(self, base: WeightsMapping, prefix: str) -> None:
        super().__init__(base.source, base.path, base.device, base.dtype)
        self._names = [k for k in base.keys() if k.startswith(prefix)]
        self._known = set(self._names)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._known:
            raise KeyError(name)
        return super().__getitem__(name)
