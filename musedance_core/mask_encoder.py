"""F_m, the foreground-mask encoder, and the one function that turns a mask into its input.

The paper (section 3.2, equation 1) encodes the DensePose mask D_i of the reference frame I_i with a
small conv net and adds it to that frame's clean latent: z_0 = E(I_i) + F_m(D_i). z_0 is the latent
the ReferenceNet sees, so the mask tells the ReferenceNet which reference features are the dancer.
F_m is diffusers' ControlNet hint encoder (3x3 convs, stride-2 downsampling to latent size, last conv
zero-initialised), so an untrained F_m adds exactly nothing.
"""

from __future__ import annotations

import torch
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from torch import nn

from .config import MaskEncoderConfig


class MaskEncoder(ControlNetConditioningEmbedding):
    """diffusers' hint encoder with 1 input channel; `init_weights` re-applies its zero last conv."""

    def init_weights(self) -> None:
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)


def build_mask_encoder(config: MaskEncoderConfig, latent_channels: int) -> MaskEncoder:
    """F_m: [B, 1, H, W] mask -> [B, latent_channels, H / 2^(n-1), W / 2^(n-1)] with n widths."""
    return MaskEncoder(
        conditioning_embedding_channels=latent_channels,
        conditioning_channels=1,
        block_out_channels=config.block_out_channels,
    )


def mask_condition(mask: torch.Tensor) -> torch.Tensor:
    """F_m's input: a foreground mask [H, W] or [B, H, W] in [0, 1] as a float [B, 1, H, W].

    The sampler and the trainer both call this, so training and inference feed F_m identically.
    """
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"mask must be [H, W] or [B, H, W], got shape {tuple(mask.shape)}.")
    return mask[:, None].float()
