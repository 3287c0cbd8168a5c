"""Attention with keys and values projected ahead of time, for diffusers `Attention` layers.

A layer's keys and values depend only on what it attends to. Where that is fixed for many calls (the
reference tokens for a whole video, a clip's music and beat tokens for all of its denoising steps), they
are projected once with `project_keys_values` and each call projects only its queries
(`attend_projected`). The arithmetic is that of diffusers' `AttnProcessor2_0` for layers without
normalisations of their own (the layers MuseDance builds), so results agree up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


@dataclass
class KeysValues:
    """Projected keys and values [B, heads, L, head_dim] of one attention layer.

    uniform: None, or for each of the B rows whether all its L tokens were the same vector (an unconditional
    row's zero music, say): every query then gets that token's value, so its attention need not run.
    """

    keys: torch.Tensor
    values: torch.Tensor
    uniform: tuple[bool, ...] | None = None

    def rows(self, first: int, end: int) -> "KeysValues":
        uniform = None if self.uniform is None else self.uniform[first:end]
        return KeysValues(self.keys[first:end], self.values[first:end], uniform)


def uniform_rows(states: torch.Tensor) -> tuple[bool, ...]:
    """For each row of tokens [B, L, D], whether all L tokens are the same vector."""
    return tuple(bool(u) for u in (states == states[:, :1]).flatten(1).all(1).tolist())


def runs(flags: tuple[bool, ...]) -> list[tuple[int, int, bool]]:
    """(first, end, flag) of each run of equal neighbouring flags."""
    out, first = [], 0
    for row in range(1, len(flags) + 1):
        if row == len(flags) or flags[row] != flags[first]:
            out.append((first, row, flags[first]))
            first = row
    return out


def check_plain(attn: Attention) -> None:
    """Only layers without normalisations or residuals of their own take projected keys and values."""
    if (attn.spatial_norm is not None or attn.group_norm is not None or attn.norm_cross or attn.residual_connection
            or attn.norm_q is not None or attn.norm_k is not None):
        raise ValueError("projected keys and values need a plain attention layer (no norms, no residual connection).")


def _heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    batch, length, inner = x.shape
    return x.view(batch, length, attn.heads, inner // attn.heads).transpose(1, 2)


def project_keys_values(attn: Attention, states: torch.Tensor) -> KeysValues:
    """The keys and values `attn` computes from `states` [B, L, D]."""
    return KeysValues(_heads(attn, attn.to_k(states)), _heads(attn, attn.to_v(states)))


def self_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """`attn` as plain self-attention over x [B, N, C]."""
    return attend_projected(attn, x, project_keys_values(attn, x))


def attend_projected(attn: Attention, query_input: torch.Tensor, keys_values: KeysValues,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """`attn`'s output for queries from `query_input` [B, N, C] over projected keys and values [B, heads, L, d]."""
    if keys_values.uniform is not None and any(keys_values.uniform) and mask is None:
        parts = []
        for first, end, uniform in runs(keys_values.uniform):
            if uniform:  # softmax over equal keys: every query gets the one value
                value = _out(attn, keys_values.values[first:end, :, :1].transpose(1, 2).flatten(2))
                parts.append(value.expand(end - first, query_input.shape[1], -1))
            else:
                parts.append(attend_projected(attn, query_input[first:end], keys_values.rows(first, end)))
        return torch.cat(parts)
    query = _heads(attn, attn.to_q(query_input))
    out = F.scaled_dot_product_attention(query, keys_values.keys, keys_values.values, attn_mask=mask,
                                         dropout_p=0.0, is_causal=False)
    return _out(attn, out.transpose(1, 2).flatten(2).to(query.dtype))


def _out(attn: Attention, heads_joined: torch.Tensor) -> torch.Tensor:
    out = attn.to_out[1](attn.to_out[0](heads_joined))
    return out if attn.rescale_output_factor == 1.0 else out / attn.rescale_output_factor


class SharedKeysValuesProcessor:
    """Cross-attention for frames folded into the batch that all attend to one set of tokens per video.

    Given projected keys and values of B videos ([B, heads, L, d]) as `encoder_hidden_states` and hidden
    states of B*F frames (b outer), each video's F frames' queries attend to its keys and values as one
    sequence: no per-frame copy or projection of the tokens (each query's attention is its own, so this is
    the same arithmetic). Given tokens instead, it is plain cross-attention.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | KeysValues | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError("SharedKeysValuesProcessor takes [B, N, C] hidden states and no attention mask.")
        if not isinstance(encoder_hidden_states, KeysValues):
            states = hidden_states if encoder_hidden_states is None else encoder_hidden_states
            return attend_projected(attn, hidden_states, project_keys_values(attn, states))
        videos = encoder_hidden_states.keys.shape[0]
        batch_frames, tokens, channels = hidden_states.shape
        if batch_frames % videos:
            raise ValueError(f"keys and values of {videos} videos do not divide a batch of {batch_frames} frames.")
        out = attend_projected(attn, hidden_states.reshape(videos, -1, channels), encoder_hidden_states)
        return out.reshape(batch_frames, tokens, -1)
