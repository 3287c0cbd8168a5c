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


_PACK_FOR_TESTS = "musedance_pack_for_tests"


def pack_module(name: str) -> ModuleType:
    """A module of the node pack (e.g. "nodes.model_paths"), from one copy of the pack imported as ComfyUI
    imports it (the checkout's __init__.py as a package); `nodes/` cannot be imported on its own."""
    import importlib
    import sys

    if _PACK_FOR_TESTS not in sys.modules:
        root = BENCHMARKS.parent
        spec = importlib.util.spec_from_file_location(
            _PACK_FOR_TESTS, root / "__init__.py", submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[_PACK_FOR_TESTS] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{_PACK_FOR_TESTS}.{name}")
