"""ReferenceNet feature sharing through diffusers attention processors.

The ReferenceNet (a plain `UNet2DConditionModel`) runs once on the clean reference latent. A write
processor on each of its spatial self-attention layers (`...attn1`) stores the layer's input, the
norm1 output of shape [B, N, C], in a `ReferenceBank` under the layer's module name. The denoising
UNet's layer of the same name reads it back: queries come from the frame tokens, keys and values from
[frame tokens, reference tokens]. That is exactly the paper's "concatenate along W, self-attend, keep
the first half" (the second half's queries are never needed), at half the query cost.

No `forward` is replaced: both processors are ordinary `Attention` processors, so diffusers' blocks
run unchanged. The hot path was checked with `torch.compile(fullgraph=True)` (tests/test_compile.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from .unet import is_temporal_parameter


class ReferenceBank:
    """Reference tokens per self-attention layer, plus which batch rows may see them.

    `tokens[name]` is [B, N, C] for the B videos of the batch (not per frame). `keep` is None (every
    row sees the reference) or a bool tensor [B]: rows set to False attend only to their own tokens,
    which is how classifier-free guidance drops the reference in its unconditional half inside one
    batched forward.
    """

    def __init__(self) -> None:
        self.tokens: dict[str, torch.Tensor] = {}
        self.keep: torch.Tensor | None = None

    def clear(self) -> None:
        self.tokens.clear()
        self.keep = None

    def __len__(self) -> int:
        return len(self.tokens)

    def fill(self, tokens: dict[str, torch.Tensor], repeats: int = 1, keep: torch.Tensor | None = None) -> None:
        """Load encoded reference tokens ([B, N, C] per layer), tiled `repeats` times along the batch.

        For classifier-free guidance: `fill(tokens, 2, keep=torch.tensor([False, True]))` gives the
        unconditional row no reference and the conditional row the reference, in one batch.
        """
        self.tokens = {name: t.repeat(repeats, 1, 1) for name, t in tokens.items()}
        self.keep = keep


def _attend(attn: Attention, query_input: torch.Tensor, kv_input: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Multi-head scaled dot-product attention with `attn`'s projections; inputs are [B, N, C]."""
    batch = query_input.shape[0]
    heads = attn.heads
    q = attn.to_q(query_input)
    k = attn.to_k(kv_input)
    v = attn.to_v(kv_input)
    head_dim = q.shape[-1] // heads
    q = q.view(batch, -1, heads, head_dim).transpose(1, 2)
    k = k.view(batch, -1, heads, head_dim).transpose(1, 2)
    v = v.view(batch, -1, heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(q.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    return out / attn.rescale_output_factor


def _check_self_attention(attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states) -> None:
    if (
        encoder_hidden_states is not None
        or hidden_states.ndim != 3
        or attn.spatial_norm is not None
        or attn.group_norm is not None
        or attn.residual_connection
    ):
        raise ValueError(
            "reference processors belong on spatial self-attention layers (attn1) that receive [B, N, C] "
            "tokens and no encoder states; check which modules they were attached to."
        )


class _ReferenceProcessor:
    """A self-attention processor bound to one layer name and a shared bank."""

    def __init__(self, name: str, bank: ReferenceBank) -> None:
        self.name = name
        self.bank = bank


class ReferenceWriteProcessor(_ReferenceProcessor):
    """On the ReferenceNet: store this layer's input tokens, then do ordinary self-attention."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_self_attention(attn, hidden_states, encoder_hidden_states)
        # Overwrite, never append: re-running the ReferenceNet (gradient checkpointing, a new video)
        # must not grow the bank.
        self.bank.tokens[self.name] = hidden_states
        return _attend(attn, hidden_states, hidden_states, None)


class ReferenceReadProcessor(_ReferenceProcessor):
    """On the denoising UNet: self-attention whose keys and values also include the reference tokens.

    Frames are folded into the batch ([B*F, N, C], b outer), so each video's reference tokens are
    repeated over its F frames. With an empty bank this is plain self-attention, so a UNet without a
    reference behaves exactly like Stable Diffusion.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_self_attention(attn, hidden_states, encoder_hidden_states)
        ref = self.bank.tokens.get(self.name)
        if ref is None:
            return _attend(attn, hidden_states, hidden_states, None)
        batch_frames = hidden_states.shape[0]
        if batch_frames % ref.shape[0]:
            raise ValueError(
                f"reference bank for {self.name} holds {ref.shape[0]} videos but the UNet got "
                f"{batch_frames} frames; the batch must be videos x frames."
            )
        frames = batch_frames // ref.shape[0]
        ref = ref.to(hidden_states.dtype).repeat_interleave(frames, dim=0)
        kv = torch.cat([hidden_states, ref], dim=1)
        mask = None
        if self.bank.keep is not None:
            # [B*F, 1, 1, N + Nr]: own tokens always visible, reference tokens only where kept.
            n_own, n_ref = hidden_states.shape[1], ref.shape[1]
            keep = self.bank.keep.repeat_interleave(frames).view(batch_frames, 1, 1, 1)
            own = torch.ones(batch_frames, 1, 1, n_own, dtype=torch.bool, device=hidden_states.device)
            mask = torch.cat([own, keep.expand(batch_frames, 1, 1, n_ref)], dim=-1)
        return _attend(attn, hidden_states, kv, mask)


def spatial_self_attention_layers(model: nn.Module) -> dict[str, Attention]:
    """The spatial self-attention layers (`...transformer_blocks.N.attn1`) of a UNet, by module name.

    Temporal modules also contain `attn1` layers; they are excluded by name so that a MuseDance UNet
    and a diffusers `UNet2DConditionModel` yield the same names.
    """
    layers = {}
    for name, module in model.named_modules():
        if not isinstance(module, Attention) or not name.endswith(".attn1"):
            continue
        if is_temporal_parameter(name):
            continue
        layers[name] = module
    return layers


def attach_reference_writer(reference_net: nn.Module, bank: ReferenceBank) -> None:
    """Make `reference_net` write its self-attention inputs into `bank` whenever it runs."""
    for name, layer in spatial_self_attention_layers(reference_net).items():
        layer.set_processor(ReferenceWriteProcessor(name, bank))


def attach_reference_reader(unet: nn.Module, bank: ReferenceBank) -> None:
    """Make `unet`'s spatial self-attention read reference tokens from `bank`."""
    for name, layer in spatial_self_attention_layers(unet).items():
        layer.set_processor(ReferenceReadProcessor(name, bank))
