"""Drift over long music: the flow family's motion context against DabFusion's plain chaining, 160 frames.

    python benchmarks/flow_drift.py [--model models/musedance/musedance_flow_default.safetensors]
                                    [--work runs/flow_drift] [--tracks 8] [--frames 160] [--steps 20]

DabFusion makes long videos clip by clip, each clip animating the last frame of the one before (its
FVD grows from 194 at 40 frames to 324 at 160). The pack's sampler keeps the first frame as the
reference for every clip and joins clips through the motion context (the last M frames' flows). Both
run here with the same model, music, beats, seeds and clip length on unheard synthetic tracks of
`--frames` frames (made with trainer.synthetic, seed 7, and prepared with the default music encoder;
rebuilt under --work when missing), and each 40-frame window of the video is scored:
- PSNR and SSIM against the ground-truth dance (the same first frame, the real dance to that music);
- sharpness: the frames' mean gradient magnitude over the reference's (1: as sharp as the photo; each
  warp of a warped frame blurs it further);
- 2D-MM Align of the whole video.
Writes benchmarks/results/flow_drift.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine_info import machine  # benchmarks/ is on sys.path when a script here runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # trainer/ and the core from a checkout

from musedance_core.audio.beats import analyze_beats
from musedance_core.audio.music import load_music
from musedance_core.config import DEFAULT_AST_NAME, DEFAULT_FLOW_CHECKPOINT_NAME
from musedance_core.evaluation.appearance import detail as sharpness
from musedance_core.evaluation.metrics import evaluate_video, psnr, ssim
from musedance_core.loading.flow_checkpoint import load_flow_pipeline
from musedance_core.sampling.flow_pipeline import FlowDancePipeline
from trainer.data import PreparedDataset
from trainer.prepare import PrepareSettings, prepare_dataset
from trainer.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 40
DATA_SEED = 7  # not the training set's 0: tracks no model here heard


def chained(pipe: FlowDancePipeline, first: torch.Tensor, music: torch.Tensor, beats: torch.Tensor,
            steps: int, guidance: float, seed: int) -> torch.Tensor:
    """DabFusion's long video: every clip animates the last frame of the clip before, with no motion context."""
    k, frames, image, clips = pipe.config.clip_length, beats.shape[0], first, []
    for index, start in enumerate(range(0, frames, k)):
        length = min(k, frames - start)
        clip = next(pipe.iter_clips(pipe.encode_reference(image), music[start : start + length],
                                    beats[start : start + length], num_inference_steps=steps,
                                    guidance_scale=guidance, seed=seed + index, motion_frames=0))
        clips.append(clip)
        image = clip[-1]
    return torch.cat(clips)


def with_context(pipe: FlowDancePipeline, first: torch.Tensor, music: torch.Tensor, beats: torch.Tensor,
                 steps: int, guidance: float, seed: int) -> torch.Tensor:
    """The pack's sampler: the first frame the reference throughout, clips joined by the motion context."""
    return torch.cat(list(pipe.iter_clips(pipe.encode_reference(first), music, beats, num_inference_steps=steps,
                                          guidance_scale=guidance, seed=seed)))


def build_data(work: Path, tracks: int, frames: int, fps: float, size: int) -> tuple[PreparedDataset, Path]:
    synth = work / "synth"
    seconds = frames / fps + 0.5
    if not (synth / "tracks.json").is_file():
        generate(synth, tracks=tracks, clips_per_track=1, seed=DATA_SEED, size=size, fps=fps, seconds=seconds,
                 test_fraction=0.0)
    settings = PrepareSettings(fps=fps, height=size, width=size, masks="video", min_frames=frames)
    prepare_dataset(synth / "train", work / "prepared", ROOT / "models" / "audio_encoders" / DEFAULT_AST_NAME,
                    settings, progress=False)
    return PreparedDataset(work / "prepared"), synth / "train"


