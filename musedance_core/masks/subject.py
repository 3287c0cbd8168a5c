"""The foreground mask D that MuseDance conditions on (paper section 3.2): sources, clean-up, F_m input.

One mask step for whatever the user has, in this order of precedence:
1. a mask given directly (any segmentation node; `invert` for ComfyUI's Load Image MASK, which is
   1 - alpha), resized to the image with a warning when only the resolution differs;
2. a DensePose part-colour / IUV image (`densepose.mask_from_densepose_image`);
3. a TorchScript DensePose model run on the image (`densepose.DensePoseModel`);
4. the image's own alpha channel, when it has one that is not fully opaque;
5. otherwise the automatic mode: border-seeded GrabCut (`grabcut.automatic_mask`), no weights.
Then `refine_mask` (threshold, fill holes, keep the largest part, grow/shrink, feather) and the
coverage check: an empty mask falls back to the full image (MaskWarning), which is what the
sampler does when given no mask at all; a full mask is kept, with a warning.

`mask_condition` is the single place a mask becomes F_m's input; the sampler and the trainer both
call it, so training and inference cannot drift apart.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .framing import as_images, as_masks, resize

EMPTY_FRACTION = 0.001  # below this much foreground a mask counts as empty
FULL_FRACTION = 0.999  # above it, as full
ASPECT_TOLERANCE = 0.01  # relative aspect difference still treated as "same picture, other resolution"
MASK_SOURCES = ("mask", "densepose_image", "densepose_model", "alpha", "automatic")


class MaskWarning(UserWarning):
    """A mask problem that was worked around: resized, empty (fell back) or full."""


@dataclass(frozen=True)
class MaskRefinement:
    """Clean-up applied in this order. Pixel amounts are at the mask's own resolution.

    threshold: binarise at this value first (F_m was trained on hard DensePose masks; feather
        softens the edge again if wanted).
    fill_holes: fill enclosed background up to this fraction of the image area (0 off, 1 all);
        the default fills specks, not the real gap between an arm and the body.
    keep_largest: keep only the largest connected part.
    grow: dilate by this many pixels (negative erodes), with a round brush.
    feather: soften the edge over this many pixels (a linear ramp centred on the edge).
    """

    threshold: float = 0.5
    fill_holes: float = 0.001
    keep_largest: bool = False
    grow: int = 0
    feather: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}.")
        if not 0.0 <= self.fill_holes <= 1.0:
            raise ValueError(f"fill_holes is a fraction of the image area in [0, 1], got {self.fill_holes}.")
        if int(self.grow) != self.grow or int(self.feather) != self.feather or self.feather < 0:
            raise ValueError(f"grow must be an integer and feather a non-negative integer, got {self.grow}, {self.feather}.")


@dataclass
class MaskResult:
    mask: torch.Tensor  # [H, W] or [B, H, W] float in [0, 1], like the image
    source: str  # one of MASK_SOURCES
    coverage: list[float]  # foreground fraction per image after refinement (before any fallback)


def mask_for_image(mask: Any, height: int, width: int, *, invert: bool = False, name: str = "mask") -> torch.Tensor:
    """A given mask [H', W'] / [B, H', W'] at the image's size: same aspect -> resized with a warning."""
    m, batched = as_masks(mask, name)
    mh, mw = m.shape[1:]
    if (mh, mw) != (height, width):
        if abs((mw / mh) / (width / height) - 1.0) > ASPECT_TOLERANCE:
            raise ValueError(
                f"{name} is {mw}x{mh} but the image is {width}x{height}: the aspect ratios differ, so the "
                f"{name} cannot be lined up with the image. Make the {name} from this image, or crop/resize "
                "both the same way."
            )
        warnings.warn(
            f"{name} is {mw}x{mh}, the image {width}x{height}; resizing the {name} to the image.",
            MaskWarning,
            stacklevel=2,
        )
        m = resize(m, height, width)
    if invert:
        m = 1.0 - m
    return m if batched else m[0]


def refine_mask(mask: Any, refinement: MaskRefinement = MaskRefinement()) -> torch.Tensor:
    """Apply `refinement` to a mask [H, W] / [B, H, W]; returns the same layout, float in [0, 1]."""
    m, batched = as_masks(mask)
    out = torch.stack([torch.from_numpy(_refine_one(x.numpy(), refinement)) for x in m])
    return out if batched else out[0]


def _refine_one(mask: np.ndarray, r: MaskRefinement) -> np.ndarray:
    fg = mask >= r.threshold
    if r.fill_holes > 0 and fg.any():
        holes = ndimage.binary_fill_holes(fg) & ~fg
        labels, count = ndimage.label(holes)
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            fg |= np.isin(labels, np.flatnonzero(sizes <= r.fill_holes * fg.size) + 1)
    if r.keep_largest and fg.any():
        labels, _ = ndimage.label(fg, structure=np.ones((3, 3)))
        fg = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    if r.grow > 0 and fg.any() and not fg.all():
        fg = ndimage.distance_transform_edt(~fg) <= r.grow
    elif r.grow < 0 and fg.any() and not fg.all():  # the frame edge is not an edge: the subject may go on past it
        fg = ndimage.distance_transform_edt(fg) > -r.grow
    if r.feather == 0 or not fg.any() or fg.all():
        return fg.astype(np.float32)
    # Signed distance to the edge (about +0.5 px on the first pixel inside), ramped across `feather` px.
    signed = np.where(fg, ndimage.distance_transform_edt(fg), -ndimage.distance_transform_edt(~fg) + 1.0) - 0.5
    return np.clip(0.5 + signed / r.feather, 0.0, 1.0).astype(np.float32)


