"""A prepared dataset (what `python -m trainer.prepare` writes), read lazily as `PreparedClip`s.

Only the manifest is read up front; a clip's tensors are read from its shard when asked for, and
`clip(i, start, stop)` reads just a range of frames (safetensors slices), so a stage that needs a
few frames of a long clip does not load all of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open

from .clips import PreparedClip
from .prepare import FORMAT, MANIFEST, VERSION


class PreparedDataset:
    """The clips of a prepared folder, in manifest order: `len(ds)`, `ds[i]` -> PreparedClip.

    Masks come back as float in [0, 1], music tokens as float32. `manifest` is the parsed
    manifest.json, `music_shape` the (L, d) of every clip's music tokens, `fps` the frame rate.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise ValueError(f"{self.folder} has no {MANIFEST}; prepare it with `python -m trainer.prepare`.")
        self.manifest = json.loads(path.read_text(encoding="utf-8"))
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != VERSION:
            raise ValueError(f"{path} is not a MuseDance dataset manifest of version {VERSION}; "
                             "prepare the clips again with this version of `python -m trainer.prepare`.")
        self.entries: list[dict] = self.manifest["clips"]
        settings = self.manifest["settings"]
        self.fps = float(settings["fps"])
        self.music_shape = tuple(settings["music_shape"])
        self.size = (int(settings["height"]), int(settings["width"]))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> PreparedClip:
        return self.clip(index)

    def num_frames(self, index: int) -> int:
        """Frames of clip `index`, from the manifest (no shard is read)."""
        return int(self.entries[index]["num_frames"])

    def clip(self, index: int, start: int = 0, stop: int | None = None) -> PreparedClip:
        """Clip `index`, or only its frames start..stop-1 (with their masks, beats and music)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} out of range for a dataset of {len(self)} clips.")
        entry = self.entries[index]
        count = int(entry["num_frames"])
        stop = count if stop is None else stop
        if not 0 <= start < stop <= count:
            raise IndexError(f"frames {start}..{stop} are outside clip {entry['name']} of {count} frames.")
        name = entry["name"]
        with safe_open(str(self.folder / entry["shard"]), framework="pt") as shard:
            def read(key: str) -> torch.Tensor:
                return shard.get_slice(f"{name}/{key}")[start:stop]

            frames, masks, beats, music = read("frames"), read("masks"), read("beats"), read("music")
        masks = masks.float() / 255.0 if masks.dtype == torch.uint8 else masks.float()
        return PreparedClip(name=name, frames=frames, masks=masks, beats=beats.float(), music=music.float(),
                            caption=entry["caption"], fps=self.fps)
