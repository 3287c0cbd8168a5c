"""Beat tracking: accuracy from 60 to 180 BPM, time for a 3-minute song, and the first call in a fresh process.

    python benchmarks/bench_beats.py [--seconds 30] [--song-seconds 180] [--repeats 5]
                                     [--output benchmarks/results/beats.json]
                                     [--table benchmarks/results/beat_accuracy.md]

Accuracy: mir_eval beat F-measure (70 ms window, beats counted from t = 0) of `analyze_beats` on the
synthetic music of tests/test_beats.py (click tracks and drum loops with bass, chords and noise),
every 10 BPM, next to librosa's `beat_track` with its defaults on the same audio; the timing error
of the beats that F-measure matched, against the true beats, before and after the attack-time
refinement (`_attack_times`); then a few further signals at the tempos in between (`further_accuracy`).
Speed: `analyze_beats` on the demo's synthetic song (`tests/sample_media.synth_music`, 120 BPM),
warm, split into its stages; then the first call in fresh Python processes, with librosa's numba
cache present, with an empty cache directory (the first run after installing), and again with the
cache that run wrote; and, for comparison, librosa's own `beat_track` in a fresh process.
Needs the test extras (mir_eval, pytest). Prints a summary and writes it, with the machine, to a
JSON file and the accuracy table to a Markdown file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import librosa
import mir_eval
import numpy as np

from machine_info import machine  # benchmarks/ is on sys.path when a script here runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from musedance_core.audio import beat_tracker, beats
from sample_media import synth_music  # noqa: E402 - the tests' synthetic song

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
TEMPOS = list(range(60, 181, 10))
FURTHER_TEMPOS = list(range(65, 180, 10))

# Run in a fresh interpreter: imports, first call and second call of analyze_beats on 10 s of clicks.
FIRST_CALL = """
import json, time
t_start = time.perf_counter()
import numpy as np
import musedance_core  # the package imports torch and diffusers for the model
t0 = time.perf_counter()
from musedance_core.audio.beats import analyze_beats
t1 = time.perf_counter()
wave = np.zeros(160_000, np.float32)
for k in range(20):
    wave[8000 * k : 8000 * k + 200] = np.sin(np.arange(200) * 2 * np.pi * 1000 / 16_000)
analyze_beats(wave, 16_000)
t2 = time.perf_counter()
analyze_beats(wave, 16_000)
t3 = time.perf_counter()
print(json.dumps({"import_package_s": t0 - t_start, "import_beats_s": t1 - t0,
                  "first_call_s": t2 - t1, "second_call_s": t3 - t2}))
"""

# The same for librosa's beat_track, whose module compiles an uncached numba gufunc on import.
LIBROSA_FIRST_CALL = """
import json, time
import numpy as np, librosa
wave = np.zeros(160_000, np.float32)
for k in range(20):
    wave[8000 * k : 8000 * k + 200] = np.sin(np.arange(200) * 2 * np.pi * 1000 / 16_000)
t0 = time.perf_counter()
envelope = librosa.onset.onset_strength(y=wave, sr=16_000)
t1 = time.perf_counter()
librosa.beat.beat_track(onset_envelope=envelope, sr=16_000)
t2 = time.perf_counter()
librosa.beat.beat_track(onset_envelope=envelope, sr=16_000)
t3 = time.perf_counter()
print(json.dumps({"onset_first_call_s": t1 - t0, "beat_track_first_call_s": t2 - t1,
                  "beat_track_second_call_s": t3 - t2}))
