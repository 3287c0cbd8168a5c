"""The few ComfyUI services the nodes use, each with a plain fallback outside ComfyUI.

Nodes import this module, never `comfy` or `folder_paths` directly, so they can be unit-tested
without a ComfyUI install and so the ComfyUI APIs the pack depends on are listed in one place.
All of these exist in ComfyUI from early 2024 to today.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def _module(name: str) -> Any | None:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


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


def make_room(num_bytes: int, device: torch.device) -> None:
    """Ask ComfyUI to unload other models until `num_bytes` are free on `device`."""
    mm = model_management()
    if mm is not None and device.type != "cpu":
        mm.free_memory(num_bytes, device)


def soft_empty_cache() -> None:
    mm = model_management()
    if mm is not None:
        mm.soft_empty_cache()


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel."""
    mm = model_management()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """ComfyUI's progress bar (which also shows in the API's websocket), or nothing outside ComfyUI."""

    def __init__(self, total: int):
        utils = _module("comfy.utils")
        self._bar = utils.ProgressBar(total) if utils is not None else None
        self.total = total

    def set(self, value: int) -> None:
        if self._bar is not None:
            self._bar.update_absolute(value, self.total)


def folder_paths() -> Any | None:
    return _module("folder_paths")


def output_folder() -> Path:
    fp = folder_paths()
    return Path(fp.get_output_directory() if fp is not None else os.path.join(os.getcwd(), "output"))


def input_folder() -> Path:
    fp = folder_paths()
    return Path(fp.get_input_directory() if fp is not None else os.path.join(os.getcwd(), "input"))
