"""The Subject Mask node, called as ComfyUI calls it (IMAGE / MASK tensors), without a server."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenes import FIGURE_COLOURS, densepose_drawing, figure_parts, iou, photo


def _run_with_notes(pack, image, **kwargs):
    """(mask, preview) and the notes the node shows on itself."""
    node = pack.NODE_CLASS_MAPPINGS["MuseDanceMask"]()
    args = dict(densepose_model="none", threshold=0.5, grow=0, feather=0, fill_holes=0.001, keep_largest=False)
    args.update(kwargs)
    out = node.run(image, **args)
    return out["result"], out["ui"]["text"]


def _run(pack, image, **kwargs):
    return _run_with_notes(pack, image, **kwargs)[0]


def test_inputs_are_declared_for_comfyui(pack):
    node = pack.NODE_CLASS_MAPPINGS["MuseDanceMask"]
    inputs = node.INPUT_TYPES()
    assert inputs["required"]["densepose_model"][0][0] == "none"
    assert set(inputs["optional"]) == {"mask", "invert_mask", "densepose_image"}
    assert node.RETURN_TYPES == ("MASK", "IMAGE")
    assert all("tooltip" in spec[1] for group in inputs.values() for spec in group.values())


def test_automatic_mask_and_preview(pack):
    parts = figure_parts(96, 72)
    image = torch.from_numpy(photo(96, 72, parts, FIGURE_COLOURS))[None]  # ComfyUI IMAGE [1, H, W, 3]
    mask, preview = _run(pack, image)
    assert mask.shape == (1, 96, 72) and preview.shape == (1, 96, 72, 3)
    assert iou(mask[0], parts > 0) >= 0.85


def test_load_image_mask_with_invert_and_the_no_alpha_placeholder(pack):
    parts = figure_parts(96, 72)
    image = torch.from_numpy(photo(96, 72, parts, FIGURE_COLOURS))[None]
    load_image_mask = torch.from_numpy(1.0 - (parts > 0).astype(np.float32))[None]  # 1 - alpha
    mask, _ = _run(pack, image, mask=load_image_mask, invert_mask=True)
    assert iou(mask[0], parts > 0) == 1.0
    placeholder = torch.zeros(1, 64, 64)  # what Load Image gives for a picture without alpha
    (mask, _), notes = _run_with_notes(pack, image, mask=placeholder, invert_mask=True)
    assert iou(mask[0], parts > 0) >= 0.85  # ignored: the automatic mask ran instead
    assert "Load Image's empty placeholder" in notes[0] and notes[-1].startswith("mask from "), notes


def test_a_mask_that_falls_back_says_so_on_the_node(pack):
    """An empty mask becomes the whole image; the node shows why (not only the console), and a resized mask too."""
    image = torch.rand(1, 64, 48, 3)
    (mask, _), notes = _run_with_notes(pack, image, mask=torch.zeros(1, 32, 24))
    assert bool((mask == 1).all())
    assert any("resizing the mask" in note for note in notes), notes
    assert any("is empty" in note and "whole image" in note for note in notes), notes


def test_densepose_image_input_and_refinement(pack):
    parts = figure_parts(128, 96)
    image = torch.from_numpy(photo(128, 96, parts, FIGURE_COLOURS))[None]
    drawing = torch.from_numpy(densepose_drawing(parts, "viridis")).float()[None] / 255
    mask, _ = _run(pack, image, densepose_image=drawing)
    assert iou(mask[0], parts > 0) >= 0.95
    grown, _ = _run(pack, image, densepose_image=drawing, grow=3)
    assert grown.sum() > mask.sum() and bool((grown >= mask).all())


def test_wrong_size_mask_is_a_clear_error(pack):
    image = torch.rand(1, 64, 48, 3)
    with pytest.raises(ValueError, match="aspect ratios differ"):
        _run(pack, image, mask=torch.ones(1, 64, 64))
