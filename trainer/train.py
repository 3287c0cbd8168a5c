"""Train MuseDance, one stage per run, on Hugging Face Accelerate.

    python -m trainer.train --config trainer/configs/stage1.yaml --data PREPARED_DIR --output runs/s1
    accelerate launch -m trainer.train --config trainer/configs/stage2.yaml --data PREPARED_DIR --resume

The loop, top to bottom: build the batch of this step (a pure function of seed, step and row,
see trainer.stages), encode it with the frozen VAE and text encoder, compute the stage's loss,
step Adam through `accelerator.accumulate`. Every `checkpoint_every` steps the full training state
(weights, optimiser, LR schedule, EMA, RNG states, step) goes into a temporary folder that is then
renamed, so a crash never leaves a broken latest checkpoint; `--resume` continues from the newest
one exactly. At `export.steps` and at the end a MuseDance checkpoint is written for the nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch import nn

from musedance_core.config import SamplerSettings
from musedance_core.loading.checkpoint import read_checkpoint_info, save_checkpoint
from musedance_core.loading.loader import load_pipeline
from musedance_core.loading.weights import WeightsFileError
from musedance_core.models.text_encoder import read_tokenizer_files
from musedance_core.sampling.conditioning import DTYPES, condition_rows, encode_frames, mask_condition

from .clips import ClipSource
from .config import TrainConfig, load_config
from .stages import Row, StageModel, row_generator, sample_row, set_beat_phase_bins, set_temporal_ff_mult

STATE_FILE = "trainer_state.json"


class Trainer:
    """One stage of training on `clips`; `train()` runs it, `export()` writes a MuseDance checkpoint."""

    def __init__(self, config: TrainConfig, clips: ClipSource) -> None:
        self.config = config
        self.clips = clips
        run = config.train
        self.output = Path(config.output)
        self.accelerator = Accelerator(
            mixed_precision=run.mixed_precision,
            gradient_accumulation_steps=run.gradient_accumulation,
            log_with="tensorboard",
            project_dir=str(self.output),
            # The ReferenceNet's layers after its last self-attention produce nothing the loss sees.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            step_scheduler_with_optimizer=False,
        )
        acc = self.accelerator
        torch.manual_seed(run.seed)  # model init of parts no file provides; dropout draws follow
        model = self._build_model()
        model.train()
        params = model.trainable_parameters()
        self.optimizer = torch.optim.Adam(params, lr=config.optim.lr, betas=config.optim.betas, eps=config.optim.eps,
                                          weight_decay=config.optim.weight_decay)
        warmup = config.optim.warmup_steps
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        self.model, self.optimizer = acc.prepare(model, self.optimizer)
        # Not `prepare`d: Accelerate would step it once per process; it is stepped once per optimiser step.
        acc.register_for_checkpointing(self.lr_scheduler)
        self.ema = None
        if run.ema.enabled:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(params, decay=run.ema.decay)
            acc.register_for_checkpointing(self.ema)
        self.step = 0

    def _build_model(self) -> nn.Module:
        """Load the pipeline (self.pipe), set the clip length and context, and return the stage's trained module."""
        config, run, acc = self.config, self.config.train, self.accelerator
        self.pipe = load_pipeline(
            base=config.model.base, motion_module=config.model.motion_module, tokenizer=config.model.tokenizer,
            device=acc.device, seed=run.seed,
        )
        if self.pipe.tokenizer is None or self.pipe.text_encoder is None:
            raise ValueError("training needs the CLIP text encoder and tokenizer: use a base that carries them or set "
                             "model.tokenizer to a folder with vocab.json and merges.txt.")
        rebuilt = {"beat_phase_bins": (set_beat_phase_bins, "beat encoder"),
                   "temporal_ff_mult": (set_temporal_ff_mult, "music and beat modules' feed-forward layers")}
        for option, (rebuild, what) in rebuilt.items():
            value, before = getattr(config.model, option), getattr(self.pipe.config.unet, option)
            if value is not None and rebuild(self.pipe, value):
                acc.print(f"model.{option}={value}: the base's {what} ({option} {before}) are built afresh; "
                          "stage 2 trains them.")
        mc = self.pipe.config
        self.clip_length = config.data.clip_length or mc.clip_length
        self.motion_frames = mc.motion_frames if config.data.motion_frames is None else config.data.motion_frames
        if self.clip_length + self.motion_frames > mc.unet.temporal_max_seq_length:
            raise ValueError(f"data.clip_length + motion_frames exceed the model's temporal length "
                             f"{mc.unet.temporal_max_seq_length}.")
        model = StageModel(self.pipe, config.stage, tuple(run.temporal_modules), run.motion_loss_weight,
                           run.velocity_loss_weight)
        if run.gradient_checkpointing:
            model.unet.gradient_checkpointing = True
            if config.stage == 1:
                model.reference_net.enable_gradient_checkpointing()
        self._text_cache: dict[str, torch.Tensor] = {}
        return model

    # -- data ----------------------------------------------------------------------------------
    def rows(self, step: int, batch_size: int, first_row: int) -> list[Row]:
        cfg, mc = self.config, self.pipe.config
        return [
            sample_row(cfg.stage, self.clips, row_generator(cfg.train.seed, step, first_row + r),
                       frame_window=cfg.data.frame_window, clip_length=self.clip_length,
                       motion_frames=self.motion_frames, beat_window=mc.unet.beat_window,
                       beat_phase_bins=mc.unet.beat_phase_bins,
                       uncond_rate=cfg.train.uncond_rate, num_timesteps=mc.scheduler.num_train_timesteps,
                       beat_drop_rate=cfg.train.beat_drop_rate)
            for r in range(batch_size)
        ]

    def _text(self, caption: str) -> torch.Tensor:
        if caption not in self._text_cache:
            self._text_cache[caption] = self.pipe.encode_prompt(caption)[0].float()
        return self._text_cache[caption]

    @torch.no_grad()
    def batch(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        """Encode rows with the frozen VAE and text encoder into the tensors `StageModel.forward` takes."""
        device, mc = self.accelerator.device, self.pipe.config
        height, width = self.config.data.resolution
        for row in rows:
            if tuple(row.reference.shape[:2]) != (height, width):
                raise ValueError(f"a clip has frames of {tuple(row.reference.shape[:2])}, the config's data.resolution "
                                 f"is {(height, width)}; prepare the data at the training size.")
        b, scale = len(rows), mc.vae.scaling_factor

        def latents_of(frames: list[torch.Tensor]) -> torch.Tensor:
            return encode_frames(self.pipe.vae, torch.cat(frames), scale).float().unflatten(0, (b, -1))

        def stacked(values: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(values).to(device)

        # Row kinds as the sampler's guidance rows: unconditional (no reference, zero text and music, unknown
        # beats) and beats dropped (train.beat_drop_rate: beats unknown, the rest kept).
        kinds = dict(unconditional=torch.tensor([r.uncond for r in rows], device=device),
                     beats_unknown=torch.tensor([r.beats_dropped for r in rows], device=device))
        caption = stacked([self._text(r.caption) for r in rows])
        text, music, windows, keep = condition_rows(
            caption, stacked([r.music for r in rows]), stacked([r.windows for r in rows]), **kinds)
        latents = latents_of([r.frames for r in rows])
        noise = torch.stack([
            torch.randn(latents.shape[1:], generator=torch.Generator().manual_seed(r.noise_seed)) for r in rows
        ]).to(device)
        batch = {
            "ref_latent": latents_of([r.reference[None] for r in rows])[:, 0],
            "mask": mask_condition(torch.stack([r.mask for r in rows]), height, width, batch=b).to(device),
            "ref_text": caption,  # the ReferenceNet always sees the caption; dropped rows never see its tokens
            "keep": keep,
            "text": text,
            "latents": latents,
            "noise": noise,
            "timesteps": torch.tensor([r.timestep for r in rows], device=device),
            "music": music,
            "windows": windows,
        }
        if rows[0].context is not None:
            batch["context_latents"] = latents_of([r.context for r in rows])
            _, batch["context_music"], batch["context_windows"], _ = condition_rows(
                None, stacked([r.context_music for r in rows]), stacked([r.context_windows for r in rows]), **kinds)
        return batch

    # -- loop ----------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> None:
        acc, run = self.accelerator, self.config.train
        if resume:
            self.load_latest()
        acc.init_trackers(f"stage{self.config.stage}", config=_flat(self.config.to_dict()))
        per_process = run.batch_size
        first_row = acc.process_index * per_process
        progress = None
        if acc.is_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(total=run.steps, initial=self.step, desc=f"stage {self.config.stage}")
        started, samples = time.perf_counter(), 0
        while self.step < run.steps:
            losses = []
            for a in range(run.gradient_accumulation):
                # The rows of one optimiser step depend on the step only: accumulating a x b rows, or
                # spreading them over processes, trains on the same rows as one batch of a x b.
                rows = self.rows(self.step, per_process, a * per_process * acc.num_processes + first_row)
                batch = self.batch(rows)
                with acc.accumulate(self.model):
                    loss = self.model(batch)
                    acc.backward(loss)
                    if acc.sync_gradients and self.config.optim.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), self.config.optim.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self._unwrapped.after_micro_step()
                losses.append(loss.detach())
            self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.step(self._unwrapped.trainable_parameters())
            self.step += 1
            samples += per_process * run.gradient_accumulation * acc.num_processes
            if self.step % run.log_every == 0 or self.step == run.steps:
                mean = acc.reduce(torch.stack(losses).mean(), reduction="mean").item()
                rate = samples / (time.perf_counter() - started)
                acc.log({"loss": mean, "lr": self.lr_scheduler.get_last_lr()[0], "samples_per_s": rate}, step=self.step)
                if progress is not None:
                    progress.set_postfix(loss=f"{mean:.4f}", samples_s=f"{rate:.2f}")
            if progress is not None:
                progress.update(1)
            if self.step % run.checkpoint_every == 0 or self.step == run.steps:
                self.save_state()
            if self.step in self.config.export.steps or self.step == run.steps:
                self.export()
        if progress is not None:
            progress.close()
        acc.end_training()

    @property
    def _unwrapped(self) -> StageModel:
        return self.accelerator.unwrap_model(self.model)

    @torch.no_grad()
    def eval_loss(self, rows: list[Row]) -> float:
        """Loss on fixed rows, without dropout (the test of whether training learns)."""
        model = self._unwrapped
        model.train(False)
        try:
            return float(model(self.batch(rows)))
        finally:
            model.after_micro_step()
            model.train(True)

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.output / "checkpoints"

    def save_state(self) -> Path:
        """Write the whole training state to checkpoints/step-N through a temporary folder and a rename."""
        acc = self.accelerator
        final = self.checkpoint_dir / f"step-{self.step:08d}"
        tmp = self.checkpoint_dir / f".tmp-step-{self.step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": self.step, "stage": self.config.stage, "num_processes": acc.num_processes,
                     "config": self.config.to_dict()}
            with open(tmp / STATE_FILE, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            if final.exists():  # the same step saved again: move the old one aside first
                old = final.with_name(final.name + ".old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old)
            else:
                os.replace(tmp, final)
            for stale in self.checkpoints()[: -self.config.train.keep_checkpoints]:
                shutil.rmtree(stale)
        acc.wait_for_everyone()
        return final

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (a folder counts once it has been renamed into place)."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = [p for p in self.checkpoint_dir.glob("step-*") if p.is_dir() and (p / STATE_FILE).is_file()
                 and not p.name.endswith(".old")]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def load_latest(self) -> bool:
        """Restore the newest checkpoint; False when there is none (the run starts fresh)."""
        found = self.checkpoints()
        if not found:
            return False
        state = json.loads((found[-1] / STATE_FILE).read_text(encoding="utf-8"))
        if state["stage"] != self.config.stage:
            raise ValueError(f"{found[-1]} is a stage-{state['stage']} checkpoint; this run is stage {self.config.stage}.")
        self.accelerator.load_state(str(found[-1]))
        self.step = state["step"]
        return True

    # -- export --------------------------------------------------------------------------------
    def export(self, folder: str | Path | None = None) -> Path | None:
        """Write the model as a checkpoint of its family (EMA weights when EMA is on); main process only."""
        acc, cfg = self.accelerator, self.config
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return None
        folder = Path(folder or cfg.export.dir or self.output / "export")
        path = folder / cfg.export.name.format(stage=cfg.stage, step=self.step)
        model = self._unwrapped
        params = model.trainable_parameters()
        if self.ema is not None:
            self.ema.store(params)
            self.ema.copy_to(params)
        try:
            self._write_export(path, model)
        finally:
            if self.ema is not None:
                self.ema.restore(params)
        return path

    def _write_export(self, path: Path, model: nn.Module) -> None:
        cfg = self.config
        if cfg.export.temporal_only:
            modules: dict[str, nn.Module] = {"unet": model.unet}
        else:
            modules = self.pipe.modules()
        save_checkpoint(
            path, self.pipe.config, modules, temporal_only=cfg.export.temporal_only,
            dtype=DTYPES[cfg.export.dtype],
            tokenizer_files=None if cfg.export.temporal_only else self._tokenizer_files(),
            metadata={"training_stage": str(cfg.stage), "training_step": str(self.step)},
            sampler=None if cfg.export.sampler is None else SamplerSettings(**cfg.export.sampler),
            training_size=cfg.data.resolution,
        )

    def _tokenizer_files(self) -> dict[str, str] | None:
        if self.config.model.tokenizer:
            return read_tokenizer_files(self.config.model.tokenizer)
        try:
            return read_checkpoint_info(self.config.model.base).tokenizer_files or None
        except WeightsFileError:
            return None


def _flat(data: dict, prefix: str = "") -> dict:
    """Nested config -> flat scalars for TensorBoard's hparams (lists and None as text)."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, (int, float, bool, str)) and not (isinstance(value, float) and math.isnan(value)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def open_dataset(path: str | Path) -> ClipSource:
    """The prepared dataset folder at `path` (trainer.data), or a `.pt` file with a list of PreparedClip fields."""
    if str(path).endswith(".pt"):
        from .clips import PreparedClip

        return [PreparedClip(**fields) for fields in torch.load(path, weights_only=True)]
    from . import data  # written alongside; imported here so that the trainer runs on in-memory clips without it

    return data.PreparedDataset(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML file, e.g. trainer/configs/stage1.yaml")
    parser.add_argument("--data", help="prepared dataset folder (overrides data.path)")
    parser.add_argument("--output", help="run folder for checkpoints, logs and exports (overrides output)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one value, e.g. --set train.steps=100 (YAML syntax for the value)")
    args = parser.parse_args(argv)
    import yaml

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    if args.data:
        overrides["data.path"] = args.data
    if args.output:
        overrides["output"] = args.output
    config = load_config(args.config, overrides)
    if not config.data.path:
        parser.error("no data: give --data PREPARED_DIR or data.path in the config")
    trainer_class(config)(config, open_dataset(config.data.path)).train(resume=args.resume)


def trainer_class(config: TrainConfig) -> type[Trainer]:
    """The Trainer of the config's model family."""
    if config.model.family == "flow":
        from .flow_stages import FlowTrainer

        return FlowTrainer
    return Trainer


if __name__ == "__main__":
    main()
