"""Does the figure in a generated video step from side to side on the beat? (the main job's visible check)

    python benchmarks/figure_steps.py [--video outputs/musedance_demo.mp4] [--music musedance_demo/assets/sample_music.wav]
                                      [--truth GROUND_TRUTH.mp4] [--json benchmarks/results/figure_steps.json]

The synthetic dancers the default model learnt from step sideways with the beat, the same way on the
same beat parity. This measures it in a video without any ground truth: every frame's foreground is
found with the pack's automatic mask (`masks.foreground_mask`, no model needed), its horizontal
centroid is the figure's position, and the music's beats (`beats.analyze_beats`) pick the frames to
read it at. A dance on the beat puts the figure on alternating sides at consecutive beats
(`alternations` of `pairs`), by about the step (`mean_step_px`); frames between beats move from one
side to the other. The same numbers for a video that ignores the beat: alternation about half the time.
With --truth (the real dance to the same music, e.g. the synthetic clip the sample came from), also
on how many beats the figure is on the same side as in the truth (the step's direction on each beat).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from musedance_core.audio.beats import analyze_beats  # noqa: E402
from musedance_core.audio.music import load_music  # noqa: E402
from musedance_core.masks.subject import foreground_mask  # noqa: E402


def read_frames(path: Path) -> tuple[np.ndarray, float]:
    """float32 [F, H, W, 3] in [0, 1] and the frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path} has no video frames.")
    return np.stack(frames).astype(np.float32) / 255.0, fps


def figure_positions(frames: np.ndarray) -> np.ndarray:
    """Horizontal centroid (pixels) of each frame's automatic foreground mask; NaN where it is empty."""
    columns = foreground_mask(frames).mask.numpy().astype(bool).reshape(frames.shape[:3]).sum(axis=1)  # [F, W]
    counts = columns.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (columns * np.arange(columns.shape[1])).sum(axis=1) / counts, np.nan)


def measure(video: Path, music: Path) -> dict:
    """The figure's position on every frame and at the music's beats, and how often it changes sides."""
    frames, fps = read_frames(video)
    track = load_music(music)
    seconds = frames.shape[0] / fps
    beats = analyze_beats(track.waveform, track.sample_rate).times
    beat_frames = sorted({int(round(t * fps)) for t in beats if t < seconds})
    beat_frames = [k for k in beat_frames if k < frames.shape[0]]
    x = figure_positions(frames)
    at = x[beat_frames]
    centre = np.nanmean(x)
    sides = np.sign(at - centre)
    valid = [(a, b) for a, b in zip(sides[:-1], sides[1:]) if a != 0 and b != 0 and np.isfinite(a) and np.isfinite(b)]
    steps = np.abs(np.diff(at))
    return {
        "video": str(video), "music": str(music), "fps": fps, "frames": int(frames.shape[0]),
        "beat_frames": beat_frames, "positions_px": [round(float(v), 2) for v in x],
        "at_beats_px": [round(float(v), 2) for v in at], "sides": [int(v) for v in np.nan_to_num(sides)],
        "pairs": len(valid), "alternations": int(sum(a != b for a, b in valid)),
        "mean_step_px": round(float(np.nanmean(steps)), 2) if steps.size else None,
        "width_px": int(frames.shape[2]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=ROOT / "outputs" / "musedance_demo.mp4")
    parser.add_argument("--music", type=Path, default=ROOT / "musedance_demo" / "assets" / "sample_music.wav")
    parser.add_argument("--truth", type=Path, help="the ground-truth dance to the same music, for the step directions")
    parser.add_argument("--json", type=Path, help="write the numbers here as JSON")
    args = parser.parse_args(argv)
    for path in (args.video, args.music) + ((args.truth,) if args.truth else ()):
        if not path.is_file():
            parser.exit(2, f"error: {path} does not exist (run the main job first: bash scripts/run_demo.sh).\n")
    result = measure(args.video, args.music)
    print(f"figure position (px of {result['width_px']}) at the {len(result['beat_frames'])} beats "
          f"{result['beat_frames']}: {result['at_beats_px']}")
    print(f"sides alternate on {result['alternations']} of {result['pairs']} consecutive beats; "
          f"mean step between beats {result['mean_step_px']} px")
    if args.truth:
        truth = measure(args.truth, args.music)
        if truth["beat_frames"] != result["beat_frames"]:
            parser.exit(2, f"error: {args.truth} and {args.video} differ in length or frame rate.\n")
        same = sum(a == b != 0 for a, b in zip(result["sides"], truth["sides"]))
        result["truth"] = truth
        result["same_side_as_truth"] = same
        print(f"ground truth at the beats: {truth['at_beats_px']}; the video is on the same side on {same} of "
              f"{len(result['sides'])} beats")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
