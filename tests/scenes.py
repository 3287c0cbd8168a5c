"""Synthetic scenes with known ground truth for the mask tests: drawn here, nothing downloaded.

A figure is a list of body parts (capsules and ellipses in unit coordinates, y down), each with a
DensePose-like part index; the ground truth is their union. Backgrounds are plain, or lightly
textured (noise, faint stripes and a gradient). DensePose drawings paint the parts the way the
common preprocessors do, and `jpeg` round-trips an image through a real JPEG encoder (Pillow).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    return (yy + 0.5) / height, (xx + 0.5) / width


def capsule(yy, xx, p0, p1, radius) -> np.ndarray:
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    u = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
    return (xx - x0 - u * dx) ** 2 + (yy - y0 - u * dy) ** 2 <= radius**2


def figure_parts(height: int, width: int, dx: float = 0.0) -> np.ndarray:
    """Part index per pixel (0 = background) of a dancing figure, arms up and one knee bent."""
    yy, xx = _grid(height, width)
    xx = xx - dx
    parts = np.zeros((height, width), dtype=np.int64)
    shapes = [  # drawn in order; later parts cover earlier ones, as in DensePose's own images
        (1, capsule(yy, xx, (0.50, 0.36), (0.50, 0.58), 0.095)),  # torso back (the dimmest viridis part)
        (2, capsule(yy, xx, (0.50, 0.40), (0.50, 0.55), 0.08)),  # torso front
        (7, capsule(yy, xx, (0.45, 0.62), (0.38, 0.75), 0.04)),  # thighs, shins
        (8, capsule(yy, xx, (0.55, 0.62), (0.64, 0.72), 0.04)),
        (9, capsule(yy, xx, (0.38, 0.75), (0.40, 0.88), 0.035)),
        (10, capsule(yy, xx, (0.64, 0.72), (0.60, 0.87), 0.035)),
        (15, capsule(yy, xx, (0.43, 0.36), (0.30, 0.24), 0.03)),  # upper and lower arms
        (16, capsule(yy, xx, (0.57, 0.36), (0.72, 0.30), 0.03)),
        (19, capsule(yy, xx, (0.30, 0.24), (0.26, 0.10), 0.026)),
        (20, capsule(yy, xx, (0.72, 0.30), (0.78, 0.15), 0.026)),
        (23, capsule(yy, xx, (0.50, 0.20), (0.50, 0.22), 0.07)),  # head
    ]
    for index, shape in shapes:
        parts[shape] = index
    return parts


def object_mask(height: int, width: int) -> np.ndarray:
    """A non-human subject: a five-pointed star with a round body and a handle (a teapot-ish toy)."""
    yy, xx = _grid(height, width)
    cy, cx = 0.52, 0.5
    angle = np.arctan2(yy - cy, xx - cx)
    radius = np.hypot(yy - cy, xx - cx)
    star = radius <= 0.22 + 0.12 * np.cos(5 * angle)
    handle = capsule(yy, xx, (0.80, 0.40), (0.86, 0.60), 0.035)
    return star | handle


def background(height: int, width: int, kind: str, seed: int = 0) -> np.ndarray:
    yy, xx = _grid(height, width)
    base = np.array([0.78, 0.80, 0.84]) + (np.array([0.62, 0.66, 0.72]) - np.array([0.78, 0.80, 0.84])) * yy[..., None]
    if kind == "flat":
        return np.broadcast_to(np.array([0.78, 0.80, 0.84]), (height, width, 3)).copy()
    if kind == "plain":
        return base
    if kind == "textured":  # light texture: sensor noise, faint wallpaper stripes, a floor line
        rng = np.random.default_rng(seed)
        stripes = 0.04 * np.sin(2 * np.pi * (xx * 14 + yy * 3))[..., None]
        floor = np.where(yy > 0.9, -0.12, 0.0)[..., None]
        return np.clip(base + stripes + floor + rng.normal(0, 0.025, base.shape), 0, 1)
    raise ValueError(kind)


def photo(height: int, width: int, subject: np.ndarray, colours, kind: str = "plain", seed: int = 0) -> np.ndarray:
    """Paint `subject` (bool mask, or part indices with `colours` a dict index -> RGB) on a background."""
    image = background(height, width, kind, seed)
    if subject.dtype == bool:
        image[subject] = colours
    else:
        for index, colour in colours.items():
            image[subject == index] = colour
    return image.astype(np.float32)


def soft_figure_photo(height: int, width: int, kind: str = "textured", shadow: bool = False, factor: int = 4):
    """The figure with anti-aliased edges, as a camera sees it (drawn at `factor` x and averaged).

    shadow: a dark ellipse on the floor beside the feet, the classic trap for colour segmentation.
    Returns (image float32 [H, W, 3], truth bool [H, W] = pixels at least half covered).
    """
    fine = figure_parts(height * factor, width * factor)
    image = photo(height * factor, width * factor, fine, FIGURE_COLOURS, kind)
    image = image.reshape(height, factor, width, factor, 3).mean(axis=(1, 3))
    coverage = (fine > 0).reshape(height, factor, width, factor).mean(axis=(1, 3))
    if shadow:
        yy, xx = _grid(height, width)
        image[(((yy - 0.9) / 0.02) ** 2 + ((xx - 0.55) / 0.12) ** 2 < 1) & (coverage < 0.01)] *= 0.6
    return image.astype(np.float32), coverage >= 0.5


FIGURE_COLOURS = {  # clothing and skin
    1: (0.80, 0.12, 0.15), 2: (0.80, 0.12, 0.15), 7: (0.15, 0.22, 0.55), 8: (0.15, 0.22, 0.55),
    9: (0.15, 0.22, 0.55), 10: (0.15, 0.22, 0.55), 15: (0.85, 0.62, 0.50), 16: (0.85, 0.62, 0.50),
    19: (0.85, 0.62, 0.50), 20: (0.85, 0.62, 0.50), 23: (0.80, 0.58, 0.46),
}

_VIRIDIS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)
_PARULA = np.array([(53, 42, 135), (15, 119, 215), (20, 178, 160), (180, 190, 60), (249, 251, 14)], dtype=np.float64)


def _colour_map(anchors: np.ndarray, t: np.ndarray) -> np.ndarray:
    position = np.clip(t, 0, 1) * (len(anchors) - 1)
    low = np.minimum(np.floor(position).astype(int), len(anchors) - 2)
    frac = (position - low)[..., None]
    return anchors[low] * (1 - frac) + anchors[low + 1] * frac


def densepose_drawing(parts: np.ndarray, style: str) -> np.ndarray:
    """uint8 RGB drawing of part indices as the preprocessors paint them.

    viridis: parts at I*255/24 through viridis on viridis(0) purple (comfyui_controlnet_aux default);
    parula: the same through parula on black; iuv: raw (I, U, V) bytes on black, U and V running
    across each part.
    """
    h, w = parts.shape
    out = np.zeros((h, w, 3))
    body = parts > 0
    if style in ("viridis", "parula"):
        anchors = _VIRIDIS if style == "viridis" else _PARULA
        out[:] = anchors[0] if style == "viridis" else 0
        out[body] = _colour_map(anchors, parts[body] * (255 / 24) / 255)
    elif style == "iuv":
        yy, xx = _grid(h, w)
        for index in np.unique(parts[body]):
            where = parts == index
            ys, xs = yy[where], xx[where]
            u = (xs - xs.min()) / max(np.ptp(xs), 1e-9)
            v = (ys - ys.min()) / max(np.ptp(ys), 1e-9)
            out[where] = np.stack([np.full_like(u, index), u * 255, v * 255], axis=-1)
    else:
        raise ValueError(style)
    return np.rint(out).clip(0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    """Round-trip uint8 RGB (or float [0, 1]) through Pillow's JPEG encoder; returns uint8 RGB."""
    if image.dtype != np.uint8:
        image = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def iou(mask, truth: np.ndarray) -> float:
    m = np.asarray(mask) >= 0.5
    return float((m & truth).sum() / (m | truth).sum())
