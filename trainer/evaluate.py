"""Evaluation: run models over a prepared test split and write the paper's Tables 2-4 as one table.

    python -m trainer.evaluate --data PREPARED_TEST --clips CLIPS_DIR [--model [NAME=]CKPT ...]
        [--ground-truth] [--shuffled-music] [--steps 25] [--guidance 3.5] [--seeds 0 1 2]
        [--out results.md] [--json results.json] [--lpips-backbone F --lpips-linear F] [--i3d F] [--limit N]

Per clip of `--data` (what `trainer.prepare` wrote) a model animates the clip's first frame with its
mask, caption, music tokens and beats, for as many frames as the clip has, and `metrics.evaluate_video`
scores the video against the prepared ground-truth frames (PSNR, SSIM, LPIPS) and the clip's music
(AV-Align, 2D-MM Align, beat distances). The prepared data holds no waveform, so the audio is decoded
again from the source video in `--clips` (the manifest records its name, size and SHA-256, which are
checked). Music beats are `analyze_beats` of the whole track, as preparation computed them.

Rows: "ground truth" (`--ground-truth`: the prepared frames themselves, how well the real dance
aligns; nothing to compare image quality with), one per `--model`, and with `--shuffled-music` a
control per model: each clip gets the music tokens and beats of a clip of another track while it is
still scored against its own audio, so a model that follows the music scores lower there. With both
`--ground-truth` and `--shuffled-music`, "ground truth, other music" scores the real dances against
the music the shuffled controls take (the same donor clips): what the metrics give a dance that is
perfect but follows other music, so it shows whether a metric can tell dancing on the beat at all.

A flow-family checkpoint (`--model` of family flow) animates the same first frame to the same music and
beats; `--beats-unknown NAME` adds its control with the beats withheld and the music kept.

Spread: a model's value for a clip is its mean over the sampling seeds; a cell is the mean over clips
with a 95% percentile bootstrap interval (1000 resamples of the clips, seeded by `--eval-seed`). FVD
is a distance between sets, computed per seed on the first 16 frames of every clip and averaged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from musedance_core.audio.beats import analyze_beats
from musedance_core.audio.music import load_music
from musedance_core.evaluation.metrics import (
    FVD_I3D_FILE,
    LPIPS,
    MM_ALIGN_SIGMA,
    evaluate_video,
    frechet_distance,
    i3d_features,
    lpips,
)
from musedance_core.loading.flow_checkpoint import load_flow_pipeline
from musedance_core.loading.formats import (
    FLOW_FAMILY,
    checkpoint_family,
    safetensors_header,
)
from musedance_core.loading.loader import load_pipeline
from musedance_core.sampling.flow_pipeline import FlowDancePipeline

from .data import PreparedDataset
from .prepare import file_sha256, write_atomic

RESAMPLES = 1000
LEVEL = 0.95
FVD_FRAMES = 16  # StyleGAN-V's clip length for FVD
# (key, header, digits); the keys of VideoMetrics.scores() plus FVD, in the paper's column order.
COLUMNS = (
    ("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 3), ("lpips", "LPIPS ↓", 3), ("fvd", "FVD ↓", 1),
    ("av_align", "AV-Align ↑", 3), ("mm_align", "2D-MM Align ↑", 3), ("mm_align_chance", "2D-MM chance", 3),
    ("beat_distance_mean", "Mean beat dist. (s) ↓", 3), ("beat_distance_median", "Median beat dist. (s) ↓", 3),
)
PER_CLIP = [key for key, _, _ in COLUMNS if key != "fvd"]


@dataclass
class TestClip:
    """One clip of the test split: its music, decoded again from the source, and which track it is.

    The prepared frames and tokens stay in the shards until a clip's turn (a test split at 640x640
    would not fit in memory).
    """

    index: int  # in the prepared dataset
    name: str
    track: str
    num_frames: int
    waveform: np.ndarray  # mono float32 at sample_rate, the whole track
    sample_rate: int
    music_beats: np.ndarray  # seconds


# --- statistics ----------------------------------------------------------------------------------


def bootstrap_ci(values, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict:
    """Mean of the finite values and its percentile bootstrap interval; n says how many were finite.

    Undefined per-clip values (NaN, e.g. 2D-MM Align of a video without kinematic beats) are left
    out rather than counted as zero; the table says on how many clips a cell stands.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    means = x[np.random.default_rng(seed).integers(0, x.size, (resamples, x.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(x.mean()), "low": float(low), "high": float(high), "n": int(x.size)}


def music_donors(tracks: list[str], seed: int) -> list[int] | None:
    """donor[i]: the clip whose music clip i gets in the shuffled control, always of another track.

    Clips are ordered by track (tracks, and clips within one, in a seeded random order) and each
    takes the music of the clip s places on, cyclically, s the size of the largest track: a
    permutation that never stays within a track. It exists exactly when no track holds more than
    half the clips; None otherwise.
    """
    n = len(tracks)
    groups: dict[str, list[int]] = {}
    for i, track in enumerate(tracks):
        groups.setdefault(track, []).append(i)
    shift = max((len(g) for g in groups.values()), default=0)
    if n < 2 or 2 * shift > n:
        return None
    rng = np.random.default_rng([seed, 7])
    order = [i for key in rng.permutation(sorted(groups)) for i in rng.permutation(groups[str(key)])]
    donors = [0] * n
    for k, i in enumerate(order):
        donors[i] = int(order[(k + shift) % n])
    return donors


# --- data ----------------------------------------------------------------------------------------


def load_tracks(path: Path | None) -> dict[str, str]:
    """clip name -> track name from a tracks.json of `trainer.synthetic` ({"clips": [{"name", "track"}]})."""
    if path is None:
        return {}
    try:
        return {c["name"]: c["track"] for c in json.loads(path.read_text(encoding="utf-8"))["clips"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is not a tracks file with clips [{{name, track}}] ({error}).") from None


def load_clip(data: PreparedDataset, index: int, clips: Path, tracks: dict[str, str]) -> TestClip:
    """Clip `index` of the prepared split, with its audio decoded from the source file in `clips`."""
    entry = data.entries[index]
    source = clips / entry["source"]
    if not source.is_file():
        raise ValueError(f"clip {entry['name']}: its source {entry['source']} is not in --clips {clips}; "
                         "pass the folder the split was prepared from.")
    if source.stat().st_size != entry["source_bytes"] or file_sha256(source) != entry["source_sha256"]:
        raise ValueError(f"clip {entry['name']}: {source} is not the file that was prepared (size or SHA-256 "
                         "differ); prepare the split again or pass the original clips.")
    music = load_music(source)
    # Without a tracks file, clips with exactly the same audio count as one track.
    track = tracks.get(entry["name"]) or hashlib.sha256(music.waveform.tobytes()).hexdigest()
    return TestClip(index, entry["name"], track, data.num_frames(index), music.waveform, music.sample_rate,
                    analyze_beats(music.waveform, music.sample_rate).times)


# --- scoring -------------------------------------------------------------------------------------


def score(video: torch.Tensor, clip: TestClip, fps: float, truth: torch.Tensor | None = None,
          lpips_model: LPIPS | None = None) -> dict:
    """The per-clip metrics of `video`, which shows the clip's first frames: alignment with the clip's own
    music (cut to the video's length) and, given the ground truth `truth`, the image metrics. NaN: undefined."""
    count = video.shape[0]
    seconds = count / fps
    audio = clip.waveform[: round(seconds * clip.sample_rate)]
    truth = None if truth is None else truth[:count]
    scores = evaluate_video(video, fps, audio, clip.sample_rate, truth,
                            music_beats=clip.music_beats[clip.music_beats < seconds]).scores()
    if truth is not None and lpips_model is not None:
        scores["lpips"] = lpips(video, truth, model=lpips_model)
    return {k: (math.nan if scores[k] is None else float(scores[k])) for k in PER_CLIP}


def fvd_features(video: torch.Tensor, i3d: Path) -> np.ndarray | None:
    """I3D features [400] of the first FVD_FRAMES frames; None for a shorter video (left out of FVD)."""
    if video.shape[0] < FVD_FRAMES:
        return None
    return i3d_features(video[None, :FVD_FRAMES].numpy(), i3d)[0]


@dataclass
class Settings:
    steps: int = 25
    guidance: float = 3.5
    noise_share: float = 0.0
    reference_start: bool = False
    beat_guidance: float | None = None
    seeds: tuple[int, ...] = (0,)
    eval_seed: int = 0
    device: str = "cpu"
    dtype: str = "fp32"
    lpips_model: LPIPS | None = None
    i3d: Path | None = None


def sample_video(pipe, reference, text: torch.Tensor | None, source, count: int, settings: Settings, seed: int,
                 beats_unknown: bool = False) -> torch.Tensor:
    """The first `count` frames animated to the music tokens and beats of `source` (a prepared clip).

    beats_unknown (flow family): the beats withheld from the model, as in its beat-dropped training rows."""
    if isinstance(pipe, FlowDancePipeline):
        return torch.cat(list(pipe.iter_clips(reference, source.music[:count], source.beats[:count],
                                              num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                                              beat_guidance_scale=settings.beat_guidance, seed=seed,
                                              beats_unknown=beats_unknown)))
    return pipe(reference=reference, text_embeds=text, music_tokens=source.music[:count], beats=source.beats[:count],
                num_inference_steps=settings.steps, guidance_scale=settings.guidance, seed=seed,
                noise_share=settings.noise_share, beat_guidance_scale=settings.beat_guidance,
                reference_start=settings.reference_start)


def evaluate_model(pipe, data: PreparedDataset, clips: list[TestClip], fps: float, settings: Settings,
                   donors: list[int] | None, real_features: dict[int, np.ndarray | None],
                   beats_unknown: bool = False) -> dict[str, dict]:
    """{"model": result, "shuffled": result (only with donors), "beats unknown": result (only with
    beats_unknown)}, each {"clips": per-clip results, "fvd"}.

    real_features: I3D features of the ground truth by clip position, filled on first use (with --i3d).
    """
    kinds = ["model"] + (["shuffled"] if donors is not None else []) + (["beats unknown"] if beats_unknown else [])
    flow = isinstance(pipe, FlowDancePipeline)
    per_clip: dict[str, list[dict]] = {kind: [] for kind in kinds}
    features: dict[str, dict[int, list]] = {kind: {s: [] for s in settings.seeds} for kind in kinds}  # (real, fake)
    for position, clip in enumerate(clips):
        own = data[clip.index]
        truth = own.frames.float() / 255.0
        if settings.i3d is not None and position not in real_features:
            real_features[position] = fvd_features(truth, settings.i3d)
        if flow:  # no prompt; no mask either: the flow family's mask only limits where it may move
            text, reference = None, pipe.encode_reference(truth[0])
        else:
            text = pipe.encode_prompt(own.caption)
            reference = pipe.encode_reference(truth[0], own.masks[0], text)  # shared by every run of the clip
        for kind in kinds:
            source = data[clips[donors[position]].index] if kind == "shuffled" else own
            count = min(own.num_frames, source.num_frames)
            per_seed = {}
            for seed in settings.seeds:
                video = sample_video(pipe, reference, text, source, count, settings, seed, kind == "beats unknown")
                per_seed[str(seed)] = score(video, clip, fps, truth, settings.lpips_model)
                if settings.i3d is not None and real_features[position] is not None:
                    fake = fvd_features(video, settings.i3d)
                    if fake is not None:
                        features[kind][seed].append((real_features[position], fake))
            mean = {k: _nanmean([s[k] for s in per_seed.values()]) for k in PER_CLIP}
            per_clip[kind].append({"name": clip.name, "track": clip.track, "music_from": source.name,
                                   "frames": count, "seeds": per_seed, "mean": mean})
    results = {}
    for kind in kinds:
        fvds = [frechet_distance(np.stack([r for r, _ in pairs]), np.stack([f for _, f in pairs]))
                for pairs in features[kind].values() if len(pairs) >= 2]  # FVD needs two clips at least
        results[kind] = {"clips": per_clip[kind], "fvd": _nanmean(fvds)}
    return results


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(name: str, result: dict, settings: Settings) -> dict:
    """A table row: the per-clip results plus mean and bootstrap interval of every column."""
    summary = {k: bootstrap_ci([c["mean"][k] for c in result["clips"]], seed=settings.eval_seed) for k in PER_CLIP}
    fvd = result.get("fvd", math.nan)
    summary["fvd"] = {"mean": None if not math.isfinite(fvd) else fvd, "low": None, "high": None,
                      "n": len(result["clips"]) if math.isfinite(fvd) else 0}
    return {"name": name, **result, "fvd": summary["fvd"]["mean"], "summary": summary}


# --- output --------------------------------------------------------------------------------------


def _cell(stat: dict, digits: int, clips: int) -> str:
    if stat["mean"] is None:
        return "n/a"
    text = f"{stat['mean']:.{digits}f}"
    if stat["low"] is not None:
        text += f" [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"
    if stat["n"] < clips:
        text += f" ({stat['n']}/{clips})"
    return text


def markdown(command: str, header: list[str], rows: list[dict]) -> str:
    lines = ["# MuseDance evaluation", "", f"Command: `{command}`", "", *[f"- {h}" for h in header], ""]
    lines.append("| Method | Clips | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for row in rows:
        clips = len(row["clips"])
        cells = [_cell(row["summary"][key], digits, clips) for key, _, digits in COLUMNS]
        lines.append(f"| {row['name']} | {clips} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _json_safe(value):
    """NaN -> None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# --- command -------------------------------------------------------------------------------------


def _model_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).stem, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--model must be CKPT or NAME=CKPT, got {text!r}.")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="a prepared test split (python -m trainer.prepare)")
    parser.add_argument("--clips", required=True, type=Path,
                        help="the folder of source clips it was prepared from (their audio is decoded again)")
    parser.add_argument("--model", action="append", type=_model_arg, default=[], metavar="[NAME=]CKPT",
                        help="a MuseDance checkpoint to evaluate; repeat for several rows (ablations)")
    parser.add_argument("--base", type=Path, help="SD1.5 or MuseDance file under a partial (temporal-only) checkpoint")
    parser.add_argument("--tokenizer", type=Path, help="CLIP tokenizer folder, if the checkpoints carry none")
    parser.add_argument("--ground-truth", action="store_true", help="add the row of the ground-truth videos")
    parser.add_argument("--shuffled-music", nargs="*", metavar="NAME",
                        help="add a control row per model (or only for the models NAMEd): each clip animated to "
                        "another track's music")
    parser.add_argument("--tracks", type=Path, help="tracks.json naming each clip's track (trainer.synthetic "
                        "writes one); without it clips with identical audio count as one track")
    parser.add_argument("--beats-unknown", nargs="+", metavar="NAME", default=[],
                        help="add a control row for these flow-family models: the beats withheld (unknown beat "
                        "tokens, as in training's beat-dropped rows), the music kept")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--guidance", type=float, default=3.5, help="guidance scale (default 3.5)")
    parser.add_argument("--noise-share", type=float, default=0.0,
                        help="starting noise shared by the frames, 0..1 (default 0: independent; see the sampler)")
    parser.add_argument("--reference-start", action="store_true",
                        help="start each frame from the noised reference latent instead of pure noise (see the sampler)")
    parser.add_argument("--beat-guidance", type=float, default=None,
                        help="the beats' own guidance scale (default: none, guided with the rest; see the sampler)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds (default 0)")
    parser.add_argument("--eval-seed", type=int, default=0, help="seeds the music shuffle and the bootstrap")
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--lpips-backbone", type=Path, help="torchvision AlexNet/VGG16 weights for LPIPS")
    parser.add_argument("--lpips-linear", type=Path, help="lpips v0.1 linear-layer weights for LPIPS")
    parser.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex")
    parser.add_argument("--i3d", type=Path, help=f"for FVD: {FVD_I3D_FILE}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--out", type=Path, default=Path("results.md"), help="Markdown table (default results.md)")
    parser.add_argument("--json", type=Path, help="per-clip numbers as JSON")
    args = parser.parse_args(argv)
    if not args.model and not args.ground_truth:
        parser.error("nothing to evaluate: give --model CKPT and/or --ground-truth.")
    if (args.lpips_backbone is None) != (args.lpips_linear is None):
        parser.error("LPIPS needs both --lpips-backbone and --lpips-linear.")
    command = "python -m trainer.evaluate " + shlex.join(argv)
    try:
        settings = Settings(steps=args.steps, guidance=args.guidance, noise_share=args.noise_share,
                            reference_start=args.reference_start,
                            beat_guidance=args.beat_guidance,
                            seeds=tuple(args.seeds), eval_seed=args.eval_seed, device=args.device, dtype=args.dtype,
                            lpips_model=LPIPS(args.lpips_backbone, args.lpips_linear, args.lpips_net)
                            if args.lpips_backbone else None, i3d=args.i3d)
        report = run(args.data, args.clips, args.model, settings, command=command, ground_truth=args.ground_truth,
                     shuffled=args.shuffled_music, tracks=args.tracks, limit=args.limit, base=args.base,
                     tokenizer=args.tokenizer, beats_unknown=args.beats_unknown)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    write_atomic(args.out, lambda p: p.write_text(report["markdown"], encoding="utf-8"))
    if args.json is not None:
        payload = json.dumps(_json_safe({k: v for k, v in report.items() if k != "markdown"}), indent=1)
        write_atomic(args.json, lambda p: p.write_text(payload + "\n", encoding="utf-8"))
    print(report["markdown"])
    return 0


def is_flow_checkpoint(path: Path) -> bool:
    return Path(path).is_file() and checkpoint_family(safetensors_header(path).get("__metadata__")) == FLOW_FAMILY


def run(data: Path, clips_folder: Path, models: list[tuple[str, Path]], settings: Settings, *, command: str,
        ground_truth: bool = False, shuffled: bool | list[str] | None = False, tracks: Path | None = None,
        limit: int | None = None, base: Path | None = None, tokenizer: Path | None = None,
        beats_unknown: list[str] | None = None) -> dict:
    """Evaluate and return {"command", "settings", "rows", "markdown"} (see the module docstring).

    shuffled: True or [] for a shuffled-music control of every model, a list of names for those models
    only, False or None for none. beats_unknown: names of flow-family models that also get a control
    with the beats withheld.
    """
    for name in beats_unknown or ():
        path = dict(models).get(name)
        if path is None or not is_flow_checkpoint(path):
            raise ValueError(f"--beats-unknown names {name!r}, which is not a flow-family --model; it is the flow "
                             "family's control (a MuseDance model's is its ablation without the beat module).")
    if isinstance(shuffled, list) and shuffled:
        unknown = sorted(set(shuffled) - {name for name, _ in models})
        if unknown:
            raise ValueError(f"--shuffled-music names {unknown}, which are not --model names "
                             f"({', '.join(name for name, _ in models)}).")
    controlled = {name for name, _ in models} if shuffled is True or shuffled == [] else set(shuffled or ())
    dataset = PreparedDataset(data)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError(f"{data} holds no prepared clips.")
    names = load_tracks(tracks)
    clips = [load_clip(dataset, i, Path(clips_folder), names) for i in range(count)]
    fps = dataset.fps
    truth_control = ground_truth and shuffled not in (None, False)
    donors = music_donors([c.track for c in clips], settings.eval_seed) if controlled or truth_control else None
    notes = ["PSNR, SSIM, LPIPS and FVD are n/a for the ground truth (nothing to compare it with)."] if ground_truth else []
    if settings.lpips_model is None:
        notes.append("LPIPS: n/a without --lpips-backbone and --lpips-linear (never computed with a random network).")
    if settings.i3d is None:
        notes.append(f"FVD: n/a without --i3d ({FVD_I3D_FILE}); with it, per seed on the first {FVD_FRAMES} "
                     "frames of every clip, averaged over the seeds.")
    if (controlled or truth_control) and donors is None:
        notes.append("Shuffled music: not possible, one track holds more than half of the clips (or one clip).")
    if any(is_flow_checkpoint(path) for _, path in models):
        notes.append("Flow-family rows: DDIM steps, guidance, beat guidance and seeds as above; noise share and "
                     "reference start are MuseDance's and do not apply; the reference is animated without its "
                     "mask (the flow family's mask only limits where it may move)."
                     + (" Beats unknown: the model's own music with the beats withheld (the unknown beat "
                        "tokens of its beat-dropped training rows)." if beats_unknown else ""))
    rows, real_features = [], {}
    if ground_truth:
        truth, other = [], []
        for position, c in enumerate(clips):
            frames = dataset[c.index].frames.float() / 255.0
            truth.append({"name": c.name, "track": c.track, "music_from": c.name, "frames": c.num_frames,
                          "mean": score(frames, c, fps)})
            if truth_control and donors is not None:
                music = clips[donors[position]]
                length = min(c.num_frames, music.num_frames)
                other.append({"name": c.name, "track": c.track, "music_from": music.name, "frames": length,
                              "mean": score(frames[:length], music, fps)})
        rows.append(summarise("ground truth", {"clips": truth}, settings))
        if other:
            rows.append(summarise("ground truth, other music", {"clips": other}, settings))
    for name, path in models:
        if is_flow_checkpoint(path):
            pipe = load_flow_pipeline(path, device=settings.device, dtype=settings.dtype)
        else:
            pipe = load_pipeline(path, base=base, tokenizer=tokenizer, device=settings.device, dtype=settings.dtype)
        results = evaluate_model(pipe, dataset, clips, fps, settings, donors if name in controlled else None,
                                 real_features, beats_unknown=name in (beats_unknown or ()))
        rows.append({"checkpoint": str(path), **summarise(name, results["model"], settings)})
        if "shuffled" in results:
            rows.append({"checkpoint": str(path), **summarise(f"{name}, shuffled music", results["shuffled"], settings)})
        if "beats unknown" in results:
            rows.append({"checkpoint": str(path), **summarise(f"{name}, beats unknown", results["beats unknown"], settings)})
        del pipe
    lengths = sorted({c.num_frames for c in clips})
    frames = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}–{lengths[-1]}"
    height, width = dataset.size
    header = [
        f"Test split: `{data}`, {count} clips ({frames} frames at "
        f"{fps:g} fps, {width}×{height}), audio decoded from `{clips_folder}`.",
        f"Sampling: DDIM {settings.steps} steps, guidance {settings.guidance:g}"
        + ("" if settings.beat_guidance is None else f", beat guidance {settings.beat_guidance:g}")
        + f", noise share {settings.noise_share:g}"
        + (", start from the noised reference" if settings.reference_start else "") + ", seeds "
        f"{', '.join(map(str, settings.seeds))} (a model's value for a clip is its mean over the seeds); "
        f"{settings.device}, {settings.dtype}.",
        f"Cells: mean over clips [{LEVEL:.0%} bootstrap interval, {RESAMPLES} resamples of the clips, seed "
        f"{settings.eval_seed}]; (k/n): defined on k of the n clips only (e.g. a video without kinematic beats).",
        f"2D-MM Align: sigma {MM_ALIGN_SIGMA:g} s; 2D-MM chance is what motion unrelated to the music would score.",
        "Shuffled music: each clip gets the music tokens and beats of a clip of another track (fixed by the seed) "
        "and is still scored against its own audio."
        + (" Ground truth, other music: the real dances scored against the music of those same donor clips."
           if any(row["name"] == "ground truth, other music" for row in rows) else ""),
        *notes,
    ]
    configuration = {"data": str(data), "clips_folder": str(clips_folder), "num_clips": count, "fps": fps,
                     "size": [height, width], "steps": settings.steps, "guidance": settings.guidance,
                     "seeds": list(settings.seeds), "eval_seed": settings.eval_seed, "resamples": RESAMPLES,
                     "level": LEVEL, "device": settings.device, "dtype": settings.dtype, "sigma": MM_ALIGN_SIGMA}
    return {"command": command, "settings": configuration, "rows": rows, "markdown": markdown(command, header, rows)}


if __name__ == "__main__":
    sys.exit(main())
