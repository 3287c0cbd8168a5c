"""The automatic mask: GrabCut seeded from the image border, with no learned weights.

For a subject DensePose cannot see (an animal, a teapot) or when the user gives no mask at all.
GrabCut (Rother, Kolmogorov and Blake, SIGGRAPH 2004) alternates two steps: fit a Gaussian mixture
to the colours of the current foreground and another to the background, then relabel every pixel
by a minimum graph cut that trades colour likelihood against a contrast-sensitive smoothness term.
Here the seed is the image border: a thin band around the edge is certainly background and
everything inside starts as probably foreground, so the subject must not touch the image edges
(give a mask for a subject cut off by the frame). The iterations run on a copy at most WORK_SIDE
pixels on its long side; the edge is then cut once more at full resolution in a narrow band around
the upsampled result, with the final colour models.

The minimum cut is scipy's maximum flow (Dinic) on the pixel graph, followed by a search of the
residual graph for the pixels still reachable from the foreground terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sparse
import torch
from scipy import ndimage
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from .framing import as_images, resize

WORK_SIDE = 256  # long side of the copy the cut runs on
BORDER = 0.02  # width of the background seed band, as a fraction of the short side (at least 1 px)
COMPONENTS = 5  # Gaussians per colour model, as in the paper
SMOOTHNESS = 50.0  # gamma of the pairwise term, as in the paper
ITERATIONS = 6
_MAX_UNARY = 40.0  # nats; a stronger colour preference than this adds nothing but overflow risk
_SCALE = 100  # energies are rounded to 1/100 nat for scipy's integer max-flow
_HARD = 10**7  # capacity of a terminal link that must never be cut
_COVARIANCE_FLOOR = 1e-4  # colour variance floor (std 0.01, 2.5 of 255): flat colours stay finite


@dataclass
class _GaussianMixture:
    """Full-covariance colour GMM with GrabCut's hard-assignment updates."""

    log_weights: np.ndarray  # [K]
    means: np.ndarray  # [K, 3]
    precision_chol: np.ndarray  # [K, 3, 3], L with L L^T = inverse covariance
    log_norm: np.ndarray  # [K], log of the Gaussian normaliser

    @classmethod
    def from_labels(cls, x: np.ndarray, labels: np.ndarray) -> "_GaussianMixture":
        parts = [x[labels == k] for k in np.unique(labels)]
        parts = [p for p in parts if len(p)]
        weights = np.array([len(p) for p in parts], dtype=np.float64) / len(x)
        means = np.stack([p.mean(axis=0) for p in parts])
        chols, norms = [], []
        for p, mean in zip(parts, means):
            centred = p - mean
            cov = centred.T @ centred / len(p) + _COVARIANCE_FLOOR * np.eye(3)
            chol = np.linalg.cholesky(np.linalg.inv(cov))
            chols.append(chol)
            norms.append(np.log(np.diag(chol)).sum() - 1.5 * np.log(2 * np.pi))
        return cls(np.log(weights), means, np.stack(chols), np.array(norms))

    @classmethod
    def fit(cls, x: np.ndarray, components: int, rng: np.random.Generator) -> "_GaussianMixture":
        """k-means (k-means++ seeding, on at most 20k samples) for the initial hard assignment."""
        k = max(1, min(components, len(x)))
        sample = x[rng.choice(len(x), size=min(len(x), 20000), replace=False)]
        centres = [sample[rng.integers(len(sample))]]
        for _ in range(1, k):
            d2 = ((sample[:, None] - np.array(centres)[None]) ** 2).sum(-1).min(1)
            if d2.sum() <= 0:
                break
            centres.append(sample[rng.choice(len(sample), p=d2 / d2.sum())])
        centres = np.array(centres)
        for _ in range(10):
            labels = ((sample[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
            centres = np.stack([sample[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(len(centres))])
        labels = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        return cls.from_labels(x, labels)

    def component_log_densities(self, x: np.ndarray) -> np.ndarray:
        """[N, K]: log(weight_k) + log N(x | mean_k, cov_k)."""
        z = np.einsum("nkc,kcd->nkd", x[:, None] - self.means[None], self.precision_chol)
        return self.log_weights + self.log_norm - 0.5 * (z**2).sum(-1)

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        d = self.component_log_densities(x)
        top = d.max(1, keepdims=True)
        return (top + np.log(np.exp(d - top).sum(1, keepdims=True)))[:, 0]

    def refit(self, x: np.ndarray) -> "_GaussianMixture":
        """GrabCut's update: each pixel joins its most likely component, then re-estimate."""
        return self.from_labels(x, self.component_log_densities(x).argmax(1))


_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))  # each 8-neighbour pair once


def _shifted(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index windows (of p, of q = p + (dy, dx)) over the pixels where both lie in an h x w image."""
    ys, yd = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    xs, xd = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    return (ys, xs), (yd, xd)


def _beta(image: np.ndarray) -> float:
    """GrabCut's beta = 1 / (2 <|z_p - z_q|^2>) over all neighbour pairs of the image."""
    h, w = image.shape[:2]
    total, count = 0.0, 0
    for dy, dx in _DIRECTIONS:
        p, q = _shifted(h, w, dy, dx)
        d2 = ((image[p] - image[q]) ** 2).sum(-1)
        total, count = total + d2.sum(), count + d2.size
    return 1.0 / (2.0 * max(total / max(count, 1), 1e-12))


def _colour_costs(fg_model: "_GaussianMixture", bg_model: "_GaussianMixture", pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unary capacities (to the foreground terminal, to the background terminal) in nats, >= 0."""
    cost_fg, cost_bg = -fg_model.log_likelihood(pixels), -bg_model.log_likelihood(pixels)
    base = np.minimum(cost_fg, cost_bg)  # only the difference matters; capacities must be >= 0
    # A link to the foreground terminal is cut when the pixel ends up background, so it carries cost_bg.
    return np.clip(cost_bg - base, 0, _MAX_UNARY), np.clip(cost_fg - base, 0, _MAX_UNARY)


def _min_cut(to_source: np.ndarray, to_sink: np.ndarray, hard_bg: np.ndarray, pairs: tuple) -> np.ndarray:
    """Nodes on the foreground (source) side of the minimum cut; capacities in nats."""
    n = to_source.size
    source, sink = n, n + 1
    a, b, weight = pairs
    capacity = np.rint(np.concatenate([weight, weight, to_source, to_sink]) * _SCALE).astype(np.int64)
    capacity[2 * len(a) : 2 * len(a) + n][hard_bg] = 0
    capacity[2 * len(a) + n :][hard_bg] = _HARD
    rows = np.concatenate([a, b, np.full(n, source), np.arange(n)])
    cols = np.concatenate([b, a, np.arange(n), np.full(n, sink)])
    keep = capacity > 0
    graph = sparse.csr_matrix((capacity[keep].astype(np.int32), (rows[keep], cols[keep])), shape=(n + 2, n + 2))
    flow = maximum_flow(graph, source, sink, method="dinic").flow
    residual = (graph - flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    foreground = np.zeros(n + 2, dtype=bool)
    foreground[reached] = True
    return foreground[:n]


def _border_band(h: int, w: int, border: float) -> np.ndarray:
    band = max(1, round(border * min(h, w)))
    if 2 * band >= min(h, w):
        raise ValueError(f"an image of {h}x{w} is too small for the automatic mask; give a mask instead.")
    hard = np.zeros((h, w), dtype=bool)
    hard[:band], hard[-band:], hard[:, :band], hard[:, -band:] = True, True, True, True
    return hard


def _segment(image: np.ndarray, hard_bg: np.ndarray, iterations: int) -> tuple[np.ndarray, "_GaussianMixture", "_GaussianMixture"]:
    """GrabCut on the whole (small) image: the foreground and the final colour models."""
    h, w = hard_bg.shape
    index = np.arange(h * w).reshape(h, w)
    beta, pairs = _beta(image), ([], [], [])
    for dy, dx in _DIRECTIONS:
        p, q = _shifted(h, w, dy, dx)
        pairs[0].append(index[p].ravel())
        pairs[1].append(index[q].ravel())
        d2 = ((image[p] - image[q]) ** 2).sum(-1).ravel()
        pairs[2].append(SMOOTHNESS / np.hypot(dy, dx) * np.exp(-beta * d2))
    pairs = tuple(np.concatenate(x) for x in pairs)
    pixels, hard = image.reshape(-1, 3), hard_bg.ravel()
    rng = np.random.default_rng(0)
    foreground = ~hard
    fg_model = _GaussianMixture.fit(pixels[foreground], COMPONENTS, rng)
    bg_model = _GaussianMixture.fit(pixels[~foreground], COMPONENTS, rng)
    for _ in range(iterations):
        new = _min_cut(*_colour_costs(fg_model, bg_model, pixels), hard, pairs)
        done = not new.any() or bool((new == foreground).all())
        foreground = new
        if done:
            break
        fg_model, bg_model = fg_model.refit(pixels[foreground]), bg_model.refit(pixels[~foreground])
    return foreground.reshape(h, w), fg_model, bg_model


def _refine_edges(image: np.ndarray, coarse: np.ndarray, hard_bg: np.ndarray, radius: int, fg_model, bg_model) -> np.ndarray:
    """Cut again at full resolution, in a band of `radius` pixels around the upsampled edge only.

    Pixels outside the band keep their label; their links to band pixels become unary terms.
    """
    h, w = coarse.shape
    band = (ndimage.distance_transform_edt(coarse) <= radius) & (ndimage.distance_transform_edt(~coarse) <= radius)
    band = (ndimage.binary_dilation(band, iterations=1) if band.any() else band) & ~hard_bg
    if not band.any():
        return coarse
    node = np.full((h, w), -1, dtype=np.int64)
    node[band] = np.arange(int(band.sum()))
    to_source, to_sink = _colour_costs(fg_model, bg_model, image[band])
    beta, a, b, weight = _beta(image), [], [], []
    for dy, dx in _DIRECTIONS:
        for sign in (1, -1):  # links from band pixels to fixed pixels, in both directions
            p, q = _shifted(h, w, sign * dy, sign * dx)
            d2 = ((image[p] - image[q]) ** 2).sum(-1)
            link = SMOOTHNESS / np.hypot(dy, dx) * np.exp(-beta * d2)
            fixed = band[p] & ~band[q]
            np.add.at(to_source, node[p][fixed & coarse[q]], link[fixed & coarse[q]])  # neighbour is foreground
            np.add.at(to_sink, node[p][fixed & ~coarse[q]], link[fixed & ~coarse[q]])
        both = band[p] & band[q]  # p, q of the last (negative) pass: each band pair once
        a.append(node[p][both])
        b.append(node[q][both])
        weight.append(link[both])
    cut = _min_cut(to_source, to_sink, np.zeros(len(to_source), dtype=bool), (np.concatenate(a), np.concatenate(b), np.concatenate(weight)))
    out = coarse.copy()
    out[band] = cut
    return out


def grabcut(rgb: np.ndarray, iterations: int = ITERATIONS, border: float = BORDER, work_side: int = WORK_SIDE) -> np.ndarray:
    """Foreground of one float RGB image [H, W, 3] in [0, 1] -> bool [H, W]."""
    height, width = rgb.shape[:2]
    scale = min(1.0, work_side / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    small = resize(torch.from_numpy(rgb)[None].float(), h, w)[0].numpy().astype(np.float64)
    foreground, fg_model, bg_model = _segment(small, _border_band(h, w, border), iterations)
    if (h, w) == (height, width) or not foreground.any():
        return foreground
    coarse = resize(torch.from_numpy(foreground[None].astype(np.float32)), height, width)[0].numpy() >= 0.5
    radius = int(np.ceil(1.0 / scale)) + 1
    return _refine_edges(rgb.astype(np.float64), coarse, _border_band(height, width, border), radius, fg_model, bg_model)


def automatic_mask(image: Any, *, iterations: int = ITERATIONS, border: float = BORDER, work_side: int = WORK_SIDE) -> torch.Tensor:
    """Foreground mask of 0/1 [H, W] (or [B, H, W] for a batch) by border-seeded GrabCut."""
    if iterations < 1 or not 0 < border < 0.5 or work_side < 16:
        raise ValueError(f"need iterations >= 1, 0 < border < 0.5 and work_side >= 16, got {iterations}, {border}, {work_side}.")
    rgb, _, batched = as_images(image)
    out = torch.stack([torch.from_numpy(grabcut(frame.numpy(), iterations, border, work_side)).float() for frame in rgb])
    return out if batched else out[0]
