"""FLOPs of one denoising step at the paper's size, MuseDance against diffusers' AnimateDiff, by module kind.

    python benchmarks/flop_count.py [--height 640 --width 640 --frames 48] [--json PATH]

Counted with torch.utils.flop_counter.FlopCounterMode on the meta device (no memory, seconds on a CPU):
matrix products, convolutions and attention, as the sampler runs them for one step of a clip
(unet_step.py). MuseDance's step is split into the spatial layers, the extra attention to the reference
(the step with the bank filled minus the step with it empty), and the music, beat and motion modules (their
feed-forward layers also on their own). Per-clip work (the motion context of the M frames) and per-video
work (the ReferenceNet) are outside the step and listed apart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unet_step import AnimateDiffStep, MuseDanceStep, StepSize, with_rows  # noqa: E402

from musedance_core.config import UNetConfig  # noqa: E402
from musedance_core.models.unet import MuseDanceUNet  # noqa: E402

TERA = 1e12
KINDS = {  # module kind: a pattern matching the module names that make it up (counted once each)
    "music": re.compile(r"\.music_modules\.\d+$"),
    "beat": re.compile(r"(\.beat_modules\.\d+|\.beat_encoder)$"),
    "motion": re.compile(r"\.motion_modules\.\d+$"),
    "music feed-forward": re.compile(r"\.music_modules\.\d+\.ff$"),
    "beat feed-forward": re.compile(r"\.beat_modules\.\d+\.ff$"),
}


def count(fn) -> tuple[float, dict[str, float]]:
    """(total FLOPs, FLOPs by module name) of fn()."""
    with FlopCounterMode(display=False) as counter:
        fn()
    by_module = {name: float(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
    return float(counter.get_total_flops()), by_module


def by_kind(by_module: dict[str, float]) -> dict[str, float]:
    return {kind: sum(f for name, f in by_module.items() if pattern.search(name)) for kind, pattern in KINDS.items()}


def musedance_row(config: UNetConfig, size: StepSize) -> dict:
    model = MuseDanceStep(config, size, device="meta")
    total, modules = count(model.step)
    tokens, keep = dict(model.bank.tokens), model.bank.keep
    model.bank.clear()
    without_reference, _ = count(model.step)
    model.bank.tokens, model.bank.keep = tokens, keep
    kinds = by_kind(modules)
    reference = total - without_reference
    spatial = total - reference - kinds["music"] - kinds["beat"] - kinds["motion"]
    return {"total": total, "spatial": spatial, "reference attention": reference, **kinds}


def animatediff_row(config: UNetConfig, size: StepSize) -> dict:
    model = AnimateDiffStep(config, size, device="meta")
    total, modules = count(model.step)
    motion = by_kind(modules)["motion"]
    return {"total": total, "spatial": total - motion, "motion": motion}


def temporal_parameters(config: UNetConfig) -> dict[str, int]:
    """Parameters of the UNet and of its music, beat and motion modules (built on the meta device)."""
    with torch.device("meta"):
        unet = MuseDanceUNet(config)
    out = {"unet": sum(p.numel() for p in unet.parameters())}
    for kind in ("music", "beat", "motion"):
        out[kind] = sum(p.numel() for name, p in unet.named_parameters()
                        if f".{kind}_modules." in name or (kind == "beat" and name.startswith("beat_encoder.")))
    return out


def table(rows: dict[str, dict]) -> str:
    columns = ["total", "spatial", "reference attention", "music", "beat", "motion", "music feed-forward",
               "beat feed-forward"]
    lines = ["| Step | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in rows.items():
        cells = [f"{row[c] / TERA:.1f}" if c in row else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=640)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--context", type=int, default=2)
    parser.add_argument("--ff-mult", type=int, default=4, help="the music and beat modules' feed-forward multiplier")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = UNetConfig(temporal_ff_mult=args.ff_mult)
    size = StepSize(args.height, args.width, args.frames, args.context)
    rows = {}
    for beat_guidance in (False, True):
        sized = with_rows(size, beat_guidance)
        rows[f"MuseDance, {sized.rows} rows"] = musedance_row(config, sized)
        rows[f"AnimateDiff, {sized.rows} rows"] = animatediff_row(config, sized)
    for rows_ in (2, 3):
        ratio = rows[f"MuseDance, {rows_} rows"]["total"] / rows[f"AnimateDiff, {rows_} rows"]["total"]
        print(f"MuseDance / AnimateDiff at {rows_} rows: {ratio:.2f}")
    print(f"TFLOP per denoising step at SD1.5 widths, {size.describe().rsplit(',', 1)[0]}, music and beat "
          f"feed-forward x{args.ff_mult}:")
    print(table(rows))
    parameters = temporal_parameters(config)
    print("Parameters (millions): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in parameters.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"size": size.describe(), "ff_mult": args.ff_mult, "flops": rows,
                                         "parameters": parameters}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
