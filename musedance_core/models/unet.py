"""The MuseDance denoising UNet: Stable Diffusion 1.5's UNet with music, beat and motion modules in every slot.

Spatial layers are diffusers' own building blocks (`ResnetBlock2D`, `Transformer2DModel`,
`Downsample2D`, `Upsample2D`) under exactly the parameter names of `UNet2DConditionModel`, so an
SD1.5 UNet state dict loads by name; the motion modules carry the names of diffusers' `MotionAdapter`
(`down_blocks.0.motion_modules.0...`). A "slot" is one (resnet, spatial transformer) pair; after each
one, in this order, run `music_modules[i]`, `beat_modules[i]`, `motion_modules[i]` (paper section 3.3).

Frames are folded into the batch: the UNet takes [B, F, C, h, w] and runs its 2D layers on B*F
images (b outer). The forward has no data-dependent Python control flow and was traced with
`torch.compile(fullgraph=True)` (tests/test_compile.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import UNetConfig
from .attention import KeysValues, SharedKeysValuesProcessor, check_plain, project_keys_values, uniform_rows
from .temporal import BeatEncoder, ConditionedTemporalModule, MotionModule

MotionContext = dict[str, torch.Tensor]
"""Hidden states that entered each motion module for the M context frames, keyed by module name."""


@dataclass
class ClipConditions:
    """A clip's conditions in the form every UNet step uses them, made once by `MuseDanceUNet.clip_conditions`.

    keys_values: the keys and values of every cross-attention, by layer name: the spatial layers' of the
    text, one set per video (`down_blocks.0.attentions.0.transformer_blocks.0.attn2`), and the music and
    beat modules' per frame (`down_blocks.0.music_modules.0`, `...beat_modules.0`); frames: F. The
    denoising steps of a clip all see the same text, music and beats, so their projections are made once
    per clip.
    """

    keys_values: dict[str, KeysValues]
    frames: int

    def rows(self, first: int, end: int) -> "ClipConditions":
        """The conditions of videos first..end-1 of the batch."""
        def part(name: str, projected: KeysValues) -> KeysValues:
            per_frame = ".music_modules." in name or ".beat_modules." in name
            return projected.rows(first * self.frames, end * self.frames) if per_frame else projected.rows(first, end)

        return ClipConditions({name: part(name, kv) for name, kv in self.keys_values.items()}, self.frames)


class _Slots(nn.Module):
    """Resnets, spatial transformers and the three temporal module lists of one down/mid/up block."""

    def __init__(self, channels: int, num_slots: int, has_attention: bool, config: UNetConfig) -> None:
        super().__init__()
        self.has_attention = has_attention
        if has_attention:
            heads = config.num_attention_heads
            self.attentions = nn.ModuleList(
                Transformer2DModel(
                    heads,
                    channels // heads,
                    in_channels=channels,
                    num_layers=1,
                    cross_attention_dim=config.cross_attention_dim,
                    norm_num_groups=config.norm_num_groups,
                    use_linear_projection=False,
                )
                for _ in range(num_slots)
            )
        temporal = dict(
            num_heads=config.temporal_num_attention_heads,
            norm_num_groups=config.norm_num_groups,
            max_seq_length=config.temporal_max_seq_length,
            dropout=config.temporal_dropout,
        )
        ff_mult = config.temporal_ff_mult
        self.music_modules = nn.ModuleList(
            ConditionedTemporalModule(channels, config.music_dim, **temporal, ff_mult=ff_mult) for _ in range(num_slots)
        )
        self.beat_modules = nn.ModuleList(
            ConditionedTemporalModule(channels, config.beat_dim, **temporal, ff_mult=ff_mult) for _ in range(num_slots)
        )
        self.motion_modules = nn.ModuleList(MotionModule(channels, **temporal) for _ in range(num_slots))


def _resnet(in_channels: int, out_channels: int, temb_channels: int, config: UNetConfig) -> ResnetBlock2D:
    return ResnetBlock2D(
        in_channels=in_channels,
        out_channels=out_channels,
        temb_channels=temb_channels,
        eps=config.norm_eps,
        groups=config.norm_num_groups,
        non_linearity="swish",
    )


class DownBlock(_Slots):
    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, has_attention: bool,
                 add_downsample: bool, config: UNetConfig) -> None:
        super().__init__(out_channels, config.layers_per_block, has_attention, config)
        self.resnets = nn.ModuleList(
            _resnet(in_channels if i == 0 else out_channels, out_channels, temb_channels, config)
            for i in range(config.layers_per_block)
        )
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=1, name="op")])
            if add_downsample
            else None
        )


class MidBlock(_Slots):
    """resnets[0], then for each slot: attention, temporal modules, resnets[i + 1] (diffusers' order)."""

    def __init__(self, channels: int, temb_channels: int, config: UNetConfig) -> None:
        super().__init__(channels, 1, True, config)
        self.resnets = nn.ModuleList(_resnet(channels, channels, temb_channels, config) for _ in range(2))


class UpBlock(_Slots):
    def __init__(self, in_channels: int, prev_output_channels: int, out_channels: int, temb_channels: int,
                 has_attention: bool, add_upsample: bool, config: UNetConfig) -> None:
        num_slots = config.layers_per_block + 1
        super().__init__(out_channels, num_slots, has_attention, config)
        resnets = []
        for i in range(num_slots):
            skip_channels = in_channels if i == num_slots - 1 else out_channels
            resnet_in = prev_output_channels if i == 0 else out_channels
            resnets.append(_resnet(resnet_in + skip_channels, out_channels, temb_channels, config))
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = (
            nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)]) if add_upsample else None
        )