def check_coverage(mask: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Foreground fraction per mask; an empty mask becomes the full-image mask (with a MaskWarning)."""
    m = mask if mask.ndim == 3 else mask[None]
    coverage = [float(x.mean()) for x in m]
    out = m.clone()
    for i, fraction in enumerate(coverage):
        if fraction < EMPTY_FRACTION:
            warnings.warn(
                f"the mask{f' of image {i}' if len(coverage) > 1 else ''} is empty (nothing found as the subject); "
                "using the whole image as the subject, as with no mask. Give a mask, a DensePose image, or lower the threshold.",
                MaskWarning,
                stacklevel=2,
            )
            out[i] = 1.0
        elif fraction > FULL_FRACTION:
            warnings.warn(
                f"the mask{f' of image {i}' if len(coverage) > 1 else ''} covers the whole image, so the model "
                "is not told what the subject is; check that the mask is not inverted.",
                MaskWarning,
                stacklevel=2,
            )
    return (out if mask.ndim == 3 else out[0]), coverage


def foreground_mask(
    image: Any,
    *,
    mask: Any | None = None,
    invert: bool = False,
    densepose_image: Any | None = None,
    densepose_model: Any | None = None,
    refinement: MaskRefinement = MaskRefinement(),
) -> MaskResult:
    """The subject's mask for `image` from the first source available (see the module docstring).

    `densepose_model` is a `densepose.DensePoseModel` (or any callable image -> mask). Give at most
    one of mask, densepose_image, densepose_model. Returns a mask shaped like the image's batch.
    """
    given = [name for name, value in (("mask", mask), ("densepose_image", densepose_image), ("densepose_model", densepose_model)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give one mask source, got {' and '.join(given)}; disconnect the ones you do not want.")
    rgb, alpha, batched = as_images(image)
    height, width = rgb.shape[1:3]
    if mask is not None:
        source, m = "mask", mask_for_image(mask, height, width, invert=invert)
    elif densepose_image is not None:
        from .densepose import mask_from_densepose_image

        drawn = mask_from_densepose_image(densepose_image)
        source, m = "densepose_image", mask_for_image(drawn, height, width, name="densepose_image")
    elif densepose_model is not None:
        source, m = "densepose_model", densepose_model(rgb)
    elif alpha is not None and float(alpha.min()) < 1.0:
        source, m = "alpha", alpha
    else:
        from .grabcut import automatic_mask

        source, m = "automatic", automatic_mask(rgb)
    m, coverage = check_coverage(refine_mask(_one_per_image(as_masks(m)[0], rgb.shape[0]), refinement))
    return MaskResult(mask=m if batched else m[0], source=source, coverage=coverage)


def _one_per_image(masks: torch.Tensor, count: int) -> torch.Tensor:
    """[B, H, W] masks for `count` images: one mask serves them all, otherwise the counts must match."""
    if masks.shape[0] == count:
        return masks
    if masks.shape[0] != 1:
        raise ValueError(f"{masks.shape[0]} masks for {count} images; give one mask, or one per image.")
    return masks.expand(count, -1, -1)


def mask_overlay(image: Any, mask: Any, colour: tuple[float, float, float] = (1.0, 0.25, 0.1), opacity: float = 0.45) -> torch.Tensor:
    """Preview: the mask tinted over the image with its outline drawn, RGB [B, H, W, 3] (like ComfyUI's IMAGE)."""
    rgb, _, _ = as_images(image)
    m, _ = as_masks(mask)
    if m.shape[1:] != rgb.shape[1:3]:
        m = resize(m, *rgb.shape[1:3])
    m = _one_per_image(m, rgb.shape[0])
    tint = torch.tensor(colour, dtype=torch.float32)
    alpha = (m * opacity)[..., None]
    out = rgb * (1 - alpha) + tint * alpha
    hard = (m >= 0.5).numpy()
    edge = np.stack([x & ~ndimage.binary_erosion(x, iterations=max(1, min(x.shape) // 256)) for x in hard])
    out[torch.from_numpy(edge)] = tint
    return out


def mask_condition(mask: torch.Tensor | None, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """F_m's input: a foreground mask [H, W] or [B, H, W] in [0, 1] -> float [B, 1, H, W].

    None means no mask: the whole image is the subject (ones). The mask must already be at the
    reference image's size (`mask_for_image` or `Framing.apply` put it there). The sampler and the
    trainer both call this, so training and inference feed F_m identically.
    """
    if mask is None:
        return torch.ones(batch, 1, height, width)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch tensor, got {type(mask).__name__}.")
    m = mask[None] if mask.ndim == 2 else mask
    if m.ndim != 3 or tuple(m.shape[1:]) != (height, width) or m.shape[0] not in (1, batch):
        raise ValueError(
            f"mask must be [H, W] or [{batch}, H, W] at the reference image's size {height}x{width}, got "
            f"shape {tuple(mask.shape)}; bring it to the image with musedance_core.masks.subject.mask_for_image."
        )
    m = m.float()
    if not bool(torch.isfinite(m).all()):
        raise ValueError("mask contains NaN or infinite values.")
    if float(m.min()) < 0 or float(m.max()) > 1:
        raise ValueError(f"mask values must lie in [0, 1], got [{float(m.min()):.3g}, {float(m.max()):.3g}].")
    return m.expand(batch, -1, -1)[:, None].contiguous()
