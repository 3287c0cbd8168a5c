"""Dense optical flow without OpenCV: Farnebäck's polynomial-expansion method, in torch.

The alignment metrics (`metrics.py`) need one number per frame pair, the mean flow magnitude, and
their reference implementation (AV-Align, guyyariv/TempoTokens `av_align.py`) gets it from
`cv2.calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0)`. The pack may not
depend on OpenCV, so this is the same algorithm (G. Farnebäck, "Two-frame motion estimation based
on polynomial expansion", SCIA 2003) with the same parameters:

1. Polynomial expansion: around every pixel the image is fitted, by least squares weighted with a
   Gaussian (sigma `poly_sigma`, radius `poly_n`), by f(x) = x^T A x + b^T x + c. The fit is six
   fixed linear filters (one per coefficient), so it is one convolution.
2. Displacement: a translation d turns A, b into A, b - 2 A d, so for a prior flow d0 the update
   solves A d = -(b2(x + d0) - b1(x)) / 2 + A d0, with A the mean of both frames' A, in the
   least-squares sense over a `winsize` box (the normal equations A^T A, A^T Δb are box-filtered
   and then solved per pixel); `iterations` times per level.
3. Coarse to fine over `levels` pyramid levels, each `pyr_scale` the size of the one below, blurred
   first with a Gaussian of sigma (1 / scale - 1) / 2, as OpenCV does.

Known differences from OpenCV's implementation: no down-weighting of the 5-pixel image border,
replicate padding for the filters and bilinear sampling clamped at the border, float32 frames
instead of uint8 (no quantisation). Mean magnitudes therefore differ slightly from OpenCV's
(not measured here: OpenCV may not be installed); on synthetic translations they are within a few
per cent of the true shift (tests/test_metrics.py). It is not RAFT or MemFlow (which MuseDance used
for its figures): those are learned and need weight files.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ITU-R BT.601 luma, what cv2.cvtColor(..., COLOR_BGR2GRAY) uses.
LUMA = (0.299, 0.587, 0.114)


def to_gray(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float32 [F, H, W] grey levels in 0..255 from [F, H, W, 3] RGB (or [F, H, W] grey) in [0, 1]."""
    video = torch.as_tensor(np.asarray(frames), dtype=torch.float32)
    if video.ndim == 4 and video.shape[-1] == 3:
        video = video @ torch.tensor(LUMA)
    elif video.ndim == 4 and video.shape[-1] == 1:
        video = video[..., 0]
    if video.ndim != 3:
        raise ValueError(f"frames must be [F, H, W, 3] RGB or [F, H, W] grey in [0, 1], got shape {tuple(video.shape)}.")
    if not torch.isfinite(video).all():
        raise ValueError("frames contain NaN or infinite values.")
    return video * 255.0


def _expansion_filters(poly_n: int, poly_sigma: float) -> torch.Tensor:
    """[6, 1, 2n+1, 2n+1] filters giving (c, b_x, b_y, a_xx, a_yy, a_xy) of the weighted least-squares fit."""
    offsets = np.arange(-poly_n, poly_n + 1, dtype=np.float64)
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    g = np.exp(-(offsets**2) / (2 * poly_sigma**2))
    weights = (g[:, None] * g[None, :]).ravel()
    basis = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1).reshape(-1, 6)
    # Coefficients = (B^T W B)^-1 B^T W patch: the same six filters at every pixel.
    filters = np.linalg.solve(basis.T @ (weights[:, None] * basis), basis.T * weights)
    size = 2 * poly_n + 1
    return torch.from_numpy(filters.reshape(6, 1, size, size)).float()


