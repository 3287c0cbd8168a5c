"""The pack in ComfyUI's real web UI: ComfyUI 0.3.75 and its frontend in headless Chromium, as a user meets it.

What a user does, through the frontend's own paths: open each example workflow with the Open file
input, press Run, watch the preview, play the video with its music, drop that video back on the page,
and pick the workflows from the template dialog. Screenshots of every step are written to
${MUSEDANCE_TEST_ARTIFACTS:-<repo>/.test-artifacts}/browser/, where a failing run can be looked at.

Needs the current test host and Chromium (scripts/setup_comfyui.sh) and Playwright (the `test`
extra); without them these tests skip, and under CI they fail.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from comfy_browser import CHROMIUM, CHROMIUM_ARGS, open_page, prepare_server
from comfy_server import ComfyServer, comfy_server_fixture, missing
from tiny_files import write_workflow_models

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
BASIC = WORKFLOWS / "musedance_basic.json"
ARTIFACTS = Path(os.environ.get("MUSEDANCE_TEST_ARTIFACTS") or ROOT / ".test-artifacts") / "browser"
PACK_URL_PART = "musedance"  # in every URL the pack serves or is served for: its extension, templates, outputs
# What the run changes through the widgets, as a user would, so that it takes seconds on a CPU; the
# dropped video must bring these values back (they are not the file's).
RUN_WIDGETS = {"MuseDanceTiming": {"duration": 1.0}, "MuseDanceSampler": {"steps": 2}}
TIMEOUT = 300

comfy = comfy_server_fixture(models=write_workflow_models, hosts=("current",))


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed: pip install -e '.[test]'")
    if not CHROMIUM.is_file():
        missing(f"no Chromium at {CHROMIUM}: apt-get install -y chromium, or set CHROMIUM")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(comfy: ComfyServer) -> ComfyServer:
    """The server with the main job's sample picture and music under the names the workflows load."""
    assets = ROOT / "musedance_demo" / "assets"
    comfy.upload(assets / "sample_reference.png", "musedance_reference.png")
    comfy.upload(assets / "sample_music.wav", "musedance_music.wav")
    prepare_server(comfy)
    return comfy


