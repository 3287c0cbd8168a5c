"""Subject Mask: the subject's foreground mask from whatever the user has, and a preview of it."""

from __future__ import annotations

import logging
import warnings

import torch

from . import comfy
from .model_folders import comfy_model_folders
from .model_paths import MODEL_KINDS

log = logging.getLogger(__name__)

NO_MODEL = "none"
CATEGORY = "MuseDance"


def _densepose_models() -> list[str]:
    return [NO_MODEL, *comfy_model_folders().list("densepose")]


def is_load_image_placeholder(mask: torch.Tensor, image: torch.Tensor) -> bool:
    """Load Image gives a 64x64 all-zero MASK for an image without alpha: not a real mask."""
    return tuple(mask.shape[-2:]) == (64, 64) and tuple(image.shape[1:3]) != (64, 64) and not bool(mask.any())


class SubjectMask:
    """Image (+ optional mask / DensePose image / DensePose model) -> MASK and an overlay preview."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MASK", "IMAGE")
    RETURN_NAMES = ("mask", "preview")
    OUTPUT_TOOLTIPS = (
        "The subject's mask, 1 on the subject; connect it to ReferenceNet Encode.",
        "The mask tinted over the image, to check it before generating.",
    )
    DESCRIPTION = (
        "The subject's foreground mask that MuseDance conditions on, from one source: a connected mask "
        "or a connected DensePose image (not both), else the chosen DensePose model, else the image's "
        "alpha, else an automatic segmentation (GrabCut from the image border; no model needed, works "
        "for animals and objects; the subject must not touch the image edges)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The reference image: the subject that will dance."}),
                "densepose_model": (_densepose_models(), {
                    "default": NO_MODEL,
                    "tooltip": "A TorchScript DensePose model from models/densepose (e.g. "
                               "densepose_r50_fpn_dl.torchscript), run on the image. 'none': not used.",
                }),
                "threshold": ("FLOAT", {"default": 0.5, "min": 0.01, "max": 0.99, "step": 0.01,
                                        "tooltip": "Mask values at or above this count as the subject."}),
                "grow": ("INT", {"default": 0, "min": -128, "max": 128, "step": 1,
                                 "tooltip": "Grow the mask by this many pixels (negative shrinks it)."}),
                "feather": ("INT", {"default": 0, "min": 0, "max": 128, "step": 1,
                                    "tooltip": "Soften the edge over this many pixels."}),
                "fill_holes": ("FLOAT", {"default": 0.001, "min": 0.0, "max": 1.0, "step": 0.001,
                                         "tooltip": "Fill enclosed gaps up to this fraction of the image "
                                                    "(0 off, 1 all). The default fills specks only."}),
                "keep_largest": ("BOOLEAN", {"default": False,
                                             "tooltip": "Keep only the largest connected part."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "A ready mask (from any segmentation node). Wins over the other sources."}),
                "invert_mask": ("BOOLEAN", {"default": False,
                                            "tooltip": "Invert the connected mask. Turn on for Load Image's "
                                                       "MASK output, which is 1 where the image is transparent."}),
                "densepose_image": ("IMAGE", {"tooltip": "A DensePose drawing of this image (body parts "
                                                         "coloured on a plain background), e.g. from a "
                                                         "DensePose preprocessor node."}),
            },
        }

    def run(self, image, densepose_model, threshold, grow, feather, fill_holes, keep_largest,
            mask=None, invert_mask=False, densepose_image=None):
        from ..musedance_core.masks.subject import MaskRefinement, MaskWarning, foreground_mask, mask_overlay

        notes = []  # shown on the node (web/musedance.js) and logged
        if mask is not None and is_load_image_placeholder(mask, image):
            notes.append("the connected mask is Load Image's empty placeholder (the image has no alpha); "
                         "ignoring it.")
            mask = None
        model = None
        if densepose_model != NO_MODEL and mask is None and densepose_image is None:
            from ..musedance_core.masks.densepose import DensePoseModel

            path = comfy_model_folders().resolve(MODEL_KINDS["densepose"].name, densepose_model)
            model = DensePoseModel.from_file(path, device=comfy.compute_device())
        refinement = MaskRefinement(threshold=threshold, fill_holes=fill_holes, keep_largest=keep_largest,
                                    grow=grow, feather=feather)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MaskWarning)
            result = foreground_mask(image, mask=mask, invert=invert_mask, densepose_image=densepose_image,
                                     densepose_model=model, refinement=refinement)
        notes += [str(warning.message) for warning in caught]
        for note in notes:
            log.warning("MuseDance mask: %s", note)
        masks = result.mask if result.mask.ndim == 3 else result.mask[None]
        summary = f"mask from {result.source}, coverage {', '.join(f'{c:.1%}' for c in result.coverage)}"
        log.info("MuseDance %s", summary)
        return {"ui": {"text": [*notes, summary]}, "result": (masks, mask_overlay(image, masks))}


NODE_CLASS_MAPPINGS = {"MuseDanceMask": SubjectMask}
NODE_DISPLAY_NAME_MAPPINGS = {"MuseDanceMask": "Subject Mask (MuseDance)"}
