"""The automatic mask (border-seeded GrabCut) on drawn people and objects, plain and textured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musedance_core.masks.grabcut import automatic_mask
from musedance_core.masks.subject import MaskWarning, foreground_mask
from scenes import FIGURE_COLOURS, figure_parts, iou, jpeg, object_mask, photo, soft_figure_photo


@pytest.mark.parametrize("kind", ["plain", "textured"])
def test_automatic_mask_finds_a_figure(kind):
    parts = figure_parts(160, 128)
    assert iou(automatic_mask(photo(160, 128, parts, FIGURE_COLOURS, kind)), parts > 0) >= 0.85


@pytest.mark.parametrize("kind", ["plain", "textured"])
def test_automatic_mask_finds_a_non_human_object(kind):
    """A green star-shaped toy with a handle: nothing DensePose could find."""
    shape = object_mask(144, 144)
    assert iou(automatic_mask(photo(144, 144, shape, (0.20, 0.55, 0.25), kind, seed=3)), shape) >= 0.85


def test_automatic_mask_with_soft_edges_and_a_floor_shadow():
    """Anti-aliased edges as a camera gives them, and a dark shadow beside the feet."""
    image, truth = soft_figure_photo(160, 120, shadow=True)
    assert iou(automatic_mask(image), truth) >= 0.85


def test_automatic_mask_on_a_large_jpeg_photo_works_on_a_reduced_copy():
    """Above WORK_SIDE the cut runs on a copy; the mask comes back at the photo's size."""
    parts = figure_parts(384, 288)
    image = jpeg(photo(384, 288, parts, FIGURE_COLOURS, "textured"), quality=80)
    mask = automatic_mask(image)
    assert mask.shape == (384, 288)
    assert iou(mask, parts > 0) >= 0.85


def test_automatic_mask_batches_and_gray_images():
    parts = figure_parts(96, 96)
    shape = object_mask(96, 96)
    batch = np.stack([photo(96, 96, parts, FIGURE_COLOURS), photo(96, 96, shape, (0.2, 0.55, 0.25))])
    masks = automatic_mask(torch.from_numpy(batch))
    assert masks.shape == (2, 96, 96)
    assert iou(masks[0], parts > 0) >= 0.85 and iou(masks[1], shape) >= 0.85
    gray = photo(96, 96, shape, (0.2, 0.2, 0.2)).mean(-1)  # [H, W] grayscale: a dark toy on light grey
    assert iou(automatic_mask(gray), shape) >= 0.85


def test_nothing_to_find_falls_back_with_a_warning():
    flat = np.full((64, 64, 3), 0.6, dtype=np.float32)
    assert automatic_mask(flat).sum() == 0
    with pytest.warns(MaskWarning, match="empty"):
        result = foreground_mask(flat)
    assert result.source == "automatic" and bool((result.mask == 1).all())


def test_automatic_mask_is_deterministic():
    image = photo(96, 96, object_mask(96, 96), (0.2, 0.55, 0.25), "textured")
    assert torch.equal(automatic_mask(image), automatic_mask(image))


def test_bad_settings_and_tiny_images_are_refused():
    with pytest.raises(ValueError, match="iterations"):
        automatic_mask(np.zeros((32, 32, 3), dtype=np.float32), iterations=0)
    with pytest.raises(ValueError, match="too small"):
        automatic_mask(np.zeros((2, 2, 3), dtype=np.float32))
