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

import contextlib
from typing import Iterator

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from .attention import KeysValues, attend_projected, project_keys_values, runs, self_attention
from .unet import is_temporal_parameter


class ReferenceBank:
    """Reference tokens per self-attention layer, plus which batch rows may see them.

    `tokens[name]` is [B, N, C] for the B videos of the batch (not per frame). `keep` is None (every
    row sees the reference) or a bool tensor [B]: rows set to False attend only to their own tokens,
    which is how classifier-free guidance drops the reference in its unconditional half inside one
    batched forward.

    Without gradients (sampling), each layer's keys and values of the reference are projected once and
    reused until the bank is filled or cleared again: the reference is the same for every frame, step and
    clip of a video.
    """

    def __init__(self) -> None:
        self.tokens: dict[str, torch.Tensor] = {}
        self.keep = None
        self._projected: dict[str, KeysValues] = {}
        self._window: tuple[int, int] | None = None  # the rows a forward over part of the batch sees (`rows`)

    @property
    def keep(self) -> torch.Tensor | None:
        return self._keep

    @keep.setter
    def keep(self, keep: torch.Tensor | None) -> None:
        # Read once here, not in every layer's forward, which then stays free of data-dependent control flow.
        self._keep = keep
        self._keep_rows = None if keep is None else tuple(bool(k) for k in keep.tolist())

    def clear(self) -> None:
        self.tokens.clear()
        self.keep = None
        self._projected.clear()
        self._window = None

    @contextlib.contextmanager
    def rows(self, first: int, end: int) -> Iterator[None]:
        """Serve only rows first..end-1 of the filled batch, for a forward over those rows alone (guidance rows
        one at a time); the reference's projected keys and values stay shared by all rows."""
        self._window = (first, end)
        try:
            yield
        finally:
            self._window = None

    def videos(self, name: str) -> int:
        """How many rows (videos) layer `name` serves now."""
        return self.tokens[name].shape[0] if self._window is None else self._window[1] - self._window[0]

    def __len__(self) -> int:
        return len(self.tokens)

    def fill(self, tokens: dict[str, torch.Tensor], repeats: int = 1, keep: torch.Tensor | None = None) -> None:
        """Load encoded reference tokens ([B, N, C] per layer), tiled `repeats` times along the batch.

        For classifier-free guidance: `fill(tokens, 2, keep=torch.tensor([False, True]))` gives the
        unconditional row no reference and the conditional row the reference, in one batch.
        """
        self.tokens = {name: t.repeat(repeats, 1, 1) for name, t in tokens.items()}
        self.keep = keep
        self._projected.clear()

    def store(self, name: str, tokens: torch.Tensor) -> None:
        """Set one layer's tokens (the ReferenceNet writing); overwrites, so a re-run never grows the bank."""
        self.tokens[name] = tokens
        self._projected.pop(name, None)

    def keys_values(self, name: str, attn: Attention, dtype: torch.dtype) -> KeysValues:
        """The keys and values `attn` makes of layer `name`'s reference tokens [B, heads, N, d]; kept for
        reuse when gradients are off."""
        projected = self._projected.get(name)
        if projected is None or projected.keys.dtype != dtype:
            projected = project_keys_values(attn, self.tokens[name].to(dtype))
            if not torch.is_grad_enabled():
                self._projected[name] = projected
        return projected if self._window is None else projected.rows(*self._window)

    def row_runs(self, batch: int) -> list[tuple[int, int, bool]]:
        """(first row, end row, sees the reference) for each run of neighbouring rows alike, over `batch` rows."""
        keep = self._keep_rows
        if keep is not None and self._window is not None:
            keep = keep[self._window[0] : self._window[1]]
        if keep is None:
            return [(0, batch, True)]
        if len(keep) != batch:
            raise ValueError(f"the reference bank's keep mask has {len(keep)} rows but the batch has {batch} videos.")
        return runs(keep)


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
        self.bank.store(self.name, hidden_states)
        return self_attention(attn, hidden_states)


class ReferenceReadProcessor(_ReferenceProcessor):
    """On the denoising UNet: self-attention whose keys and values also include the reference tokens.

    Frames are folded into the batch ([B*F, N, C], b outer), so each video's reference keys and values
    are repeated over its F frames. Rows the bank's keep mask drops attend to their own tokens only,
    computed without the reference at all. With an empty bank this is plain self-attention, so a UNet
    without a reference behaves exactly like Stable Diffusion.
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
        if self.name not in self.bank.tokens:
            return self_attention(attn, hidden_states)
        videos = self.bank.videos(self.name)
        batch_frames = hidden_states.shape[0]
        if batch_frames % videos:
            raise ValueError(
                f"reference bank for {self.name} holds {videos} videos but the UNet got "
                f"{batch_frames} frames; the batch must be videos x frames."
            )
        frames = batch_frames // videos
        own = project_keys_values(attn, hidden_states)
        reference = self.bank.keys_values(self.name, attn, hidden_states.dtype)
        outputs = []
        for first, end, sees in self.bank.row_runs(videos):
            rows = slice(first * frames, end * frames)
            keys, values = own.keys[rows], own.values[rows]
            if sees:
                keys = _join_frames(keys, reference.keys[first:end], frames)
                values = _join_frames(values, reference.values[first:end], frames)
            outputs.append(attend_projected(attn, hidden_states[rows], KeysValues(keys, values)))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _join_frames(own: torch.Tensor, reference: torch.Tensor, frames: int) -> torch.Tensor:
    """Each frame's own keys (or values) [V*F, heads, N, d] followed by its video's reference ones [V, heads, Nr, d]:
    [V*F, heads, N + Nr, d], the reference read once per frame into the result without a repeated copy first."""
    videos, heads, _, dim = reference.shape
    own = own.view(videos, frames, heads, -1, dim)
    shared = reference[:, None].expand(videos, frames, heads, -1, dim)
    return torch.cat([own, shared], dim=3).view(videos * frames, heads, -1, dim)


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
