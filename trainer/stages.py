"""What each training stage samples, which parameters it trains, and its loss.

Stage 1, appearance pretraining (paper section 3.2): one reference frame i and one target frame j
near it; the denoising UNet's spatial layers, the ReferenceNet and F_m learn to draw frame j from
frame i. Stage 2, dynamic trigger training (section 3.3): K consecutive frames with the M ground-truth
frames before them as motion context; only the music, beat and motion modules learn.

Both stages condition the model exactly as the sampler does, through the same functions
(musedance_core.sampling.conditioning): the VAE latents, the reference path, the beat ids, the kinds of
row (unconditional, beats dropped), the motion context and the noise schedule.

Every random choice of a batch row (clip, frames, unconditional or not, timestep, noise) comes from a
generator seeded by (seed, micro-step, global row), so a resumed or differently-sharded run sees
exactly the same data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from torch import nn

from musedance_core.models.temporal import BeatEncoder, beat_windows, unknown_beats
from musedance_core.sampling.conditioning import (
    TEMPORAL_GROUPS,
    is_temporal_parameter,
    motion_context,
    reference_features,
    training_scheduler,
)
from musedance_core.sampling.pipeline import MuseDancePipeline

from .clips import ClipSource, PreparedClip

MAX_DRAWS = 100  # stage 2 redraws a clip shorter than K + M frames at most this often


def row_generator(seed: int, step: int, row: int) -> torch.Generator:
    """The generator for one batch row: a pure function of (seed, micro-step, global row index)."""
    digest = hashlib.sha256(f"musedance:{seed}:{step}:{row}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high)."""
    return int(torch.randint(low, high, (1,), generator=gen))


@dataclass
class Row:
    """One training example, before the VAE: frames and conditions on the CPU."""

    reference: torch.Tensor  # uint8 [H, W, 3]
    mask: torch.Tensor  # float [H, W]
    frames: torch.Tensor  # uint8 [F, H, W, 3] target frames (F = 1 in stage 1, K in stage 2)
    context: torch.Tensor | None  # uint8 [M, H, W, 3] ground-truth frames before the clip (stage 2)
    music: torch.Tensor  # [F, L, d]
    windows: torch.Tensor  # long [F, 2w+1 (+1 phase)]
    context_music: torch.Tensor | None
    context_windows: torch.Tensor | None
    caption: str
    uncond: bool
    timestep: int
    noise_seed: int
    beats_dropped: bool = False  # beats unknown, text and music kept (train.beat_drop_rate)


def sample_row(stage: int, clips: ClipSource, gen: torch.Generator, *, frame_window: int, clip_length: int,
               motion_frames: int, beat_window: int, uncond_rate: float, num_timesteps: int,
               beat_phase_bins: int = 0, beat_drop_rate: float = 0.0) -> Row:
    """Draw one example of `stage` with `gen` (see the module docstring)."""
    for _ in range(MAX_DRAWS):
        clip = clips[_randint(gen, 0, len(clips))]
        if stage == 1:
            picked = _stage1_frames(clip, gen, frame_window)
        else:
            picked = _stage2_frames(clip, gen, clip_length, motion_frames)
        if picked is not None:
            break
    else:
        raise ValueError(
            f"stage {stage}: drew {MAX_DRAWS} clips and none was long enough (stage 1 needs 2 frames, stage 2 "
            f"K + M = {clip_length + motion_frames}); prepare longer clips or lower data.clip_length."
        )
    ref, start, length, m = picked
    uncond = bool(torch.rand((), generator=gen) < uncond_rate)
    timestep = _randint(gen, 0, num_timesteps)
    noise_seed = _randint(gen, 0, 2**62)
    # Drawn last and only when asked for, so rate 0 leaves every other draw (and old runs' rows) as it was.
    beats_dropped = bool(torch.rand((), generator=gen) < beat_drop_rate) and not uncond if beat_drop_rate > 0 else False
    beats = clip.beats[None].float()
    if stage == 1:
        # Single frames: the temporal modules are frozen identities here; they get the unconditional
        # inputs (zero music, unknown beats), which need no music at all.
        music = torch.zeros(1, *clip.music.shape[1:])
        windows = unknown_beats(1, 1, beat_window, beat_phase_bins)[0]
        context = context_music = context_windows = None
    else:
        music = clip.music[start : start + length].float()
        windows = beat_windows(beats, start, length, beat_window, beat_phase_bins)[0]
        context = clip.frames[start - m : start] if m else None
        context_music = clip.music[start - m : start].float() if m else None
        context_windows = beat_windows(beats, start - m, m, beat_window, beat_phase_bins)[0] if m else None
    return Row(
        reference=clip.frames[ref], mask=clip.masks[ref].float(), frames=clip.frames[start : start + length],
        context=context, music=music, windows=windows, context_music=context_music, context_windows=context_windows,
        caption=clip.caption, uncond=uncond, timestep=timestep, noise_seed=noise_seed, beats_dropped=beats_dropped,
    )


