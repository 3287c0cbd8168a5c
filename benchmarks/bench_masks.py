"""Mask sources: IoU against the drawn truth and time per image, at the sizes people use.

    python benchmarks/bench_masks.py [--sizes 256 512 1024] [--repeats 3]
                                     [--output benchmarks/results/masks.json]

The scenes are those of the tests (tests/scenes.py): a dancing figure with thin limbs and a
non-human star-shaped toy, on a plain or a lightly textured background (also with anti-aliased
edges, and with a shadow on the floor); DensePose drawings in the
viridis, parula and raw IUV styles, as drawn and after a JPEG round trip at quality 75 (Pillow).
Each case runs `repeats` times on one image of height `size` (width 3/4 of it); the median time and
the IoU of the mask (>= 0.5) against the drawing are reported. Prints a table and writes it, with
the machine, to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from machine_info import machine  # noqa: E402  benchmarks/ is on sys.path when a script here runs
from musedance_core.masks.densepose import mask_from_densepose_image  # noqa: E402
from musedance_core.masks.grabcut import automatic_mask  # noqa: E402
from scenes import FIGURE_COLOURS, densepose_drawing, figure_parts, iou, jpeg, object_mask, photo, soft_figure_photo  # noqa: E402


def cases(height: int):
    width = height * 3 // 4
    parts = figure_parts(height, width)
    body = parts > 0
    toy = object_mask(height, width)
    for style in ("viridis", "parula", "iuv"):
        drawing = densepose_drawing(parts, style)
        yield f"densepose image, {style}", mask_from_densepose_image, drawing, body
        yield f"densepose image, {style}, JPEG q75", mask_from_densepose_image, jpeg(drawing, 75), body
    for kind in ("plain", "textured"):
        yield f"automatic, figure, {kind}", automatic_mask, photo(height, width, parts, FIGURE_COLOURS, kind), body
        yield f"automatic, toy, {kind}", automatic_mask, photo(height, width, toy, (0.2, 0.55, 0.25), kind, seed=3), toy
    yield "automatic, figure, textured, JPEG q75", automatic_mask, jpeg(photo(height, width, parts, FIGURE_COLOURS, "textured"), 75), body
    yield "automatic, figure, textured, soft edges", automatic_mask, *soft_figure_photo(height, width)
    yield "automatic, same + shadow on the floor", automatic_mask, *soft_figure_photo(height, width, shadow=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "masks.json")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        for name, function, image, truth in cases(size):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                mask = function(image)
                times.append(time.perf_counter() - start)
            rows.append({"case": name, "height": size, "width": size * 3 // 4, "iou": round(iou(mask, truth), 4),
                         "median_s": round(statistics.median(times), 3)})
            print(f"{size:5d}  {name:42s}  IoU {rows[-1]['iou']:.4f}  {rows[-1]['median_s']:.3f} s", flush=True)
    result = {"machine": machine("numpy", "scipy", "torch"), "repeats": args.repeats, "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
