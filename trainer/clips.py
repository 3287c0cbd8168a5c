"""One prepared training clip, as dataset preparation writes it and the training stages read it.

Everything the model needs is computed once, by the same `musedance_core` code the sampler uses:
frames at the training fps and size, foreground masks, per-frame beat flags and AST music tokens.
Training never decodes video, runs the beat tracker or runs AST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True, eq=False)
class PreparedClip:
    """A clip of N frames at `fps`, all arrays on the CPU.

    frames: uint8 [N, H, W, 3] at the training size (already cropped or padded);
    masks: float [N, H, W] in [0, 1], 1 on the subject (framed like the frames);
    beats: float32 [N] of 0/1, beat flag of each frame (`musedance_core.audio.beats`);
    music: float [N, L, d] AST music tokens of each frame (`musedance_core.audio.ast_encoder`);
    caption: the motion description.
    """

    name: str
    frames: torch.Tensor
    masks: torch.Tensor
    beats: torch.Tensor
    music: torch.Tensor
    caption: str
    fps: float

    def __post_init__(self) -> None:
        n = self.frames.shape[0]
        if self.frames.dtype != torch.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(f"clip {self.name}: frames must be uint8 [N, H, W, 3], got {self.frames.dtype} "
                             f"{tuple(self.frames.shape)}.")
        if tuple(self.masks.shape) != tuple(self.frames.shape[:3]):
            raise ValueError(f"clip {self.name}: masks must be [N, H, W] = {tuple(self.frames.shape[:3])}, "
                             f"got {tuple(self.masks.shape)}.")
        if tuple(self.beats.shape) != (n,) or self.music.ndim != 3 or self.music.shape[0] != n:
            raise ValueError(f"clip {self.name}: beats must be [{n}] and music [{n}, L, d]; got "
                             f"{tuple(self.beats.shape)} and {tuple(self.music.shape)}.")

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]


class ClipSource(Protocol):
    """What the training stages read: a sized, indexable collection of prepared clips."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> PreparedClip: ...
