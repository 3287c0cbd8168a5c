"""ComfyUI's web UI in headless Chromium (Playwright), for tests/test_browser.py and scripts/readme_pictures.py.

Debian's `chromium` (scripts/setup_comfyui.sh installs it as root) is driven through Playwright's
`executable_path`; Playwright's own browser download is never used. CHROMIUM names another binary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# --autoplay-policy: a video element may play (with its sound) without a click, as the tests need.
CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
WAIT_FOR_APP = "() => window.app && window.app.graph && window.app.canvas"
# A first visit to a current frontend opens the template browser and a banner; a returning user's
# settings keep them closed (ComfyUI's own setting, and the banner's flag in the page's storage).
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
PAGE_STORAGE = "localStorage.setItem('vueNodesBannerDismissed', 'true');"


def prepare_server(server) -> None:
    """Store the settings of a returning user on `server` (a ComfyServer); an older ComfyUI stores and ignores them."""
    for key, value in SETTINGS.items():
        server._request("POST", f"/settings/{key}", json.dumps(value).encode())


def open_page(browser, server, viewport: tuple[int, int] = (1600, 1000)):
    """A new page on the server's web UI, once the app has started."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.add_init_script(PAGE_STORAGE)
    page.goto(server.url)
    page.wait_for_function(WAIT_FOR_APP, timeout=120_000)
    return page
