"""What the sampler's low-memory options save, measured as the process's peak resident memory on a CPU.

    python benchmarks/bench_low_memory.py [--json PATH]
    python benchmarks/bench_low_memory.py --idle-weights

--idle-weights prints instead the weights that `offload_idle` (and the nodes' separate groups) take off the
device while sampling, at the paper's size (SD1.5 widths, with the text encoder), counted on the meta device.

Each case runs in a process of its own and reports how far its resident memory rose above what it held
before the measured call (the high-water mark restarted there; weights and set-up excluded): one denoising
step (after a first one) with three guidance rows as one batch against one row at a time (the reduced UNet
of bench_sampler.py at 256x256, K = 16 + M = 2), and the VAE decode of 2 frames at 512x512 with SD1.5's
VAE widths (random weights) as one chunk, a frame at a time, and in tiles of 256 pixels. On a GPU the same options save device memory in the same proportion; the GPU
check (gpu_check.py) measures that where a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sampler import reset_peak, rss_mib  # noqa: E402
from machine_info import machine  # noqa: E402

CASES = {
    "step, 3 rows as one batch": ("step", {"one_row_at_a_time": False}),
    "step, one row at a time": ("step", {"one_row_at_a_time": True}),
    "decode, 2 frames at once": ("decode", {"chunk": 2, "tile": 0}),
    "decode, 1 frame at a time": ("decode", {"chunk": 1, "tile": 0}),
    "decode, 2 frames in 256-pixel tiles": ("decode", {"chunk": 2, "tile": 256}),
}


def run_case(kind: str, options: dict) -> dict:
    torch.manual_seed(0)
    if kind == "step":
        from unet_step import MuseDanceStep, StepSize, reduced_config

        model = MuseDanceStep(reduced_config(), StepSize(256, 256, 16, 2, beat_guidance=True),
                              one_row_at_a_time=options["one_row_at_a_time"])
        run = model.step
    else:
        from diffusers import AutoencoderKL

        from musedance_core.config import VAEConfig
        from musedance_core.sampling.conditioning import decode_latents

        config = VAEConfig()
        vae = AutoencoderKL(**config.diffusers_kwargs()).eval().requires_grad_(False)
        latents = torch.randn(2, 4, 64, 64)

        def run():
            with torch.no_grad():
                return decode_latents(vae, latents, config.scaling_factor, options["chunk"], options["tile"] or None)
    run() if kind == "step" else None  # a first step makes what later steps reuse (keys and values)
    before = reset_peak()
    started = time.perf_counter()
    run()
    return {"peak_mib_above_set_up": round(rss_mib() - before, 1), "seconds": round(time.perf_counter() - started, 2)}


def idle_weights() -> dict[str, dict[str, int]]:
    """Parameters of each module idle while sampling and of those used, at SD1.5 size: {group: {module: count}}."""
    from musedance_core import MuseDanceConfig, MuseDancePipeline

    with torch.device("meta"):  # shapes only
        pipe = MuseDancePipeline.from_config(MuseDanceConfig.sd15(), text_encoder=True)
    return {group: {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
            for group, modules in (("idle", pipe.idle_while_sampling()), ("used", pipe.used_while_sampling()))}


def print_idle_weights() -> None:
    counts = idle_weights()
    every = sum(sum(group.values()) for group in counts.values())
    for group, modules in counts.items():
        for name, count in [*modules.items(), ("all " + group, sum(modules.values()))]:
            print(f"{group:4s} {name:20s} {count:>13,d} parameters  bf16 {count * 2 / 2**30:6.3f} GiB  "
                  f"fp32 {count * 4 / 2**30:6.3f} GiB  {count / every:6.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--idle-weights", action="store_true", help="print the weights offload_idle moves, and stop")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)  # a child's one case
    args = parser.parse_args()
    if args.idle_weights:
        print_idle_weights()
        return 0
    if args.case:
        print(json.dumps(run_case(*CASES[args.case])))
        return 0
    results = {}
    for name in CASES:
        child = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True)
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{name}: {results[name]}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine("torch", "diffusers"), "cases": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