def summary(values: list[float]) -> dict:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return {"mean": float(x.mean()) if x.size else None, "std": float(x.std()) if x.size else None, "n": int(x.size)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "musedance" / DEFAULT_FLOW_CHECKPOINT_NAME)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "flow_drift")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=None, help="default: the model's recommendation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "flow_drift")
    args = parser.parse_args()
    started = time.perf_counter()
    pipe = load_flow_pipeline(args.model)
    guidance = pipe.recommended.guidance_scale if args.guidance is None else args.guidance
    data, clips_folder = build_data(args.work, args.tracks, args.frames, pipe.config.fps, pipe.config.size)
    windows = [(a, min(a + WINDOW, args.frames)) for a in range(0, args.frames, WINDOW)]
    methods = {"motion context (the pack)": with_context, "plain chaining (DabFusion)": chained}
    per_clip: dict[str, list[dict]] = {name: [] for name in methods}
    for index in range(len(data)):
        clip = data[index]
        truth = clip.frames[: args.frames].float() / 255
        music = load_music(clips_folder / data.entries[index]["source"])
        beats_s = analyze_beats(music.waveform, music.sample_rate).times
        seconds = args.frames / pipe.config.fps
        audio = music.waveform[: round(seconds * music.sample_rate)]
        reference_sharpness = float(sharpness(truth[:1])[0])
        for name, method in methods.items():
            video = method(pipe, truth[0], clip.music[: args.frames], clip.beats[: args.frames].float(),
                           args.steps, guidance, args.seed)
            sharp = sharpness(video) / reference_sharpness
            scores = evaluate_video(video, pipe.config.fps, audio, music.sample_rate,
                                    music_beats=beats_s[beats_s < seconds]).scores()
            per_clip[name].append({
                "clip": clip.name,
                "windows": [{"frames": [a, b], "psnr": psnr(video[a:b], truth[a:b]), "ssim": ssim(video[a:b], truth[a:b]),
                             "sharpness": float(sharp[a:b].mean())} for a, b in windows],
                "mm_align": scores["mm_align"], "mm_align_chance": scores["mm_align_chance"],
            })
        print(f"clip {index + 1}/{len(data)} ({time.perf_counter() - started:.0f} s)", flush=True)
    table = {}
    for name, clips in per_clip.items():
        table[name] = {
            "windows": [{key: summary([c["windows"][w][key] for c in clips]) for key in ("psnr", "ssim", "sharpness")}
                        for w in range(len(windows))],
            "mm_align": summary([c["mm_align"] if c["mm_align"] is not None else np.nan for c in clips]),
            "mm_align_chance": summary([c["mm_align_chance"] if c["mm_align_chance"] is not None else np.nan
                                        for c in clips]),
        }
    command = "python benchmarks/flow_drift.py " + " ".join(sys.argv[1:])
    result = {"command": command, "machine": machine(), "model": str(args.model.name), "clips": len(data),
              "frames": args.frames, "steps": args.steps, "guidance": guidance, "seed": args.seed,
              "seconds": time.perf_counter() - started, "table": table, "per_clip": per_clip}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [f"# Drift over {args.frames} frames: motion context vs plain chaining", "",
             f"Command: `{command}`; {len(data)} unheard synthetic tracks (seed {DATA_SEED}), model "
             f"{args.model.name}, DDIM {args.steps} steps, guidance {guidance:g}, seed {args.seed}. "
             "Cells: mean ± standard deviation over the clips.", "",
             "| Method | Frames | PSNR ↑ | SSIM ↑ | Sharpness (1 = reference) |", "|---|---|---|---|---|"]

    def cell(stat: dict, digits: int) -> str:
        return "n/a" if stat["mean"] is None else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"

    for name, row in table.items():
        for (a, b), w in zip(windows, row["windows"]):
            lines.append(f"| {name} | {a}–{b - 1} | {cell(w['psnr'], 2)} | {cell(w['ssim'], 3)} | "
                         f"{cell(w['sharpness'], 3)} |")
    lines += ["", "| Method | 2D-MM Align (whole video) | 2D-MM chance |", "|---|---|---|"]
    lines += [f"| {name} | {cell(row['mm_align'], 3)} | {cell(row['mm_align_chance'], 3)} |" for name, row in table.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
