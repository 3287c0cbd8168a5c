"""Test helpers shared by several test files (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import torch


def randomize_temporal_outputs(module: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised output projections (temporal modules, F_m) random weights.

    A fresh model is built so that these start at zero; tests that need the modules to have an effect
    call this first.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        if "proj_out" in name or "conv_out" in name:
            with torch.no_grad():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
