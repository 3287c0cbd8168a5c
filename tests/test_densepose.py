"""DensePose mask sources: drawn part-colour/IUV images and a TorchScript model of the real call signature."""

from __future__ import annotations

import warnings
from typing import Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musedance_core.masks.densepose import (
    DensePoseModel,
    DensePoseModelError,
    is_torchscript_file,
    mask_from_densepose_image,
)
from musedance_core.masks.subject import MaskWarning, foreground_mask
from scenes import FIGURE_COLOURS, densepose_drawing, figure_parts, iou, jpeg, photo

STYLES = ("viridis", "parula", "iuv")


@pytest.mark.parametrize("style", STYLES)
def test_drawn_densepose_image_gives_the_body(style):
    parts = figure_parts(256, 192)
    drawing = densepose_drawing(parts, style)
    assert iou(mask_from_densepose_image(drawing), parts > 0) >= 0.99
    noisy = drawing.astype(np.float32) / 255 + np.random.default_rng(0).normal(0, 0.01, drawing.shape)
    assert iou(mask_from_densepose_image(noisy.clip(0, 1).astype(np.float32)), parts > 0) >= 0.97


@pytest.mark.parametrize("style", STYLES)
def test_densepose_image_survives_jpeg(style):
    """Pillow's default JPEG quality (75) at the preprocessors' 512 px: halos and chroma smear."""
    parts = figure_parts(512, 512)
    mask = mask_from_densepose_image(jpeg(densepose_drawing(parts, style), quality=75))
    assert iou(mask, parts > 0) >= 0.95


def test_densepose_image_batch_and_resize_to_the_photo():
    parts = figure_parts(128, 128)
    drawings = np.stack([densepose_drawing(parts, "viridis"), densepose_drawing(parts[:, ::-1], "parula")])
    masks = mask_from_densepose_image(drawings)
    assert masks.shape == (2, 128, 128)
    assert iou(masks[1], parts[:, ::-1] > 0) >= 0.99
    # A photo at twice the drawing's resolution: the drawn mask is resized to it (with a warning)
    # and stays aligned: a shift of one pixel would cost the thin limbs far more than 3%.
    image = photo(256, 256, figure_parts(256, 256), FIGURE_COLOURS)
    with pytest.warns(MaskWarning, match="resizing the densepose_image"):
        result = foreground_mask(image, densepose_image=densepose_drawing(parts, "parula"))
    assert result.source == "densepose_image" and result.mask.shape == (256, 256)
    assert iou(result.mask, np.kron(parts > 0, np.ones((2, 2), dtype=bool))) >= 0.97
    assert iou(result.mask.roll(1, dims=1), np.kron(parts > 0, np.ones((2, 2), dtype=bool))) < 0.97


class ChartModel(torch.nn.Module):
    """Same call signature as Detectron2's scripted DensePose chart models.

    uint8 [3, H, W] -> (boxes [N, 4], coarse_segm [N, 2, S, S], fine_segm [N, 25, S, S], u, v).
    It "detects" whatever differs from the top-left pixel, so the test knows the right answer.
    """

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = image.float()
        body = (x - x[:, :1, :1]).abs().amax(0) > 40.0
        rows = torch.nonzero(body.any(1)).flatten()
        cols = torch.nonzero(body.any(0)).flatten()
        size = 112
        if rows.numel() == 0:
            empty = torch.zeros(0, 25, size, size)
            return torch.zeros(0, 4), torch.zeros(0, 2, size, size), empty, empty, empty
        y0, y1 = int(rows.min()), int(rows.max()) + 1
        x0, x1 = int(cols.min()), int(cols.max()) + 1
        crop = body[y0:y1, x0:x1].float()[None, None]
        s = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        coarse = torch.stack([0.5 - s, s - 0.5])[None]
        fine = torch.zeros(1, 25, size, size)
        fine[0, 0] = 0.5 - s
        fine[0, 2] = s - 0.5
        boxes = torch.tensor([[float(x0), float(y0), float(x1), float(y1)]])
        return boxes, coarse, fine, fine.clone(), fine.clone()


class WrongOutputs(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.float().mean(0)


def _save_scripted(module: torch.nn.Module, path) -> None:
    with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; it still scripts
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))


def test_torchscript_model_wrapper_gives_the_body(tmp_path):
    path = tmp_path / "densepose_r50_fpn_dl.torchscript"
    _save_scripted(ChartModel(), path)
    assert is_torchscript_file(path)
    model = DensePoseModel.from_file(path)
    parts = figure_parts(192, 144)
    image = photo(192, 144, parts, FIGURE_COLOURS, kind="flat")
    mask = model(image)
    assert mask.shape == (192, 144)
    assert iou(mask, parts > 0) >= 0.95
    result = foreground_mask(np.stack([image, image]), densepose_model=model)
    assert result.source == "densepose_model" and result.mask.shape == (2, 192, 144)
    assert iou(result.mask[1], parts > 0) >= 0.95


def test_model_that_finds_nobody_falls_back_to_the_full_image(tmp_path):
    path = tmp_path / "dp.pt"
    _save_scripted(ChartModel(), path)
    model = DensePoseModel.from_file(path)
    plain = np.full((64, 64, 3), 0.5, dtype=np.float32)
    assert model(plain).sum() == 0
    with pytest.warns(MaskWarning, match="empty"):
        result = foreground_mask(plain, densepose_model=model)
    assert bool((result.mask == 1).all()) and result.coverage == [0.0]


def test_not_torchscript_files_are_refused(tmp_path):
    state_dict = tmp_path / "densepose_weights.pth"
    torch.save({"weight": torch.zeros(2)}, state_dict)
    with pytest.raises(DensePoseModelError, match="not a TorchScript model"):
        DensePoseModel.from_file(state_dict)
    junk = tmp_path / "junk.torchscript"
    junk.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(DensePoseModelError, match="not a TorchScript model"):
        DensePoseModel.from_file(junk)
    with pytest.raises(DensePoseModelError, match="does not exist"):
        DensePoseModel.from_file(tmp_path / "missing.pt")


def test_unsupported_export_is_named(tmp_path):
    path = tmp_path / "other.torchscript"
    _save_scripted(WrongOutputs(), path)
    model = DensePoseModel.from_file(path)
    with pytest.raises(DensePoseModelError, match="not a supported DensePose export"):
        model(np.zeros((32, 32, 3), dtype=np.float32))
