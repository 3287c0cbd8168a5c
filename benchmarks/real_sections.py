"""Song sections on real recordings with human structure annotations.

    python benchmarks/real_sections.py --data ~/realsections
        [--output benchmarks/results/real_sections.json] [--table benchmarks/results/real_sections.md]

--data is the folder benchmarks/real_sections_data.py builds (each song with a `.sections` file of
"start end label" lines), as listed in benchmarks/real_sections_manifest.json, which also says which
songs are the tuning set and which are held out.

Per song and method, and averaged over each set and split: mir_eval's boundary hit rate (precision,
recall, F) within 0.5 s and within 3 s, counting only boundaries inside the song (the annotations'
boundaries within EDGE_SECONDS of the start or the end, mostly the edges of leading and trailing
silence, are left out for every method alike), and the number of boundaries found. For the labels, the
pairwise frame-clustering F of mir_eval (do two moments share a letter exactly when the annotation gives
them one label? silence counts as a label of its own), against every section a letter of its own on
the same boundaries.
Methods:
- `musedance`: `find_sections` as the Song Sections node calls it (its defaults: shortest section 8 s,
  sensitivity 0.75), on the music at 16 kHz, boundaries moved to the bar lines that Beat Extract's
  default tracker finds in the same song;
- `musedance-no-bars`: the same without bar lines;
- `librosa-agglomerative`: librosa.segment.agglomerative on librosa.feature.chroma_cqt (the example of
  librosa's documentation), asked for as many sections as `musedance` found;
- `even`: as many sections as `musedance` found, of equal length (what placing alone is worth).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import librosa
import mir_eval
import numpy as np

from machine_info import machine  # benchmarks/ is on sys.path when a script here runs
from musedance_core.audio.beats import analyze_beats
from musedance_core.audio.music import load_music
from musedance_core.audio.structure import find_sections

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "benchmarks" / "real_sections_manifest.json"
EDGE_SECONDS = 3.0
WINDOWS = (0.5, 3.0)
MIN_SECONDS, SENSITIVITY = 8.0, 0.75  # the Song Sections node's defaults (--min-seconds, --sensitivity try others)
METHODS = ("musedance", "musedance-no-bars", "librosa-agglomerative", "even")
SILENCE = {"silence", "silece", ""}


def read_sections(path: Path) -> list[tuple[float, float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        start, end, *label = line.split()
        rows.append((float(start), float(end), " ".join(label).lower()))
    return rows


def interior(boundaries, duration: float) -> np.ndarray:
    times = np.asarray(sorted(set(float(t) for t in boundaries)), dtype=np.float64)
    return times[(times > EDGE_SECONDS) & (times < duration - EDGE_SECONDS)]


def intervals(boundaries: np.ndarray, duration: float) -> np.ndarray:
    edges = np.concatenate([[0.0], boundaries, [duration]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def hit_rates(reference: np.ndarray, estimate: np.ndarray, duration: float) -> dict[str, float]:
    scores = {}
    for window in WINDOWS:
        if len(reference) == 0 or len(estimate) == 0:
            p = r = f = 0.0
        else:
            p, r, f = mir_eval.segment.detection(intervals(reference, duration), intervals(estimate, duration),
                                                 window=window, trim=True)
        scores.update({f"P@{window:g}": p, f"R@{window:g}": r, f"F@{window:g}": f})
    return scores


def pairwise_f(annotation, found_intervals: np.ndarray, found_labels: list[str], duration: float) -> float:
    """mir_eval's pairwise frame-clustering F of the found labels against the annotation's, both over 0..duration."""
    reference = np.array([[s, e] for s, e, _ in annotation])
    labels = ["silence" if label in SILENCE else label for _, _, label in annotation]
    reference, labels = mir_eval.util.adjust_intervals(reference, labels, t_min=0.0, t_max=duration)
    estimate, found = mir_eval.util.adjust_intervals(found_intervals, list(found_labels), t_min=0.0, t_max=duration)
    _, _, f = mir_eval.segment.pairwise(reference, labels, estimate, found, frame_size=0.5)
    return float(f)


def evaluate(audio: Path, min_seconds: float = MIN_SECONDS, sensitivity: float = SENSITIVITY) -> dict:
    annotation = read_sections(audio.with_suffix(".sections"))
    music = load_music(audio)  # 16 kHz mono, as the node's Song Sections reads it
    wave, rate = music.waveform, music.sample_rate
    duration = len(wave) / rate
    reference = interior([s for s, _, _ in annotation[1:]], duration)
    started = time.perf_counter()
    analysis = analyze_beats(wave, rate, method="musedance")
    beat_seconds = time.perf_counter() - started
    results: dict[str, dict] = {}

    started = time.perf_counter()
    found = find_sections(wave, rate, bar_times=analysis.downbeats, min_seconds=min_seconds,
                          threshold=1.0 - sensitivity)
    seconds = time.perf_counter() - started
    for name, sections in (("musedance", found), ("musedance-no-bars", find_sections(
            wave, rate, min_seconds=min_seconds, threshold=1.0 - sensitivity))):
        boundaries = interior([s.start for s in sections[1:]], duration)
        spans = np.array([[s.start, s.end] for s in sections])
        results[name] = {"boundaries": boundaries.tolist(), **hit_rates(reference, boundaries, duration),
                         "pairwise_F": pairwise_f(annotation, spans, [s.label for s in sections], duration),
                         "pairwise_F_unique_letters": pairwise_f(annotation, spans, [str(s.number) for s in sections],
                                                                 duration)}
    results["musedance"]["seconds"] = seconds
    count = len(found)
    chroma = librosa.feature.chroma_cqt(y=wave, sr=rate)
    frames = librosa.segment.agglomerative(chroma, count) if count > 1 else np.array([0])
    boundaries = interior(librosa.frames_to_time(frames, sr=rate)[1:], duration)
    results["librosa-agglomerative"] = {"boundaries": boundaries.tolist(), **hit_rates(reference, boundaries, duration)}
    boundaries = interior(np.arange(1, count) * duration / count, duration)
    results["even"] = {"boundaries": boundaries.tolist(), **hit_rates(reference, boundaries, duration)}
    return {"duration": duration, "reference": reference.tolist(), "beat_seconds": beat_seconds,
            "bars": int(len(analysis.downbeats)), "methods": results}


def mean(rows: list[dict], method: str, key: str) -> float:
    values = [row["methods"][method].get(key) for row in rows if key in row["methods"][method]]
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def table(songs: dict[str, dict], manifest: dict) -> str:
    meta = {entry["id"]: entry for entry in manifest["excerpts"]}
    groups = {
        "Beatles, tuning set (albums 1-6)": [k for k in songs if meta[k]["set"] == "beatles_tut" and meta[k]["split"] == "tune"],
        "Beatles, held out (albums 7-12)": [k for k in songs if meta[k]["set"] == "beatles_tut" and meta[k]["split"] == "held_out"],
        "FMP pieces (held out)": [k for k in songs if meta[k]["set"] == "fmp"],
    }
    lines = ["| set | songs | method | F@0.5 s | P@0.5 s | R@0.5 s | F@3 s | P@3 s | R@3 s | boundaries found / annotated | label pairwise F (own letters each) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for group, ids in groups.items():
        rows = [songs[k] for k in ids]
        if not rows:
            continue
        annotated = np.mean([len(r["reference"]) for r in rows])
        for method in METHODS:
            found = np.mean([len(r["methods"][method]["boundaries"]) for r in rows])
            pair = ""
            if method.startswith("musedance"):
                pair = f"{mean(rows, method, 'pairwise_F'):.3f} ({mean(rows, method, 'pairwise_F_unique_letters'):.3f})"
            lines.append(f"| {group} | {len(rows)} | {method} | " + " | ".join(
                f"{mean(rows, method, key):.3f}" for key in ("F@0.5", "P@0.5", "R@0.5", "F@3", "P@3", "R@3"))
                + f" | {found:.1f} / {annotated:.1f} | {pair} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/real_sections.json")
    parser.add_argument("--table", type=Path, default=ROOT / "benchmarks/results/real_sections.md")
    parser.add_argument("--limit", type=int, default=0, help="only the first N songs (0: all)")
    parser.add_argument("--split", choices=("tune", "held_out"), help="only the songs of this split")
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS, help="find_sections' shortest section")
    parser.add_argument("--sensitivity", type=float, default=SENSITIVITY, help="1 - find_sections' threshold")
    args = parser.parse_args(argv)
    manifest = json.loads(MANIFEST.read_text())
    ids = [e["id"] for e in manifest["excerpts"] if args.split in (None, e["split"])][: args.limit or None]
    songs = {}
    for n, song in enumerate(ids, 1):
        (audio,) = [p for p in args.data.glob(f"{song}.*") if p.suffix != ".sections"]
        songs[song] = evaluate(audio, args.min_seconds, args.sensitivity)
        m = songs[song]["methods"]
        print(f"{n}/{len(ids)} {song}: F@3 musedance {m['musedance']['F@3']:.2f}, librosa "
              f"{m['librosa-agglomerative']['F@3']:.2f}, even {m['even']['F@3']:.2f}", flush=True)
    text = table(songs, manifest)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {"min_seconds": args.min_seconds, "sensitivity": args.sensitivity}
    args.output.write_text(json.dumps({"machine": machine("librosa", "mir_eval"), "settings": settings,
                                       "songs": songs}, indent=1))
    args.table.write_text(f"# Song sections on real recordings (`python benchmarks/real_sections.py`)\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
