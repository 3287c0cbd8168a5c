"""The three temporal modules of every UNet slot (paper section 3.3), in the order they run.

Shapes: the UNet folds frames into the batch, so every module takes hidden states [B*F, C, H, W]
(b outer, f inner) and returns the same shape. Each module ends in a zero-initialised output
projection and adds its result to its input, so a freshly built temporal stack is exactly the
identity and an SD1.5 UNet keeps its behaviour until the modules are trained.

1. `ConditionedTemporalModule` as the **music** module: each frame's spatial tokens cross-attend to
   that frame's music tokens [B*F, L, music_dim], then every spatial position self-attends across the
   F frames.
2. The same class as the **beat** module: cross-attention to the frame's beat tokens (see
   `BeatEncoder`), then temporal self-attention.
3. `MotionModule`, an AnimateDiff temporal transformer (diffusers' `AnimateDiffTransformer3D`, so the
   parameter names are those of diffusers' `MotionAdapter`) over concat(M context frames, F current
   frames), keeping the last F.

Every path here was checked to trace without graph breaks under `torch.compile(fullgraph=True)`
(tests/test_compile.py).
"""

from __future__ import annotations

import torch
from diffusers.models.attention import BasicTransformerBlock, FeedForward
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from .attention import KeysValues, attend_projected, check_plain, project_keys_values, self_attention

# Beat token ids: 0 = no beat on that frame, 1 = beat, 2 = unknown (outside the music, or dropped for
# classifier-free guidance). The optional phase column (see `beat_phase_ids`) holds ids from PHASE_OFFSET
# on, or UNKNOWN_BEAT.
NO_BEAT, BEAT, UNKNOWN_BEAT = 0, 1, 2
PHASE_OFFSET = 3


def beat_token_count(window: int, phase_bins: int = 0) -> int:
    """Beat ids per frame: the 2w+1 window, plus the phase column when phase_bins > 0."""
    return 2 * window + 1 + (1 if phase_bins else 0)


def unknown_beats(batch: int, length: int, window: int, phase_bins: int = 0, device=None) -> torch.Tensor:
    """Beat ids [batch, length, tokens] that say nothing (the unconditional input)."""
    return torch.full((batch, length, beat_token_count(window, phase_bins)), UNKNOWN_BEAT, dtype=torch.long,
                      device=device)


def beat_phase_ids(beats: torch.Tensor, phase_bins: int) -> torch.Tensor:
    """Each frame's place in the beat grid of a whole-song beat vector, as ids [B, N].

    The beat position of frame k is phi = j + (k - b_j) / (b_{j+1} - b_j) between beats b_j and b_{j+1}
    (frame numbers of the 1s in `beats`, counted from the song's first beat); before the first and after
    the last beat the nearest interval is extended. The id is PHASE_OFFSET + parity * P + bin, with
    bin = floor(P * frac(phi)) (bin 0 holds the beat frame itself) and parity = floor(phi) mod 2, so
    alternating beats (left and right, up and down) get different ids. A row with fewer than two beats
    has no grid: UNKNOWN_BEAT throughout.
    """
    if beats.ndim != 2:
        raise ValueError(f"beat_phase_ids: beats must be [batch, frames], got shape {tuple(beats.shape)}.")
    if phase_bins < 1:
        raise ValueError(f"beat_phase_ids: phase_bins must be at least 1, got {phase_bins}.")
    out = torch.full(beats.shape, UNKNOWN_BEAT, dtype=torch.long, device=beats.device)
    frames = torch.arange(beats.shape[1], device=beats.device, dtype=torch.float64)
    for row in range(beats.shape[0]):
        grid = torch.nonzero(beats[row] > 0.5).flatten().to(torch.float64)
        if grid.numel() < 2:
            continue
        j = (torch.searchsorted(grid, frames, right=True) - 1).clamp(0, grid.numel() - 2)
        phi = j + (frames - grid[j]) / (grid[j + 1] - grid[j])
        whole = torch.floor(phi)
        bins = torch.floor((phi - whole) * phase_bins).long().clamp(0, phase_bins - 1)
        out[row] = PHASE_OFFSET + torch.remainder(whole.long(), 2) * phase_bins + bins
    return out


