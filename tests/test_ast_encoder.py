"""frame_music_tokens: shape, AST token layout, per-frame windows, clamping and limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ASTFeatureExtractor

from musedance_core.ast_encoder import frame_music_tokens, patch_grid, tiny_ast

SR = 16_000
D = 16


@pytest.fixture(scope="module")
def ast():
    return tiny_ast(D, seed=0)


def noise(seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)


def ast_grid(ast, wave) -> tuple[torch.Tensor, torch.Tensor]:
    """Global tokens [2, d] and the patch grid [f_dim, t_dim, d], straight from ASTModel."""
    model, extractor = ast
    features = extractor(wave, sampling_rate=SR, return_tensors="pt")["input_values"]
    hidden = model(features).last_hidden_state[0]
    f_dim, t_dim = patch_grid(model.config)
    return hidden[:2], hidden[2:].reshape(f_dim, t_dim, -1)


def column_block(tokens: torch.Tensor, frame: int, offset: int, f_dim: int) -> torch.Tensor:
    """The f_dim tokens of window position `offset` (0 .. 2w) of one frame."""
    return tokens[frame, 2 + offset * f_dim : 2 + (offset + 1) * f_dim]


@pytest.mark.parametrize("window", [0, 2])
def test_shape(ast, window):
    tokens = frame_music_tokens(*ast, noise(4.0), fps=12, num_frames=48, window=window)
    f_dim, _ = patch_grid(ast[0].config)
    assert f_dim == 12
    assert tokens.shape == (48, 2 + f_dim * (2 * window + 1), D)
    assert tokens.dtype == torch.float32 and torch.isfinite(tokens).all()


def test_frames_take_the_columns_at_their_time(ast):
    """Frame 24 at 12 fps is t = 2 s; column j is centred near (10 j + 8) * 10 ms, so j = 19."""
    wave = noise(4.0)
    tokens = frame_music_tokens(*ast, wave, fps=12, num_frames=48, window=2)
    global_tokens, grid = ast_grid(ast, wave)
    for offset in range(5):
        torch.testing.assert_close(column_block(tokens, 24, offset, 12), grid[:, 19 + offset - 2])
    torch.testing.assert_close(tokens[:, :2], global_tokens.expand(48, -1, -1))
    assert not torch.allclose(tokens[6, 2:], tokens[30, 2:])  # different times, different music tokens


def test_windows_are_clamped_at_both_ends(ast):
    wave = noise(10.2)  # fills the AST window: the last frames reach past the last column
    n = 122  # frame 121 is at 10.08 s, nearest column 100 of 0..100
    tokens = frame_music_tokens(*ast, wave, fps=12, num_frames=n, window=2)
    _, grid = ast_grid(ast, wave)
    first = [column_block(tokens, 0, k, 12) for k in range(5)]
    for block, column in zip(first, [0, 0, 0, 1, 2]):
        torch.testing.assert_close(block, grid[:, column])
    last = [column_block(tokens, n - 1, k, 12) for k in range(5)]
    for block, column in zip(last, [98, 99, 100, 100, 100]):
        torch.testing.assert_close(block, grid[:, column])


def test_music_longer_than_one_ast_window_raises(ast):
    with pytest.raises(ValueError, match="10.24 s"):
        frame_music_tokens(*ast, noise(11.0), fps=12, num_frames=12)


def test_frames_past_the_end_of_the_music_raise(ast):
    with pytest.raises(ValueError, match="longer than"):
        frame_music_tokens(*ast, noise(2.0), fps=12, num_frames=48)


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_mismatched_feature_extractor_raises(ast):
    with pytest.raises(ValueError, match="max_length"):
        frame_music_tokens(ast[0], ASTFeatureExtractor(max_length=512), noise(2.0), fps=12, num_frames=12)


def test_encoder_is_frozen(ast):
    model, extractor = ast
    assert not any(p.requires_grad for p in model.parameters())
    model.requires_grad_(True)
    try:
        tokens = frame_music_tokens(model, extractor, noise(1.0), fps=12, num_frames=12)
    finally:
        model.requires_grad_(False)
    assert not tokens.requires_grad


def test_tiny_ast_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, _ = tiny_ast(8, seed=1)
    assert torch.equal(torch.rand(3), expected)
    b, _ = tiny_ast(8, seed=1)
    c, _ = tiny_ast(8, seed=2)
    weight = "embeddings.patch_embeddings.projection.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])
