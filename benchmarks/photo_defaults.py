"""Which default serves a user's own photo better: both defaults through the main job on real photos and songs.

    pip install scikit-image           # the photos (benchmarks/photo_manifest.json), read from the package
    python benchmarks/real_beats_data.py --repos REPOS --out runs/realbeats   # the songs, with human beats
    python benchmarks/photo_defaults.py --songs runs/realbeats [--seconds 6] [--start 5] [--size 512]

Each photo of the manifest (a person, an animal, an object), cropped to a square and resized to
--size, is animated by the main job (`python -m musedance_demo`) to each song, once with the MuseDance
default (at its own 64x64, as `--model auto` ran it before the flow default) and once with the flow
default (at --size). Every written video is read back and scored:
- appearance against the photo (musedance_core.evaluation.appearance: structure, colours and detail,
  mean and worst frame);
- how the motion follows the music: 2D-MM Align against the song's human beat annotations, its chance
  level, and the same video scored against the annotations of another song of the list (the "other
  music" control: motion that follows its own music scores lower there);
- motion: the mean optical-flow magnitude between frames (pixels at 64x64), so a still video cannot
  pass for a faithful one.
Writes benchmarks/results/photo_defaults.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine_info import machine  # benchmarks/ is on sys.path when a script here runs

from musedance_core.audio.beat_files import read_beat_file
from musedance_core.evaluation.appearance import appearance_scores
from musedance_core.evaluation.flow import flow_magnitudes
from musedance_core.evaluation.metrics import (
    MM_ALIGN_SIGMA,
    beat_alignment,
    kinematic_beats,
)
from musedance_core.video import iter_video_frames
from musedance_demo import demo

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = Path(__file__).resolve().parent / "photo_manifest.json"
MODELS = {"MuseDance default": demo.DEFAULT_MODEL, "flow default": demo.DEFAULT_FLOW_MODEL}


def photos(manifest: dict, folder: Path, size: int) -> dict[str, Path]:
    """The manifest's photos, checked, cropped to a centred square and resized to size x size, as PNG files."""
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    out = {}
    for photo in manifest["photos"]:
        source = data / photo["file"]
        if not source.is_file() or hashlib.sha256(source.read_bytes()).hexdigest() != photo["sha256"]:
            raise SystemExit(f"{source} is missing or not the manifest's file; pip install "
                             f"scikit-image=={manifest['version']}.")
        with Image.open(source) as image:
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
            out[photo["id"]] = folder / f"{photo['id']}.png"
            image.save(out[photo["id"]])
    return out


def read_video(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(list(iter_video_frames(path)))).float() / 255


def small(video: torch.Tensor, side: int = 64) -> torch.Tensor:
    x = torch.nn.functional.interpolate(video.permute(0, 3, 1, 2), size=(side, side), mode="bilinear",
                                        align_corners=False, antialias=True)
    return x.clamp(0, 1).permute(0, 2, 3, 1)


def alignment(video64: torch.Tensor, fps: float, beats: np.ndarray) -> tuple[float, float]:
    """2D-MM Align of the video's kinematic beats against music beats (seconds from the video's start), and chance."""
    motion = flow_magnitudes(video64.numpy())
    kinematic = kinematic_beats(motion, fps)
    result = beat_alignment(kinematic, beats, duration=video64.shape[0] / fps, sigma=MM_ALIGN_SIGMA)
    return result.score, result.chance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=Path, required=True, help="the folder real_beats_data.py wrote")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--start", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "photo_defaults")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "photo_defaults")
    args = parser.parse_args()
    started = time.perf_counter()
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    args.work.mkdir(parents=True, exist_ok=True)
    pictures = photos(manifest, args.work, args.size)
    songs = manifest["songs"]
    beats = {}
    for song in songs:
        times = np.asarray(read_beat_file(args.songs / f"{song}.beats").times)
        beats[song] = times[(times >= args.start) & (times < args.start + args.seconds)] - args.start
    runs = []
    for model, checkpoint in MODELS.items():
        for photo, path in pictures.items():
            for song in songs:
                out = args.work / "out" / f"{model.split()[0].lower()}_{photo}_{song}"
                argv = ["--image", str(path), "--music", str(args.songs / f"{song}.wav"), "--start", str(args.start),
                        "--seconds", str(args.seconds), "--model", str(checkpoint), "--out", str(out)]
                if "flow" in model:
                    argv += ["--size", str(args.size)]
                assert demo.main(argv) == 0
                video = read_video(out / f"{demo.NAME}.mp4")
                runs.append({"model": model, "photo": photo, "song": song, "frames": video.shape[0],
                             "size": list(video.shape[1:3]), "video": video})
                print(f"{model} / {photo} / {song}: {video.shape[0]} frames {tuple(video.shape[1:3])} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    fps = 12.0
    rows = []
    for run in runs:
        reference = torch.from_numpy(demo.load_image(pictures[run["photo"]])[..., :3])
        video = run.pop("video")
        video64 = small(video)
        other = songs[(songs.index(run["song"]) + 1) % len(songs)]
        own, chance = alignment(video64, fps, beats[run["song"]])
        control, _ = alignment(video64, fps, beats[other])
        rows.append({**run, **appearance_scores(video, reference).to_dict(), "mm_align": own, "mm_align_chance": chance,
                     "mm_align_other_music": control, "other_music": other,
                     "motion": float(np.mean(flow_magnitudes(video64.numpy())))})
    keys = ["structure", "structure_worst", "colour", "colour_worst", "detail", "detail_worst", "mm_align",
            "mm_align_other_music", "mm_align_chance", "motion"]
    table = {model: {key: [r[key] for r in rows if r["model"] == model] for key in keys} for model in MODELS}
    command = "python benchmarks/photo_defaults.py " + " ".join(sys.argv[1:])
    result = {"command": command, "machine": machine(), "seconds": time.perf_counter() - started,
              "settings": {"seconds": args.seconds, "start": args.start, "size": args.size}, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")

    def stat(values: list[float], digits: int = 3) -> str:
        x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
        return "n/a" if x.size == 0 else f"{x.mean():.{digits}f} [{x.min():.{digits}f}, {x.max():.{digits}f}]"

    lines = ["# Both defaults on photographs, through the main job", "",
             f"Command: `{command}`; {len(pictures)} photos x {len(songs)} songs "
             f"({args.seconds:g} s from {args.start:g} s). Cells: mean [min, max] over the runs; worst: the worst "
             "frame of a run.", "",
             "| Model | Structure (SSIM) | worst frame | Colours | worst frame | Detail | worst frame | 2D-MM Align "
             "| other music | chance | Motion (px/frame at 64) |", "|---" * 11 + "|"]
    for model, values in table.items():
        lines.append(f"| {model} | " + " | ".join(stat(values[k]) for k in keys) + " |")
    lines += ["", "| Model | Photo | Song | Structure | worst | Colours | worst | 2D-MM | other music | chance | Motion |",
              "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['photo']} | {r['song']} | " + " | ".join(
            "n/a" if r[k] is None else f"{r[k]:.3f}" for k in ("structure", "structure_worst", "colour", "colour_worst",
                                                               "mm_align", "mm_align_other_music", "mm_align_chance",
                                                               "motion")) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
