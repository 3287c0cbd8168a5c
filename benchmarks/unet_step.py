"""One denoising step of MuseDance and of diffusers' AnimateDiff at the same size, for the speed benchmarks.

Both UNets share the spatial layout of `UNetConfig` (SD1.5's at full size). MuseDance's step is what
the sampler runs for every step of a clip: the guided denoiser's rows over K frames, with the reference
bank filled once per video and the motion context of the M frames before the clip made once per clip.
AnimateDiff's is `UNetMotionModel` (the same spatial layers plus a MotionAdapter's motion modules, with
its mid-block module) on the same rows and K frames. Weights are random: the benchmarks count and time
work, not quality; build on the meta device to count without memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from diffusers import UNetMotionModel, UNet2DConditionModel

from musedance_core.config import UNetConfig
from musedance_core.models.reference import ReferenceBank, attach_reference_reader, attach_reference_writer
from musedance_core.models.unet import MuseDanceUNet
from musedance_core.sampling.conditioning import frame_beats, motion_context
from musedance_core.sampling.guidance import GuidedDenoiser

MUSIC_TOKENS = 62  # per frame from a full-size AST: 2 global + 12 frequency patches x 5 columns
TEXT_TOKENS = 77


@dataclass(frozen=True)
class StepSize:
    """What one step works on: latent side, frames K, context frames M and the guidance rows."""

    height: int = 640
    width: int = 640
    frames: int = 48
    context: int = 2
    beat_guidance: bool = False  # a third row, the beats' own (guidance 3.5, beat guidance 5)

    @property
    def rows(self) -> int:
        return 3 if self.beat_guidance else 2

    def describe(self) -> str:
        return (f"{self.width}x{self.height}, K = {self.frames} + M = {self.context}, {self.rows} guidance rows")


def reduced_config(ff_mult: int = 4) -> UNetConfig:
    """The CPU comparison's UNet: SD1.5's layout at widths 64/128/256/256 (8 heads, 32 groups)."""
    return UNetConfig(block_out_channels=(64, 128, 256, 256), temporal_ff_mult=ff_mult)


class MuseDanceStep:
    """MuseDance's UNet, ReferenceNet bank and guided denoiser, ready to run steps of one clip."""

    def __init__(self, config: UNetConfig, size: StepSize, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, seed: int = 0, one_row_at_a_time: bool = False) -> None:
        self.size = size
        torch.manual_seed(seed)
        with torch.device(device):
            self.unet = MuseDanceUNet(config).to(dtype).eval().requires_grad_(False)
            reference_net = UNet2DConditionModel(**config.diffusers_kwargs()).to(dtype).eval().requires_grad_(False)
        for module in self.unet.modules():  # the temporal modules' output projections start at zero: give them work
            if hasattr(module, "proj_out") and isinstance(module.proj_out, torch.nn.Linear):
                torch.nn.init.normal_(module.proj_out.weight, std=0.02)
        self.bank = ReferenceBank()
        attach_reference_writer(reference_net, self.bank)
        attach_reference_reader(self.unet, self.bank)
        h, w = size.height // 8, size.width // 8
        self.guide = GuidedDenoiser(self.unet, 3.5, 5.0 if size.beat_guidance else None,
                                    one_row_at_a_time=one_row_at_a_time, bank=self.bank)
        rows = self.guide.rows
        kw = dict(device=device, dtype=dtype)
        with torch.no_grad():
            reference_net(torch.randn(1, 4, h, w, **kw), 0, encoder_hidden_states=torch.randn(1, TEXT_TOKENS,
                          config.cross_attention_dim, **kw))
        tokens = dict(self.bank.tokens)
        self.bank.fill(tokens, rows, keep=self.guide.reference_keep())
        self.text = self.guide.text_rows(torch.randn(1, TEXT_TOKENS, config.cross_attention_dim, **kw))
        beats = (torch.arange(size.context + size.frames, device=device) % 6 == 0).float()[None]
        music = torch.randn(1, size.context + size.frames, MUSIC_TOKENS, config.music_dim, **kw)
        self.music, self.windows = self.guide.music_rows(music[:, size.context:],
                                                         frame_beats(config, beats, size.context, size.frames))
        self.context = None
        if size.context:
            ctx_music, ctx_windows = self.guide.music_rows(music[:, :size.context],
                                                           frame_beats(config, beats, 0, size.context))
            latents = torch.randn(rows, size.context, 4, h, w, **kw)
            self.context = motion_context(self.unet, latents, self.text, ctx_music, ctx_windows)
        self.latents = torch.randn(1, size.frames, 4, h, w, **kw)
        with torch.no_grad():  # once per clip, as the sampler does
            if torch.device(device).type != "meta":
                self.conditions = self.guide.clip_conditions(self.text, self.music, self.windows)
            else:  # no values to look at: the unconditional row's music is zero, as the sampler makes it
                self.conditions = self.unet.clip_conditions(self.text, self.music, self.windows, find_uniform=False)
                zero = tuple(bool(u) for u in self.guide.unconditional.tolist() for _ in range(size.frames))
                for name, projected in self.conditions.keys_values.items():
                    if ".music_modules." in name:
                        projected.uniform = zero

    def compile(self) -> None:
        """Run the steps' UNet through torch.compile (inductor), as the sampler's compile_unet option does."""
        self.guide.unet = torch.compile(self.unet, dynamic=False)

    @torch.no_grad()
    def step(self, t: int = 500) -> torch.Tensor:
        return self.guide(self.latents, torch.tensor(t), self.conditions, context=self.context)


class AnimateDiffStep:
    """diffusers' UNetMotionModel at the same spatial layout, on the same rows and frames."""

    def __init__(self, config: UNetConfig, size: StepSize, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, seed: int = 0) -> None:
        torch.manual_seed(seed)
        kinds = {"CrossAttnDownBlock2D": "CrossAttnDownBlockMotion", "DownBlock2D": "DownBlockMotion",
                 "CrossAttnUpBlock2D": "CrossAttnUpBlockMotion", "UpBlock2D": "UpBlockMotion"}
        with torch.device(device):
            self.unet = UNetMotionModel(
                in_channels=config.in_channels, out_channels=config.out_channels,
                down_block_types=tuple(kinds[k] for k in config.down_block_types),
                up_block_types=tuple(kinds[k] for k in config.up_block_types),
                block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
                norm_num_groups=config.norm_num_groups, norm_eps=config.norm_eps,
                cross_attention_dim=config.cross_attention_dim, num_attention_heads=config.num_attention_heads,
                motion_max_seq_length=config.temporal_max_seq_length,
                motion_num_attention_heads=config.temporal_num_attention_heads, use_motion_mid_block=True,
            ).to(dtype).eval().requires_grad_(False)
        rows = size.rows
        kw = dict(device=device, dtype=dtype)
        self.latents = torch.randn(rows, 4, size.frames, size.height // 8, size.width // 8, **kw)
        # UNetMotionModel takes the text per frame (AnimateDiffPipeline repeats it so).
        text = torch.randn(rows, TEXT_TOKENS, config.cross_attention_dim, **kw)
        self.text = text.repeat_interleave(size.frames, dim=0)

    def compile(self) -> None:
        self.unet = torch.compile(self.unet, dynamic=False)

    @torch.no_grad()
    def step(self, t: int = 500) -> torch.Tensor:
        return self.unet(self.latents, torch.tensor(t), encoder_hidden_states=self.text).sample


def with_rows(size: StepSize, beat_guidance: bool) -> StepSize:
    return replace(size, beat_guidance=beat_guidance)