def set_beat_phase_bins(pipe: MuseDancePipeline, bins: int) -> bool:
    """Give `pipe` the beat encoding `bins` (UNetConfig.beat_phase_bins); True when that changed it.

    The beat encoder is a stage-2 module (stage 1 leaves it as built), so a stage-1 export can start
    stage 2 with another encoding: a fresh encoder (drawn from torch's global generator) replaces the
    old one, on its device and dtype. The same encoding as the base's keeps the base's encoder.
    """
    if pipe.config.unet.beat_phase_bins == bins:
        return False
    unet_config = dataclasses.replace(pipe.config.unet, beat_phase_bins=bins)  # checked like any config
    weight = pipe.unet.beat_encoder.embedding.weight
    pipe.unet.beat_encoder = BeatEncoder(unet_config.beat_dim, unet_config.beat_window, bins).to(
        weight.device, weight.dtype)
    pipe.config.unet = unet_config
    return True


def set_temporal_ff_mult(pipe: MuseDancePipeline, mult: int) -> bool:
    """Give the music and beat modules feed-forward layers `mult` times their width (UNetConfig.temporal_ff_mult);
    True when that changed them.

    Like `set_beat_phase_bins`: a stage-1 export can start stage 2 with the lean configuration; the new layers
    are fresh (drawn from torch's global generator), on the old ones' device and dtype, and the modules stay the
    identity they are built as until stage 2 trains them. The same multiplier as the base's keeps its layers.
    """
    if pipe.config.unet.temporal_ff_mult == mult:
        return False
    unet_config = dataclasses.replace(pipe.config.unet, temporal_ff_mult=mult)  # checked like any config
    for module in pipe.unet.conditioned_modules().values():
        weight = module.ff_norm.weight
        module.ff = FeedForward(weight.shape[0], mult=mult, dropout=unet_config.temporal_dropout,
                                activation_fn="geglu").to(weight.device, weight.dtype)
    pipe.config.unet = unet_config
    return True


def _stage1_frames(clip: PreparedClip, gen: torch.Generator, w: int) -> tuple[int, int, int, int] | None:
    """Reference i in [w, N-w) and target j in [i-w, i+w] (within the clip), j != i."""
    n = clip.num_frames
    if n < 2:
        return None
    i = _randint(gen, w, n - w) if n > 2 * w else _randint(gen, 0, n)
    lo, hi = max(0, i - w), min(n - 1, i + w)
    j = _randint(gen, lo, hi)  # [lo, hi): shift past i so that j covers [lo, hi] without i
    j = j + 1 if j >= i else j
    return i, j, 1, 0


def _stage2_frames(clip: PreparedClip, gen: torch.Generator, k: int, m: int) -> tuple[int, int, int, int] | None:
    """Clip start s in [M, N-K] (so M true previous frames exist); the reference is any frame of the video."""
    n = clip.num_frames
    if n < k + m:
        return None
    start = _randint(gen, m, n - k + 1)
    return _randint(gen, 0, n), start, k, m


