"""How much of the reference picture survives in every frame of a video made from it, without ground truth.

A user's own photo has no ground-truth dance to compare with, so appearance is scored against the
reference itself, at a common working size (the frames and the reference resized to `size`):
- structure: SSIM of each frame with the reference. A dancing subject moves, so a faithful video does
  not reach 1, but a video that lost the photo (coloured blobs, another figure) falls far below;
- colour: the intersection of each frame's colour histogram (8 bins per channel) with the reference's,
  which motion hardly changes and a lost or recoloured subject does;
- detail: each frame's mean gradient magnitude over the reference's (blur and dissolving frames lower it).
Each is given as the mean over frames and as the worst frame, for "recognisable in every frame".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .metrics import ssim

BINS = 8


def _resized(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[F, H, W, 3] in [0, 1] -> [F, size, size, 3] (area-averaged when smaller)."""
    x = frames.float().permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1).permute(0, 2, 3, 1)


def colour_histograms(frames: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """[F, H, W, 3] in [0, 1] -> [F, bins^3], each summing to 1."""
    q = (frames.clamp(0, 1) * bins).long().clamp(max=bins - 1)
    index = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    counts = torch.zeros(frames.shape[0], bins**3)
    counts.scatter_add_(1, index.flatten(1), torch.ones_like(index.flatten(1), dtype=torch.float32))
    return counts / counts.sum(1, keepdim=True)


def detail(frames: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude per frame of [F, H, W, 3] in [0, 1]."""
    grey = frames.mean(-1)
    return (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean((1, 2)) + (grey[:, 1:] - grey[:, :-1]).abs().mean((1, 2))


@dataclass
class AppearanceScores:
    structure: float  # mean SSIM of a frame with the reference
    structure_worst: float
    colour: float  # mean histogram intersection
    colour_worst: float
    detail: float  # mean detail over the reference's
    detail_worst: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def appearance_scores(video: torch.Tensor, reference: torch.Tensor, size: int = 64) -> AppearanceScores:
    """video [F, H, W, 3], reference [H', W', 3] (any sizes), both in [0, 1]."""
    if video.ndim != 4 or video.shape[-1] != 3 or reference.ndim != 3 or reference.shape[-1] != 3:
        raise ValueError(f"need a video [F, H, W, 3] and a reference [H, W, 3]; got {tuple(video.shape)} and "
                         f"{tuple(reference.shape)}.")
    frames, ref = _resized(video, size), _resized(reference[None], size)
    structure = torch.tensor([ssim(frame[None], ref) for frame in frames])
    colour = torch.minimum(colour_histograms(frames), colour_histograms(ref)).sum(1)
    sharp = detail(frames) / detail(ref).clamp(min=1e-6)
    return AppearanceScores(float(structure.mean()), float(structure.min()), float(colour.mean()),
                            float(colour.min()), float(sharp.mean()), float(sharp.min()))
