"""The README's pictures, made by the project itself (scripts/readme_pictures.sh runs this).

  strip     the main job's contact sheet -> one row of frames, the frames on a beat framed in red
  icon      the main job's contact sheet -> the pack's icon (its first frame on a beat, 256x256)
  thumbnails  each example workflow run in ComfyUI -> four frames of its video, the template dialog's picture
  workflow  workflows/musedance_basic.json in a real ComfyUI web UI, run on the sample, screenshot

`workflow` starts a ComfyUI (--comfyui and --python, else the tests' host as tests/comfy_server.py
finds it) with the pack in its custom_nodes, puts the main job's sample picture and music into its
input folder under the names the workflow loads, opens the page in headless Chromium through
Playwright, loads the graph with `app.loadGraphData`, queues it as the Run button does, waits for the
video, and photographs the page. Needs Pillow and Playwright, not the project's own packages.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
BEAT_RED = (255, 51, 51)  # musedance_core/plots.py BEAT, as uint8
SHEET_COLUMNS, SHEET_GAP = 12, 2  # how the main job draws its contact sheet (columns=12, gap 2)


# --- strip ----------------------------------------------------------------------------------------


def sheet_cells(sheet: np.ndarray) -> tuple[list[np.ndarray], list[bool]]:
    """The frames of a contact sheet (uint8 [H, W, 3]) and whether each is framed in red (on a beat)."""
    cell_w = sheet.shape[1] // SHEET_COLUMNS
    cell_h = cell_w  # the main job's frames are square
    frames, on_beat = [], []
    for top in range(0, sheet.shape[0] - cell_h + 1, cell_h):
        for left in range(0, sheet.shape[1] - cell_w + 1, cell_w):
            cell = sheet[top:top + cell_h, left:left + cell_w]
            inner = cell[SHEET_GAP:-SHEET_GAP, SHEET_GAP:-SHEET_GAP]
            if (inner == inner[0, 0]).all():  # the empty end of the last row
                continue
            frames.append(inner)
            on_beat.append(tuple(int(v) for v in cell[0, cell_w // 2]) == BEAT_RED)
    if not frames:
        raise SystemExit(f"error: no frames found in the contact sheet ({sheet.shape[1]}x{sheet.shape[0]}).")
    return frames, on_beat


def icon(sheet_path: Path, out: Path, size: int = 256) -> None:
    """The pack's icon (Comfy Registry): the main job's first frame on a beat, `size` pixels square."""
    frames, on_beat = sheet_cells(np.asarray(Image.open(sheet_path).convert("RGB")))
    frame = frames[on_beat.index(True) if any(on_beat) else 0]
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).resize((size, size), Image.LANCZOS).save(out, optimize=True)
    print(f"wrote {out} ({size}x{size})")


def frame_strip(sheet_path: Path, out: Path, fps: float, count: int, border: int = 4) -> None:
    """`count` frames, every second one from the first beat, side by side with their times below."""
    frames, on_beat = sheet_cells(np.asarray(Image.open(sheet_path).convert("RGB")))
    first = on_beat.index(True) if any(on_beat) else 0
    stride = 2 if first + 2 * (count - 1) < len(frames) else 1
    chosen = list(range(first, len(frames), stride))[:count]
    size = frames[0].shape[0]
    cell, label = size + 2 * border, 18
    strip = Image.new("RGB", (len(chosen) * cell, cell + label), (31, 31, 31))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=13)
    for i, k in enumerate(chosen):
        if on_beat[k]:
            draw.rectangle([i * cell, 0, (i + 1) * cell - 1, cell - 1], fill=BEAT_RED)
        strip.paste(Image.fromarray(frames[k]), (i * cell + border, border))
        text = f"{k / fps:.2f} s" + (" beat" if on_beat[k] else "")
        draw.text((i * cell + cell // 2, cell + label // 2), text, anchor="mm", font=font,
                  fill=BEAT_RED if on_beat[k] else (200, 200, 200))
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(out, optimize=True)
    print(f"wrote {out}: frames {chosen} of {len(frames)}")


# --- workflow -------------------------------------------------------------------------------------

# Fit the whole graph into the canvas, clear of the menus along its edges: [left, top, right, bottom] pixels.
FIT_GRAPH = """([left, top, right, bottom]) => {
  const nodes = app.graph._nodes ?? app.graph.nodes;
  const title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const x0 = Math.min(...nodes.map((n) => n.pos[0]));
  const y0 = Math.min(...nodes.map((n) => n.pos[1] - title));
  const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
  const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
  const canvas = app.canvas.canvas;
  const scale = Math.min((canvas.width - left - right) / (x1 - x0), (canvas.height - top - bottom) / (y1 - y0), 1);
  const ds = app.canvas.ds;
  ds.scale = scale;
  ds.offset[0] = left / scale - x0;
  ds.offset[1] = top / scale - y0;
  app.canvas.show_info = false;  // LiteGraph's frame-rate corner
  app.canvas.setDirty(true, true);
  return scale;
}"""


def workflow_screenshot(out: Path, workflow: Path, viewport: tuple[int, int], out_width: int, run: bool,
                        chromium: str, timeout: float, host_dir: Path | None, host_python: Path | None) -> None:
    """Load (and run) `workflow` in ComfyUI's web UI on the sample image and music; save the page, `out_width` wide."""
    sys.path.insert(0, str(ROOT / "tests"))
    from comfy_browser import CHROMIUM_ARGS, open_page, prepare_server
    from comfy_server import ComfyHost, ComfyServer, find_host  # the tests' server helper, standard library only
    from playwright.sync_api import sync_playwright

    host = ComfyHost(host_dir, host_python) if host_dir and host_python else find_host()
    graph = json.loads(workflow.read_text())
    with tempfile.TemporaryDirectory(prefix="musedance_pictures_") as tmp:
        server = ComfyServer.start(tmp, host=host)
        try:
            assets = ROOT / "musedance_demo" / "assets"  # the main job's sample, as workflows/README.md says
            server.upload(assets / "sample_reference.png", "musedance_reference.png")
            server.upload(assets / "sample_music.wav", "musedance_music.wav")
            prepare_server(server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = open_page(browser, server, viewport)
                page.evaluate("(graph) => app.loadGraphData(graph, true, true, 'musedance_basic')", graph)
                page.wait_for_timeout(2000)
                if run:
                    page.evaluate("() => app.queuePrompt(0, 1)")  # what the Queue/Run button does
                    status = wait_for_history(server, timeout).get("status") or {}
                    if status.get("status_str") != "success":
                        raise SystemExit(f"error: the workflow failed in ComfyUI: {json.dumps(status)[:3000]}")
                    page.wait_for_timeout(4000)  # the previews and the video player load
                page.keyboard.press("Escape")  # any toast or dialog
                page.evaluate(FIT_GRAPH, [70, 100, 30, 40])
                page.wait_for_timeout(1000)
                shot = Path(tmp) / "screenshot.png"
                page.screenshot(path=str(shot))
                browser.close()
            image = Image.open(shot).convert("RGB")
            if image.width > out_width:
                image = image.resize((out_width, round(image.height * out_width / image.width)), Image.LANCZOS)
            out.parent.mkdir(parents=True, exist_ok=True)
            # 256 colours: a third of the size, and the flat UI shows no difference
            image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)
            print(f"wrote {out} ({image.width}x{image.height}), ComfyUI in {host.comfyui}")
        finally:
            server.stop()