"""


def load_test_signals():
    """tests/test_beats.py, for its signal generators and accuracy cases (one definition of the test music)."""
    spec = importlib.util.spec_from_file_location("test_beats", ROOT / "tests" / "test_beats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grid_frames(wave: np.ndarray) -> np.ndarray:
    """The beat frames of `analyze_beats` before `_attack_times` (its steps 1 to 3, default settings).

    Their times, frames * hop / sr, are the beat times on the 32 ms hop grid that `analyze_beats`
    returned before the refinement: the "before" of the timing-error table.
    """
    curves = beat_tracker.onset_curves(wave - wave.mean(), SR, 512)
    return beat_tracker.track_beats(curves, min_bpm=beats.DEFAULT_MIN_BPM, max_bpm=beats.DEFAULT_MAX_BPM)


def matched_errors(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """found - truth in seconds for the pairs that beat F-measure matches (70 ms window)."""
    pairs = mir_eval.util.match_events(truth, found, 0.07)
    return np.array([found[j] - truth[i] for i, j in pairs])


def error_summary(errors: list[np.ndarray]) -> dict:
    """Mean, median and largest absolute error in ms, and the mean signed error, over all tempos."""
    ms = 1000.0 * np.concatenate(errors)
    return {
        "beats": int(ms.size),
        "mean_abs_ms": round(float(np.abs(ms).mean()), 2),
        "median_abs_ms": round(float(np.median(np.abs(ms))), 2),
        "max_abs_ms": round(float(np.abs(ms).max()), 2),
        "mean_signed_ms": round(float(ms.mean()), 2),
    }


def accuracy(seconds: float) -> tuple[dict, dict, dict]:
    """Per case and tempo: F-measure of analyze_beats and of librosa.beat.beat_track with defaults;
    per case: timing errors of analyze_beats and of its hop-grid frames (`grid_frames`)."""
    signals = load_test_signals()
    ours: dict[str, dict[int, float]] = {}
    librosa_default: dict[str, dict[int, float]] = {}
    timing: dict[str, dict[str, dict]] = {}
    for case, make in signals.CASES.items():
        ours[case], librosa_default[case] = {}, {}
        refined, grid = [], []
        for bpm in TEMPOS:
            wave, truth = make(bpm, seconds)
            found = beats.analyze_beats(wave, SR).times
            ours[case][bpm] = signals.f_measure(truth, found)
            refined.append(matched_errors(truth, found))
            grid.append(matched_errors(truth, grid_frames(wave) * (512 / SR)))
            _, found = librosa.beat.beat_track(y=wave, sr=SR, units="time")
            librosa_default[case][bpm] = signals.f_measure(truth, found)
        timing[case] = {"hop_grid_before": error_summary(grid), "analyze_beats": error_summary(refined)}
        worst, worst_librosa = min(ours[case].values()), min(librosa_default[case].values())
        print(
            f"  {case:32s} min F {worst:.3f} (librosa defaults: {worst_librosa:.3f}); mean |error| "
            f"{timing[case]['analyze_beats']['mean_abs_ms']:.2f} ms (hop grid: "
            f"{timing[case]['hop_grid_before']['mean_abs_ms']:.2f} ms)",
            flush=True,
        )
    return ours, librosa_default, timing


def further_accuracy(seconds: float) -> dict:
    """F-measure on signals outside the test cases, at tempos between theirs (65..175 BPM).

    The demo's drum-and-bass song, and metronomes whose downbeat is 6 dB (in noise) or 12 dB (in
    silence) louder than the other clicks; the last is past the documented limit of the level check.
    """
    signals = load_test_signals()
    cases = {
        "demo synth_music": lambda bpm: (
            synth_music(seconds, SR, bpm, seed=5),
            np.arange(0.0, seconds - 0.1, 60.0 / bpm),  # its kick is on every beat from t = 0
        ),
        "metronome, downbeat +6 dB, noise": lambda bpm: signals.click_track(bpm, seconds, accent=2.0, noise=0.02),
        "metronome, downbeat +12 dB": lambda bpm: signals.click_track(bpm, seconds, accent=4.0),
    }
    table: dict[str, dict[int, float]] = {}
    for case, make in cases.items():
        table[case] = {}
        for bpm in FURTHER_TEMPOS:
            wave, truth = make(bpm)
            table[case][bpm] = signals.f_measure(truth, beats.analyze_beats(wave, SR).times)
    return table


def error_table(timing: dict[str, dict[str, dict]]) -> str:
    """Rows: cases; columns: mean / median / largest absolute error in ms, on the hop grid and refined."""
    lines = [
        "| case | beats | hop grid (before): mean / median / max | `analyze_beats`: mean / median / max |",
        "|---|---:|---:|---:|",
    ]
    for case, row in timing.items():
        grid, refined = row["hop_grid_before"], row["analyze_beats"]
        cells = [f"{r['mean_abs_ms']:.2f} / {r['median_abs_ms']:.2f} / {r['max_abs_ms']:.2f}" for r in (grid, refined)]
        lines.append(f"| {case} | {refined['beats']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def markdown_table(table: dict[str, dict[int, float]]) -> str:
    """Rows: tempo; columns: cases; cells: F-measure."""
    cases = list(table)
    tempos = list(next(iter(table.values())))
    lines = ["| BPM | " + " | ".join(cases) + " |", "|---:|" + "---:|" * len(cases)]
    for bpm in tempos:
        lines.append(f"| {bpm} | " + " | ".join(f"{table[case][bpm]:.3f}" for case in cases) + " |")
    lines.append("| min | " + " | ".join(f"{min(table[case].values()):.3f}" for case in cases) + " |")
    return "\n".join(lines)


def song_timing(song_seconds: float, repeats: int) -> dict:
    """Warm analyze_beats on the demo song, in total and per stage (median of `repeats` runs)."""
    song = synth_music(song_seconds, SR)
    beats.analyze_beats(song, SR)  # warm-up: imports and numba cache loads

    def median_time(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    analysis = beats.analyze_beats(song, SR)
    curves = beat_tracker.onset_curves(song - song.mean(), SR, 512)
    frames = grid_frames(song)
    span = dict(min_bpm=beats.DEFAULT_MIN_BPM, max_bpm=beats.DEFAULT_MAX_BPM)
    tempo = beat_tracker.estimate_tempo(curves, **span)
    return {
        "song_seconds": song_seconds,
        "song": "tests/sample_media.synth_music, 120 BPM",
        "beats_found": int(analysis.times.size),
        "tempo_bpm": round(analysis.tempo, 2),
        "f_measure": load_test_signals().f_measure(np.arange(0.0, song_seconds - 0.1, 0.5), analysis.times),
        "total_s": median_time(lambda: beats.analyze_beats(song, SR)),
        "onset_curves_s": median_time(lambda: beat_tracker.onset_curves(song, SR, 512)),
        "tempo_estimate_s": median_time(lambda: beat_tracker.estimate_tempo(curves, **span)),
        "beat_programme_and_level_check_s": median_time(lambda: beat_tracker.choose_level(curves, tempo, **span)),
        "attack_times_s": median_time(lambda: beat_tracker.attack_times(song, frames, 512, SR)),
        "vector_12fps_s": median_time(lambda: analysis.vector(12.0, int(song_seconds * 12))),
        "repeats": repeats,
    }


def fresh_process(code: str, env_extra: dict[str, str] | None = None) -> dict:
    """Run `code` in a new interpreter and return the JSON it prints, plus its wall time."""
    env = {**os.environ, **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"fresh-process measurement failed:\n{result.stderr[-2000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return {key: round(value, 3) for key, value in figures.items()} | {"process_wall_s": round(wall, 2)}


def first_calls() -> dict:
    """First call in fresh processes: with librosa's numba cache, without any, and with the cache just written."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as empty:
        return {
            "cache_present": fresh_process(FIRST_CALL),
            "empty_NUMBA_CACHE_DIR": fresh_process(FIRST_CALL, {"NUMBA_CACHE_DIR": empty}),
            "NUMBA_CACHE_DIR_after_first_run": fresh_process(FIRST_CALL, {"NUMBA_CACHE_DIR": empty}),
            "librosa_beat_track_cache_present": fresh_process(LIBROSA_FIRST_CALL),
        }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each accuracy clip")
    parser.add_argument("--song-seconds", type=float, default=180.0, help="song length for timing (default: 3 minutes)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per stage (the median is reported)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "beats.json")
    parser.add_argument("--table", type=Path, default=Path(__file__).parent / "results" / "beat_accuracy.md")
    args = parser.parse_args(argv)
    if args.seconds < 5 or args.song_seconds < 5 or args.repeats < 1:
        parser.error("--seconds and --song-seconds must be at least 5, --repeats at least 1.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine("torch", "librosa", "numba", "numpy", "scipy", "mir_eval")
    print(f"machine: {info['cpu']}, {info['cores']} cores, python {info['python']}, librosa {info['librosa']}, "
          f"numba {info['numba']}, torch {info['torch']}", flush=True)

    print(f"accuracy ({args.seconds:g} s clips, {TEMPOS[0]}..{TEMPOS[-1]} BPM):", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, librosa_default, timing_errors = accuracy(args.seconds)
    table = markdown_table(ours)
    errors = error_table(timing_errors)
    print(f"{table}\n\ntiming error of matched beats (ms):\n{errors}", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        further = further_accuracy(args.seconds)
    further_table = markdown_table(further)
    print(f"further signals ({FURTHER_TEMPOS[0]}..{FURTHER_TEMPOS[-1]} BPM):\n{further_table}", flush=True)

    print(f"timing: {args.song_seconds:g} s song, warm, median of {args.repeats}:", flush=True)
    timing = song_timing(args.song_seconds, args.repeats)
    for key, value in timing.items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}", flush=True)

    print("first call in fresh processes:", flush=True)
    first = first_calls()
    for scenario, figures in first.items():
        print(f"  {scenario}: " + ", ".join(f"{k} {v}" for k, v in figures.items()), flush=True)

    report = {
        "benchmark": "musedance_core.audio.beats.analyze_beats: accuracy, speed on a synthetic song, first call",
        "machine": info,
        "accuracy": {
            "metric": "mir_eval.beat.f_measure, 70 ms window, trim_beats(min_beat_time=0)",
            "clip_seconds": args.seconds,
            "analyze_beats": {case: {str(b): round(f, 4) for b, f in row.items()} for case, row in ours.items()},
            "timing_error_of_matched_beats": timing_errors,
            "librosa_beat_track_defaults": {
                case: {str(b): round(f, 4) for b, f in row.items()} for case, row in librosa_default.items()
            },
            "further_signals": {case: {str(b): round(f, 4) for b, f in row.items()} for case, row in further.items()},
        },
        "song_timing": timing,
        "first_call": first,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    args.table.write_text(
        f"# Beat F-measure of `analyze_beats` on synthetic music\n\n"
        f"mir_eval F-measure (70 ms window, beats counted from t = 0), {args.seconds:g} s clips made by "
        f"tests/test_beats.py; written by benchmarks/bench_beats.py on {info['date']} "
        f"({info['cpu']}, librosa {info['librosa']}).\n\n{table}\n\n"
        f"Timing error of the beats matched above (found - true, all {len(TEMPOS)} tempos pooled), in ms: "
        f"on the 32 ms hop grid of the beat programme (what `analyze_beats` returned before the "
        f"attack-time refinement) and from `analyze_beats`:\n\n{errors}\n\n"
        f"librosa `beat_track` with its defaults, same audio:\n\n{markdown_table(librosa_default)}\n\n"
        f"Further signals with `analyze_beats` (the demo's song; metronomes with louder downbeats, "
        f"the +12 dB one past the documented limit of the metrical-level check):\n\n{further_table}\n"
    )
    print(f"wrote {args.output} and {args.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