def beat_windows(beats: torch.Tensor, start: int, length: int, window: int, phase_bins: int = 0) -> torch.Tensor:
    """Beat token ids [B, length, 2w+1 (+1)] for frames start..start+length-1 of a whole-song beat vector.

    `beats` is [B, N] with values 0 or 1 for every frame of the music. Frame k's window holds the ids of
    frames k-window..k+window; frames before the start or after the end of the music are UNKNOWN_BEAT.
    With phase_bins > 0 a last column holds frame k's `beat_phase_ids`. Neighbours and phases come from
    the whole song, not the clip, so clip boundaries see the true beats. The sampler and the trainer
    both call this, so the two cannot drift.
    """
    if beats.ndim != 2:
        raise ValueError(f"beat_windows: beats must be [batch, frames], got shape {tuple(beats.shape)}.")
    total = beats.shape[1]
    if start < 0 or length < 1 or start + length > total:
        raise ValueError(f"beat_windows: frames {start}..{start + length - 1} are outside the {total} beat frames.")
    padded = torch.full((beats.shape[0], total + 2 * window), UNKNOWN_BEAT, dtype=torch.long, device=beats.device)
    padded[:, window : window + total] = beats.round().long()
    # Frame start+i sits at padded index start+i+window; its window is padded[start+i : start+i+2w+1].
    windows = padded[:, start : start + length + 2 * window].unfold(1, 2 * window + 1, 1)
    if not phase_bins:
        return windows
    phase = beat_phase_ids(beats, phase_bins)[:, start : start + length, None]
    return torch.cat([windows, phase], dim=-1)


