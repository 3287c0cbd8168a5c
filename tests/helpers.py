"""Test helpers shared by several test files (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module (the folder is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
