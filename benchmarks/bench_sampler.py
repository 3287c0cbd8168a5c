"""Time per frame-step and peak memory of MuseDance's denoising step against diffusers' AnimateDiff.

    python benchmarks/bench_sampler.py [--size reduced|full] [--height 128 --width 128 --frames 16]
        [--repeats 5] [--beat-guidance] [--compile] [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--json PATH]

Both UNets at the same spatial layout (`--size reduced`: SD1.5's at widths 64/128/256/256, the CPU
comparison; `full`: SD1.5's), the same rows (two guidance rows, three with `--beat-guidance`) and frames
(unet_step.py). The steps are timed in one process, interleaved (MuseDance, AnimateDiff, MuseDance, ...),
after one warm-up step each; the ratio is the median of the ratios of neighbouring pairs, so load from
other work on a shared machine cancels. Peak memory is measured for each model in a process of its own:
the process's resident high-water mark above what it held after the imports on a CPU,
`torch.cuda.max_memory_allocated` on a GPU. `--compile` runs both UNets through torch.compile (inductor; the
warm-up round compiles). On a GPU the share of the card's bf16 dense peak implied by
the step's FLOP count (flop_count.py) is reported too.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flop_count import count  # noqa: E402
from machine_info import machine  # noqa: E402
from unet_step import AnimateDiffStep, MuseDanceStep, StepSize, reduced_config  # noqa: E402

from musedance_core.config import UNetConfig  # noqa: E402
from musedance_core.sampling.conditioning import resolve_dtype  # noqa: E402

MODELS = {"musedance": MuseDanceStep, "animatediff": AnimateDiffStep}
BF16_PEAK_TFLOPS = {"H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0,
                    "A100": 312.0, "L40S": 362.0, "4090": 165.0}  # dense, from the vendors' data sheets


def config_of(name: str, ff_mult: int = 4) -> UNetConfig:
    return reduced_config(ff_mult) if name == "reduced" else UNetConfig(temporal_ff_mult=ff_mult)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> float:
    """Start this process's resident high-water mark again from now (Linux: /proc/self/clear_refs); the resident
    memory now, in MiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _status_mib("VmRSS")
    return rss_mib() if now is None else now


def rss_mib() -> float:
    """This process's resident high-water mark in MiB (VmHWM: unlike ru_maxrss, not inherited from a parent)."""
    peak = _status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak is None else peak  # KiB on Linux


def peak_memory(args: argparse.Namespace, model: str) -> float:
    """MiB the model's set-up and one step add to the process's peak (run in this process)."""
    size = StepSize(args.height, args.width, args.frames, args.context, args.beat_guidance)
    dtype = resolve_dtype(args.dtype)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        MODELS[model](config_of(args.size, args.ff_mult), size, args.device, dtype).step()
        sync(args.device)
        return torch.cuda.max_memory_allocated() / 2**20
    before = reset_peak()
    MODELS[model](config_of(args.size, args.ff_mult), size, args.device, dtype).step()
    return rss_mib() - before


def bf16_peak(device: str) -> tuple[str, float | None]:
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return name, peak
    return name, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("reduced", "full"), default="reduced")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--context", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--beat-guidance", action="store_true")
    parser.add_argument("--ff-mult", type=int, default=4, help="the music and beat modules' feed-forward multiplier")
    parser.add_argument("--compile", action="store_true", help="torch.compile both UNets (inductor)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path)
    parser.add_argument("--peak-memory-of", choices=sorted(MODELS), help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.peak_memory_of:
        print(json.dumps({"peak_mib": peak_memory(args, args.peak_memory_of)}))
        return 0

    size = StepSize(args.height, args.width, args.frames, args.context, args.beat_guidance)
    config, dtype = config_of(args.size, args.ff_mult), resolve_dtype(args.dtype)
    models = {name: cls(config, size, args.device, dtype) for name, cls in MODELS.items()}
    if args.compile:
        for model in models.values():
            model.compile()
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(args.repeats + 1):
        for name, model in models.items():
            sync(args.device)
            started = time.perf_counter()
            model.step()
            sync(args.device)
            if repeat:  # the first round warms up
                times[name].append(time.perf_counter() - started)
    ratios = [md / ad for md, ad in zip(times["musedance"], times["animatediff"])]
    result: dict = {
        "what": f"one denoising step, {args.size} widths {config.block_out_channels}, music and beat feed-forward "
                f"x{config.temporal_ff_mult}, {size.describe()}, "
                f"{args.dtype} on {args.device}, {args.threads} threads, {args.repeats} interleaved repeats"
                + (", both compiled (torch.compile, inductor)" if args.compile else ""),
        "machine": machine("torch", "diffusers"),
        "ms_per_frame_step": {name: 1000 * statistics.median(ts) / size.frames for name, ts in times.items()},
        "step_seconds": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "ratio_musedance_to_animatediff": statistics.median(ratios),
        "ratio_spread": [min(ratios), max(ratios)],
    }
    result["peak_memory_mib"] = {}
    for name in models if not args.compile else ():  # measured uncompiled only
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--peak-memory-of", name],
                               capture_output=True, text=True, check=True)
        result["peak_memory_mib"][name] = round(json.loads(child.stdout.strip().splitlines()[-1])["peak_mib"], 1)
    if args.device.startswith("cuda"):
        card, peak = bf16_peak(args.device)
        result["card"] = card
        if peak:
            meta = {name: cls(config, size, "meta", dtype) for name, cls in MODELS.items()}
            result["share_of_bf16_peak"] = {
                name: count(meta[name].step)[0] / statistics.median(times[name]) / (peak * 1e12) for name in models
            }
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "step_seconds")}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
