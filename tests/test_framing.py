"""Image layouts in, and the reference and its mask fitted to the generation size the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musedance_core.masks.framing import as_images, as_masks, fit_image, plan_framing
from scenes import iou


def test_layouts_become_float_rgb_batches():
    gray = np.linspace(0, 255, 12, dtype=np.uint8).reshape(3, 4)
    rgb, alpha, batched = as_images(gray)
    assert rgb.shape == (1, 3, 4, 3) and alpha is None and not batched
    assert torch.allclose(rgb[0, ..., 0], torch.from_numpy(gray).float() / 255) and torch.equal(rgb[..., 0], rgb[..., 2])
    rgba = torch.rand(2, 5, 6, 4)
    rgb, alpha, batched = as_images(rgba)
    assert rgb.shape == (2, 5, 6, 3) and torch.equal(alpha, rgba[..., 3]) and batched
    assert as_images(np.zeros((5, 6, 1), np.float32))[0].shape == (1, 5, 6, 3)
    assert as_images(np.full((2, 2, 3), 65535, np.uint16))[0].max() == 1.0
    masks, batched = as_masks(torch.rand(3, 5, 6, 1))
    assert masks.shape == (3, 5, 6) and batched


@pytest.mark.parametrize(
    "source, size, mode, resized, offset",
    [
        ((100, 200), (64, 64), "crop", (64, 128), (0, -32)),
        ((100, 200), (64, 64), "pad", (32, 64), (16, 0)),
        ((100, 200), (64, 64), "stretch", (64, 64), (0, 0)),
        ((512, 384), (512, 384), "crop", (512, 384), (0, 0)),
        ((300, 200), (96, 64), "pad", (96, 64), (0, 0)),
    ],
)
def test_plan_framing(source, size, mode, resized, offset):
    framing = plan_framing(source, size, mode)
    assert framing.resized == resized and framing.offset == offset


@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_image_and_mask_stay_aligned(mode):
    """A white figure on black: the fitted image thresholded must equal the fitted mask."""
    yy, xx = np.mgrid[0:90, 0:160]
    mask = ((yy - 40) ** 2 / 30**2 + (xx - 95) ** 2 / 20**2 <= 1).astype(np.float32)
    image = np.repeat(mask[..., None], 3, axis=-1)
    fitted, framing = fit_image(image, 64, 64, mode)
    fitted_mask = framing.apply(torch.from_numpy(mask)[None])
    assert fitted.shape == (1, 64, 64, 3) and fitted_mask.shape == (1, 64, 64)
    assert iou(fitted_mask[0], fitted[0, ..., 0].numpy() >= 0.5) >= 0.98
    if mode == "crop":  # the crop is centred: the shape right of centre stays right of centre
        cols = np.nonzero(fitted_mask[0].numpy().max(0) >= 0.5)[0]
        assert cols.mean() == pytest.approx(32 + (95 - 80) * 64 / 90, abs=1.0)


def test_padding_takes_the_border_colour_and_masks_pad_with_background():
    image = np.zeros((40, 80, 3), np.float32)
    image[:] = (0.2, 0.4, 0.6)
    image[10:30, 30:50] = 1.0
    fitted, framing = fit_image(image, 64, 64, "pad")
    assert torch.allclose(fitted[0, 0, 0], torch.tensor([0.2, 0.4, 0.6]))
    padded_mask = framing.apply(torch.ones(1, 40, 80))
    assert padded_mask[0, 0, 0] == 0 and padded_mask[0, 32, 32] == 1


def test_bad_fit_requests():
    with pytest.raises(ValueError, match="fit mode must be one of crop, pad, stretch"):
        plan_framing((10, 10), (8, 8), "zoom")
    framing = plan_framing((10, 10), (8, 8))
    with pytest.raises(ValueError, match="this framing is for 10x10"):
        framing.apply(torch.zeros(1, 12, 12))
