"""Assemble a MuseDance pipeline from the files a user has, straight onto the target device and dtype.

Sources, from lowest to highest priority (a later one wins where both provide a part):
1. `base`: an SD1.5 single-file checkpoint (UNet spatial layers, ReferenceNet, VAE, CLIP text
   encoder; the paper initialises both UNets from it) or a full MuseDance checkpoint (for example
   the stage-1 result under a stage-2 file);
2. `motion_module`: an AnimateDiff file for the motion modules;
3. `checkpoint`: a MuseDance checkpoint, full or partial (`unet.temporal`).

Every model is first built with its parameters on the meta device; each part is then read from the
one source that wins it, cast and moved tensor by tensor, and becomes the parameter itself. Parts no
file provides are handled as the paper's initialisation implies: the music, beat and motion modules
and F_m start as identities (zero output layers) and this is reported; a missing spatial UNet,
ReferenceNet or VAE is an error that names the file to add. Peak memory is the loaded model plus
one tensor (benchmarks/bench_loading.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from ..config import MuseDanceConfig
from ..models.mask_encoder import build_mask_encoder
from ..models.text_encoder import (
    TOKENIZER_HELP,
    build_text_encoder,
    load_tokenizer,
    match_text_encoder_names,
    tokenizer_from_files,
)
from ..models.unet import MuseDanceUNet, is_temporal_parameter
from ..sampling.conditioning import resolve_dtype
from ..sampling.pipeline import MuseDancePipeline
from .animatediff import inspect_motion_module, motion_module_weights
from .checkpoint import TEMPORAL_ONLY, CheckpointInfo, component_weights, read_checkpoint_info
from .sd15 import CLIP_PREFIX, VAE_PREFIX, check_sd15, text_encoder_weights, unet_weights, vae_weights
from .weights import (
    WeightsFileError,
    WeightsMapping,
    assign_weights,
    empty_parameters,
    initialise_missing,
    missing_parameters,
    open_weights,
)


@dataclass
class LoadReport:
    """Where each part of a loaded model came from, and what started untrained."""

    sources: dict[str, str] = field(default_factory=dict)  # part -> file name
    initialised: list[str] = field(default_factory=list)  # parts that no file provided
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{part}: {source}" for part, source in self.sources.items()]
        lines += [f"{part}: not in any file, starts as identity (untrained)" for part in self.initialised]
        return "\n".join(lines + self.notes)


def load_pipeline(
    checkpoint: str | Path | None = None,
    *,
    base: str | Path | None = None,
    motion_module: str | Path | None = None,
    tokenizer: str | Path | None = None,
    config: MuseDanceConfig | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = "fp32",
    with_text_encoder: bool = True,
    seed: int = 0,
) -> MuseDancePipeline:
    """Load a MuseDance pipeline from local files (see the module docstring for the order).

    config: needed only when no MuseDance checkpoint is given (defaults to `MuseDanceConfig.sd15()`);
    a checkpoint carries its own and a different one is an error.
    tokenizer: a folder with vocab.json and merges.txt (or a diffusers model folder); without it the
    tokenizer comes from the checkpoint if it carries one. The pipeline's `load_report` says what
    came from where.
    """
    dtype = resolve_dtype(dtype)
    device = torch.device(device)
    files = {"base": base, "motion_module": motion_module, "checkpoint": checkpoint}
    if all(v is None for v in files.values()):
        raise ValueError("give at least one weight file: a MuseDance checkpoint, or an SD1.5 base checkpoint.")
    opened = {role: open_weights(p, device, dtype) for role, p in files.items() if p is not None}
    infos: dict[str, CheckpointInfo] = {}
    for role in ("base", "checkpoint"):
        if role in opened and (role == "checkpoint" or opened[role].metadata.get("format") == "musedance"):
            infos[role] = read_checkpoint_info(opened[role])
    config = _choose_config(config, infos)
    report = LoadReport()
    # Before any weight is read, so that a bad tokenizer folder fails fast.
    tok = _find_tokenizer(tokenizer, infos, report) if with_text_encoder else None
    sources: list[_Source] = []  # lowest priority first
    if "base" in opened:
        sources.append(_MuseDanceSource(opened["base"], infos["base"]) if "base" in infos
                       else _SD15Source(opened["base"], config))
    if "motion_module" in opened:
        sources.append(_MotionSource(opened["motion_module"]))
    if "checkpoint" in opened:
        sources.append(_MuseDanceSource(opened["checkpoint"], infos["checkpoint"]))

    with empty_parameters():
        modules: dict[str, nn.Module] = {
            "unet": MuseDanceUNet(config.unet),
            "reference_net": UNet2DConditionModel(**config.unet.diffusers_kwargs()),
            "mask_encoder": build_mask_encoder(config.mask_encoder, config.vae.latent_channels),
            "vae": AutoencoderKL(**config.vae.diffusers_kwargs()),
        }
        if with_text_encoder:
            modules["text_encoder"] = build_text_encoder(config.text_encoder)
    for part in PARTS:
        if part == "text_encoder" and not with_text_encoder:
            continue
        providers = [source for source in sources if part in source.parts]
        if not providers:
            continue
        winner = providers[-1]
        module = modules[part.split(".")[0]]
        weights = winner.load(part, module)
        if part == "text_encoder":
            weights = match_text_encoder_names(weights, module)
        assign_weights(module, weights, part, winner.weights.path)
        report.sources[part] = winner.weights.path.name
        for loser in providers[:-1]:
            report.notes.append(f"{part}: {winner.weights.path.name} replaces the one in {loser.weights.path.name}.")
    for source in sources:
        source.release()
    _complete(modules, report, device, dtype, seed)

    text_encoder = modules.get("text_encoder")
    pipe = MuseDancePipeline(
        config, modules["unet"], modules["reference_net"], modules["mask_encoder"], modules["vae"],
        text_encoder=text_encoder, tokenizer=tok if text_encoder is not None else None,
    )
    pipe.load_report = report
    # The settings the checkpoint recommends, else those of a MuseDance base it is loaded on.
    recommended = [info.sampler for info in (infos.get("checkpoint"), infos.get("base")) if info and info.sampler]
    if recommended:
        pipe.recommended = recommended[0]
    sizes = [info.training_size for info in (infos.get("checkpoint"), infos.get("base")) if info and info.training_size]
    pipe.training_size = sizes[0] if sizes else None
    return pipe.eval()


def _choose_config(config: MuseDanceConfig | None, infos: dict[str, CheckpointInfo]) -> MuseDanceConfig:
    carried = list(infos.values())
    if len(carried) == 2 and carried[0].config != carried[1].config:
        raise WeightsFileError(
            f"{carried[0].path.name} and {carried[1].path.name} describe different model configurations; "
            "a partial checkpoint must be loaded on a base of the same configuration."
        )
    if carried and config is not None and carried[0].config != config:
        raise ValueError(
            f"{carried[0].path.name} was trained with another model configuration than the one given; "
            "leave config out to use the checkpoint's own."
        )
    return carried[0].config if carried else (config or MuseDanceConfig.sd15())


# The parts a source can provide; the UNet is split so that each temporal kind can come from its own file.
PARTS = ("unet.spatial", "unet.music_beat", "unet.motion", "reference_net", "mask_encoder", "vae", "text_encoder")
_REQUIRED = {
    "unet.spatial": "the denoising UNet's spatial layers",
    "reference_net": "the ReferenceNet",
    "vae": "the VAE",
}


def unet_part(name: str) -> str:
    """Which part of the UNet a parameter or buffer name belongs to."""
    if "motion_modules." in name:
        return "unet.motion"
    return "unet.music_beat" if is_temporal_parameter(name) else "unet.spatial"


class _Source:
    def __init__(self, weights: WeightsMapping) -> None:
        self.weights = weights
        self.parts: set[str] = set()

    def load(self, part: str, module: nn.Module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def release(self) -> None:
        """Drop what is kept between parts (converted tensors, the file's staging buffer)."""
        self.weights.release()


class _MuseDanceSource(_Source):
    def __init__(self, weights: WeightsMapping, info: CheckpointInfo) -> None:
        super().__init__(weights)
        for component in info.components:
            if component == "unet":
                self.parts |= {"unet.spatial", "unet.music_beat", "unet.motion"}
            elif component == TEMPORAL_ONLY:
                self.parts |= {"unet.music_beat", "unet.motion"}
            else:
                self.parts.add(component)

    def load(self, part: str, module: nn.Module) -> dict[str, torch.Tensor]:
        if not part.startswith("unet."):
            return component_weights(self.weights, part)
        return {k[5:]: self.weights[k] for k in self.weights.keys() if k.startswith("unet.") and unet_part(k[5:]) == part}


class _SD15Source(_Source):
    def __init__(self, weights: WeightsMapping, config: MuseDanceConfig) -> None:
        super().__init__(weights)
        check_sd15(weights, config)
        self.config = config
        self.parts = {"unet.spatial", "reference_net"}
        if any(k.startswith(VAE_PREFIX) for k in weights.keys()):
            self.parts.add("vae")
        if any(k.startswith(CLIP_PREFIX) for k in weights.keys()):
            self.parts.add("text_encoder")
        self._unet: dict[str, torch.Tensor] | None = None

    def load(self, part: str, module: nn.Module) -> dict[str, torch.Tensor]:
        if part == "vae":
            return vae_weights(self.weights, self.config)
        if part == "text_encoder":
            return text_encoder_weights(self.weights)
        if self._unet is None:
            self._unet = unet_weights(self.weights, self.config)
        if part == "unet.spatial":
            return self._unet
        # The ReferenceNet starts from the same SD1.5 UNet but is a model of its own: its own tensors.
        return {k: v.clone() for k, v in self._unet.items()}

    def release(self) -> None:
        self._unet = None
        super().release()


class _MotionSource(_Source):
    def __init__(self, weights: WeightsMapping) -> None:
        super().__init__(weights)
        inspect_motion_module(weights)  # fail early with a clear message
        self.parts = {"unet.motion"}

    def load(self, part: str, module: nn.Module) -> dict[str, torch.Tensor]:
        converted, _ = motion_module_weights(self.weights, module)
        return converted


def _complete(modules: dict[str, nn.Module], report: LoadReport, device: torch.device, dtype: torch.dtype, seed: int) -> None:
    """Check required parts, initialise the optional ones no file gave, move buffers to the target."""
    for part, what in _REQUIRED.items():
        module = modules[part.split(".")[0]]
        empty = [n for n in missing_parameters(module) if part != "unet.spatial" or unet_part(n) == part]
        if empty:
            raise WeightsFileError(
                f"no file provides {what} ({len(empty)} weights, e.g. {empty[0]}); add an SD1.5 base "
                "checkpoint (models/checkpoints) or a full MuseDance checkpoint."
            )
    text_encoder = modules.get("text_encoder")
    if text_encoder is not None and missing_parameters(text_encoder):
        del modules["text_encoder"]
        report.notes.append("text_encoder: not in any file; prompts must be given as CLIP embeddings.")
    unet = modules["unet"]
    for part in ("unet.music_beat", "unet.motion"):
        if any(unet_part(n) == part for n in missing_parameters(unet)):
            report.initialised.append(part)
    if missing_parameters(modules["mask_encoder"]):
        report.initialised.append("mask_encoder")
    for module in modules.values():
        initialise_missing(module, device, dtype, seed)
        # Parameters are already in place; this moves the (small) buffers built on the CPU.
        nn.Module.to(module, device=device, dtype=dtype)


def _find_tokenizer(folder: str | Path | None, infos: dict[str, CheckpointInfo], report: LoadReport):
    if folder is not None:
        report.sources["tokenizer"] = str(folder)
        return load_tokenizer(folder)
    for role in ("checkpoint", "base"):
        info = infos.get(role)
        if info is not None and info.tokenizer_files:
            report.sources["tokenizer"] = info.path.name
            return tokenizer_from_files(info.tokenizer_files)
    report.notes.append(f"tokenizer: none given. {TOKENIZER_HELP}")
    return None
