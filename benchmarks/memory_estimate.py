"""The memory estimate's factors, traced tensor by tensor, and what it predicts at the paper's size.

    python benchmarks/memory_estimate.py

Part 1 samples one clip with three model widths (the tiny test model, the default model's configuration
and a wider one) at two sizes, one to three guidance rows and two clip lengths, and prints the peak that
tests/live_memory.TensorMemory counts inside the UNet's forward and the VAE decode, divided by the
largest tensor of each phase (rows x K x C0 x h x w, and chunk x C_vae0 x H x W elements): the factors
that musedance_core/sampling/memory.py uses (STEP_FACTOR, DECODE_FACTOR) must lie above every ratio.
Part 2 prints the estimate for the full SD1.5-sized model at 512x512 and 640x640, K = 16 and 48,
two and three rows, fp16: predictions, to be compared with torch.cuda.max_memory_allocated on a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from live_memory import traced_peaks, wider_config  # noqa: E402
from musedance_core import MuseDanceConfig, MuseDancePipeline  # noqa: E402
from musedance_core.loading.checkpoint import read_checkpoint_info  # noqa: E402
from musedance_core.sampling.memory import (  # noqa: E402
    DECODE_FACTOR,
    STEP_FACTOR,
    gib,
    sampling_memory,
)


def main() -> None:
    configs = {
        "tiny": MuseDanceConfig.tiny(),
        "default": read_checkpoint_info(ROOT / "models/musedance/musedance_default.safetensors").config,
        "wider": wider_config(),
    }
    print(f"Part 1: traced peak / largest tensor (factors used: step {STEP_FACTOR:g}, decode {DECODE_FACTOR:g})")
    print("| model | C0 | C_vae0 | size | K | rows | step peak | step ratio | decode peak | decode ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, config in configs.items():
        pipe = MuseDancePipeline.from_config(config)
        for size, k, guidance, beat_guidance, rows in [(128, 8, 1.0, None, 1), (128, 8, 2.0, None, 2),
                                                       (128, 8, 2.0, 4.0, 3), (128, 16, 2.0, None, 2),
                                                       (256, 8, 2.0, None, 2)]:
            peaks = traced_peaks(pipe, size, k, guidance, beat_guidance)
            c0, v0 = config.unet.block_out_channels[0], config.vae.block_out_channels[0]
            cells = (size // config.vae.downscale) ** 2
            step_ratio = peaks["step"] / (rows * k * c0 * cells * 4)
            decode_ratio = peaks["decode"] / (8 * v0 * size * size * 4)
            print(f"| {name} | {c0} | {v0} | {size} | {k} | {rows} | {gib(peaks['step'])} | {step_ratio:.1f} | "
                  f"{gib(peaks['decode'])} | {decode_ratio:.1f} |")

    print("\nPart 2: predicted for the SD1.5-sized model (fp16 weights and activations)")
    print("| size | K | rows | weights | step or decode | sum |")
    print("|---|---|---|---|---|---|")
    full = MuseDanceConfig.sd15()
    for size in (512, 640):
        for k in (16, 48):
            for rows in (2, 3):
                estimate = sampling_memory(full, height=size, width=size, rows=rows, clip_length=k, element_size=2,
                                           on_cpu=False)
                weights, peak = (part.nbytes for part in estimate.parts)
                print(f"| {size}x{size} | {k} | {rows} | {gib(weights)} | {gib(peak)} | {gib(estimate.total())} |")


if __name__ == "__main__":
    main()
