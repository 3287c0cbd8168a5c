"""Why AV-Align does or does not tell a model's dance from its controls: where the flow peaks fall.

    python benchmarks/peak_phase.py --data runs/default/prepared_test --clips runs/default/synth/test \
        --tracks runs/default/synth/tracks.json --stride 3 --ground-truth \
        --model default=models/musedance/musedance_default.safetensors --shuffled-music default \
        --model no_beat=runs/default/ablations/musedance_default_no_beat.safetensors \
        --steps 10 --guidance 2.5 --beat-guidance 5 --reference-start --json benchmarks/results/peak_phase.json

AV-Align (`metrics.av_align_iou`) counts the video's flow maxima that lie within one frame of an
audio onset. Per row (the ground truth, each model, a model's shuffled-music control, as
`trainer.evaluate` makes them, with its sampler settings) and clip this records the number of onsets
|A| and of flow maxima |V|, the matches, their hit rate (matches / |V|) against `onset_coverage` (the
hit rate of maxima on random frames), and the place in the beat interval (`beat_phase`: 0 on the
beat, 0.5 on the off-beat) of every onset, flow maximum and kinematic beat (flow minimum). A dance on
the beat of these dancers rests on the beat and moves fastest on the off-beat: its maxima gather at
the off-beat onsets and hit more often than chance; maxima spread over the interval hit at chance,
and then AV-Align grows with |V| alone. Prints a table and the phase histograms; --json keeps every
clip's numbers and motion curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import machine  # noqa: E402
from musedance_core.evaluation.metrics import (  # noqa: E402
    av_align_matches,
    beat_phase,
    evaluate_video,
    onset_coverage,
)
from musedance_core.loading.flow_checkpoint import load_flow_pipeline  # noqa: E402
from musedance_core.loading.loader import load_pipeline  # noqa: E402
from trainer.data import PreparedDataset  # noqa: E402
from trainer.evaluate import (  # noqa: E402
    Settings,
    _model_arg,
    is_flow_checkpoint,
    load_clip,
    load_tracks,
    music_donors,
    sample_video,
)

BINS = 10  # phase histogram bins: [0, 0.1), ..., [0.9, 1)


def clip_record(frames: torch.Tensor, clip, fps: float) -> dict:
    """Onsets, flow maxima and minima of one video against its clip's own music, with their beat phases."""
    count = frames.shape[0]
    seconds = count / fps
    beats = clip.music_beats[clip.music_beats < seconds]
    result = evaluate_video(frames, fps, clip.waveform[: round(seconds * clip.sample_rate)], clip.sample_rate,
                            music_beats=beats)
    matches = av_align_matches(result.audio_peaks, result.video_peaks, fps)
    phases = {name: [round(float(p), 4) for p in beat_phase(times, clip.music_beats) if np.isfinite(p)]
              for name, times in (("onsets", result.audio_peaks), ("peaks", result.video_peaks),
                                  ("minima", result.kinematic_beats))}
    return {"name": clip.name, "onsets": int(result.audio_peaks.size), "peaks": int(result.video_peaks.size),
            "matches": matches, "coverage": onset_coverage(result.audio_peaks, count, fps),
            "av_align": result.av_align, "mm_align": result.mm_align,
            "flicker": float(np.abs(np.diff(np.asarray(frames, dtype=np.float32), axis=0)).mean()),
            "phases": phases, "motion": [round(float(m), 4) for m in result.motion]}


def histogram(values: list[float]) -> list[int]:
    return np.histogram(np.asarray(values, dtype=np.float64), bins=BINS, range=(0.0, 1.0))[0].tolist()


def summary(name: str, clips: list[dict]) -> dict:
    """Totals and means of a row; hit rate = matches / maxima over all clips, chance = coverage weighted alike."""
    peaks = sum(c["peaks"] for c in clips)
    pooled = {kind: [p for c in clips for p in c["phases"][kind]] for kind in ("onsets", "peaks", "minima")}
    return {
        "name": name, "clips": len(clips),
        "onsets_per_clip": float(np.mean([c["onsets"] for c in clips])),
        "peaks_per_clip": float(np.mean([c["peaks"] for c in clips])),
        "hit_rate": sum(c["matches"] for c in clips) / peaks if peaks else float("nan"),
        "chance_hit_rate": sum(c["coverage"] * c["peaks"] for c in clips) / peaks if peaks else float("nan"),
        "av_align": float(np.mean([c["av_align"] for c in clips])),
        "flicker": float(np.mean([c["flicker"] for c in clips])),
        "histograms": {kind: histogram(values) for kind, values in pooled.items()},
    }


