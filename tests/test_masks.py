"""Mask sources, precedence, clean-up, coverage fallback, preview and F_m's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musedance_core.masks.subject import (
    MaskRefinement,
    MaskWarning,
    check_coverage,
    foreground_mask,
    mask_condition,
    mask_for_image,
    mask_overlay,
    refine_mask,
)
from scenes import FIGURE_COLOURS, densepose_drawing, figure_parts, iou, photo


def _supersampled_parts(height: int, width: int, factor: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage (as a painted alpha channel has) and the drawn truth at full size."""
    fine = figure_parts(height * factor, width * factor) > 0
    coverage = fine.reshape(height, factor, width, factor).mean(axis=(1, 3))
    return coverage.astype(np.float32), figure_parts(height, width) > 0


def test_alpha_channel_is_the_foreground():
    coverage, truth = _supersampled_parts(160, 120)
    rgba = np.concatenate([photo(160, 120, figure_parts(160, 120), FIGURE_COLOURS), coverage[..., None]], axis=-1)
    rgba_u8 = np.rint(rgba * 255).astype(np.uint8)  # as a PNG loads
    result = foreground_mask(rgba_u8)
    assert result.source == "alpha" and iou(result.mask, truth) >= 0.95


def test_opaque_alpha_is_not_a_mask():
    parts = figure_parts(96, 96)
    rgba = np.concatenate([photo(96, 96, parts, FIGURE_COLOURS), np.ones((96, 96, 1), np.float32)], axis=-1)
    assert foreground_mask(rgba).source == "automatic"


def test_given_mask_wins_and_invert_reads_comfyui_load_image_masks():
    parts = figure_parts(96, 96)
    image = photo(96, 96, parts, FIGURE_COLOURS)
    truth = (parts > 0).astype(np.float32)
    result = foreground_mask(image, mask=truth)
    assert result.source == "mask" and iou(result.mask, parts > 0) == 1.0
    comfy_mask = torch.from_numpy(1.0 - truth)[None]  # Load Image's MASK is 1 - alpha, batched
    inverted = foreground_mask(image, mask=comfy_mask, invert=True)
    assert inverted.mask.shape == (96, 96) and iou(inverted.mask, parts > 0) == 1.0


def test_mask_of_other_resolution_is_resized_with_a_warning_other_aspect_is_an_error():
    truth = figure_parts(64, 48) > 0
    with pytest.warns(MaskWarning, match="resizing the mask"):
        m = mask_for_image(np.kron(truth, np.ones((2, 2))).astype(np.float32), 64, 48)
    assert m.shape == (64, 48) and iou(m, truth) >= 0.97
    with pytest.raises(ValueError, match="aspect ratios differ"):
        mask_for_image(np.zeros((64, 64), np.float32), 64, 48)


def test_two_sources_are_refused():
    parts = figure_parts(64, 64)
    with pytest.raises(ValueError, match="give one mask source, got mask and densepose_image"):
        foreground_mask(photo(64, 64, parts, FIGURE_COLOURS), mask=np.ones((64, 64), np.float32),
                        densepose_image=densepose_drawing(parts, "viridis"))


