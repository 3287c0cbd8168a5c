"""Generation time of the shipped default model: a 4-second clip (48 frames at 12 fps, 64x64) on this machine.

    python benchmarks/bench_default_model.py [--steps 20] [--repeats 3] [--threads N]

Times what the main job times (load once, then per run: music tokens, beats, ReferenceNet, DDIM over
the clips with guidance and the main job's beat guidance, VAE decode) on the sample in musedance_demo/assets/, and writes
benchmarks/results/default_model.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from machine_info import machine  # benchmarks/ is on sys.path when a script here runs
from musedance_core.audio.ast_encoder import MusicEncoder
from musedance_core.audio.beats import analyze_beats
from musedance_core.audio.music import load_music
from musedance_core.loading.loader import load_pipeline
from musedance_core.masks.subject import foreground_mask
from musedance_demo.demo import ASSETS, DEFAULT_AST, DEFAULT_MODEL, load_image

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pipe = load_pipeline(DEFAULT_MODEL)
    encoder = MusicEncoder.from_folder(DEFAULT_AST)
    load_seconds = time.perf_counter() - started
    image = torch.from_numpy(load_image(ASSETS / "sample_reference.png"))
    mask = foreground_mask(image).mask
    music = load_music(ASSETS / "sample_music.wav")
    fps, frames = pipe.config.fps, 48
    prompt = (ASSETS / "sample_prompt.txt").read_text(encoding="utf-8").strip()
    times = []
    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        tokens = encoder.encode(music.waveform, fps, frames)
        beats = torch.from_numpy(analyze_beats(music.waveform, music.sample_rate).vector(fps, frames))
        video = pipe(reference_image=image, mask=mask, text_embeds=pipe.encode_prompt(prompt), music_tokens=tokens,
                     beats=beats, num_inference_steps=args.steps, seed=repeat)  # the rest: the model's own
        times.append(time.perf_counter() - t0)
        assert video.shape[0] == frames
    result = {
        "what": f"default model, {frames} frames at {fps:g} fps (4 s), 64x64, DDIM {args.steps} steps and its "
                f"recommended settings ({pipe.recommended.describe()})",
        "load_seconds": round(load_seconds, 2),
        "generate_seconds": [round(t, 2) for t in times],
        "generate_median_seconds": round(statistics.median(times), 2),
        "threads": args.threads,
        "parameters_millions": {name: round(sum(p.numel() for p in m.parameters()) / 1e6, 3)
                                for name, m in pipe.modules().items()},
        "file_mib": round(DEFAULT_MODEL.stat().st_size / 2**20, 2),
        "machine": machine("torch", "diffusers", "transformers"),
    }
    out = ROOT / "benchmarks" / "results" / "default_model.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
