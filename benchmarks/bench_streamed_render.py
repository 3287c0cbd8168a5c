"""Streamed rendering: time and peak memory of a whole song written clip by clip, by the length of the music.

    python benchmarks/bench_streamed_render.py [--lengths 4 30 180] [--big-lengths 4 30] [--threads 1]

Each render runs in a fresh process, so that its peak resident memory (the process's high-water mark)
is its own. Two cases:
  default  the shipped default model at 64x64 with its recommended settings, its AST and the main job's
           sample picture; the music is the main job's sample repeated to the length (speed and memory
           do not depend on what the music is).
  big      a small random-weight configuration at 512x512 (1 DDIM step, no guidance), where holding the
           frames would show: a frame is 3 MiB as float.
Writes benchmarks/results/streamed_render.json with the machine it ran on and prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(case: str, seconds: float, threads: int, out: str) -> dict:
    """One render in this process; what it measured."""
    import numpy as np
    import torch

    from musedance_core import MuseDanceConfig, MuseDancePipeline
    from musedance_core.audio.ast_encoder import FrameTokens, MusicEncoder, random_ast
    from musedance_core.audio.beats import analyze_beats
    from musedance_core.audio.music import load_music
    from musedance_core.loading.loader import load_pipeline
    from musedance_core.masks.subject import foreground_mask
    from musedance_core.sampling.render import render_video
    from musedance_demo.demo import ASSETS, DEFAULT_AST, DEFAULT_MODEL, load_image

    torch.set_num_threads(threads)
    sample = load_music(ASSETS / "sample_music.wav")
    rate = sample.sample_rate
    wave = np.tile(sample.waveform, int(np.ceil(seconds * rate / sample.waveform.size)))[: int(seconds * rate)]
    started = time.perf_counter()
    if case == "default":
        pipe = load_pipeline(DEFAULT_MODEL)
        encoder = MusicEncoder.from_folder(DEFAULT_AST)
        image = torch.from_numpy(load_image(ASSETS / "sample_reference.png"))
        mask = foreground_mask(image).mask
        text = pipe.encode_prompt((ASSETS / "sample_prompt.txt").read_text(encoding="utf-8").strip())
        settings: dict = {"seed": 0}  # and the model's recommended settings
    else:
        config = MuseDanceConfig.tiny()
        pipe = MuseDancePipeline.from_config(config)
        encoder = MusicEncoder(*random_ast(config.unet.music_dim))
        generator = torch.Generator().manual_seed(0)
        image, mask = torch.rand(512, 512, 3, generator=generator), None
        text = torch.randn(1, config.text_length, config.unet.cross_attention_dim, generator=generator)
        settings = {"num_inference_steps": 1, "guidance_scale": 1.0, "beat_guidance_scale": None}
    fps = float(pipe.config.fps)
    frames = int(seconds * fps)
    tokens = FrameTokens(encoder.encode_music(wave), fps, frames)
    beats = torch.from_numpy(analyze_beats(wave, rate).vector(fps, frames))
    render_video(pipe, out, fps=fps, audio=wave, sample_rate=rate, reference_image=image, mask=mask,
                 text_embeds=text, music_tokens=tokens, beats=beats, **settings)
    wall = time.perf_counter() - started
    return {"case": case, "seconds_of_music": seconds, "frames": frames, "size": list(image.shape[:2]),
            "wall_seconds": round(wall, 1), "wall_per_second_of_music": round(wall / seconds, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "held_frames_would_take_mib": round(frames * image.shape[0] * image.shape[1] * 3 * 4 / 2**20, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=float, nargs="*", default=[4, 30, 180], help="default model, seconds")
    parser.add_argument("--big-lengths", type=float, nargs="*", default=[4, 30], help="512x512 case, seconds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("CASE", "SECONDS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], float(args.child[1]), args.threads, args.child[2])))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine_info import machine

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, lengths in (("default", args.lengths), ("big", args.big_lengths)):
            for seconds in lengths:
                command = [sys.executable, __file__, "--threads", str(args.threads),
                           "--child", case, str(seconds), str(Path(tmp) / f"{case}_{seconds:g}.mp4")]
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                if done.returncode:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    result = {"what": "renders written clip by clip (musedance_core.sampling.render), each in a fresh process",
              "threads": args.threads, "rows": rows, "machine": machine("torch", "diffusers", "transformers")}
    out = ROOT / "benchmarks" / "results" / "streamed_render.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("| case | music | frames | wall | per second of music | peak memory | frames held would take |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} {row['size'][0]}x{row['size'][1]} | {row['seconds_of_music']:g} s | {row['frames']} | "
              f"{row['wall_seconds']:g} s | {row['wall_per_second_of_music']:g} s | {row['peak_rss_mib']:g} MiB | "
              f"{row['held_frames_would_take_mib']:g} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