def motion_weights(latents: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-element loss weights of clips [B, F, ...]: 1 + weight * |x - mean over frames| / its clip mean,
    scaled so that each clip's weights average 1 (the loss keeps its scale; only where it falls changes)."""
    dev = (latents - latents.mean(dim=1, keepdim=True)).abs()
    dims = tuple(range(1, latents.ndim))
    w = 1.0 + weight * dev / dev.mean(dim=dims, keepdim=True).clamp_min(1e-8)
    return w / w.mean(dim=dims, keepdim=True)


def velocity_loss(pred: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """MSE between the frame-to-frame differences of predicted and true noise, clips [B, F, ...].

    The predicted clean clip is x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) at every frame alike, so its frame
    differences are off by sqrt((1 - a) / a) times these: the velocity error, weighted over timesteps as
    the plain epsilon loss weights the clean clip's error."""
    if pred.shape[1] < 2:
        return pred.float().sum() * 0.0
    return F.mse_loss(pred.float().diff(dim=1), noise.float().diff(dim=1))


class StageModel(nn.Module):
    """The trained networks of one stage and the loss of one batch; Accelerate wraps this one module.

    Holds the UNet, ReferenceNet and F_m (the VAE and text encoder stay outside: they are frozen and
    only prepare inputs). Stage 1 trains the UNet's spatial layers, the ReferenceNet and F_m; stage 2
    only the music, beat and motion modules (`is_temporal_parameter`).
    """

    def __init__(self, pipe: MuseDancePipeline, stage: int,
                 temporal_modules: tuple[str, ...] = tuple(TEMPORAL_GROUPS), motion_loss_weight: float = 0.0,
                 velocity_loss_weight: float = 0.0) -> None:
        super().__init__()
        self.motion_loss_weight = motion_loss_weight
        self.velocity_loss_weight = velocity_loss_weight
        self.stage = stage
        unknown = set(temporal_modules) - set(TEMPORAL_GROUPS)
        if unknown:
            raise ValueError(f"temporal modules {sorted(unknown)} do not exist; choose from {list(TEMPORAL_GROUPS)}.")
        # Stage 2 trains these; a module left out keeps the weights it starts with (the identity, from a
        # stage-1 export), which is the model without that module: the ablations of the paper's Table 4.
        self.trained_groups = {g for m in temporal_modules for g in TEMPORAL_GROUPS[m]}
        self.unet = pipe.unet
        self.reference_net = pipe.reference_net
        self.mask_encoder = pipe.mask_encoder
        self.bank = pipe.bank
        self.noise_scheduler = training_scheduler(pipe.config)
        for name, p in self.named_parameters():
            p.requires_grad_(self._trains(name))

    def _trains(self, name: str) -> bool:
        temporal = name.startswith("unet.") and is_temporal_parameter(name)
        if self.stage == 1:
            return not temporal
        return temporal and not self.trained_groups.isdisjoint(name.split("."))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def after_micro_step(self) -> None:
        """Empty the reference bank, which a batch fills for its backward pass."""
        self.bank.clear()

    def train(self, mode: bool = True) -> "StageModel":
        """Dropout only where parameters learn: stage 1 everything but the temporal modules, stage 2 only those."""
        super().train(False)
        if not mode:
            return self
        for name, module in self.named_modules():
            if self.stage == 2 and name.startswith("unet.") and is_temporal_parameter(name):
                module.train(True)
            elif self.stage == 1 and not is_temporal_parameter(name):
                module.training = True
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Epsilon-prediction MSE of one batch (see `Batch` in trainer.train for the keys)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.stage == 1):
            tokens = reference_features(self.reference_net, self.mask_encoder, self.bank, batch["ref_latent"],
                                        batch["mask"], batch["ref_text"])
        # Filled until the next batch: gradient checkpointing recomputes the UNet's attention in the
        # backward pass, and that must read the same reference tokens.
        self.bank.fill(tokens, 1, keep=batch["keep"])
        context = None
        if "context_latents" in batch:
            context = motion_context(self.unet, batch["context_latents"], batch["text"], batch["context_music"],
                                     batch["context_windows"])
        latents, noise, t = batch["latents"], batch["noise"], batch["timesteps"]
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        pred = self.unet(noisy, t, batch["text"], batch["music"], batch["windows"], motion_context=context)
        if self.stage == 1 or not self.motion_loss_weight:
            loss = F.mse_loss(pred.float(), noise.float())
        else:
            loss = F.mse_loss(pred.float(), noise.float(), reduction="none").mul(
                motion_weights(latents, self.motion_loss_weight)).mean()
        if self.stage == 2 and self.velocity_loss_weight:
            loss = loss + self.velocity_loss_weight * velocity_loss(pred, noise)
        return loss
