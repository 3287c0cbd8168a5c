"""Training the flow family (DabFusion) with MuseDance's trainer: the same data, rows, loop, checkpoints and export.

Stage 1 (the paper's section 3.1): the latent flow auto-encoder on frame pairs of one clip (the rows of
MuseDance's stage 1: a reference frame and a target near it). Its loss is the L1 distance to the target
of the decoder's picture and of the composed frame (the reference's own pixels warped by the flow where
visible, the decoder's picture elsewhere: what the sampler shows), so the flow learns to move pixels as
well as latents. The paper's perceptual loss needs VGG-19 weights, which nothing here may download.
Stage 2 (section 3.2): the flow denoiser on clips of K frames with the auto-encoder frozen: the target
is the volume of flows and occlusion maps from the reference to each frame (its flow predictor's), the
loss the epsilon MSE (plus, with train.velocity_loss_weight, the same on frame differences); the rows
are MuseDance's stage-2 rows (K frames, the M true frames before them as motion context, music tokens
and beat ids, unconditional rows with zero music and unknown beats).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from musedance_core.config import FlowDanceConfig, SamplerSettings
from musedance_core.loading.flow_checkpoint import load_flow_pipeline, save_flow_checkpoint
from musedance_core.models.flow import compose
from musedance_core.sampling.conditioning import DTYPES, condition_rows, eval_mode, training_scheduler
from musedance_core.sampling.flow_pipeline import FlowDancePipeline, flows_to_volume

from .stages import Row, velocity_loss
from .train import Trainer


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    return frames.movedim(-1, -3).float() / 127.5 - 1


class FlowStageModel(nn.Module):
    """The flow family's networks and the loss of one batch; stage 1 trains the auto-encoder, stage 2 the denoiser."""

    def __init__(self, pipe: FlowDancePipeline, stage: int, velocity_loss_weight: float = 0.0) -> None:
        super().__init__()
        self.stage = stage
        self.velocity_loss_weight = velocity_loss_weight
        self.autoencoder = pipe.autoencoder
        self.unet = pipe.unet
        self.flow_scale = pipe.config.flow_scale
        self.noise_scheduler = training_scheduler(pipe.config)
        for p in self.autoencoder.parameters():
            p.requires_grad_(stage == 1)
        for p in self.unet.parameters():
            p.requires_grad_(stage == 2)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def after_micro_step(self) -> None:
        """Nothing is held between batches."""

    def train(self, mode: bool = True) -> "FlowStageModel":
        """Dropout only in the part that learns."""
        super().train(False)
        (self.autoencoder if self.stage == 1 else self.unet).train(mode)
        return self

    @torch.no_grad()
    def volume(self, reference: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The denoiser's target: flows and occlusion maps from the reference [B, 3, S, S] to each frame [B, F, 3, S, S]."""
        count = frames.shape[1]
        flow, occlusion = self.autoencoder.flow_predictor(reference.repeat_interleave(count, 0), frames.flatten(0, 1))
        return flows_to_volume(flow, occlusion, self.flow_scale).unflatten(0, (-1, count))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        reference = batch["reference"]
        if self.stage == 1:
            target = batch["frames"][:, 0]
            out, flow, occlusion = self.autoencoder(reference, target)
            return F.l1_loss(out, target) + F.l1_loss(compose(reference, flow, occlusion, out), target)
        with torch.no_grad():
            latent = self.autoencoder.encoder(reference)
            target = self.volume(reference, batch["frames"])
            context = None
            if "context" in batch:
                with eval_mode(self.unet):
                    _, context = self.unet(self.volume(reference, batch["context"]), 0, latent, batch["context_music"],
                                           batch["context_windows"], return_motion_context=True)
        noise, t = batch["noise"], batch["timesteps"]
        noisy = self.noise_scheduler.add_noise(target, noise, t)
        pred = self.unet(noisy, t, latent, batch["music"], batch["windows"], motion_context=context)
        loss = F.mse_loss(pred.float(), noise.float())
        if self.velocity_loss_weight:
            loss = loss + self.velocity_loss_weight * velocity_loss(pred, noise)
        return loss


class FlowTrainer(Trainer):
    """MuseDance's Trainer with the flow family's model, batches and export."""

    def _build_model(self) -> nn.Module:
        config, run, acc = self.config, self.config.train, self.accelerator
        if config.model.base is not None:
            self.pipe = load_flow_pipeline(config.model.base, device=acc.device)
        else:
            flow = FlowDanceConfig.from_json(json.dumps(config.model.flow or {}))
            self.pipe = FlowDancePipeline.from_config(flow, seed=run.seed)
            for module in self.pipe.modules().values():
                module.to(acc.device)
        mc = self.pipe.config
        if tuple(config.data.resolution) != (mc.size, mc.size):
            raise ValueError(f"the flow model works at {mc.size}x{mc.size}; data.resolution is "
                             f"{tuple(config.data.resolution)}: prepare the data at the model's size.")
        self.clip_length = config.data.clip_length or mc.clip_length
        self.motion_frames = mc.motion_frames if config.data.motion_frames is None else config.data.motion_frames
        if self.clip_length + self.motion_frames > mc.unet.max_seq_length:
            raise ValueError(f"data.clip_length + motion_frames exceed the flow denoiser's {mc.unet.max_seq_length} frames.")
        return FlowStageModel(self.pipe, config.stage, run.velocity_loss_weight)

    @torch.no_grad()
    def batch(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        device, mc = self.accelerator.device, self.pipe.config
        size = mc.size
        for row in rows:
            if tuple(row.reference.shape[:2]) != (size, size):
                raise ValueError(f"a clip has frames of {tuple(row.reference.shape[:2])}; the flow model works at "
                                 f"{size}x{size}: prepare the data at the model's size.")

        def stacked(values: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(values).to(device)

        batch = {"reference": stacked([to_pixels(r.reference) for r in rows]),
                 "frames": stacked([to_pixels(r.frames) for r in rows])}
        if self.config.stage == 1:
            return batch
        kinds = dict(unconditional=torch.tensor([r.uncond for r in rows], device=device),
                     beats_unknown=torch.tensor([r.beats_dropped for r in rows], device=device))
        _, batch["music"], batch["windows"], _ = condition_rows(
            None, stacked([r.music for r in rows]), stacked([r.windows for r in rows]), **kinds)
        h = mc.latent_size
        batch["noise"] = torch.stack([
            torch.randn((r.frames.shape[0], 3, h, h), generator=torch.Generator().manual_seed(r.noise_seed))
            for r in rows]).to(device)
        batch["timesteps"] = torch.tensor([r.timestep for r in rows], device=device)
        if rows[0].context is not None:
            batch["context"] = stacked([to_pixels(r.context) for r in rows])
            _, batch["context_music"], batch["context_windows"], _ = condition_rows(
                None, stacked([r.context_music for r in rows]), stacked([r.context_windows for r in rows]), **kinds)
        return batch

    def _write_export(self, path: Path, model: nn.Module) -> None:
        cfg = self.config
        save_flow_checkpoint(
            path, self.pipe, dtype=DTYPES[cfg.export.dtype],
            sampler=None if cfg.export.sampler is None else SamplerSettings(**cfg.export.sampler),
            training_size=cfg.data.resolution,
            metadata={"training_stage": str(cfg.stage), "training_step": str(self.step)},
        )
