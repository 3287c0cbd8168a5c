"""Beat tracking on real recordings with human beat annotations.

    python benchmarks/real_beats.py --data ~/realbeats
        [--methods musedance,librosa-defaults,madmom] [--output benchmarks/results/real_beats.json]
        [--table benchmarks/results/real_beats.md]

--data is a folder of recordings, each with a `.beats` file of the same stem (one annotated time per
line, optionally its beat number; `musedance_core.audio.beat_files` reads it). benchmarks/real_beats_data.py
builds that folder from public repositories, as listed in benchmarks/real_beats_manifest.json; the
manifest also says which excerpts are held out from tuning and gives each one's style.

Per excerpt and method, and averaged over all excerpts, over the tuning set and over the held-out set:
- mir_eval beat F-measure (70 ms), Cemgil, CMLt, AMLt and P-score, counting beats from t = 0
  (mir_eval's default skips the first 5 s, which would empty short excerpts);
- the tempo found (60 / median inter-beat interval of the beats found) against the annotated tempo
  (the same of the annotation), and the metrical level that ratio means (1x, 2x, 1/2x, 3/2x, 2/3x);
- the share of annotated beats whose nearest video frame carries a beat in the beat vector
  (`beats.beat_vector`), at 12 and 24 fps, on that frame (+-0) or within one frame (+-1);
- edges: the share of annotated beats within EDGE_SECONDS of the first and of the last annotated
  beat that the method found (70 ms), since trimming the grid at the ends can drop real beats;
- with downbeat annotations, downbeat F-measure (70 ms) and whether the meter found equals the
  annotated one;
- short clips: each method again on a SHORT_SECONDS stretch of each excerpt alone (from
  SHORT_START s, or the start for short excerpts), scored on the annotated beats inside it: what a
  user who uploads a few seconds of music gets.
Methods: `musedance` (the core's default tracker), `librosa-defaults` (`librosa.load` and
`librosa.beat.beat_track` with every default, the baseline), `librosa` (the core's `method="librosa"`)
and `madmom` (the core's adapter, where madmom is importable), plus `madmom-reference` (madmom's own
processors called directly, to check that the adapter reproduces them). librosa's own tempo estimate
(`librosa.feature.tempo` with defaults) is recorded per excerpt, so the table can show where the
tracker doubled or halved a tempo that librosa had right.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import librosa
import mir_eval
import numpy as np

from machine_info import machine  # benchmarks/ is on sys.path when a script here runs
from musedance_core.audio import beats
from musedance_core.audio.beat_files import read_beat_file
from musedance_core.audio.music import load_music

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "benchmarks" / "real_beats_manifest.json"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aiff", ".aif")
FRAME_RATES = (12.0, 24.0)
LEVELS = {"1x": 1.0, "2x": 2.0, "1/2x": 0.5, "3/2x": 1.5, "2/3x": 2 / 3, "3x": 3.0, "1/3x": 1 / 3}
LEVEL_TOLERANCE = 0.08  # a tempo within 8 % of a multiple counts as that metrical level
SCORES = ("f_measure", "cemgil", "cmlt", "amlt", "p_score")


def excerpts(folder: Path) -> list[tuple[str, Path, Path]]:
    """(stem, audio, annotation) for every recording in `folder` that has a `.beats` file."""
    found = []
    for audio in sorted(folder.iterdir()):
        annotation = audio.with_suffix(".beats")
        if audio.suffix.lower() in AUDIO_SUFFIXES and annotation.is_file():
            found.append((audio.stem, audio, annotation))
    if not found:
        raise SystemExit(f"{folder} holds no recording with a .beats file of the same name; build it with "
                         "benchmarks/real_beats_data.py (see benchmarks/real_beats_manifest.json).")
    return found


def tempo_of(times: np.ndarray) -> float:
    """60 / median inter-beat interval, 0.0 with fewer than two beats."""
    return float(60.0 / np.median(np.diff(times))) if times.size >= 2 else 0.0


def level(found: float, annotated: float) -> str:
    """The metrical level of a tempo against the annotated one: a key of LEVELS, or 'other'."""
    if found <= 0 or annotated <= 0:
        return "none"
    ratio = found / annotated
    for name, multiple in LEVELS.items():
        if abs(ratio / multiple - 1.0) <= LEVEL_TOLERANCE:
            return name
    return "other"


def beat_scores(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """mir_eval's beat scores with beats counted from t = 0."""
    ref = mir_eval.beat.trim_beats(reference, min_beat_time=0.0)
    est = mir_eval.beat.trim_beats(estimate, min_beat_time=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on an empty estimate and scores it 0
        _, cmlt, _, amlt = mir_eval.beat.continuity(ref, est)
        return {
            "f_measure": float(mir_eval.beat.f_measure(ref, est, f_measure_threshold=0.07)),
            "cemgil": float(mir_eval.beat.cemgil(ref, est)[0]),
            "cmlt": float(cmlt),
            "amlt": float(amlt),
            "p_score": float(mir_eval.beat.p_score(ref, est)),
        }


def frame_hits(reference: np.ndarray, estimate: np.ndarray, fps: float, duration: float) -> dict[str, float]:
    """Share of annotated beats whose nearest frame at `fps` has a beat in the estimate's beat vector (+-0, +-1 frame)."""
    count = int(np.ceil(duration * fps)) + 1
    vector = beats.beat_vector(estimate, fps, count)
    frames = np.floor(reference * fps + 0.5).astype(np.int64)
    frames = frames[(frames >= 0) & (frames < count)]
    if frames.size == 0:
        return {"exact": 0.0, "within_1": 0.0}
    padded = np.concatenate([[0.0], vector, [0.0]])
    near = np.maximum(np.maximum(padded[frames], padded[frames + 1]), padded[frames + 2])
    return {"exact": float(vector[frames].mean()), "within_1": float(near.mean())}


def downbeat_f(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(mir_eval.beat.f_measure(reference, estimate, f_measure_threshold=0.07))


def run_librosa_defaults(audio: Path, window: tuple[float, float] | None) -> dict:
    """librosa with every default: load at 22.05 kHz mono, beat_track, times."""
    offset, duration = window or (0.0, None)
    y, sr = librosa.load(audio, offset=offset, duration=duration)
    tempo, frames = librosa.beat.beat_track(y=y, sr=sr)
    return {"times": librosa.frames_to_time(frames, sr=sr), "tempo": float(np.atleast_1d(tempo)[0])}


def run_core(audio: Path, window: tuple[float, float] | None, method: str) -> dict:
    start, duration = window or (0.0, None)
    music = load_music(audio, start=start, duration=duration, sample_rate=beats.sample_rate_for(method))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a quiet stretch: no beats, scored as such
        analysis = beats.analyze_beats(music.waveform, music.sample_rate, method=method)
    result = {"times": np.asarray(analysis.times), "tempo": analysis.tempo}
    if analysis.beat_numbers is not None:
        result["downbeats"] = np.asarray(analysis.downbeats)
        result["meter"] = analysis.meter
    return result


def run_madmom_reference(audio: Path, window: tuple[float, float] | None) -> dict:
    """madmom's own processors (no adapter in between), default settings, on the music at 44.1 kHz
    mono as librosa loads it (madmom resamples only through ffmpeg): RNN + DBN beats and downbeats."""
    from musedance_core.audio import madmom_beats

    madmom_beats.import_madmom()
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

    offset, duration = window or (0.0, None)
    y, _ = librosa.load(audio, sr=madmom_beats.SAMPLE_RATE, offset=offset, duration=duration)
    times = DBNBeatTrackingProcessor(fps=100)(RNNBeatProcessor()(y))
    bars = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)(RNNDownBeatProcessor()(y))
    return {"times": np.asarray(times), "tempo": tempo_of(np.asarray(times)),
            "downbeats": bars[bars[:, 1] == 1, 0], "meter": int(bars[:, 1].max()) if len(bars) else 0}


METHODS = {
    "musedance": lambda audio, window: run_core(audio, window, "musedance"),
    "librosa-defaults": run_librosa_defaults,
    "librosa": lambda audio, window: run_core(audio, window, "librosa"),
    "madmom": lambda audio, window: run_core(audio, window, "madmom"),
    "madmom-reference": run_madmom_reference,
}
EDGE_SECONDS = 2.0
SHORT_SECONDS = 4.0
SHORT_START = 10.0


def edge_recall(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float | None]:
    """Share of annotated beats within EDGE_SECONDS of the first / last annotated beat that were found (70 ms)."""
    out = {}
    for name, near in (("first", reference <= reference[0] + EDGE_SECONDS),
                       ("last", reference >= reference[-1] - EDGE_SECONDS)):
        edge = reference[near]
        found = [np.min(np.abs(estimate - t)) <= 0.07 if estimate.size else False for t in edge]
        out[f"edge_{name}"] = float(np.mean(found)) if edge.size else None
    return out


def evaluate(folder: Path, methods: list[str], manifest: dict[str, dict]) -> dict:
    rows = []
    for stem, audio, annotation in excerpts(folder):
        truth = read_beat_file(annotation)
        info = manifest.get(stem, {})
        duration = float(librosa.get_duration(path=audio))
        y, sr = librosa.load(audio)
        librosa_tempo = float(librosa.feature.tempo(y=y, sr=sr)[0])
        annotated = tempo_of(truth.times)
        row = {"excerpt": stem, "style": info.get("style", "?"), "split": info.get("split", "extra"),
               "duration_s": round(duration, 2), "beats": int(truth.times.size),
               "annotated_tempo": round(annotated, 2), "librosa_tempo_estimate": round(librosa_tempo, 2),
               "librosa_estimate_level": level(librosa_tempo, annotated), "methods": {}}
        downbeats = truth.times[truth.numbers == 1] if truth.numbers is not None else None
        meter = int(truth.numbers.max()) if truth.numbers is not None else None
        row["annotated_meter"] = meter
        short_start = SHORT_START if duration >= SHORT_START + SHORT_SECONDS + 1.0 else 0.0
        short_truth = truth.times[(truth.times >= short_start) & (truth.times < short_start + SHORT_SECONDS)] - short_start
        for name in methods:
            started = time.perf_counter()
            found = METHODS[name](audio, None)
            seconds = time.perf_counter() - started
            times = np.asarray(found["times"], dtype=np.float64)
            entry = {**{k: round(v, 4) for k, v in beat_scores(truth.times, times).items()},
                     "tempo": round(tempo_of(times), 2), "level": level(tempo_of(times), annotated),
                     "seconds": round(seconds, 2), **edge_recall(truth.times, times)}
            if short_truth.size >= 2:
                short = np.asarray(METHODS[name](audio, (short_start, SHORT_SECONDS))["times"], dtype=np.float64)
                entry["short_f_measure"] = round(beat_scores(short_truth, short)["f_measure"], 4)
                entry["short_level"] = level(tempo_of(short), annotated)
            for fps in FRAME_RATES:
                hits = frame_hits(truth.times, times, fps, duration)
                entry[f"frames_{fps:g}fps_exact"] = round(hits["exact"], 4)
                entry[f"frames_{fps:g}fps_within_1"] = round(hits["within_1"], 4)
            if downbeats is not None and "downbeats" in found:
                entry["downbeat_f"] = round(downbeat_f(downbeats, np.asarray(found["downbeats"])), 4)
                entry["meter"] = found["meter"]
                entry["meter_right"] = found["meter"] == meter
            row["methods"][name] = entry
        rows.append(row)
        print(f"{stem:28s} " + "  ".join(f"{m}: F {row['methods'][m]['f_measure']:.2f} AMLt "
                                           f"{row['methods'][m]['amlt']:.2f} {row['methods'][m]['level']}"
                                           for m in methods), flush=True)
    return {"excerpts": rows, "means": {split: means(rows, methods, split) for split in ("all", "tune", "holdout")}}


def means(rows: list[dict], methods: list[str], split: str) -> dict:
    chosen = [row for row in rows if split == "all" or row["split"] == split]
    out: dict = {"excerpts": len(chosen)}
    if not chosen:
        return out
    for name in methods:
        entries = [row["methods"][name] for row in chosen]
        keys = [*SCORES, *(k for k in entries[0] if k.startswith("frames_"))]
        summary = {key: round(float(np.mean([e[key] for e in entries])), 4) for key in keys}
        for key in ("edge_first", "edge_last", "short_f_measure"):
            values = [e[key] for e in entries if e.get(key) is not None]
            summary[key] = round(float(np.mean(values)), 4) if values else None
        summary["short_octave_errors"] = sum(e.get("short_level") in ("2x", "1/2x") for e in entries)
        summary["seconds_per_excerpt"] = round(float(np.mean([e["seconds"] for e in entries])), 2)
        with_downbeats = [e for e in entries if "downbeat_f" in e]
        if with_downbeats:
            summary["downbeat_f"] = round(float(np.mean([e["downbeat_f"] for e in with_downbeats])), 4)
            summary["meter_right"] = f"{sum(e['meter_right'] for e in with_downbeats)}/{len(with_downbeats)}"
        summary["levels"] = {lv: sum(e["level"] == lv for e in entries) for lv in sorted({e["level"] for e in entries})}
        summary["octave_errors_where_librosa_estimate_right"] = [
            row["excerpt"] for row in chosen
            if row["librosa_estimate_level"] == "1x" and row["methods"][name]["level"] in ("2x", "1/2x")]
        out[name] = summary
    return out


def markdown(results: dict, methods: list[str]) -> str:
    lines = ["| excerpt | style | split | tempo (annot. / librosa est.) | " + " | ".join(
        f"{m}: F / AMLt / tempo" for m in methods) + " |", "|" + "---|" * (4 + len(methods))]
    for row in results["excerpts"]:
        cells = [f"{row['methods'][m]['f_measure']:.2f} / {row['methods'][m]['amlt']:.2f} / "
                 f"{row['methods'][m]['tempo']:.0f} ({row['methods'][m]['level']})" for m in methods]
        lines.append(f"| {row['excerpt']} | {row['style']} | {row['split']} | {row['annotated_tempo']:.0f} / "
                     f"{row['librosa_tempo_estimate']:.0f} | " + " | ".join(cells) + " |")
    lines += ["", "| set | method | F | Cemgil | CMLt | AMLt | P-score | frames 12 fps +-0 / +-1 | "
                  "frames 24 fps +-0 / +-1 | first / last 2 s found | 4 s clips: F, octave errors | "
                  "downbeat F | meter right | octave errors where librosa's estimate was right |",
              "|" + "---|" * 14]
    for split, summary in results["means"].items():
        for name in methods:
            if name not in summary:
                continue
            s = summary[name]
            lines.append(
                f"| {split} ({summary['excerpts']}) | {name} | " + " | ".join(f"{s[k]:.3f}" for k in SCORES)
                + f" | {s['frames_12fps_exact']:.3f} / {s['frames_12fps_within_1']:.3f}"
                + f" | {s['frames_24fps_exact']:.3f} / {s['frames_24fps_within_1']:.3f}"
                + f" | {s['edge_first']:.3f} / {s['edge_last']:.3f}"
                + f" | {s['short_f_measure']:.3f}, {s['short_octave_errors']}"
                + f" | {s.get('downbeat_f', float('nan')):.3f} | {s.get('meter_right', '-')}"
                + f" | {len(s['octave_errors_where_librosa_estimate_right'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of recordings and their .beats files")
    parser.add_argument("--methods", default=None,
                        help="comma-separated, from: " + ", ".join(METHODS) + " (default: all that can run here)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "real_beats.json")
    parser.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "results" / "real_beats.md")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder; build it with benchmarks/real_beats_data.py.")
    if args.methods is None:
        methods = ["musedance", "librosa-defaults", "librosa"]
        if beats.method_available("madmom"):
            methods += ["madmom", "madmom-reference"]
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
    manifest = {entry["id"]: entry for entry in json.loads(MANIFEST.read_text())["excerpts"]} if MANIFEST.is_file() else {}
    results = evaluate(args.data, methods, manifest)
    results["machine"] = machine("librosa", "mir_eval", "numpy")
    results["methods"] = methods
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results, methods)
    args.table.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
