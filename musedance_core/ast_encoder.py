"""Per-frame music tokens from a frozen Audio Spectrogram Transformer (AST).

The music module (paper Sec. 3.2) cross-attends each frame to music embeddings. AST gives one
sequence for a whole clip, so each video frame k takes the AST patch columns around its time
k / fps (a window of +-`window` columns, as Hallo does with wav2vec frames t-2..t+2) plus the two
global tokens. Sampler and trainer both call `frame_music_tokens`.

AST token layout (transformers ASTModel): last_hidden_state[:, :2] are the CLS and distillation
tokens; [:, 2:] are patch tokens flattened frequency-major, index = f * t_dim + t, over an
(f_dim, t_dim) grid (12 x 101 for the default config). Time column j covers fbank frames
[stride * j, stride * j + patch) of 10 ms each.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

GLOBAL_TOKENS = 2  # CLS and distillation
FBANK_HOP_S = 0.010  # fbank frame shift (Kaldi default, used by ASTFeatureExtractor)
FBANK_WINDOW_S = 0.025  # fbank frame length


def patch_grid(config: ASTConfig) -> tuple[int, int]:
    """(frequency rows, time columns) of AST's patch grid, as ASTEmbeddings.get_shape computes it."""
    f_dim = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    t_dim = (config.max_length - config.patch_size) // config.time_stride + 1
    return f_dim, t_dim


def column_times(config: ASTConfig) -> np.ndarray:
    """Centre time in seconds of each AST time column: the middle of the fbank frames it covers."""
    _, t_dim = patch_grid(config)
    middle_frame = config.time_stride * np.arange(t_dim) + (config.patch_size - 1) / 2
    return middle_frame * FBANK_HOP_S + FBANK_WINDOW_S / 2


def frame_music_tokens(
    model: ASTModel,
    feature_extractor: ASTFeatureExtractor,
    waveform_16k: np.ndarray,
    fps: float,
    num_frames: int,
    window: int = 2,
) -> torch.Tensor:
    """Music tokens for each video frame: a float tensor [num_frames, L, hidden] on the model's device.

    L = 2 + f_dim * (2 * window + 1): the CLS and distillation tokens, then all frequency rows of
    the columns c - window .. c + window, where c is the column nearest to the frame's time.
    Columns past either end of the grid are clamped (repeated), so every frame keeps the same L.
    waveform_16k: mono float audio at the extractor's sampling rate (16 kHz), at most one AST
    window long (10.24 s for the default config). The model is run frozen, without gradients.
    """
    config = model.config
    if feature_extractor.max_length != config.max_length:
        raise ValueError(
            f"feature extractor max_length {feature_extractor.max_length} does not match the AST "
            f"model's max_length {config.max_length}; load both from the same AST folder."
        )
    if feature_extractor.num_mel_bins != config.num_mel_bins:
        raise ValueError(
            f"feature extractor has {feature_extractor.num_mel_bins} mel bins, the AST model expects "
            f"{config.num_mel_bins}; load both from the same AST folder."
        )
    if not fps > 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    if not isinstance(num_frames, (int, np.integer)) or num_frames <= 0:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
    if not isinstance(window, (int, np.integer)) or window < 0:
        raise ValueError(f"window must be a non-negative integer, got {window!r}.")

    wave = np.asarray(waveform_16k, dtype=np.float32)
    if wave.ndim != 1 or not np.isfinite(wave).all():
        raise ValueError(
            f"waveform_16k must be finite mono audio [T], got shape {np.shape(waveform_16k)}; "
            "downmix with waveform.mean(axis=0)."
        )
    rate = feature_extractor.sampling_rate
    window_samples = round(FBANK_WINDOW_S * rate)
    hop_samples = round(FBANK_HOP_S * rate)
    if wave.size < window_samples:
        raise ValueError(f"the music is shorter than one fbank frame ({FBANK_WINDOW_S} s).")
    num_fbank_frames = 1 + (wave.size - window_samples) // hop_samples
    if num_fbank_frames > config.max_length:
        raise ValueError(
            f"the music is {wave.size / rate:.2f} s long, but one AST window holds at most "
            f"{config.max_length * FBANK_HOP_S:.2f} s; cut it shorter "
            "(long-music window stitching is not implemented yet)."
        )
    duration = wave.size / rate
    if (num_frames - 1) / fps > duration:
        raise ValueError(
            f"{num_frames} frames at {fps} fps last {(num_frames - 1) / fps:.2f} s, longer than the "
            f"{duration:.2f} s of music; pass fewer frames or longer music."
        )

    columns = _frame_columns(config, fps, num_frames, window)  # [F, 2w+1]
    features = feature_extractor(wave, sampling_rate=rate, return_tensors="pt")["input_values"]
    parameter = next(model.parameters())
    with torch.no_grad():
        hidden = model(features.to(parameter.device, parameter.dtype)).last_hidden_state[0]
    f_dim, t_dim = patch_grid(config)
    global_tokens = hidden[:GLOBAL_TOKENS]  # [2, d]
    grid = hidden[GLOBAL_TOKENS:].reshape(f_dim, t_dim, -1)  # frequency-major
    picked = grid[:, torch.as_tensor(columns, device=grid.device)]  # [f_dim, F, 2w+1, d]
    picked = picked.permute(1, 2, 0, 3).reshape(num_frames, -1, hidden.shape[-1])  # column-major
    return torch.cat([global_tokens.expand(num_frames, -1, -1), picked], dim=1)


def _frame_columns(config: ASTConfig, fps: float, num_frames: int, window: int) -> np.ndarray:
    """Indices [num_frames, 2w+1] of the AST time columns each frame attends to, clamped to the grid."""
    centres = column_times(config)
    times = np.arange(num_frames) / fps
    nearest = np.abs(times[:, None] - centres[None]).argmin(axis=1)
    offsets = np.arange(-window, window + 1)
    return np.clip(nearest[:, None] + offsets[None], 0, len(centres) - 1)


def tiny_ast(hidden_size: int, seed: int = 0) -> tuple[ASTModel, ASTFeatureExtractor]:
    """A small randomly initialised AST (2 layers, 2 heads) and the default feature extractor.

    Built locally from a config, nothing read from disk or a hub: for the demo and the tests,
    where the token layout matters and the weights do not. The patch grid is the default one.
    """
    if hidden_size <= 0 or hidden_size % 2:
        raise ValueError(f"hidden_size must be a positive even number (2 heads), got {hidden_size}.")
    config = ASTConfig(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        num_mel_bins=128,
        max_length=1024,
    )
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = ASTModel(config).eval().requires_grad_(False)
    with warnings.catch_warnings():
        # Without torchaudio the extractor builds a numpy Kaldi mel bank whose 128 filters include
        # empty ones at 257 FFT bins; transformers warns about it, harmlessly.
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        extractor = ASTFeatureExtractor()
    return model, extractor
