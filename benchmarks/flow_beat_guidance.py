"""The flow default's beat guidance on real songs: how much a scale of the beats' own makes a photo move on them.

    pip install scikit-image           # the photos (benchmarks/photo_manifest.json), read from the package
    python benchmarks/real_beats_data.py --repos REPOS --out runs/realbeats   # the songs, with human beats
    python benchmarks/flow_beat_guidance.py --songs runs/realbeats [--scales off 3 5] [--seconds 8]

The tuning songs (TUNING below) are other songs than photo_defaults.py's, so the scale chosen here is
then checked there on songs it was not chosen on. Each photo of the manifest (cropped to a square,
--size pixels) is animated by the flow default to --seconds of each song from --start, once per beat
guidance scale ("off": the beats guided with the rest, as the model's plain guidance), with the same
seed, the beats found by the pack's own tracker (as the main job does) and the song's music tokens.
Every video is scored as photo_defaults.py scores it: 2D-MM Align against the song's human beat
annotations, against the next tuning song's annotations (the "other music" control) and its chance
level; motion (optical-flow magnitude, pixels per frame at 64x64); appearance against the photo.
Writes benchmarks/results/flow_beat_guidance.json and .md with the machine it ran on.
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
from photo_defaults import MANIFEST, alignment, photos, small

from musedance_core.audio.ast_encoder import MusicEncoder
from musedance_core.audio.beat_files import read_beat_file
from musedance_core.audio.beats import analyze_beats, beat_vector
from musedance_core.audio.music import load_music
from musedance_core.evaluation.appearance import appearance_scores
from musedance_core.evaluation.flow import flow_magnitudes
from musedance_core.loading.flow_checkpoint import load_flow_pipeline
from musedance_core.masks.framing import fit_image
from musedance_demo import demo

ROOT = Path(__file__).resolve().parents[1]
TUNING = ["gtzan_disco_00001", "gtzan_pop_00001", "gtzan_rock_00001", "gtzan_hiphop_00001", "gtzan_reggae_00001",
          "gtzan_country_00001"]


def scale(text: str) -> float | None:
    return None if text == "off" else float(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=Path, required=True, help="the folder real_beats_data.py wrote")
    parser.add_argument("--scales", type=scale, nargs="+", default=[None, 3.0, 5.0],
                        help="beat guidance scales, 'off' for none")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--start", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=0, help="DDIM steps (0: the model's recommendation)")
    parser.add_argument("--model", type=Path, default=demo.DEFAULT_FLOW_MODEL)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "flow_beat_guidance")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "flow_beat_guidance")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    args.work.mkdir(parents=True, exist_ok=True)
    pictures = photos(manifest, args.work, args.size)
    pipe = load_flow_pipeline(args.model)
    encoder = MusicEncoder.from_folder(demo.DEFAULT_AST)
    settings = pipe.recommended
    steps = args.steps or settings.steps
    fps = pipe.config.fps
    frames = int(round(args.seconds * fps))
    human, music = {}, {}
    for song in TUNING:
        times = np.asarray(read_beat_file(args.songs / f"{song}.beats").times)
        human[song] = times[(times >= args.start) & (times < args.start + args.seconds)] - args.start
        whole = load_music(args.songs / f"{song}.wav")
        found = analyze_beats(whole.waveform, whole.sample_rate).times - args.start
        music[song] = (encoder.encode(whole.waveform, fps, frames, start_time=args.start),
                       torch.from_numpy(beat_vector(found, fps, frames)))
    rows = []
    for photo, path in pictures.items():
        picture = demo.load_image(path)[..., :3]
        image, _ = fit_image(picture, args.size, args.size, mode="crop")
        reference = pipe.encode_reference(image[0])
        for index, song in enumerate(TUNING):
            tokens, beats = music[song]
            for g_b in args.scales:
                video = torch.cat(list(pipe.iter_clips(reference, tokens, beats, num_inference_steps=steps,
                                                       guidance_scale=settings.guidance_scale,
                                                       beat_guidance_scale=g_b, seed=0)))
                video64 = small(video)
                other = TUNING[(index + 1) % len(TUNING)]
                own, chance = alignment(video64, fps, human[song])
                control, _ = alignment(video64, fps, human[other])
                scores = appearance_scores(video, image[0]).to_dict()
                rows.append({"photo": photo, "song": song, "beat_guidance": g_b, "mm_align": own,
                             "mm_align_other_music": control, "mm_align_chance": chance,
                             "motion": float(np.mean(flow_magnitudes(video64.numpy()))),
                             "colour_worst": scores["colour_worst"], "structure": scores["structure"]})
                print(f"{photo} / {song} / beat guidance {g_b}: 2D-MM {own:.3f} (other {control:.3f}, chance "
                      f"{chance:.3f}) ({time.perf_counter() - started:.0f} s)", flush=True)
    command = "python benchmarks/flow_beat_guidance.py " + " ".join(sys.argv[1:])
    result = {"command": command, "machine": machine(), "seconds": time.perf_counter() - started,
              "settings": {"seconds": args.seconds, "start": args.start, "size": args.size, "steps": steps,
                           "guidance": settings.guidance_scale, "model": args.model.name}, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    keys = ["mm_align", "mm_align_other_music", "mm_align_chance", "motion", "colour_worst", "structure"]
    lines = ["# The flow default's beat guidance on real songs", "",
             f"Command: `{command}`; {len(pictures)} photos x {len(TUNING)} songs ({args.seconds:g} s from "
             f"{args.start:g} s, {args.size}x{args.size}), DDIM {steps} steps, guidance {settings.guidance_scale:g}, "
             "seed 0. Cells: mean [95% bootstrap interval over the runs, 1000 resamples]; 'mm − other': the paired "
             "difference of a video's 2D-MM against its own song's beats and against another song's.", "",
             "| Beat guidance | Runs | 2D-MM Align | other music | mm − other | chance | Motion (px/frame at 64) "
             "| Colours, worst frame | Structure |", "|---" * 9 + "|"]
    generator = np.random.default_rng(0)

    def cell(values: list[float]) -> str:
        x = np.asarray(values, dtype=float)
        boot = generator.choice(x, size=(1000, x.size)).mean(axis=1)
        return f"{x.mean():.3f} [{np.percentile(boot, 2.5):.3f}, {np.percentile(boot, 97.5):.3f}]"

    for g_b in args.scales:
        chosen = [r for r in rows if r["beat_guidance"] == g_b]
        values = {key: [r[key] for r in chosen] for key in keys}
        lines.append(f"| {'off' if g_b is None else f'{g_b:g}'} | {len(chosen)} | {cell(values['mm_align'])} | "
                     f"{cell(values['mm_align_other_music'])} | "
                     f"{cell([r['mm_align'] - r['mm_align_other_music'] for r in chosen])} | "
                     + " | ".join(cell(values[k]) for k in keys[2:]) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