def _expand(image: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """[N, 5, H, W]: b_x, b_y, a_xx, a_yy, a_xy of each pixel's quadratic fit (c is not needed)."""
    pad = filters.shape[-1] // 2
    return F.conv2d(F.pad(image, (pad,) * 4, mode="replicate"), filters[1:])


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    image = F.pad(image, (radius, radius, 0, 0), mode="replicate")
    image = F.conv2d(image, taps.view(1, 1, 1, -1))
    image = F.pad(image, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(image, taps.view(1, 1, -1, 1))


def _sample(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """values [N, C, H, W] read at x + flow (flow [N, 2, H, W] in pixels, x then y), bilinear, clamped."""
    n, _, h, w = values.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(values, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _update(r1: torch.Tensor, r2: torch.Tensor, flow: torch.Tensor, winsize: int) -> torch.Tensor:
    """One Farnebäck iteration: the flow that best explains r2 (read at x + flow) from r1, per window."""
    r2w = _sample(r2, flow)
    # A = [[a_xx, a_xy / 2], [a_xy / 2, a_yy]], the mean of both frames'.
    axx = (r1[:, 2] + r2w[:, 2]) / 2
    ayy = (r1[:, 3] + r2w[:, 3]) / 2
    axy = (r1[:, 4] + r2w[:, 4]) / 4
    dx, dy = flow[:, 0], flow[:, 1]
    # Δb = -(b2(x + d) - b1(x)) / 2 + A d
    hx = -(r2w[:, 0] - r1[:, 0]) / 2 + axx * dx + axy * dy
    hy = -(r2w[:, 1] - r1[:, 1]) / 2 + axy * dx + ayy * dy
    # Normal equations of A d = Δb (A symmetric): G = A^2, h = A Δb, averaged over the window.
    g = torch.stack(
        [axx * axx + axy * axy, axy * (axx + ayy), axy * axy + ayy * ayy, axx * hx + axy * hy, axy * hx + ayy * hy],
        dim=1,
    )
    pad = winsize // 2
    g = F.avg_pool2d(F.pad(g, (pad,) * 4, mode="replicate"), winsize, stride=1)
    g11, g12, g22, h1, h2 = g.unbind(1)
    inverse_det = 1.0 / (g11 * g22 - g12 * g12 + 1e-3)  # OpenCV's regulariser, for 0..255 grey levels
    return torch.stack([(g22 * h1 - g12 * h2) * inverse_det, (g11 * h2 - g12 * h1) * inverse_det], dim=1)


@torch.no_grad()
def farneback_flow(
    first: torch.Tensor,
    second: torch.Tensor,
    *,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.2,
) -> torch.Tensor:
    """Flow [N, 2, H, W] (x, y in pixels) from grey frames `first` [N, H, W] to `second` [N, H, W].

    A pixel at x in `first` is at x + flow(x) in `second`. Parameters and defaults are those of
    cv2.calcOpticalFlowFarneback as AV-Align calls it; grey levels are expected in 0..255.
    Levels whose image would be smaller than the expansion filter are skipped.
    """
    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(f"first and second must both be [N, H, W], got {tuple(first.shape)} and {tuple(second.shape)}.")
    if not (0 < pyr_scale < 1 and levels >= 1 and winsize >= 1 and winsize % 2 == 1 and iterations >= 1):
        raise ValueError("need 0 < pyr_scale < 1, levels >= 1, an odd winsize >= 1 and iterations >= 1.")
    filters = _expansion_filters(poly_n, poly_sigma)
    pair = torch.stack([first, second], dim=1).float()  # [N, 2, H, W]
    n, _, height, width = pair.shape
    sizes = []
    for level in range(levels):
        scale = pyr_scale**level
        h, w = int(round(height * scale)), int(round(width * scale))
        if level and min(h, w) < 2 * poly_n + 1:
            break
        sizes.append((scale, h, w))
    flow = None
    for scale, h, w in reversed(sizes):
        images = pair
        if scale < 1:
            images = _gaussian_blur(pair.reshape(n * 2, 1, height, width), (1 / scale - 1) * 0.5)
            images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False).reshape(n, 2, h, w)
        if flow is None:
            flow = torch.zeros(n, 2, h, w)
        else:
            old_h, old_w = flow.shape[-2:]
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([w / old_w, h / old_h]).view(1, 2, 1, 1)
        r1 = _expand(images[:, :1], filters)
        r2 = _expand(images[:, 1:], filters)
        for _ in range(iterations):
            flow = _update(r1, r2, flow, winsize)
    return flow


def flow_magnitudes(frames: np.ndarray | torch.Tensor, *, batch: int = 16) -> np.ndarray:
    """float64 [F - 1]: mean optical-flow magnitude in pixels from frame i to frame i + 1.

    frames: [F, H, W, 3] RGB in [0, 1] (or [F, H, W] grey). Converted to grey as OpenCV does, and
    computed `batch` frame pairs at a time to bound memory.
    """
    gray = to_gray(frames)
    if gray.shape[0] < 2:
        raise ValueError(f"need at least 2 frames for optical flow, got {gray.shape[0]}.")
    out = []
    for start in range(0, gray.shape[0] - 1, batch):
        stop = min(start + batch, gray.shape[0] - 1)
        flow = farneback_flow(gray[start:stop], gray[start + 1 : stop + 1])
        out.append(flow.norm(dim=1).mean(dim=(1, 2)).double())
    return torch.cat(out).numpy()
