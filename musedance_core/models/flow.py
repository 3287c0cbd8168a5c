"""DabFusion's latent flow auto-encoder: motion between two frames as a flow and an occlusion map.

Section 3.1 of "Dance Any Beat" (after LFDM): an image encoder maps the reference frame to a latent z;
a flow predictor sees the reference and a driving frame and gives the backward flow f from the driving
frame to the reference, at z's size, and an occlusion map m in (0, 1) (1: visible in the reference);
the decoder turns z~ = m * warp(z, f) into the driving frame. Trained on frame pairs of one video with a
reconstruction loss, it learns motion without labels; the flow diffusion model then generates sequences
of (f, m) from the reference and the music.

Flows are in normalised units (the image spans -1..1 along each axis), so one flow moves any resolution
alike: `compose` applies a flow made at z's size to the reference at its own resolution (the flow
upsampled, the reference's own pixels warped) and fills what the flow cannot show (m near 0: uncovered
areas) from the decoder's picture.

The encoder and decoder follow Johnson et al.'s image-transformation network (a wide first conv,
stride-2 convs down, residual blocks, upsampling convs back), as the paper does; the flow predictor is
an hourglass (a UNet with skips) over both frames, in the spirit of the dense-motion network the paper
takes from MRAA, with its heads at z's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FlowAutoencoderConfig

OCCLUSION_START = 4.0  # the occlusion head's first bias: sigmoid(4) = 0.98, an untrained model warps, not inpaints


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), _norm(channels, groups), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1), _norm(channels, groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv(cin: int, cout: int, groups: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2), _norm(cout, groups), nn.SiLU())


class ImageEncoder(nn.Module):
    """[B, 3, H, W] in [-1, 1] -> z [B, C_last, H / s, W / s], s = 2^(len(widths) - 1)."""

    def __init__(self, config: FlowAutoencoderConfig) -> None:
        super().__init__()
        widths, groups = config.block_out_channels, config.norm_num_groups
        layers = [_conv(3, widths[0], groups, kernel=7)]
        layers += [_conv(a, b, groups, stride=2) for a, b in zip(widths[:-1], widths[1:])]
        layers += [ResidualBlock(widths[-1], groups) for _ in range(config.residual_blocks)]
        self.layers = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class ImageDecoder(nn.Module):
    """z~ [B, C_last, h, w] -> [B, 3, h * s, w * s] in about [-1, 1]."""

    def __init__(self, config: FlowAutoencoderConfig) -> None:
        super().__init__()
        widths, groups = config.block_out_channels, config.norm_num_groups
        layers: list[nn.Module] = [ResidualBlock(widths[-1], groups) for _ in range(config.residual_blocks)]
        for a, b in zip(widths[:0:-1], widths[-2::-1]):
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), _conv(a, b, groups)]
        layers.append(nn.Conv2d(widths[0], 3, 7, padding=3))
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.layers(latent)


class FlowPredictor(nn.Module):
    """(reference, driving) [B, 3, H, W] each -> backward flow [B, 2, h, w] (normalised units) and occlusion
    [B, 1, h, w] in (0, 1), at the latent's size h = H / s."""

    def __init__(self, config: FlowAutoencoderConfig) -> None:
        super().__init__()
        widths, groups = config.flow_block_out_channels, config.norm_num_groups
        self.latent_level = config.downscale.bit_length() - 1  # level whose size is the latent's
        if len(widths) - 1 <= self.latent_level:
            raise ValueError(f"FlowAutoencoderConfig: the flow predictor needs more than {self.latent_level} "
                             f"downsamplings to see past the latent's scale; got widths {widths}.")
        self.stem = _conv(6, widths[0], groups, kernel=7)
        self.down = nn.ModuleList(_conv(a, b, groups, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        levels = range(len(widths) - 1, self.latent_level, -1)  # from the deepest up to the latent's level
        self.up = nn.ModuleList(_conv(widths[i] + widths[i - 1], widths[i - 1], groups) for i in levels)
        self.head = nn.Conv2d(widths[self.latent_level], 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[2] = OCCLUSION_START

    def forward(self, reference: torch.Tensor, driving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(torch.cat([reference, driving], dim=1))
        skips = [x]
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()
        for layer in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = layer(torch.cat([x, skip], dim=1))
        out = self.head(x)
        return out[:, :2], torch.sigmoid(out[:, 2:3])


def identity_grid(batch: int, height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """[B, H, W, 2] sampling positions (x, y) of every cell's centre, in grid_sample's normalised units."""
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return grid.expand(batch, height, width, 2)


def warp(source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: output[p] = source[p + flow[p]] (bilinear), flow [B, 2, H', W'] in normalised units (x, y).
    A flow of another size than `source` is resized first: normalised units mean the same at every size."""
    batch, _, height, width = source.shape
    if flow.shape[-2:] != (height, width):
        flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    grid = identity_grid(batch, height, width, source.device, source.dtype) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


def compose(reference: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    """The driving frame at the reference's own resolution: its pixels warped by the (upsampled) flow where the
    occlusion map says they are visible, the decoder's picture (upsampled) where they are not."""
    size = reference.shape[-2:]
    visible = F.interpolate(occlusion, size=size, mode="bilinear", align_corners=False)
    filled = F.interpolate(decoded, size=size, mode="bilinear", align_corners=False)
    return visible * warp(reference, flow) + (1 - visible) * filled


def limit_to_mask(flow: torch.Tensor, occlusion: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Motion only where `mask` [B, 1, H, W] (1: the subject) is: no flow and nothing occluded elsewhere."""
    mask = F.interpolate(mask.to(flow.dtype), size=flow.shape[-2:], mode="bilinear", align_corners=False)
    return flow * mask, occlusion * mask + (1 - mask)


class LatentFlowAutoencoder(nn.Module):
    """Encoder, flow predictor and decoder; forward(reference, driving) -> (output, flow, occlusion)."""

    def __init__(self, config: FlowAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ImageEncoder(config)
        self.flow_predictor = FlowPredictor(config)
        self.decoder = ImageDecoder(config)

    def animate(self, reference: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor,
                latent: torch.Tensor | None = None) -> torch.Tensor:
        """The reference [B, 3, H, W] moved by (flow, occlusion) at the latent's size: decoder(m * warp(z, f))."""
        latent = self.encoder(reference) if latent is None else latent
        return self.decoder(occlusion * warp(latent, flow))

    def forward(self, reference: torch.Tensor, driving: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = reference.shape[-2:]
        if any(side % self.config.downscale for side in size):
            raise ValueError(f"frames must be a multiple of {self.config.downscale} pixels along each side; got "
                             f"{tuple(size)}.")
        flow, occlusion = self.flow_predictor(reference, driving)
        return self.animate(reference, flow, occlusion), flow, occlusion
