"""Load MuseDance Model: a MuseDance checkpoint, optionally over an SD1.5 base and an AnimateDiff motion module.

The loaded pipeline lives in a `MuseDanceModel`, whose modules ComfyUI's model management moves to
the GPU for a run and offloads when another model needs the room. ComfyUI keeps the loader's output
while its inputs are unchanged, so the files are read once, not on every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..musedance_core.loading.formats import TOKENIZER_FILES
from . import comfy
from .model_folders import comfy_model_folders, comfy_tokenizer_folder
from .model_paths import ModelPathError

log = logging.getLogger(__name__)

NONE = "none"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("default", "cpu")
# Input name -> (model kind, what the file is), for the three file inputs.
FILE_INPUTS = {
    "checkpoint": ("musedance", "MuseDance checkpoint"),
    "base_checkpoint": ("checkpoints", "SD1.5 base checkpoint"),
    "motion_module": ("animatediff_models", "AnimateDiff motion module"),
}


@dataclass(eq=False)
class MuseDanceModel:
    """What flows along a MUSEDANCE_MODEL link: the pipeline and how its memory is managed.

    A MuseDance model's modules are two groups that ComfyUI loads and unloads apart: `managed`, what sampling
    uses (the UNet, the VAE's decoder), and `encoders`, what only ReferenceNet Encode and Motion Schedule use
    (the ReferenceNet, F_m, the text encoder, the VAE's encoder). While the sampler runs, the encoders are
    idle models to ComfyUI, which unloads them when the sampling needs their room. A flow-family model is
    one group (`encoders` None).
    """

    pipeline: Any  # musedance_core.sampling.pipeline.MuseDancePipeline
    managed: comfy.ManagedModules
    name: str  # for messages: the files it came from
    report: str = ""
    encoders: comfy.ManagedModules | None = None

    def load(self, memory_required: int = 0, with_encoders: bool = False) -> torch.device:
        """Bring the sampling modules onto the compute device, with `memory_required` bytes of working memory free
        besides (ComfyUI unloads idle models to make it); with_encoders: the encoders too. Returns the device."""
        groups = [self.managed] + ([self.encoders] if with_encoders and self.encoders is not None else [])
        return comfy.load_together(groups, memory_required)

    def load_encoders(self) -> torch.device:
        """Bring the encoding modules onto the compute device (a flow-family model: all of it); returns it."""
        return (self.encoders or self.managed).load()

    def done(self) -> None:
        for group in (self.managed, self.encoders):
            if group is not None:
                group.offload()
        comfy.soft_empty_cache()


def _choices(kind: str) -> list[str]:
    return [NONE, *comfy_model_folders().list(kind)]


def resolve_files(**names: str) -> dict[str, Path | None]:
    """Each file input's real path (None for "none"); ModelPathError names the input and the fix."""
    folders = comfy_model_folders()
    paths: dict[str, Path | None] = {}
    for key, (kind, _) in FILE_INPUTS.items():
        name = names.get(key, NONE)
        try:
            paths[key] = None if name in (None, NONE) else folders.resolve(kind, name)
        except ModelPathError as error:  # ComfyUI shows the message once per checked input: say which
            raise type(error)(f"{key}: {error}") from None
    if paths["checkpoint"] is None and paths["base_checkpoint"] is None:
        raise ModelPathError(
            "choose a MuseDance checkpoint (models/musedance) or at least an SD1.5 base checkpoint "
            "(models/checkpoints); both are 'none'."
        )
    return paths


def choose_dtype(precision: str, device: torch.device) -> str:
    """The pipeline's precision: auto is fp32 on the CPU, else bf16 where ComfyUI says it is fast, else fp16."""
    if precision != "auto":
        return precision
    if device.type == "cpu":
        return "fp32"
    mm = comfy.model_management()
    if mm is not None and mm.should_use_bf16(device):
        return "bf16"
    if mm is None or mm.should_use_fp16(device):
        return "fp16"
    return "fp32"


def find_tokenizer(checkpoint: Path | None) -> Path | None:
    """The CLIP tokenizer folder to load, or None when the checkpoint carries its own (or none exists).

    Order: the checkpoint's own files, `tokenizer/` beside the MuseDance checkpoints, ComfyUI's
    `comfy/sd1_tokenizer` (the SD1.5 tokenizer, shipped with ComfyUI).
    """
    if checkpoint is not None:
        from ..musedance_core.loading.checkpoint import read_checkpoint_info

        if read_checkpoint_info(checkpoint).tokenizer_files:
            return None
    for folder in [*comfy_model_folders().tokenizer_candidates(), comfy_tokenizer_folder()]:
        if folder is not None and all((folder / name).is_file() for name in TOKENIZER_FILES):
            return folder
    return None


class LoadMuseDanceModel:
    """Checkpoint files -> MUSEDANCE_MODEL."""

    CATEGORY = "MuseDance"
    FUNCTION = "run"
    RETURN_TYPES = ("MUSEDANCE_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The MuseDance model; connect it to ReferenceNet Encode and MuseDance Sampler.",)
    DESCRIPTION = (
        "Loads a MuseDance model from local files. Parts are taken from the highest of: the MuseDance "
        "checkpoint, then the motion module, then the SD1.5 base. A part no file holds (for example the "
        "music and beat modules under an SD1.5 base alone) starts untrained and the console says so."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        checkpoints = _choices("musedance")
        return {
            "required": {
                "checkpoint": (checkpoints, {
                    "default": checkpoints[1] if len(checkpoints) > 1 else NONE,
                    "tooltip": "A MuseDance checkpoint from models/musedance (full, or a stage-2 file of "
                               "temporal modules over a base)."}),
                "base_checkpoint": (_choices("checkpoints"), {
                    "default": NONE,
                    "tooltip": "An SD1.5 checkpoint from models/checkpoints for the parts the MuseDance "
                               "checkpoint lacks (spatial UNet, ReferenceNet, VAE, CLIP). 'none': not used."}),
                "motion_module": (_choices("animatediff_models"), {
                    "default": NONE,
                    "tooltip": "An AnimateDiff motion module (v1/v2/v3) from models/animatediff_models to "
                               "initialise the motion modules; the MuseDance checkpoint's own win. 'none': not used."}),
                "precision": (list(PRECISIONS), {
                    "default": "auto",
                    "tooltip": "auto: fp32 on the CPU, bf16 or fp16 on a GPU (what ComfyUI picks for it)."}),
                "device": (list(DEVICES), {
                    "default": "default",
                    "tooltip": "default: ComfyUI's device (the GPU). cpu: run MuseDance on the CPU (slow)."}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, checkpoint=None):
        # Replaces ComfyUI's "value not in list" check for the checkpoint with one that says what to do, and
        # reads the chosen file's header. Only the checkpoint: ComfyUI repeats a refusal under the name of
        # every input this method takes. base_checkpoint and motion_module keep ComfyUI's own list check;
        # their files (and "both none") are checked when the node runs, before any model is loaded.
        if checkpoint in (None, NONE):
            return True
        folders = comfy_model_folders()
        try:
            path = folders.resolve("musedance", checkpoint)
        except ModelPathError as error:
            return str(error)
        return folders.problem("musedance", path) or True

    def run(self, checkpoint: str, base_checkpoint: str, motion_module: str, precision: str, device: str):
        from ..musedance_core.loading.loader import load_pipeline

        paths = resolve_files(checkpoint=checkpoint, base_checkpoint=base_checkpoint, motion_module=motion_module)
        folders = comfy_model_folders()
        for key, path in paths.items():
            problem = path is not None and folders.problem(FILE_INPUTS[key][0], path)
            if problem:
                raise ModelPathError(f"{key}: {problem}")
        if precision not in PRECISIONS or device not in DEVICES:
            raise ValueError(f"precision must be one of {PRECISIONS} and device one of {DEVICES}; "
                             f"got {precision!r}, {device!r}.")
        load_device = torch.device("cpu") if device == "cpu" else comfy.compute_device()
        offload_device = torch.device("cpu") if device == "cpu" else comfy.offload_device()
        dtype = choose_dtype(precision, load_device)
        if paths["checkpoint"] is not None and is_flow_checkpoint(paths["checkpoint"]):
            return (load_flow_model(paths, load_device, offload_device, dtype),)
        pipe = load_pipeline(
            paths["checkpoint"], base=paths["base_checkpoint"], motion_module=paths["motion_module"],
            tokenizer=find_tokenizer(paths["checkpoint"]), device=offload_device, dtype=dtype,
        )
        name = " + ".join(p.name for p in paths.values() if p is not None)
        report = pipe.load_report.summary() if pipe.load_report is not None else ""
        log.info("MuseDance: loaded %s (%s, runs on %s)\n%s", name, dtype, load_device, report)
        managed = comfy.ManagedModules(pipe.used_while_sampling(), load_device, offload_device)
        encoders = comfy.ManagedModules(pipe.idle_while_sampling(), load_device, offload_device)
        return (MuseDanceModel(pipe, managed, name, report, encoders),)


def is_flow_checkpoint(path: Path) -> bool:
    from ..musedance_core.loading.formats import FLOW_FAMILY, checkpoint_family, safetensors_header

    return checkpoint_family(safetensors_header(path).get("__metadata__")) == FLOW_FAMILY


def load_flow_model(paths: dict, load_device: torch.device, offload_device: torch.device, dtype: str) -> MuseDanceModel:
    """A flow-family checkpoint (DabFusion) as a MUSEDANCE_MODEL: it takes the same music, beat, reference and
    video nodes; it has no text encoder, ReferenceNet, SD1.5 base or motion module of its own."""
    from ..musedance_core.loading.flow_checkpoint import load_flow_pipeline

    extra = [key for key in ("base_checkpoint", "motion_module") if paths[key] is not None]
    if extra:
        raise ValueError(f"{paths['checkpoint'].name} is a flow-family model, complete in itself: set "
                         f"{' and '.join(extra)} to none.")
    pipe = load_flow_pipeline(paths["checkpoint"], device=offload_device, dtype=dtype)
    log.info("MuseDance: loaded the flow-family model %s (%s, runs on %s)", paths["checkpoint"].name, dtype, load_device)
    managed = comfy.ManagedModules(pipe.modules(), load_device, offload_device)
    return MuseDanceModel(pipe, managed, paths["checkpoint"].name, "flow family (DabFusion)")


NODE_CLASS_MAPPINGS = {"MuseDanceLoadModel": LoadMuseDanceModel}
NODE_DISPLAY_NAME_MAPPINGS = {"MuseDanceLoadModel": "Load MuseDance Model"}
