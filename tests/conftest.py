"""Shared fixtures: the tiny configuration and random inputs of the right shapes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from musedance_core import MuseDanceConfig, MuseDancePipeline


@pytest.fixture
def tiny_config() -> MuseDanceConfig:
    return MuseDanceConfig.tiny()


@pytest.fixture
def tiny_pipe(tiny_config: MuseDanceConfig) -> MuseDancePipeline:
    return MuseDancePipeline.from_config(tiny_config, seed=0)


@pytest.fixture
def sample_inputs(tiny_config: MuseDanceConfig):
    """Sampler inputs for a 32x32 reference and `frames` frames of music."""

    def make(frames: int = 10, size: int = 32, seed: int = 0) -> dict:
        gen = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        mask = ((xx**2 + yy**2) < 0.4).float()
        image = torch.rand(size, size, 3, generator=gen) * 0.3 + mask[..., None] * 0.6
        beats = torch.zeros(frames)
        beats[::6] = 1
        return dict(
            reference_image=image,
            mask=mask,
            text_embeds=torch.randn(1, tiny_config.text_length, tiny_config.unet.cross_attention_dim, generator=gen),
            music_tokens=torch.randn(frames, 6, tiny_config.unet.music_dim, generator=gen),
            beats=beats,
        )

    return make


@pytest.fixture(scope="module")
def pack():
    """The node pack imported as ComfyUI imports it: the checkout's __init__.py as a package."""
    name = "musedance_pack_nodes_under_test"
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@pytest.fixture
def fresh_accelerate():
    """Accelerate keeps process-wide singletons (state, gradient state): reset them around a test that trains."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