class MuseDanceUNet(nn.Module):
    """Denoising UNet over a clip of frames, conditioned on text, per-frame music tokens and beats."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.block_out_channels
        temb_channels = channels[0] * 4
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels, act_fn="silu")
        self.beat_encoder = BeatEncoder(config.beat_dim, config.beat_window, config.beat_phase_bins)

        self.down_blocks = nn.ModuleList()
        out_ch = channels[0]
        for i, kind in enumerate(config.down_block_types):
            in_ch, out_ch = out_ch, channels[i]
            self.down_blocks.append(
                DownBlock(in_ch, out_ch, temb_channels, kind == "CrossAttnDownBlock2D",
                          add_downsample=i < len(channels) - 1, config=config)
            )
        self.mid_block = MidBlock(channels[-1], temb_channels, config)

        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(channels))
        out_ch = reversed_channels[0]
        for i, kind in enumerate(config.up_block_types):
            prev_ch, out_ch = out_ch, reversed_channels[i]
            in_ch = reversed_channels[min(i + 1, len(channels) - 1)]
            self.up_blocks.append(
                UpBlock(in_ch, prev_ch, out_ch, temb_channels, kind == "CrossAttnUpBlock2D",
                        add_upsample=i < len(channels) - 1, config=config)
            )
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, channels[0], eps=config.norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, kernel_size=3, padding=1)
        self.gradient_checkpointing = False
        # Every clip_conditions call (each training step, each motion context) reads these: found once here.
        self._text_layers = {name: module for name, module in self.named_modules()
                             if isinstance(module, Attention) and name.endswith(".attn2")
                             and not is_temporal_parameter(name)}
        self._conditioned = {name: module for name, module in self.named_modules()
                             if isinstance(module, ConditionedTemporalModule)}
        for layer in self._text_layers.values():
            check_plain(layer)
            layer.set_processor(SharedKeysValuesProcessor())

    # -- forward ----------------------------------------------------------------------------------
    def _run(self, fn: Callable[..., torch.Tensor], *args) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _slot(self, block: _Slots, prefix: str, i: int, h: torch.Tensor, cond: ClipConditions, frames: int,
              context: MotionContext | None, record: MotionContext | None) -> torch.Tensor:
        """Spatial transformer (if any) then music, beat and motion modules of slot `i`."""
        if block.has_attention:
            text = cond.keys_values[f"{prefix}.attentions.{i}.transformer_blocks.0.attn2"]
            h = self._run(lambda x: block.attentions[i](x, encoder_hidden_states=text, return_dict=False)[0], h)
        h = self._run(block.music_modules[i], h, cond.keys_values[f"{prefix}.music_modules.{i}"], frames)
        h = self._run(block.beat_modules[i], h, cond.keys_values[f"{prefix}.beat_modules.{i}"], frames)
        key = f"{prefix}.motion_modules.{i}"
        if record is not None:
            record[key] = h
        ctx = context.get(key) if context is not None else None
        return self._run(block.motion_modules[i], h, frames, ctx)

    def conditioned_modules(self) -> dict[str, ConditionedTemporalModule]:
        """The music and beat modules by name (`down_blocks.0.music_modules.0`, ...)."""
        return dict(self._conditioned)

    def text_attention_layers(self) -> dict[str, Attention]:
        """The spatial transformers' cross-attention layers (`...transformer_blocks.0.attn2`) by name."""
        return dict(self._text_layers)

    def clip_conditions(self, encoder_hidden_states: torch.Tensor, music_tokens: torch.Tensor,
                        beat_windows: torch.Tensor, dtype: torch.dtype | None = None,
                        find_uniform: bool = True) -> ClipConditions:
        """The conditions of a clip as `forward` uses them (its arguments of the same names), in `dtype` (default:
        the UNet's).

        Pass the result as `conditions=` to every step of the clip: the keys and values of every cross-attention
        are then projected once, not once per step. find_uniform (without gradients only): mark the rows of
        all-zero music tokens (guidance's unconditional row), whose music attention then does not run.
        """
        dtype = dtype or self.conv_in.weight.dtype
        frames = music_tokens.shape[1]
        music = music_tokens.to(dtype).flatten(0, 1)
        beat = self.beat_encoder(beat_windows).to(dtype)
        text = encoder_hidden_states.to(dtype)
        keys_values = {name: project_keys_values(layer, text) for name, layer in self._text_layers.items()}
        music_uniform = uniform_rows(music) if find_uniform and not torch.is_grad_enabled() else None
        for name, module in self._conditioned.items():
            keys_values[name] = module.project(music if ".music_modules." in name else beat)
            if ".music_modules." in name:
                keys_values[name].uniform = music_uniform
        return ClipConditions(keys_values, frames)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        music_tokens: torch.Tensor | None = None,
        beat_windows: torch.Tensor | None = None,
        motion_context: MotionContext | None = None,
        return_motion_context: bool = False,
        conditions: ClipConditions | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, MotionContext]:
        """Predict noise for a clip.

        sample [B, F, C, h, w]; timestep scalar or [B]; encoder_hidden_states (text) [B, T, D];
        music_tokens [B, F, L, music_dim]; beat_windows [B, F, 2w+1 (+1)] from `temporal.beat_windows`;
        or, instead of those three, `conditions` from `clip_conditions` (the same for every step of a clip);
        motion_context from an earlier call with `return_motion_context=True` on the M previous frames.
        Returns the prediction [B, F, C, h, w], and with `return_motion_context` also the hidden states
        that entered each motion module (the context for the next clip).
        """
        batch, frames = sample.shape[:2]
        x = sample.flatten(0, 1)
        dtype = x.dtype
        timestep = torch.as_tensor(timestep, device=x.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        temb = self.time_embedding(self.time_proj(timestep).to(dtype)).repeat_interleave(frames, dim=0)
        raw = (encoder_hidden_states, music_tokens, beat_windows)
        if conditions is None:
            if any(arg is None for arg in raw):
                raise ValueError("MuseDanceUNet: give encoder_hidden_states, music_tokens and beat_windows, or conditions.")
            conditions = self.clip_conditions(*raw, dtype=dtype, find_uniform=False)
        elif any(arg is not None for arg in raw) or conditions.frames != frames:
            raise ValueError(f"MuseDanceUNet: conditions made for {conditions.frames} frames replace the text, music "
                             f"and beats of a clip of {frames}; give one or the other.")
        cond = conditions
        record: MotionContext | None = {} if return_motion_context else None

        h = self.conv_in(x)
        skips = [h]
        for b, block in enumerate(self.down_blocks):
            for i, resnet in enumerate(block.resnets):
                h = self._run(resnet, h, temb)
                h = self._slot(block, f"down_blocks.{b}", i, h, cond, frames, motion_context, record)
                skips.append(h)
            if block.downsamplers is not None:
                h = block.downsamplers[0](h)
                skips.append(h)

        mid = self.mid_block
        h = self._run(mid.resnets[0], h, temb)
        h = self._slot(mid, "mid_block", 0, h, cond, frames, motion_context, record)
        h = self._run(mid.resnets[1], h, temb)

        for b, block in enumerate(self.up_blocks):
            for i, resnet in enumerate(block.resnets):
                h = self._run(resnet, torch.cat([h, skips.pop()], dim=1), temb)
                h = self._slot(block, f"up_blocks.{b}", i, h, cond, frames, motion_context, record)
            if block.upsamplers is not None:
                # Upsample to the size of the skip it meets next, so odd latent sizes work (as diffusers does).
                h = block.upsamplers[0](h, output_size=skips[-1].shape[2:])

        h = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        out = h.reshape(batch, frames, *h.shape[1:])
        if return_motion_context:
            return out, record
        return out


# The temporal modules by the name the paper gives them, and the UNet attributes each one owns.
TEMPORAL_GROUPS = {"music": ("music_modules",), "beat": ("beat_modules", "beat_encoder"), "motion": ("motion_modules",)}
TEMPORAL_MODULES = tuple(attr for attrs in TEMPORAL_GROUPS.values() for attr in attrs)
_TEMPORAL = frozenset(TEMPORAL_MODULES)


def is_temporal_parameter(name: str) -> bool:
    """True for the names (parameters or modules) of the music, beat and motion modules and the beat encoder,
    the parts trained in stage 2 only."""
    return not _TEMPORAL.isdisjoint(name.split("."))
