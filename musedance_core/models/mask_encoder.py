"""F_m, the foreground-mask encoder (a small conv net that adds the mask to the reference latent).

The paper (section 3.2, equation 1) encodes the DensePose mask D_i of the reference frame I_i with a
small conv net and adds it to that frame's clean latent: z_0 = E(I_i) + F_m(D_i). z_0 is the latent
the ReferenceNet sees, so the mask tells the ReferenceNet which reference features are the dancer.
F_m is diffusers' ControlNet hint encoder (3x3 convs, stride-2 downsampling to latent size, last conv
zero-initialised), so an untrained F_m adds exactly nothing. Its input comes from
`masks.mask_condition`, the one function the sampler and the trainer share.
"""

from __future__ import annotations

from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from torch import nn

from ..config import MaskEncoderConfig


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
