"""Classifier-free guidance as a denoiser: the UNet's rows for one step and how their predictions combine.

Rows, in this order: [unconditional] when guidance_scale g > 1, [beats unknown] when the beats have a scale
g_b of their own that differs from plain guidance, then the conditional row; all run as one batch. The
combine is
    eps_u + g (eps_c - eps_u)                                     plain guidance,
    eps_u + g (eps_nobeats - eps_u) + g_b (eps_c - eps_nobeats)   with the beats' own scale,
    eps_nobeats + g_b (eps_c - eps_nobeats)                       the beats' scale alone (g = 1).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.reference import ReferenceBank
from ..models.unet import ClipConditions, MotionContext
from .conditioning import condition_rows


def guidance_rows(guidance_scale: float, beat_guidance_scale: float | None) -> tuple[bool, bool]:
    """(an unconditional row?, a beats-unknown row?) for these scales; the conditional row is always there."""
    unconditional = float(guidance_scale) > 1.0
    plain = float(guidance_scale) if unconditional else 1.0
    # The beats' own row only where it changes the result: g_b = g (or 1 without guidance) is plain guidance.
    return unconditional, beat_guidance_scale is not None and float(beat_guidance_scale) != plain


class GuidedDenoiser:
    """The UNet with classifier-free guidance: owns the row layout and the combine of the predictions."""

    def __init__(self, unet: nn.Module, guidance_scale: float, beat_guidance_scale: float | None = None,
                 one_row_at_a_time: bool = False, bank: ReferenceBank | None = None) -> None:
        """one_row_at_a_time: run the rows through the UNet one after another instead of as one batch (the
        activations of one row at a time: less memory, somewhat slower); `bank` is the reference bank the
        UNet reads, which then serves each row its own part."""
        if one_row_at_a_time and bank is None:
            raise ValueError("GuidedDenoiser: one_row_at_a_time needs the reference bank the UNet reads.")
        self.unet = unet
        self.one_row_at_a_time = one_row_at_a_time
        self.bank = bank
        self.guidance_scale = float(guidance_scale)
        self.unconditional_row, self.beat_row = guidance_rows(guidance_scale, beat_guidance_scale)
        self.beat_guidance_scale = float(beat_guidance_scale) if self.beat_row else None
        self.rows = 1 + self.unconditional_row + self.beat_row

    @property
    def unconditional(self) -> torch.Tensor:
        """bool [rows]: which rows are unconditional."""
        return torch.tensor([True] * self.unconditional_row + [False] * self.beat_row + [False])

    @property
    def beats_unknown(self) -> torch.Tensor:
        """bool [rows]: which rows have their beats unknown (the unconditional row's come from it being one)."""
        return torch.tensor([False] * self.unconditional_row + [True] * self.beat_row + [False])

    def reference_keep(self, device: torch.device | str | None = None) -> torch.Tensor | None:
        """The reference bank's keep mask for these rows, None when every row sees the reference."""
        return ~self.unconditional.to(device) if self.unconditional_row else None

    def text_rows(self, text: torch.Tensor, null_text: torch.Tensor | None = None) -> torch.Tensor:
        """One video's text [1, T, D] as the rows; the unconditional row gets `null_text` (default zeros)."""
        return self._rows(text=text, null_text=null_text)[0]

    def music_rows(self, music: torch.Tensor, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One video's music tokens [1, F, L, d] and beat ids [1, F, W] as the rows."""
        return self._rows(music=music, windows=windows)[1:3]

    def _rows(self, text=None, music=None, windows=None, null_text=None) -> tuple:
        def expand(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.expand(self.rows, *x.shape[1:])

        return condition_rows(expand(text), expand(music), expand(windows), unconditional=self.unconditional,
                              beats_unknown=self.beats_unknown, null_text=null_text)

    def clip_conditions(self, text: torch.Tensor, music: torch.Tensor, windows: torch.Tensor) -> ClipConditions:
        """A clip's rows (text, music and windows as `text_rows` and `music_rows` made them) as every step uses them."""
        return self.unet.clip_conditions(text, music, windows)

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, conditions: ClipConditions,
                 context: MotionContext | None = None) -> torch.Tensor:
        """The guided noise prediction (float32) for one video's latents [1, F, C, h, w] (already in the UNet's
        dtype) with the clip's `clip_conditions`."""
        if not self.one_row_at_a_time or self.rows == 1:
            rows = latents.expand(self.rows, *latents.shape[1:])
            return self.combine(self.unet(rows, t, motion_context=context, conditions=conditions).float())
        predictions = []
        for row in range(self.rows):
            with self.bank.rows(row, row + 1):
                row_context = None if context is None else {
                    name: states.chunk(self.rows)[row] for name, states in context.items()}
                predictions.append(self.unet(latents, t, motion_context=row_context,
                                             conditions=conditions.rows(row, row + 1)).float())
        return self.combine(torch.cat(predictions))

    def combine(self, prediction: torch.Tensor) -> torch.Tensor:
        g, g_b = self.guidance_scale, self.beat_guidance_scale
        if self.unconditional_row and self.beat_row:
            uncond, no_beats, cond = prediction.chunk(3)
            return uncond + g * (no_beats - uncond) + g_b * (cond - no_beats)
        if self.unconditional_row:
            uncond, cond = prediction.chunk(2)
            return uncond + g * (cond - uncond)
        if self.beat_row:
            no_beats, cond = prediction.chunk(2)
            return no_beats + g_b * (cond - no_beats)
        return prediction