def _disc(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return np.hypot(yy - size / 2, xx - size / 2) <= radius


def _radius(mask) -> float:
    return float(np.sqrt(np.asarray(mask).sum() / np.pi))


def test_grow_and_shrink_move_the_edge_by_n_pixels():
    disc = _disc(96, 20).astype(np.float32)
    assert _radius(refine_mask(disc, MaskRefinement(grow=5))) == pytest.approx(25, abs=0.6)
    assert _radius(refine_mask(disc, MaskRefinement(grow=-5))) == pytest.approx(15, abs=0.6)
    assert _radius(refine_mask(disc * 0.6, MaskRefinement(threshold=0.7))) == 0  # threshold applies first


def test_feather_ramps_across_n_pixels_and_keeps_the_edge():
    disc = _disc(96, 20).astype(np.float32)
    soft = refine_mask(disc, MaskRefinement(feather=8)).numpy()
    assert soft.min() == 0 and soft.max() == 1
    assert np.array_equal(soft >= 0.5, disc >= 0.5)  # the 0.5 level stays on the drawn edge
    row = soft[48, 48:]  # centre to the right edge
    assert np.all(np.diff(row) <= 1e-6)  # monotone from inside to outside
    ramp = np.count_nonzero((row > 0) & (row < 1))
    assert 7 <= ramp <= 9


def test_fill_holes_fills_specks_not_real_gaps_and_keep_largest():
    ring = _disc(128, 40) & ~_disc(128, 20)  # a big enclosed gap (like an arm on the hip)
    speckled = ring.copy()
    speckled[64 + 30, 64] = False  # one-pixel hole in the ring
    blob = _disc(128, 4)
    blob = np.roll(blob, (-55, -55), axis=(0, 1))  # a small separate part in the corner
    m = (speckled | blob).astype(np.float32)
    out = refine_mask(m, MaskRefinement()).numpy() > 0.5
    assert out[64 + 30, 64] and not out[64, 64]  # speck filled, the real gap kept
    assert out[9, 9]
    largest = refine_mask(m, MaskRefinement(keep_largest=True)).numpy() > 0.5
    assert not largest[9, 9] and largest[64 + 30, 64]
    everything = refine_mask(m, MaskRefinement(fill_holes=1.0)).numpy() > 0.5
    assert everything[64, 64]


def test_refinement_settings_are_checked():
    for bad in (dict(threshold=0), dict(threshold=1.5), dict(fill_holes=-0.1), dict(feather=-1), dict(grow=1.5)):
        with pytest.raises(ValueError):
            MaskRefinement(**bad)


def test_empty_and_full_masks_warn_and_empty_falls_back_to_the_whole_image():
    image = photo(64, 64, figure_parts(64, 64), FIGURE_COLOURS)
    with pytest.warns(MaskWarning, match="empty.*whole image"):
        result = foreground_mask(image, mask=np.zeros((64, 64), np.float32))
    assert bool((result.mask == 1).all()) and result.coverage == [0.0]
    with pytest.warns(MaskWarning, match="covers the whole image.*inverted"):
        result = foreground_mask(image, mask=np.ones((64, 64), np.float32))
    assert bool((result.mask == 1).all())
    masks = torch.stack([torch.zeros(8, 8), torch.ones(8, 8) * (torch.arange(8) < 4)])
    with pytest.warns(MaskWarning, match="of image 0"):
        fixed, coverage = check_coverage(masks)
    assert coverage == [0.0, 0.5] and bool((fixed[0] == 1).all()) and torch.equal(fixed[1], masks[1])


def test_batches_broadcast_one_mask_and_refuse_mismatched_counts():
    parts = figure_parts(64, 64)
    image = photo(64, 64, parts, FIGURE_COLOURS)
    batch = np.stack([image, image, image])
    result = foreground_mask(batch, mask=(parts > 0).astype(np.float32))
    assert result.mask.shape == (3, 64, 64)
    with pytest.raises(ValueError, match="2 masks for 3 images"):
        foreground_mask(batch, mask=np.zeros((2, 64, 64), np.float32))


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((3, 32, 32), np.float32), "channels-first"),
        (np.zeros((32, 32, 2), np.float32), "C = 1 \\(gray\\), 3 \\(RGB\\) or 4 \\(RGBA\\)"),
        (np.full((32, 32, 3), 2.0, np.float32), "must lie in \\[0, 1\\].*255"),
        (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
        (np.zeros((0, 32, 3), np.float32), "empty"),
        (np.zeros((32, 32, 3), np.int32), "uint8, bool or float"),
    ],
)
def test_bad_images_are_named(image, message):
    with pytest.raises((ValueError, TypeError), match=message):
        foreground_mask(image)


def test_overlay_tints_the_mask_and_outlines_it():
    image = np.full((64, 64, 3), 0.5, np.float32)
    mask = _disc(64, 16).astype(np.float32)
    preview = mask_overlay(image, mask, colour=(1.0, 0.0, 0.0), opacity=0.5)
    assert preview.shape == (1, 64, 64, 3)
    assert torch.allclose(preview[0, 0, 0], torch.tensor([0.5, 0.5, 0.5]))  # outside untouched
    assert torch.allclose(preview[0, 32, 32], torch.tensor([0.75, 0.25, 0.25]))  # inside tinted
    edge_row = preview[0, 32].numpy()
    assert np.allclose(edge_row[(mask[32] > 0).argmax()], (1.0, 0.0, 0.0))  # outline at the edge


def test_mask_condition_is_f_m_input():
    m = torch.from_numpy(_disc(32, 10).astype(np.float32))
    assert mask_condition(m, 32, 32).shape == (1, 1, 32, 32)
    assert torch.equal(mask_condition(None, 16, 24, batch=2), torch.ones(2, 1, 16, 24))
    assert torch.equal(mask_condition(m[None], 32, 32, batch=3)[2, 0], m)
    with pytest.raises(ValueError, match="bring it to the image with"):
        mask_condition(m, 32, 16)
    with pytest.raises(ValueError, match="lie in"):
        mask_condition(m * 2, 32, 32)


def test_the_sampler_feeds_f_m_through_mask_condition(tiny_pipe, sample_inputs):
    """No mask and an all-ones mask are the same input to F_m, so they encode identically."""
    inputs = sample_inputs()
    text = inputs["text_embeds"]
    torch.nn.init.normal_(tiny_pipe.mask_encoder.conv_out.weight)  # make F_m non-zero
    none = tiny_pipe.encode_reference(inputs["reference_image"], None, text)
    ones = tiny_pipe.encode_reference(inputs["reference_image"], torch.ones(32, 32), text)
    drawn = tiny_pipe.encode_reference(inputs["reference_image"], inputs["mask"], text)
    for name in none.tokens:
        assert torch.equal(none.tokens[name], ones.tokens[name])
    assert any(not torch.allclose(none.tokens[n], drawn.tokens[n]) for n in none.tokens)


def test_grow_and_shrink_at_the_extremes():
    empty, full = np.zeros((16, 16), np.float32), np.ones((16, 16), np.float32)
    assert refine_mask(empty, MaskRefinement(grow=3)).sum() == 0
    assert refine_mask(full, MaskRefinement(grow=3)).sum() == 256
    assert refine_mask(full, MaskRefinement(grow=-3)).sum() == 256
    cut = np.zeros((16, 16), np.float32)
    cut[8:] = 1  # a subject cut off by the bottom of the frame shrinks from its top edge only
    shrunk = refine_mask(cut, MaskRefinement(grow=-3)).numpy()
    assert shrunk[11:].all() and shrunk.sum() == 5 * 16