def template_thumbnails(workflows: Path, timeout: float, host_dir: Path | None, host_python: Path | None,
                        size: int = 256, only: list[str] | None = None) -> None:
    """Run every API workflow in workflows/api/ on the sample in a ComfyUI that has the VIDEO type, read its
    video back through ComfyUI's own Get Video Components, and save four of its frames as `<name>.jpg`
    beside the UI workflow: the picture ComfyUI's template dialog shows for it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from comfy_server import ComfyHost, ComfyServer, find_host

    host = ComfyHost(host_dir, host_python) if host_dir and host_python else find_host()
    with tempfile.TemporaryDirectory(prefix="musedance_thumbnails_") as tmp:
        server = ComfyServer.start(tmp, host=host)
        try:
            assets = ROOT / "musedance_demo" / "assets"
            server.upload(assets / "sample_reference.png", "musedance_reference.png")
            server.upload(assets / "sample_music.wav", "musedance_music.wav")
            for api in sorted((workflows / "api").glob("*.api.json")):
                if only and api.name.removesuffix(".api.json") not in only:
                    continue
                graph = json.loads(api.read_text())
                (combine,) = [key for key, node in graph.items()
                              if node["class_type"] in ("MuseDanceVideoCombine", "MuseDanceRender")]
                graph["900"] = {"class_type": "GetVideoComponents", "inputs": {"video": [combine, 1]}}
                graph["901"] = {"class_type": "PreviewImage", "inputs": {"images": ["900", 0]}}
                entry = server.wait(server.post_prompt(graph), timeout=timeout)
                shown = entry["outputs"]["901"]["images"]
                picks = [shown[round(i * (len(shown) - 1) / 3)] for i in range(4)]
                frames = [Image.open(io.BytesIO(server.view(p["filename"], p["subfolder"], p["type"]))).convert("RGB")
                          for p in picks]
                half = size // 2
                sheet = Image.new("RGB", (size, size))
                for i, frame in enumerate(frames):
                    sheet.paste(frame.resize((half, half), Image.LANCZOS), ((i % 2) * half, (i // 2) * half))
                out = workflows / (api.name.removesuffix(".api.json") + ".jpg")
                sheet.save(out, quality=88)
                print(f"wrote {out} from {len(shown)} frames of its video")
        finally:
            server.stop()


def wait_for_history(server, timeout: float) -> dict:
    """The first finished prompt's history entry (the page queued it; a fresh server has no other)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = server._json("GET", "/history")
        if history:
            return next(iter(history.values()))
        if server.process.poll() is not None:
            raise SystemExit(f"error: ComfyUI exited. Log:\n{server.log_tail()}")
        time.sleep(1)
    raise SystemExit(f"error: the workflow did not finish within {timeout:.0f} s. Log:\n{server.log_tail()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    strip = sub.add_parser("strip", help="a frame strip from the main job's contact sheet")
    strip.add_argument("sheet", type=Path, help="outputs/musedance_demo_contact.png")
    strip.add_argument("out", type=Path)
    strip.add_argument("--fps", type=float, default=12.0, help="the video's frame rate (for the times)")
    strip.add_argument("--frames", type=int, default=12, help="frames in the strip")
    thumbs = sub.add_parser("thumbnails", help="template thumbnails: each workflow's own video, four frames")
    thumbs.add_argument("--workflows", type=Path, default=ROOT / "workflows")
    thumbs.add_argument("--comfyui", type=Path, help="a ComfyUI with the VIDEO type (default: the tests' host)")
    thumbs.add_argument("--python", type=Path, help="the Python that runs --comfyui")
    thumbs.add_argument("--timeout", type=float, default=900, help="seconds for each workflow")
    thumbs.add_argument("--only", nargs="+", metavar="NAME", help="only these workflows (e.g. musedance_flow)")
    square = sub.add_parser("icon", help="the pack's icon from the main job's contact sheet")
    square.add_argument("sheet", type=Path, help="outputs/musedance_demo_contact.png")
    square.add_argument("out", type=Path)
    shot = sub.add_parser("workflow", help="a screenshot of a workflow in ComfyUI's web UI")
    shot.add_argument("out", type=Path)
    shot.add_argument("--workflow", type=Path, default=ROOT / "workflows/musedance_basic.json")
    shot.add_argument("--viewport", default="2000x1040", help="browser window, WIDTHxHEIGHT")
    shot.add_argument("--width", type=int, default=1600, help="width of the saved picture")
    shot.add_argument("--no-run", dest="run", action="store_false", help="only load the graph, do not queue it")
    shot.add_argument("--chromium", default="/usr/bin/chromium")
    shot.add_argument("--comfyui", type=Path, help="a ComfyUI folder (default: the tests' host, tests/comfy_server.py)")
    shot.add_argument("--python", type=Path, help="the Python that runs --comfyui")
    shot.add_argument("--timeout", type=float, default=600, help="seconds for the run")
    args = parser.parse_args(argv)
    if args.command == "strip":
        frame_strip(args.sheet, args.out, args.fps, args.frames)
    elif args.command == "icon":
        icon(args.sheet, args.out)
    elif args.command == "thumbnails":
        template_thumbnails(args.workflows, args.timeout, args.comfyui, args.python, only=args.only)
    else:
        viewport = tuple(int(v) for v in args.viewport.lower().split("x"))
        workflow_screenshot(args.out, args.workflow, viewport, args.width, args.run, args.chromium, args.timeout,
                            args.comfyui, args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
