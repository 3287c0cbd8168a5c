"""Training configuration: YAML files loaded into dataclasses, unknown keys refused.

A file has the sections of `TrainConfig` (model, data, optim, train, export) plus `stage` and
`output`. Paths are taken as written (relative ones from the working directory). The paper's
values (section 4.2) are in trainer/configs/stage1.yaml and stage2.yaml.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from musedance_core.config import MAX_BEAT_PHASE_BINS, MAX_TEMPORAL_FF_MULT, SamplerSettings, dataclass_from_dict


@dataclass
class ModelConfig:
    """Where the starting weights come from (see musedance_core.loading.loader.load_pipeline)."""

    base: str | None = None  # SD1.5 single-file checkpoint or a full MuseDance checkpoint
    motion_module: str | None = None  # AnimateDiff file for the motion modules (stage 2)
    tokenizer: str | None = None  # CLIP tokenizer folder, unless the base checkpoint carries one
    # Stage 2: the beat encoding to train (musedance_core.config.UNetConfig.beat_phase_bins); when it
    # differs from the base's, the beat encoder is built afresh with it. None keeps the base's.
    beat_phase_bins: int | None = None
    # Stage 2: the music and beat modules' feed-forward multiplier (UNetConfig.temporal_ff_mult; 2 is the lean
    # configuration); when it differs from the base's, those layers are built afresh. None keeps the base's.
    temporal_ff_mult: int | None = None
    # "musedance", or "flow": DabFusion's flow family (trainer/flow_stages.py; stage 1 the latent flow
    # auto-encoder on frame pairs, stage 2 the flow denoiser on clips with the auto-encoder frozen).
    family: str = "musedance"
    # Flow family, stage 1 without a base: the model to build, FlowDanceConfig fields (None: its defaults).
    flow: dict | None = None


@dataclass
class DataConfig:
    path: str | None = None  # prepared dataset folder (trainer.data); `--data` overrides it
    resolution: tuple[int, int] = (640, 640)  # height, width every clip must have
    frame_window: int = 12  # stage 1: w, reference i in [w, N-w), target j in [i-w, i+w], j != i
    clip_length: int | None = None  # stage 2: K frames per clip (None: the model config's)
    motion_frames: int | None = None  # stage 2: M context frames (None: the model config's)

    def __post_init__(self) -> None:
        self.resolution = tuple(self.resolution)


@dataclass
class OptimConfig:
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up, then constant (the paper states a constant rate)
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)


@dataclass
class EMAConfig:
    enabled: bool = False
    decay: float = 0.9999


@dataclass
class RunConfig:
    steps: int = 30000  # optimiser steps
    batch_size: int = 12  # per process, per micro-step
    gradient_accumulation: int = 1
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (Accelerate autocast)
    gradient_checkpointing: bool = False
    seed: int = 0
    uncond_rate: float = 0.1  # rows trained as the sampler's unconditional row (classifier-free guidance)
    # Stage 2: of the other rows, this fraction is trained with the beats unknown and the text and music
    # kept: the sampler's row for a separate beat guidance scale (`beat_guidance_scale`); 0 never.
    beat_drop_rate: float = 0.0
    # Stage 2: the temporal modules that learn; one left out stays as it starts (the identity after
    # stage 1), i.e. the model without it (ablations).
    temporal_modules: list[str] = field(default_factory=lambda: ["music", "beat", "motion"])
    # Stage 2: extra loss weight where the clip moves (each latent element weighted by 1 + w times its
    # distance from the clip's mean over frames, relative to the clip's mean distance); 0 is the plain
    # epsilon MSE. Puts the loss where the music has to act when the motion is a small part of the frame.
    motion_loss_weight: float = 0.0
    # Stage 2: weight of a second epsilon MSE taken on the differences between consecutive frames (the
    # velocity loss of motion diffusion, MDM's L_vel, in epsilon terms: the predicted clean clip's frame
    # differences against the true ones, at the plain loss's weighting over timesteps). Errors that change
    # from frame to frame (jitter) then cost up to (1 + 2w) times what errors shared by the frames cost.
    velocity_loss_weight: float = 0.0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    ema: EMAConfig = field(default_factory=EMAConfig)


@dataclass
class ExportConfig:
    dir: str | None = None  # e.g. ComfyUI/models/musedance; None: <output>/export
    name: str = "musedance_stage{stage}_step{step}.safetensors"
    steps: list[int] = field(default_factory=list)  # steps to export at; the final step always is
    dtype: str = "fp16"  # "fp32", "fp16" or "bf16"
    temporal_only: bool = False  # stage 2 only: write just the music, beat and motion modules
    # Sampler settings the export recommends (SamplerSettings fields, e.g. {steps: 20, guidance_scale: 2.5});
    # the nodes and the main job use them where the user leaves a value on auto. None: recommend nothing.
    sampler: dict | None = None


@dataclass
class TrainConfig:
    stage: int = 1
    output: str = "runs/musedance"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 (appearance pretraining) or 2 (dynamic trigger), got {self.stage!r}.")
        if self.train.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"train.mixed_precision must be 'no', 'fp16' or 'bf16', got {self.train.mixed_precision!r}.")
        if self.export.dtype not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"export.dtype must be 'fp32', 'fp16' or 'bf16', got {self.export.dtype!r}.")
        if self.export.sampler is not None:
            dataclass_from_dict(SamplerSettings, self.export.sampler, "export.sampler")  # checked now, not at export
        if self.export.temporal_only and self.stage != 2:
            raise ValueError("export.temporal_only is for stage 2: stage 1 trains the spatial layers, export them all.")
        modules = self.train.temporal_modules
        if not modules or set(modules) - {"music", "beat", "motion"} or len(set(modules)) != len(modules):
            raise ValueError(f"train.temporal_modules must list some of music, beat, motion once each, got {modules!r}.")
        if self.stage == 1 and sorted(modules) != ["beat", "motion", "music"]:
            raise ValueError("train.temporal_modules is for stage 2: stage 1 trains no temporal module.")
        if self.train.motion_loss_weight < 0 or (self.train.motion_loss_weight and self.stage != 2):
            raise ValueError(f"train.motion_loss_weight must be >= 0 and is for stage 2 (single frames do not move), "
                             f"got {self.train.motion_loss_weight} in stage {self.stage}.")
        if not self.train.velocity_loss_weight >= 0 or (self.train.velocity_loss_weight and self.stage != 2):
            raise ValueError(f"train.velocity_loss_weight must be >= 0 and is for stage 2 (it compares consecutive "
                             f"frames), got {self.train.velocity_loss_weight} in stage {self.stage}.")
        if not 0.0 <= self.train.uncond_rate <= 1.0:
            raise ValueError(f"train.uncond_rate must be in [0, 1], got {self.train.uncond_rate}.")
        if not 0.0 <= self.train.beat_drop_rate <= 1.0 or (self.train.beat_drop_rate and self.stage != 2):
            raise ValueError(f"train.beat_drop_rate must be in [0, 1] and is for stage 2 (stage 1 sees no beats), "
                             f"got {self.train.beat_drop_rate} in stage {self.stage}.")
        for name in ("steps", "batch_size", "gradient_accumulation", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self.train, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self.train, name)}.")
        bins = self.model.beat_phase_bins
        if bins is not None and (self.stage != 2 or isinstance(bins, bool) or not isinstance(bins, int)
                                 or not 0 <= bins <= MAX_BEAT_PHASE_BINS):
            raise ValueError(f"model.beat_phase_bins is for stage 2 (the beat encoder trains there) and must be an "
                             f"integer from 0 (the paper's beat tokens) to {MAX_BEAT_PHASE_BINS}, got {bins!r} in "
                             f"stage {self.stage}.")
        mult = self.model.temporal_ff_mult
        if mult is not None and (self.stage != 2 or isinstance(mult, bool) or not isinstance(mult, int)
                                 or not 1 <= mult <= MAX_TEMPORAL_FF_MULT):
            raise ValueError(f"model.temporal_ff_mult is for stage 2 (the music and beat modules train there) and must "
                             f"be an integer from 1 to {MAX_TEMPORAL_FF_MULT}, got {mult!r} in stage {self.stage}.")
        if self.model.family == "flow":
            self._check_flow()
        elif self.model.family != "musedance":
            raise ValueError(f"model.family must be 'musedance' or 'flow', got {self.model.family!r}.")
        elif self.model.flow is not None:
            raise ValueError("model.flow configures the flow family; set model.family: flow, or remove it.")
        elif self.model.base is None:
            raise ValueError("model.base is required: an SD1.5 checkpoint (stage 1) or the stage-1 MuseDance export (stage 2).")

    def _check_flow(self) -> None:
        from musedance_core.config import FlowDanceConfig

        if self.model.flow is not None:
            if self.model.base is not None or self.stage != 1:
                raise ValueError("model.flow builds a fresh flow model for stage 1; stage 2 (and a stage 1 that goes "
                                 "on from a file) takes model.base, a flow checkpoint.")
            FlowDanceConfig.from_json(json.dumps(self.model.flow))  # checked now, not at the first step
        elif self.stage == 2 and self.model.base is None:
            raise ValueError("model.base is required for the flow family's stage 2: the stage-1 flow export.")
        unsupported = {"model.motion_module": self.model.motion_module, "model.tokenizer": self.model.tokenizer,
                       "model.beat_phase_bins": self.model.beat_phase_bins,
                       "model.temporal_ff_mult": self.model.temporal_ff_mult,
                       "train.motion_loss_weight": self.train.motion_loss_weight or None,
                       "export.temporal_only": self.export.temporal_only or None,
                       "train.gradient_checkpointing": self.train.gradient_checkpointing or None}
        given = sorted(name for name, value in unsupported.items() if value is not None)
        if given or sorted(self.train.temporal_modules) != ["beat", "motion", "music"]:
            raise ValueError(f"the flow family does not take {given or ['train.temporal_modules']}: they are "
                             "MuseDance's options; remove them.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return dataclass_from_dict(TrainConfig, data, "config")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config; `overrides` ({"data.path": ..., "output": ...}) replace single values first."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config_from_dict(data)
