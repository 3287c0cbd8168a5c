"""Images and masks in, one layout out; fitting the reference to the generation size.

Everything that takes a picture accepts what ComfyUI and notebooks hand around: torch or numpy,
uint8 or float in [0, 1], grayscale [H, W] / [H, W, 1], RGB, RGBA, and batches [B, H, W, C]
(ComfyUI's IMAGE). `as_images` turns any of those into float RGB [B, H, W, 3] plus the alpha
channel when there is one; `as_masks` does the same for masks ([H, W] or ComfyUI's MASK [B, H, W]).

`plan_framing` decides how an image of one size becomes the generation size (crop, pad or
stretch) and the returned `Framing` applies exactly that transform to the image and to its mask,
so the two always line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

FIT_MODES = ("crop", "pad", "stretch")
_CHANNELS = (1, 3, 4)
_RANGE_SLACK = 1e-3  # float images a hair outside [0, 1] (resampling overshoot) are clamped, not refused


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint16:
            value = value.astype(np.float32) / 65535.0
        if not value.flags.writeable:  # e.g. np.asarray(PIL image); torch wants memory it may write
            value = value.copy()
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(value).__name__}.")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)}).")
    if value.dtype == torch.uint8:
        return value.float() / 255.0
    if value.dtype == torch.bool:
        return value.float()
    if not value.is_floating_point():
        raise TypeError(f"{name} must be uint8, bool or float in [0, 1], got {value.dtype}.")
    value = value.detach().float().cpu()
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the node or code that produced it.")
    low, high = float(value.min()), float(value.max())
    if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise ValueError(
            f"{name} values must lie in [0, 1], got [{low:.3g}, {high:.3g}]; divide 8-bit data by 255."
        )
    return value.clamp(0, 1)


def as_images(image: Any, name: str = "image") -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Any supported image -> (rgb [B, H, W, 3] float32, alpha [B, H, W] or None, was_batched)."""
    x = _to_tensor(image, name)
    batched = x.ndim == 4
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim == 3:
        if x.shape[-1] not in _CHANNELS and x.shape[0] in _CHANNELS:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}, which looks channels-first; MuseDance and ComfyUI use "
                "channels-last [H, W, C] (torch: image.permute(1, 2, 0))."
            )
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in _CHANNELS:
        raise ValueError(
            f"{name} must be [H, W], [H, W, C] or a batch [B, H, W, C] with C = 1 (gray), 3 (RGB) or "
            f"4 (RGBA), got shape {tuple(x.shape)}."
        )
    alpha = x[..., 3] if x.shape[-1] == 4 else None
    rgb = x[..., :3] if x.shape[-1] >= 3 else x.expand(*x.shape[:3], 3)
    return rgb.contiguous(), alpha, batched


def as_masks(mask: Any, name: str = "mask") -> tuple[torch.Tensor, bool]:
    """A mask [H, W], [B, H, W] or [B, H, W, 1] -> (float32 [B, H, W] in [0, 1], was_batched)."""
    m = _to_tensor(mask, name)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    batched = m.ndim == 3
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(
            f"{name} must be [H, W] or a batch [B, H, W] (ComfyUI MASK), got shape {tuple(m.shape)}; "
            "for an RGB(A) picture of a mask, take one channel."
        )
    return m.contiguous(), batched


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H, W] or [B, H, W, C] float -> the same at height x width (bilinear, antialiased when shrinking)."""
    if tuple(x.shape[1:3]) == (height, width):
        return x
    channels_last = x.ndim == 4
    y = x.permute(0, 3, 1, 2) if channels_last else x[:, None]
    y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    y = y.clamp(0, 1)
    return y.permute(0, 2, 3, 1).contiguous() if channels_last else y[:, 0]


@dataclass(frozen=True)
class Framing:
    """How a source of `source_size` becomes `size` (both (height, width)).

    The source is resized to `resized` and its top-left corner placed at `offset` (top, left) in
    the output: a negative offset crops, a positive one pads.
    """

    source_size: tuple[int, int]
    size: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    mode: str

    def apply(self, x: torch.Tensor, fill: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Frame [B, H, W] masks or [B, H, W, C] images; padding gets `fill` (a value or one per image/channel)."""
        if tuple(x.shape[1:3]) != self.source_size:
            raise ValueError(f"this framing is for {self.source_size[0]}x{self.source_size[1]} inputs, got {x.shape[1]}x{x.shape[2]}.")
        y = resize(x, *self.resized)
        out_shape = (x.shape[0], *self.size, *x.shape[3:])
        if isinstance(fill, torch.Tensor):  # [B, C] (or broadcastable) fill colours
            out = fill.reshape(x.shape[0], *([1] * 2), *x.shape[3:]).expand(out_shape).clone()
        else:
            out = torch.full(out_shape, float(fill))
        (top, left), (rh, rw), (h, w) = self.offset, self.resized, self.size
        sy, sx, dy, dx = max(0, -top), max(0, -left), max(0, top), max(0, left)
        ch, cw = min(rh - sy, h - dy), min(rw - sx, w - dx)
        out[:, dy : dy + ch, dx : dx + cw] = y[:, sy : sy + ch, sx : sx + cw]
        return out


def plan_framing(source_size: tuple[int, int], size: tuple[int, int], mode: str = "crop") -> Framing:
    """crop: fill the frame and cut the overhang, centred; pad: fit inside and pad, centred; stretch: resize."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode must be one of {', '.join(FIT_MODES)}, got {mode!r}.")
    (sh, sw), (h, w) = source_size, size
    if min(sh, sw, h, w) < 1:
        raise ValueError(f"sizes must be positive, got source {sh}x{sw} and target {h}x{w}.")
    if mode == "stretch":
        return Framing((sh, sw), (h, w), (h, w), (0, 0), mode)
    scale = max(h / sh, w / sw) if mode == "crop" else min(h / sh, w / sw)
    # A side that matches the target exactly stays exact (no off-by-one from rounding).
    rh = h if abs(sh * scale - h) < 0.5 else max(1, round(sh * scale))
    rw = w if abs(sw * scale - w) < 0.5 else max(1, round(sw * scale))
    return Framing((sh, sw), (h, w), (rh, rw), ((h - rh) // 2, (w - rw) // 2), mode)


def border_colour(rgb: torch.Tensor, band: int = 2) -> torch.Tensor:
    """Median colour of the outer `band` pixels of each image: [B, H, W, 3] -> [B, 3]."""
    b = max(1, min(band, rgb.shape[1] // 2, rgb.shape[2] // 2))
    edge = torch.cat(
        [rgb[:, :b].flatten(1, 2), rgb[:, -b:].flatten(1, 2), rgb[:, :, :b].flatten(1, 2), rgb[:, :, -b:].flatten(1, 2)],
        dim=1,
    )
    return edge.median(dim=1).values


def fit_image(image: Any, height: int, width: int, mode: str = "crop") -> tuple[torch.Tensor, Framing]:
    """Image -> (RGB [B, height, width, 3] float32, the Framing used); padding takes the border colour.

    Apply the returned framing to the image's mask (`framing.apply(mask)`) so both stay aligned.
    """
    rgb, _, _ = as_images(image)
    framing = plan_framing(tuple(rgb.shape[1:3]), (height, width), mode)
    return framing.apply(rgb, fill=border_colour(rgb)), framing