class BeatEncoder(nn.Module):
    """The paper's lookup embedding of the binary beat vector, one token per frame in a small window.

    With window w, frame k gets 2w+1 tokens: embedding(beat id of frame k+o) + offset_embedding(o). The
    beat module's cross-attention then sees where the nearby beats fall relative to the frame (with
    w=0 it is the paper's single per-frame embedding). With phase_bins P > 0 (not in the paper) frame k
    gets one more token, phase_embedding(its place in the beat interval, in P bins, and the beat's
    parity; see `beat_phase_ids`), which a window shorter than the beat period cannot tell. Shared by
    every beat module of the UNet.
    """

    def __init__(self, dim: int, window: int, phase_bins: int = 0) -> None:
        super().__init__()
        self.window = window
        self.phase_bins = phase_bins
        self.embedding = nn.Embedding(3, dim)
        self.offset_embedding = nn.Embedding(2 * window + 1, dim)
        if phase_bins:
            self.phase_embedding = nn.Embedding(2 * phase_bins + 1, dim)  # row 0: unknown

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, F, tokens] beat ids -> [B*F, tokens, dim] tokens."""
        span = 2 * self.window + 1
        expected = beat_token_count(self.window, self.phase_bins)
        if windows.shape[-1] != expected:
            phase = f" and a phase column ({self.phase_bins} bins)" if self.phase_bins else ""
            raise ValueError(
                f"BeatEncoder: expected {expected} beat ids per frame (window {self.window}{phase}), "
                f"got {windows.shape[-1]}; build them with beat_windows()."
            )
        tokens = self.embedding(windows[..., :span]) + self.offset_embedding.weight
        if self.phase_bins:
            phase = windows[..., span]
            rows = torch.where(phase == UNKNOWN_BEAT, torch.zeros_like(phase), phase - (PHASE_OFFSET - 1))
            tokens = torch.cat([tokens, self.phase_embedding(rows).unsqueeze(-2)], dim=-2)
        return tokens.flatten(0, 1)


class ConditionedTemporalModule(nn.Module):
    """Per-frame cross-attention to condition tokens, then self-attention across frames (music and beat modules)."""

    def __init__(
        self,
        channels: int,
        condition_dim: int,
        num_heads: int,
        norm_num_groups: int,
        max_seq_length: int,
        dropout: float = 0.0,
        ff_mult: int = 4,
    ) -> None:
        super().__init__()
        head_dim = channels // num_heads
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.cross_norm = nn.LayerNorm(channels)
        self.cross_attn = Attention(
            query_dim=channels,
            cross_attention_dim=condition_dim,
            heads=num_heads,
            dim_head=head_dim,
            dropout=dropout,
            processor=AttnProcessor2_0(),
        )
        self.temporal_norm = nn.LayerNorm(channels)
        self.pos_embed = SinusoidalPositionalEmbedding(channels, max_seq_length=max_seq_length)
        self.temporal_attn = Attention(
            query_dim=channels, heads=num_heads, dim_head=head_dim, dropout=dropout, processor=AttnProcessor2_0()
        )
        self.ff_norm = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, mult=ff_mult, dropout=dropout, activation_fn="geglu")
        self.proj_out = nn.Linear(channels, channels)
        check_plain(self.cross_attn)
        check_plain(self.temporal_attn)
        self.init_weights()

    def init_weights(self) -> None:
        """Zero the output projection: a fresh module adds nothing (also used when loading builds it empty)."""
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def project(self, condition: torch.Tensor) -> KeysValues:
        """The cross-attention's keys and values of condition tokens [B*F, L, D]: project once, reuse for every
        step that attends to the same tokens."""
        return project_keys_values(self.cross_attn, condition)

    def forward(self, hidden_states: torch.Tensor, condition: torch.Tensor | KeysValues, num_frames: int) -> torch.Tensor:
        """hidden_states [B*F, C, H, W]; condition: the tokens [B*F, L, D], or their projection by `project`."""
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        residual = hidden_states
        h = self.norm(hidden_states)
        h = h.permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)
        h = self.proj_in(h)
        # Each frame's tokens attend to that frame's condition tokens: [B*F, HW, C] x [B*F, L, D].
        if not isinstance(condition, KeysValues):
            condition = self.project(condition)
        h = h + attend_projected(self.cross_attn, self.cross_norm(h), condition)
        # (b f) n c -> (b n) f c: every spatial position attends across the frames.
        h = h.reshape(batch, num_frames, height * width, channels).transpose(1, 2)
        h = h.reshape(batch * height * width, num_frames, channels)
        h = h + self_attention(self.temporal_attn, self.pos_embed(self.temporal_norm(h)))
        h = h + self.ff(self.ff_norm(h))
        h = self.proj_out(h)
        # (b n) f c -> (b f) c h w, one copy.
        h = h.reshape(batch, height * width, num_frames, channels).permute(0, 2, 3, 1)
        return residual + h.reshape(batch_frames, channels, height, width)


class MotionModule(AnimateDiffTransformer3D):
    """AnimateDiff's temporal transformer, run over concat(M context frames, F current frames).

    The context is the hidden states that entered this same module when the UNet ran on the M
    previously generated frames (see `MuseDanceUNet`); the output keeps only the F current frames.
    The positional encoding covers `max_seq_length` >= F + M frames.
    """

    def __init__(self, channels: int, num_heads: int, norm_num_groups: int, max_seq_length: int, dropout: float = 0.0):
        super().__init__(
            num_attention_heads=num_heads,
            attention_head_dim=channels // num_heads,
            in_channels=channels,
            num_layers=1,
            dropout=dropout,
            norm_num_groups=norm_num_groups,
            cross_attention_dim=None,
            activation_fn="geglu",
            attention_bias=False,
            double_self_attention=True,
            positional_embeddings="sinusoidal",
            num_positional_embeddings=max_seq_length,
        )
        self.max_seq_length = max_seq_length
        self.init_weights()

    def init_weights(self) -> None:
        """Zero the output projection (AnimateDiff's zero-initialised proj_out): a fresh module is the identity."""
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(  # type: ignore[override]
        self, hidden_states: torch.Tensor, num_frames: int, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if context is None:
            return super().forward(hidden_states, num_frames=num_frames)
        batch = hidden_states.shape[0] // num_frames
        spatial = hidden_states.shape[1:]
        context_frames = context.shape[0] // batch
        if context_frames * batch != context.shape[0] or context.shape[1:] != spatial:
            raise ValueError(
                f"MotionModule: context {tuple(context.shape)} does not match {batch} videos of hidden "
                f"states {tuple(spatial)}."
            )
        total = num_frames + context_frames
        if total > self.max_seq_length:
            raise ValueError(
                f"MotionModule: {context_frames} context + {num_frames} frames exceed the positional "
                f"encoding length {self.max_seq_length}."
            )
        joined = torch.cat(
            [context.reshape(batch, context_frames, *spatial), hidden_states.reshape(batch, num_frames, *spatial)], dim=1
        )
        return self._forward_current(joined, context_frames)

    def _forward_current(self, joined: torch.Tensor, context_frames: int) -> torch.Tensor:
        """AnimateDiffTransformer3D's forward over joined [B, M + F, C, H, W], computed for the last F frames only.

        The context frames give keys and values: they go through the norm, the input projection and every
        layer but the last; in the last layer only the current frames' queries, feed-forward and output
        projection are computed, which is all the output keeps.
        """
        batch, total, channels, height, width = joined.shape
        h = self.norm(joined.transpose(1, 2))  # GroupNorm over [B, C, M + F, H, W]: statistics span all frames
        h = h.permute(0, 3, 4, 2, 1).reshape(batch * height * width, total, channels)
        h = self.proj_in(h)
        *earlier, last = self.transformer_blocks
        for block in earlier:
            h = block(h)
        h = _last_layer(last, h, context_frames)
        h = self.proj_out(h)
        frames = total - context_frames
        h = h.reshape(batch, height, width, frames, channels).permute(0, 3, 4, 1, 2)
        return (h + joined[:, context_frames:]).reshape(batch * frames, channels, height, width)


def _last_layer(block: BasicTransformerBlock, h: torch.Tensor, context_frames: int) -> torch.Tensor:
    """A motion module's transformer layer (layer norms, sinusoidal positions, two self-attentions, feed-forward)
    on h [N, M + F, C], returning only the last F positions; the first M serve as keys and values."""
    if block.norm_type != "layer_norm" or block.only_cross_attention or block.attn2 is None or block.pos_embed is None:
        raise ValueError("MotionModule: expected AnimateDiff's layer (layer norms, positions, two self-attentions).")
    h = h + block.attn1(block.pos_embed(block.norm1(h)))
    keys_values = block.pos_embed(block.norm2(h))
    h = h[:, context_frames:] + block.attn2(keys_values[:, context_frames:], encoder_hidden_states=keys_values)
    return h + block.ff(block.norm3(h))
