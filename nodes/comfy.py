"""The few ComfyUI services the nodes use, each with a plain fallback outside ComfyUI.

Nodes import this module, never `comfy` or `folder_paths` directly, so they can be unit-tested
without a ComfyUI install and so the ComfyUI APIs the pack depends on are listed in one place.
All of these exist in ComfyUI from early 2024 to today.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch


def _module(name: str) -> Any | None:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


def on_server_start(callback: Callable[[], None]) -> bool:
    """Run `callback` when ComfyUI's web server starts: after ComfyUI has applied its folder options
    (--output-directory, ...), which it does only after importing the custom nodes. False outside ComfyUI."""
    server = sys.modules.get("server")  # ComfyUI's server.py, imported by its main.py before the custom nodes
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None or getattr(instance, "app", None) is None:
        return False

    async def run(app) -> None:
        callback()

    instance.app.on_startup.append(run)
    return True


def on_prompt(handler: Callable[[dict], dict]) -> bool:
    """Call `handler` with every prompt posted to the server (the whole API prompt, in "prompt"), just before
    ComfyUI validates it; it returns the request data. False outside ComfyUI."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None or not hasattr(instance, "add_on_prompt_handler"):
        return False
    instance.add_on_prompt_handler(handler)
    return True


def total_memory(device: torch.device) -> int:
    """Bytes of memory on `device`: the GPU's own, or the machine's RAM for the CPU."""
    from ..musedance_core.sampling.memory import host_memory_bytes

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return host_memory_bytes()


def model_management() -> Any | None:
    return _module("comfy.model_management")


def compute_device() -> torch.device:
    """ComfyUI's chosen device (honours --cpu and friends); CPU outside ComfyUI."""
    mm = model_management()
    return mm.get_torch_device() if mm is not None else torch.device("cpu")


def offload_device() -> torch.device:
    """Where models wait between runs so they hold no GPU memory (ComfyUI's unet offload device)."""
    mm = model_management()
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def soft_empty_cache() -> None:
    mm = model_management()
    if mm is not None:
        mm.soft_empty_cache()


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel."""
    mm = model_management()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


def interrupt_requested() -> bool:
    """Whether the user pressed Cancel (without clearing it: `throw_if_interrupted` then raises)."""
    mm = model_management()
    return bool(mm is not None and mm.processing_interrupted())


def check_interrupt() -> None:
    """Within a step (between UNet blocks): raise ComfyUI's InterruptProcessingException if Cancel was pressed."""
    if interrupt_requested():
        throw_if_interrupted()


def interrupt_exceptions() -> tuple[type[BaseException], ...]:
    """The exception ComfyUI's Cancel raises (`throw_if_interrupted`); none outside ComfyUI."""
    mm = model_management()
    found = getattr(mm, "InterruptProcessingException", None) if mm is not None else None
    return (found,) if isinstance(found, type) else ()


class Progress:
    """ComfyUI's progress bar (which also shows in the API's websocket), or nothing outside ComfyUI."""

    def __init__(self, total: int):
        utils = _module("comfy.utils")
        self._bar = utils.ProgressBar(total) if utils is not None else None
        self.total = total

    def set(self, value: int, preview: torch.Tensor | None = None) -> None:
        """Move the bar to `value`; `preview` (float [H, W, 3] in [0, 1]) shows on the node while it runs."""
        if self._bar is None:
            return
        image = None
        if preview is not None:
            from PIL import Image  # ComfyUI's own dependency

            pixels = (preview.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            image = ("JPEG", Image.fromarray(pixels), PREVIEW_SIZE)  # the form ComfyUI's samplers send
        self._bar.update_absolute(value, self.total, image)


PREVIEW_SIZE = 512  # the longest side of a progress preview, as ComfyUI's latent previews


def video_type() -> type | None:
    """ComfyUI's VIDEO value made from a file (`comfy_api.input_impl.VideoFromFile`, ComfyUI 0.3.3x and later);
    None on older ComfyUI and outside it."""
    module = _module("comfy_api.input_impl")
    return getattr(module, "VideoFromFile", None) if module is not None else None


def folder_paths() -> Any | None:
    return _module("folder_paths")


def output_folder() -> Path:
    fp = folder_paths()
    return Path(fp.get_output_directory() if fp is not None else os.path.join(os.getcwd(), "output"))


def temp_folder() -> Path:
    """ComfyUI's temp folder (emptied when ComfyUI starts), where node previews go."""
    fp = folder_paths()
    if fp is not None:
        return Path(fp.get_temp_directory())
    import tempfile

    return Path(tempfile.gettempdir()) / "musedance_previews"


def preview_image(pixels: Any, name: str) -> dict:
    """Save float RGB [H, W, 3] in [0, 1] as a PNG in the temp folder: the entry a node's ui "images" shows."""
    import secrets

    import numpy as np
    from PIL import Image  # ComfyUI's own dependency

    folder = temp_folder()
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{name}_{secrets.token_hex(6)}.png"
    array = (np.clip(np.asarray(pixels, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array).save(folder / filename, compress_level=1)
    return {"filename": filename, "subfolder": "", "type": "temp"}


def input_folder() -> Path:
    fp = folder_paths()
    return Path(fp.get_input_directory() if fp is not None else os.path.join(os.getcwd(), "input"))


class ManagedModules:
    """Models that ComfyUI's model management moves to the compute device for a run and offloads after.

    Inside ComfyUI the modules are wrapped in a `comfy.model_patcher.ModelPatcher`, so ComfyUI counts
    their memory, keeps them loaded while there is room and offloads them when another model needs
    the GPU, as it does for its own models. Outside ComfyUI `load()` simply moves them.
    """

    def __init__(self, modules: dict[str, torch.nn.Module], load_device: torch.device, offload: torch.device) -> None:
        self.container = torch.nn.ModuleDict(modules)
        self.load_device = torch.device(load_device)
        self.offload_device = torch.device(offload)
        patcher_module = _module("comfy.model_patcher")
        self.patcher = (
            patcher_module.ModelPatcher(self.container, load_device=self.load_device, offload_device=self.offload_device)
            if patcher_module is not None and model_management() is not None else None
        )

    def load(self, memory_required: int = 0) -> torch.device:
        """Put every module on the load device (making room first); returns that device. See `load_together`."""
        return load_together([self], memory_required)

    def offload(self) -> None:
        """Move the modules to the offload device now (outside ComfyUI; inside, ComfyUI decides when)."""
        if self.patcher is None:
            self.container.to(self.offload_device)


def load_together(groups: list[ManagedModules], memory_required: int = 0) -> torch.device:
    """Put every module of `groups` on their load device; returns that device. Inside ComfyUI one
    `load_models_gpu` call loads them, first unloading other models (those loaded earlier and idle now,
    least recently used first) until `memory_required` bytes of working memory are free besides."""
    mm = model_management()
    patchers = [group.patcher for group in groups if group.patcher is not None]
    if patchers and mm is not None:
        import inspect

        # All of the model must be on the device: our layers are plain torch layers, which
        # ComfyUI's low-VRAM partial loading would leave on the CPU.
        full = {"force_full_load": True} if "force_full_load" in inspect.signature(mm.load_models_gpu).parameters else {}
        mm.load_models_gpu(patchers, memory_required=int(memory_required), **full)
    for group in groups:
        group.container.to(group.load_device)  # a no-op when ComfyUI loaded everything
    return groups[0].load_device
