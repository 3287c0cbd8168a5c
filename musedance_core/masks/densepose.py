"""DensePose as a mask source: a part-colour image someone already drew, or a TorchScript model.

The paper (section 3.2) uses DensePose only for the dancer's silhouette, so both paths end in the
same thing: a float mask [H, W] in [0, 1], 1 on the body.

Part-colour images. The common preprocessors paint each body part in a colour map on a flat
background: comfyui_controlnet_aux paints viridis parts on viridis(0) purple (68, 1, 84) or parula
parts on black; MagicAnimate/Champ style videos do the same; raw IUV dumps hold (I, U, V) bytes on
black. The background colour is read off the image border, and a pixel is body when a channel
differs from it. Some parts sit close to the background colour (viridis' first parts differ by
about 12/255) and JPEG adds noise of that size, so the test is two-level (a faint pixel counts when
it connects to a clearly different one), and along the edges a pixel must be nearer the body colour
next to it than the background. Measured on drawn figures saved as JPEG at quality 75 and 512 px:
IoU 0.96-0.98 against the drawing (tests/test_densepose.py).

TorchScript models. Supported exports: Detectron2 DensePose R-CNN chart models scripted to take one
image as a uint8 tensor [3, H, W] (RGB, 0..255) and return at least the tuple
(boxes [N, 4] as x0, y0, x1, y1 in pixels, coarse_segm [N, 2, S, S], fine_segm [N, 25, S, S], u, v),
the layout of `densepose_r50_fpn_dl.torchscript` and `densepose_r101_fpn_dl.torchscript` that
comfyui_controlnet_aux loads. Put the file in ComfyUI's `models/densepose` folder. A TorchScript
file holds model code that PyTorch's own interpreter runs (not Python pickle), but use files only
from sources you trust.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .framing import as_images, border_colour, resize

# Two-level test on the largest channel difference from the background colour (in 0..1 units).
STRONG_DIFFERENCE = 0.12  # certainly a body pixel (JPEG noise on flat background stays far below)
WEAK_DIFFERENCE = 0.035  # body if connected to a certain pixel (the dimmest viridis parts sit at ~0.047)
DETECT_RESOLUTION = 512  # short side the model sees, as comfyui_controlnet_aux runs it


def mask_from_densepose_image(densepose_image: Any) -> torch.Tensor:
    """Body mask of a DensePose part-colour or IUV image: [H, W] (or [B, H, W] for a batch) of 0/1."""
    rgb, _, batched = as_images(densepose_image, "densepose_image")
    background = border_colour(rgb).numpy()  # [B, 3]
    out = torch.stack([torch.from_numpy(_body(x.numpy(), bg)) for x, bg in zip(rgb, background)])
    return out if batched else out[0]


def _body(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    smooth = np.stack([ndimage.median_filter(rgb[..., c], size=3) for c in range(3)], axis=-1)
    difference = np.abs(smooth - background).max(axis=-1)
    # Two-level test: weak pixels count only when their connected region holds a strong one.
    labels, count = ndimage.label(difference > WEAK_DIFFERENCE)
    keep = np.zeros(count + 1, dtype=bool)
    keep[np.unique(labels[difference > STRONG_DIFFERENCE])] = True
    keep[0] = False
    body = keep[labels]
    # JPEG smears colour a pixel or two past each edge. There a pixel is body only when it is
    # nearer the colour of the closest sure body pixel (two pixels inside) than the background.
    core = ndimage.binary_erosion(body, iterations=2)
    if core.any():
        _, (iy, ix) = ndimage.distance_transform_edt(~core, return_indices=True)
        body &= np.abs(smooth - smooth[iy, ix]).max(axis=-1) < difference
    return body.astype(np.float32)


class DensePoseModelError(ValueError):
    """A DensePose model file that is missing, not TorchScript, or not a supported export."""


def is_torchscript_file(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (a zip with code/ and constants.pkl), false for torch.save files."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    has_code = any("/code/" in f"/{name}" for name in names)
    return has_code and any(name.endswith("constants.pkl") for name in names)


class DensePoseModel:
    """A TorchScript DensePose chart model as a mask source: `model(image)` -> body mask like the image."""

    def __init__(self, module: torch.nn.Module, name: str = "DensePose model", device: str | torch.device = "cpu"):
        self.module = module
        self.name = name
        self.device = torch.device(device)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "DensePoseModel":
        path = Path(path)
        if not path.is_file():
            raise DensePoseModelError(f"DensePose model {path} does not exist; put the .torchscript/.pt file in models/densepose.")
        if not is_torchscript_file(path):
            raise DensePoseModelError(
                f"{path.name} is not a TorchScript model (a torch.jit.save archive). A state dict or "
                "pickled checkpoint cannot be run without its Detectron2 code; use a scripted export such "
                "as densepose_r50_fpn_dl.torchscript, or give a DensePose image or a mask instead."
            )
        try:
            with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; loading still works
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=device)
        except Exception as error:  # noqa: BLE001 - any load failure means the same thing to the user
            raise DensePoseModelError(f"could not load TorchScript model {path.name}: {error}") from error
        module.eval()
        return cls(module, name=path.name, device=device)

    @torch.no_grad()
    def __call__(self, image: Any) -> torch.Tensor:
        """Body mask [H, W] (or [B, H, W]) of 0/1 at the image's size; all people found are foreground."""
        rgb, _, batched = as_images(image)
        out = torch.stack([self._one(frame) for frame in rgb])
        return out if batched else out[0]

    def _one(self, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[:2]
        scale = DETECT_RESOLUTION / min(height, width)
        dh, dw = max(1, round(height * scale)), max(1, round(width * scale))
        pixels = (resize(rgb[None], dh, dw)[0] * 255).round().to(torch.uint8).permute(2, 0, 1)
        outputs = self.module(pixels.contiguous().to(self.device))
        boxes, coarse, fine = self._check_outputs(outputs)
        canvas = torch.zeros(dh, dw)
        for box, c, f in zip(boxes.float().cpu(), coarse.float().cpu(), fine.float().cpu()):
            # Detectron2's chart results: resample the S x S maps to the integer box, then
            # body = coarse says foreground and the fine part label is not background (0).
            x0, y0 = int(box[0]), int(box[1])
            w, h = max(int(box[2] - box[0]), 1), max(int(box[3] - box[1]), 1)
            c_box = F.interpolate(c[None], (h, w), mode="bilinear", align_corners=False).argmax(1)[0]
            f_box = F.interpolate(f[None], (h, w), mode="bilinear", align_corners=False).argmax(1)[0]
            body = ((c_box > 0) & (f_box > 0)).float()
            ys, xs = slice(max(y0, 0), min(y0 + h, dh)), slice(max(x0, 0), min(x0 + w, dw))
            if ys.start >= ys.stop or xs.start >= xs.stop:  # a box wholly outside the picture
                continue
            part = body[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            canvas[ys, xs] = torch.maximum(canvas[ys, xs], part)
        return (resize(canvas[None], height, width)[0] >= 0.5).float()

    def _check_outputs(self, outputs: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        expected = "(boxes [N, 4], coarse_segm [N, 2, S, S], fine_segm [N, 25, S, S], u, v)"
        if not isinstance(outputs, (tuple, list)) or len(outputs) < 5 or not all(
            isinstance(t, torch.Tensor) for t in outputs[:5]
        ):
            got = type(outputs).__name__ if not isinstance(outputs, (tuple, list)) else f"{len(outputs)} values"
            raise DensePoseModelError(
                f"{self.name} is not a supported DensePose export: it returned {got}, expected {expected}."
            )
        boxes, coarse, fine = outputs[0], outputs[1], outputs[2]
        n = boxes.shape[0] if boxes.ndim == 2 else -1
        if boxes.ndim != 2 or boxes.shape[1] != 4 or coarse.ndim != 4 or fine.ndim != 4 \
                or coarse.shape[0] != n or fine.shape[0] != n or coarse.shape[1] < 2 or fine.shape[1] < 2:
            raise DensePoseModelError(
                f"{self.name} returned shapes {[tuple(t.shape) for t in outputs[:5]]}, expected {expected}."
            )
        return boxes, coarse, fine