def table(rows: list[dict]) -> str:
    lines = ["| Row | Clips | Onsets / clip | Flow maxima / clip | Hit rate | Chance hit rate | AV-Align | Flicker |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['clips']} | {r['onsets_per_clip']:.1f} | {r['peaks_per_clip']:.1f} | "
                     f"{r['hit_rate']:.3f} | {r['chance_hit_rate']:.3f} | {r['av_align']:.3f} | {r['flicker']:.4f} |")
    lines += ["", f"Beat phase histograms ({BINS} bins from the beat, 0, to the next beat; 0.5 is the off-beat):", ""]
    for r in rows:
        for kind in ("onsets", "peaks", "minima"):
            lines.append(f"- {r['name']}, {kind}: {r['histograms'][kind]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a prepared split (python -m trainer.prepare)")
    parser.add_argument("--clips", type=Path, required=True, help="the clips folder it was prepared from")
    parser.add_argument("--tracks", type=Path, help="tracks.json of trainer.synthetic (the shuffle's tracks)")
    parser.add_argument("--model", action="append", type=_model_arg, default=[], metavar="[NAME=]CKPT")
    parser.add_argument("--shuffled-music", nargs="*", default=[], metavar="NAME",
                        help="models that also get the shuffled-music control")
    parser.add_argument("--ground-truth", action="store_true")
    parser.add_argument("--stride", type=int, default=1, help="every n-th clip (3: one clip of each track)")
    parser.add_argument("--limit", type=int, help="at most this many clips (after --stride)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=2.5)
    parser.add_argument("--beat-guidance", type=float)
    parser.add_argument("--noise-share", type=float, default=0.0)
    parser.add_argument("--reference-start", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.model and not args.ground_truth:
        parser.error("nothing to measure: give --model NAME=CKPT and/or --ground-truth.")
    unknown = sorted(set(args.shuffled_music) - {name for name, _ in args.model})
    if unknown:
        parser.error(f"--shuffled-music names {unknown}, which are not --model names.")
    if args.stride < 1:
        parser.error(f"--stride must be at least 1, got {args.stride}.")
    try:
        data = PreparedDataset(args.data)
        indices = list(range(0, len(data), args.stride))[: args.limit]
        tracks = load_tracks(args.tracks)
        clips = [load_clip(data, i, args.clips, tracks) for i in indices]
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    fps = data.fps
    settings = Settings(steps=args.steps, guidance=args.guidance, beat_guidance=args.beat_guidance,
                        noise_share=args.noise_share, reference_start=args.reference_start)
    donors = music_donors([c.track for c in clips], settings.eval_seed) if args.shuffled_music else None
    if args.shuffled_music and donors is None:
        parser.error("shuffled music needs clips of several tracks, none holding more than half of them.")
    rows: dict[str, list[dict]] = {}
    if args.ground_truth:
        rows["ground truth"] = [clip_record(data[c.index].frames.float() / 255.0, c, fps) for c in clips]
    for name, path in args.model:
        flow = is_flow_checkpoint(path)
        pipe = (load_flow_pipeline if flow else load_pipeline)(path, device="cpu", dtype="fp32")
        kinds = [name] + ([f"{name}, shuffled music"] if name in args.shuffled_music else [])
        for kind in kinds:
            rows[kind] = []
        for position, clip in enumerate(clips):
            own = data[clip.index]
            truth = own.frames.float() / 255.0
            if flow:  # as trainer.evaluate: no prompt, and no mask (it only limits where the flow family moves)
                text, reference = None, pipe.encode_reference(truth[0])
            else:
                text = pipe.encode_prompt(own.caption)
                reference = pipe.encode_reference(truth[0], own.masks[0], text)
            for kind in kinds:
                source = own if kind == name else data[clips[donors[position]].index]
                count = min(own.num_frames, source.num_frames)
                video = sample_video(pipe, reference, text, source, count, settings, args.seed)
                rows[kind].append(clip_record(video, clip, fps))
            print(f"{name}: {position + 1}/{len(clips)} clips", file=sys.stderr, flush=True)
        del pipe
    summaries = [summary(name, clips_) for name, clips_ in rows.items()]
    print(table(summaries))
    if args.json is not None:
        payload = {"command": "python benchmarks/peak_phase.py " + " ".join(argv or sys.argv[1:]),
                   "machine": machine("torch", "numpy"), "settings": vars(settings) | {"seed": args.seed},
                   "summaries": summaries, "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
