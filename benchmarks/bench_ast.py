"""Time AST music encoding of a synthetic song with a full-size AST, split into fbank and model time.

    python benchmarks/bench_ast.py [--seconds 180] [--hop 5] [--batch-size 4] [--dtype float32] [--int8]
                                   [--max-windows N] [--tolerance] [--output benchmarks/results/ast.json]

The AST has the default ASTConfig (12 layers, hidden 768, 1214 tokens per 10.24 s window) with
random weights: speed does not depend on the weights, and nothing is downloaded. Features use the
feature extractor's numpy fbank path (no torchaudio). By default every window of the song is
run; --max-windows measures only the first N windows and extrapolates the model time, which the
output then says. --int8 runs the Linear layers in int8 (MusicEncoder.quantized, the AST Music Encode
node's "fast" speed on the CPU, with --hop 10). --tolerance then also encodes the song as the node's
"accurate" speed does (windows every 5 s, float32) and compares the tokens the sampler sees (every
frame's, at --fps): cosine similarity per token and the largest error relative to the tokens' RMS.
The position embeddings are drawn at random too (ASTModel starts them at zero), so that tokens differ
by position as a trained AST's do. Prints a summary and writes it, with the machine, to a JSON file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

from machine_info import machine  # benchmarks/ is on sys.path when a script here runs
from musedance_core.audio.ast_encoder import (FBANK_HOP, HOP_SECONDS, SAMPLE_RATE, MusicEncoder, patch_grid,
                                              window_starts)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sample_media import synth_music  # noqa: E402 - the tests' synthetic song

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="song length (default: 3 minutes)")
    parser.add_argument("--hop", type=float, default=5.0, help="seconds between AST windows (encoder default 5)")
    parser.add_argument("--batch-size", type=int, default=4, help="AST windows per forward pass")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--fps", type=float, default=12.0, help="frame rate for the per-frame token gather")
    parser.add_argument("--max-windows", type=int, default=0, help="measure only N windows and extrapolate (0: all)")
    parser.add_argument("--int8", action="store_true", help="int8 Linear layers (MusicEncoder.quantized)")
    parser.add_argument("--tolerance", action="store_true",
                        help="compare the frame tokens with an encoding every 5 s in float32")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ast.json")
    args = parser.parse_args(argv)
    if args.seconds <= 0.2 or args.batch_size < 1 or args.max_windows < 0 or args.fps <= 0:
        parser.error("--seconds must exceed 0.2, --batch-size and --fps must be positive, --max-windows >= 0.")
    if args.int8 and args.dtype != "float32":
        parser.error("--int8 quantises a float32 model; leave --dtype at float32.")
    if args.tolerance and args.max_windows:
        parser.error("--tolerance compares every frame's tokens; leave out --max-windows.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine("torch", "transformers", "numpy")
    info["torch_threads"] = torch.get_num_threads()
    info["torchaudio_installed"] = importlib.util.find_spec("torchaudio") is not None
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), "
          f"transformers {info['transformers']}, python {info['python']}", flush=True)

    wave = synth_music(args.seconds, seed=0)
    config = ASTConfig()  # full size: 12 layers, hidden 768, 128 mels, 1024 frames
    started = time.perf_counter()
    torch.manual_seed(0)
    model = ASTModel(config).to(DTYPES[args.dtype])
    with torch.no_grad():
        model.embeddings.position_embeddings.normal_(0.0, 0.02)
    with warnings.catch_warnings():  # the numpy Kaldi mel bank has empty filters at 257 FFT bins, harmlessly
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        accurate = MusicEncoder(model, ASTFeatureExtractor())
    encoder = accurate.quantized() if args.int8 else accurate
    build_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    f_dim, t_dim = patch_grid(config)

    # Warm-up: one window, so that one-time allocator and kernel set-up is not counted.
    warm = encoder.fbank(wave[: 10 * SAMPLE_RATE])
    encoder.encode_fbank(warm, 10.0, batch_size=1)

    fbank_runs = []
    for _ in range(3):
        started = time.perf_counter()
        features = encoder.fbank(wave)
        fbank_runs.append(time.perf_counter() - started)
    fbank_s = float(np.median(fbank_runs))

    def windows(fbank_frames: int) -> int:
        hop_columns = round(args.hop * SAMPLE_RATE / (FBANK_HOP * config.time_stride))
        return len(window_starts((fbank_frames - config.patch_size) // config.time_stride + 1, t_dim, hop_columns))

    all_windows = windows(features.shape[0])
    measured_features, duration = features, wave.size / SAMPLE_RATE
    if 0 < args.max_windows < all_windows:
        # The fbank frames of the first N windows: the same cost per window, fewer windows.
        end = round(args.hop * SAMPLE_RATE / FBANK_HOP) * (args.max_windows - 1) + config.max_length
        measured_features, duration = features[:end], (end - 1) * FBANK_HOP / SAMPLE_RATE
    measured_windows = windows(measured_features.shape[0])

    started = time.perf_counter()
    encoding = encoder.encode_fbank(measured_features, duration, hop_seconds=args.hop, batch_size=args.batch_size)
    model_measured_s = time.perf_counter() - started
    per_window_s = model_measured_s / measured_windows
    extrapolated = measured_windows < all_windows
    model_s = per_window_s * all_windows if extrapolated else model_measured_s

    num_frames = int(encoding.duration * args.fps)
    started = time.perf_counter()
    tokens = encoding.frame_tokens(args.fps, num_frames)
    gather_s = time.perf_counter() - started

    tolerance = None
    if args.tolerance:
        reference = accurate.encode_fbank(features, duration, hop_seconds=HOP_SECONDS, batch_size=args.batch_size)
        tolerance = token_differences(tokens, reference.frame_tokens(args.fps, num_frames))

    result = {
        "benchmark": "AST music encoding (MusicEncoder), full-size ASTConfig with random weights, CPU",
        "machine": info,
        "song_seconds": args.seconds,
        "model": {"layers": config.num_hidden_layers, "hidden": config.hidden_size, "parameters": params,
                  "tokens_per_window": 2 + f_dim * t_dim, "dtype": args.dtype, "int8_linear": args.int8,
                  "build_s": round(build_s, 2)},
        "hop_seconds": args.hop,
        "batch_size": args.batch_size,
        "windows": all_windows,
        "windows_measured": measured_windows,
        "model_time_extrapolated": extrapolated,
        "fbank_s": round(fbank_s, 3),
        "fbank_runs_s": [round(t, 3) for t in fbank_runs],
        "model_s": round(model_s, 2),
        "model_measured_s": round(model_measured_s, 2),
        "model_per_window_s": round(per_window_s, 3),
        "total_s": round(fbank_s + model_s, 2),
        "realtime_factor": round((fbank_s + model_s) / args.seconds, 4),
        "frame_tokens": {
            "fps": args.fps, "frames": num_frames, "shape": list(tokens.shape), "gather_s": round(gather_s, 3)
        },
        "against_5s_float32": tolerance,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    note = (f" EXTRAPOLATED from {measured_windows} of {all_windows} windows ({model_measured_s:.1f} s measured)"
            if extrapolated else f" (all {all_windows} windows measured)")
    print(f"song: {args.seconds:g} s synthetic; AST {config.num_hidden_layers} layers x {config.hidden_size}, "
          f"{params / 1e6:.1f} M parameters, {args.dtype}; hop {args.hop:g} s, batch {args.batch_size}")
    print(f"fbank (numpy, whole song): {fbank_s:.2f} s (median of 3: {', '.join(f'{t:.2f}' for t in fbank_runs)})")
    print(f"model: {model_s:.1f} s for {all_windows} windows, {per_window_s:.2f} s per window{note}")
    print(f"total: {fbank_s + model_s:.1f} s, {100 * (fbank_s + model_s) / args.seconds:.1f}% of the song's duration")
    print(f"frame tokens at {args.fps:g} fps: {tuple(tokens.shape)} gathered in {gather_s * 1000:.0f} ms")
    if tolerance:
        print(f"against windows every {HOP_SECONDS:g} s in float32: token cosine mean {tolerance['cosine_mean']:.4f}, "
              f"1st percentile {tolerance['cosine_p01']:.4f}, min {tolerance['cosine_min']:.4f}; largest error "
              f"{tolerance['max_error_over_rms']:.3f} x the tokens' RMS")
    print(f"wrote {args.output}")
    return 0


def token_differences(tokens: torch.Tensor, reference: torch.Tensor) -> dict:
    """How far each token [frames, L, d] lies from the reference's: cosine and error over the tokens' RMS."""
    cosine = torch.nn.functional.cosine_similarity(tokens.float(), reference.float(), dim=-1).flatten()
    rms = reference.float().pow(2).mean().sqrt()
    return {
        "cosine_mean": round(float(cosine.mean()), 5),
        "cosine_p01": round(float(torch.quantile(cosine[:: max(1, cosine.numel() // 100_000)], 0.01)), 5),
        "cosine_min": round(float(cosine.min()), 5),
        "mean_error_over_rms": round(float((tokens.float() - reference.float()).abs().mean() / rms), 5),
        "max_error_over_rms": round(float((tokens.float() - reference.float()).abs().max() / rms), 4),
    }


if __name__ == "__main__":
    raise SystemExit(main())