class Page:
    """One browser page on the server, with what went wrong in it: console errors, uncaught exceptions, failed requests."""

    def __init__(self, browser, server: ComfyServer) -> None:
        self.problems: list[str] = []
        self.notices: list[str] = []
        self.page = open_page(browser, server)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        self.page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type in ("error", "warning"):
            self.notices.append(f"{message.type}: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def pack_problems(self) -> list[str]:
        """What went wrong that concerns the pack: its URLs, its script, its nodes, or ComfyUI's notice about
        an extension importing the frontend's internals."""
        return [p for p in self.problems + self.notices
                if PACK_URL_PART in p.lower() or "internal module" in p or "MuseDance" in p]

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def state(self) -> dict:
        """The graph as the frontend holds it, and what the page shows besides: dialogs and error toasts."""
        return self.page.evaluate("""() => ({
            nodes: (app.graph._nodes ?? app.graph.nodes).map((n) => ({
                id: n.id, type: n.type, known: !!LiteGraph.registered_node_types[n.type], errors: !!n.has_errors,
                widgets: Object.fromEntries((n.widgets ?? []).map((w) => [w.name, w.value]))})),
            serialized: app.graph.serialize(),
            dialogs: [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText.slice(0, 500)),
            errorToasts: [...document.querySelectorAll('.p-toast-message-error')].map((t) => t.innerText.slice(0, 500)),
        })""")

    def open_file(self, path: Path) -> dict:
        """Open a file through the frontend's own file input (Workflow > Open); the page's state after."""
        self.page.locator("#comfy-file-input").set_input_files(str(path))
        return self.settle()

    def settle(self, seconds: float = 2.5) -> dict:
        """The page's state once it has drawn the new graph, all of it in view (nodes off screen get no player)."""
        self.page.wait_for_timeout(int(seconds * 1000))
        self.page.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")
        self.page.wait_for_timeout(500)
        return self.state()

    def set_widgets(self, values: dict[str, dict]) -> None:
        self.page.evaluate("""(values) => {
            for (const node of app.graph._nodes ?? app.graph.nodes) {
                for (const [name, value] of Object.entries(values[node.type] ?? {})) {
                    const widget = node.widgets.find((w) => w.name === name);
                    widget.value = value;
                    widget.callback?.(value);
                }
            }
            app.graph.setDirtyCanvas(true, true);
        }""", values)


def loaded_cleanly(state: dict, workflow: dict, where: str) -> None:
    """The page holds `workflow`'s nodes, every one known and without errors; no dialog, no error toast."""
    assert not state["dialogs"], f"a dialog opened (missing nodes?): {state['dialogs']}; see {where}"
    assert not state["errorToasts"], f"error toast: {state['errorToasts']}; see {where}"
    assert sorted((n["id"], n["type"]) for n in state["nodes"]) == sorted((n["id"], n["type"]) for n in workflow["nodes"]), where
    unknown = [n["type"] for n in state["nodes"] if not n["known"]]
    red = [n["type"] for n in state["nodes"] if n["errors"]]
    assert not unknown and not red, f"unknown node types {unknown}, nodes marked in error {red}; see {where}"


@pytest.fixture(scope="module")
def page(browser, server):
    page = Page(browser, server)
    yield page
    page.page.close()


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_every_example_workflow_opens_with_its_widgets_and_no_missing_node(page, path):
    workflow = json.loads(path.read_text())
    state = page.open_file(path)
    where = page.shot(f"open_{path.stem}")
    loaded_cleanly(state, workflow, str(where))
    saved = {node["id"]: node.get("widgets_values", []) for node in workflow["nodes"]}
    holds = {node["id"]: node.get("widgets_values", []) for node in state["serialized"]["nodes"]}
    assert holds == saved, f"the frontend holds other widget values than {path.name}; see {where}"
    links = {tuple(link[:5]) for link in state["serialized"]["links"]}
    assert links == {tuple(link[:5]) for link in workflow["links"]}, where
    assert not page.pack_problems(), page.pack_problems()


@pytest.fixture(scope="module")
def run(page, server) -> dict:
    """The basic workflow opened, shortened through its widgets and run from the Run button; what the page saw."""
    page.open_file(BASIC)
    page.set_widgets(RUN_WIDGETS)
    page.page.evaluate("""() => {
        window.musedancePreviews = [];
        const api = window.comfyAPI?.api?.api ?? app.api;
        for (const kind of ['b_preview', 'b_preview_with_metadata']) {
            api.addEventListener(kind, (event) => window.musedancePreviews.push(kind));
        }
    }""")
    page.page.get_by_role("button", name="Run", exact=True).first.click()
    deadline = time.monotonic() + TIMEOUT
    entry = None
    while entry is None and time.monotonic() < deadline:
        history = server._json("GET", "/history")
        entry = next(iter(history.values()), None)
        time.sleep(1)
    assert entry is not None, f"the Run button queued nothing that finished in {TIMEOUT} s; see {page.shot('run')}"
    status = entry.get("status") or {}
    assert status.get("status_str") == "success", json.dumps(status)[:3000]
    try:
        page.page.wait_for_function(
            "() => [...document.querySelectorAll('video')].some((v) => v.src.includes('dance') && v.readyState >= 2)",
            timeout=60_000)
    except Exception as error:
        videos = page.page.evaluate(
            "() => [...document.querySelectorAll('video')].map((v) => [v.src, v.readyState, v.error?.message ?? null])")
        raise AssertionError(f"no playable video of the run in the page: {videos} {page.problems}; "
                             f"see {page.shot('run_video')}") from error
    return entry


def test_run_button_makes_a_video_that_plays_with_its_music_and_previews_while_sampling(page, run):
    previews = page.page.evaluate("() => window.musedancePreviews")
    video = page.page.evaluate("""async () => {
        const video = [...document.querySelectorAll('video')].find((v) => v.src.includes('dance'));
        video.muted = false;
        video.currentTime = 0;
        await video.play();
        await new Promise((done) => setTimeout(done, 1500));
        return {src: video.src, time: video.currentTime, width: video.videoWidth, height: video.videoHeight,
                audioBytes: video.webkitAudioDecodedByteCount, videoBytes: video.webkitVideoDecodedByteCount,
                error: video.error?.message ?? null};
    }""")
    where = page.shot("run_video")
    assert previews, f"no preview image reached the page while the sampler ran; see {where}"
    assert video["error"] is None and video["width"] == video["height"] == 64, (video, str(where))
    assert video["time"] > 0 and video["videoBytes"] > 0, f"the video does not play: {video}; see {where}"
    assert video["audioBytes"] > 0, f"the video plays without decoding any sound: {video}; see {where}"
    assert not page.pack_problems(), page.pack_problems()


def test_the_video_dropped_on_the_page_brings_back_the_workflow_that_made_it(page, server, run):
    (combine,) = [key for key, node in run["prompt"][2].items() if node["class_type"] == "MuseDanceVideoCombine"]
    (saved,) = run["outputs"][combine]["gifs"] if "gifs" in run["outputs"][combine] else run["outputs"][combine]["images"]
    video = (server.output_dir / saved["subfolder"] / saved["filename"]).read_bytes()
    page.page.evaluate("() => app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
    assert not page.settle(1)["nodes"]
    page.page.evaluate("""([name, data]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: name.endsWith('.webm') ? 'video/webm' : 'video/mp4'}));
        const canvas = document.querySelector('#graph-canvas') ?? app.canvas.canvas;
        canvas.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        canvas.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [saved["filename"], base64.b64encode(video).decode()])
    state = page.settle(3)
    where = page.shot("drop_video")
    loaded_cleanly(state, json.loads(BASIC.read_text()), str(where))
    by_type = {node["type"]: node["widgets"] for node in state["nodes"]}
    for node_type, values in RUN_WIDGETS.items():  # the values of the run, not of the example file
        for name, value in values.items():
            assert by_type[node_type][name] == value, (node_type, name, by_type[node_type][name], str(where))
    assert not page.pack_problems(), page.pack_problems()


def test_the_template_dialog_offers_the_example_workflows_with_their_pictures_and_each_loads(page):
    expected = sorted(f"template-workflow-{path.stem}" for path in UI_FILES)
    for path in UI_FILES:
        page.page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        dialog = page.page.locator(".p-dialog")
        dialog.get_by_text(PACK_URL_PART, exact=True).first.click()  # the pack's own category, named after its folder
        page.page.wait_for_timeout(1500)
        cards = page.page.evaluate("""() => [...document.querySelectorAll('.p-dialog [data-testid^="template-workflow-"]')]
            .map((card) => ({id: card.getAttribute('data-testid'),
                             pictures: [...card.querySelectorAll('img')].map((img) => [img.complete, img.naturalWidth])}))""")
        where = page.shot(f"templates_{path.stem}")
        assert sorted(card["id"] for card in cards) == expected, (cards, str(where))
        for card in cards:  # the real 256x256 thumbnail of each, loaded
            assert card["pictures"] and all(done and width == 256 for done, width in card["pictures"]), (card, str(where))
        dialog.locator(f'[data-testid="template-workflow-{path.stem}"]').click()
        page.page.wait_for_function("() => !document.querySelector('.p-dialog')", timeout=30_000)
        state = page.settle(2)
        loaded_cleanly(state, json.loads(path.read_text()), str(page.shot(f"template_{path.stem}")))
    assert not page.pack_problems(), page.pack_problems()
