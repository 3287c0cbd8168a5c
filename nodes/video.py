"""Save Dance Video: IMAGE frames (+ AUDIO) -> a video file in ComfyUI's output folder, previewed in the UI.

The filename prefix may name subfolders (`MuseDance/dance`) but never leave the output folder:
absolute paths, drive letters, `..` and links that lead outside are refused. The file is written
under a temporary name and renamed when complete, so a failed encode leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch

from . import comfy

log = logging.getLogger(__name__)

FORMATS = ("h264-mp4", "vp9-webm")
_COUNTER = re.compile(r"_(\d{5})\.[A-Za-z0-9]+$")


MAX_NAME_BYTES = 200  # per path part: a file system allows 255, the counter and the temporary name need the rest


def check_prefix(prefix: object, output_dir: Path | None = None) -> tuple[Path, list[str]]:
    """The real folder a filename prefix writes into and its parts; a ValueError that names what is wrong.

    Refused: a prefix that is not text, is empty, holds a NUL character, is absolute, has a drive or
    `..`, has a part too long for a file name, or leads outside the output folder through a link.
    """
    root = Path(output_dir or comfy.output_folder()).resolve()
    if not isinstance(prefix, str):
        raise ValueError(f"filename_prefix must be text, got {type(prefix).__name__}.")
    if "\0" in prefix:
        raise ValueError("filename_prefix contains a NUL character, which no file name may hold; remove it.")
    if not prefix.strip():
        raise ValueError("filename_prefix is empty; give a name such as 'MuseDance/dance'.")
    windows = PureWindowsPath(prefix)
    parts = prefix.replace("\\", "/").split("/")
    if PurePosixPath(prefix).is_absolute() or windows.drive or windows.root or ".." in parts:
        raise ValueError(f"filename_prefix {prefix!r} tries to leave ComfyUI's output folder; give a relative "
                         "name without '..', such as 'MuseDance/dance'.")
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        raise ValueError(f"filename_prefix {prefix!r} has no file name; give one such as 'MuseDance/dance'.")
    long = [p for p in parts if len(p.encode("utf-8")) > MAX_NAME_BYTES]
    if long:
        raise ValueError(f"filename_prefix has a part of {len(long[0].encode('utf-8'))} bytes ({long[0][:40]!r}...); "
                         f"file names allow at most {MAX_NAME_BYTES} here: shorten it.")
    real = Path(os.path.realpath(root.joinpath(*parts[:-1])))
    if real != root and root not in real.parents:
        raise ValueError(f"filename_prefix {prefix!r} leads outside ComfyUI's output folder (through a link); "
                         "choose another subfolder.")
    return real, parts


def output_path(prefix: str, extension: str, output_dir: Path | None = None) -> tuple[Path, str, str]:
    """The next free `<prefix>_NNNNN<extension>` in the output folder: (path, file name, subfolder)."""
    real, parts = check_prefix(prefix, output_dir)
    real.mkdir(parents=True, exist_ok=True)
    stem = parts[-1]
    taken = [int(m.group(1)) for name in os.listdir(real)
             if name.startswith(stem + "_") and (m := _COUNTER.search(name)) and name[: -len(m.group(0))] == stem]
    counter = max(taken, default=0) + 1
    name = f"{stem}_{counter:05d}{extension}"
    return real / name, name, "/".join(parts[:-1])


# ComfyUI's own VIDEO type where the host has it (its video nodes take it); older hosts get the path only.
VIDEO = comfy.video_type()
# Seconds a temporary video file may go untouched before a save takes it for the remains of a run that died
# (a writer touches its file with every clip). When ComfyUI starts, no run of its own is writing: all go.
PARTIAL_FILE_AGE = 3600.0


def remove_partial_videos(folder: Path, older_than: float) -> None:
    from ..musedance_core.video import remove_partial_files

    for path in remove_partial_files(folder, older_than):
        log.info("MuseDance: removed %s, left by a video that was never finished", path)


# Inside ComfyUI, when it starts (no run of its own is writing yet), in the output folder it was given.
comfy.on_server_start(lambda: remove_partial_videos(comfy.output_folder(), 0.0))


class SaveDanceVideo:
    """IMAGE frames + optional AUDIO -> an MP4 or WebM in the output folder, shown as a playable preview."""

    CATEGORY = "MuseDance"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",) + (("VIDEO",) if VIDEO else ())
    RETURN_NAMES = ("filename",) + (("video",) if VIDEO else ())
    OUTPUT_TOOLTIPS = ("The video's path relative to ComfyUI's output folder.",) + (
        ("The video as ComfyUI's VIDEO, for its own video nodes (Get Video Components, Save Video).",) if VIDEO else ())
    DESCRIPTION = ("Encodes the frames with PyAV (H.264 + AAC in MP4, or VP9 + Opus in WebM); the music is "
                   "trimmed to the frames.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames, in order."}),
                "fps": ("FLOAT", {"default": 12.0, "min": 1.0, "max": 120.0, "step": 1.0,
                                  "tooltip": "Frames per second; connect the sampler's fps."}),
                "filename_prefix": ("STRING", {"default": "MuseDance/dance",
                                               "tooltip": "File name in ComfyUI's output folder; may hold "
                                                          "subfolders, not '..'. A counter is appended."}),
                "format": (list(FORMATS), {"default": FORMATS[0],
                                           "tooltip": "h264-mp4 plays everywhere; vp9-webm is smaller."}),
                "crf": ("INT", {"default": 19, "min": 0, "max": 63,
                                "tooltip": "Quality: lower is better and larger (H.264 0-51, VP9 0-63)."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Music to mux in (the sampler's audio output); cut to the frames."}),
                "save_workflow": ("BOOLEAN", {"default": True,
                                              "tooltip": "Store the workflow and the prompt in the video, as "
                                                         "ComfyUI's own video saving does: dropping the video on "
                                                         "ComfyUI's page brings the graph back."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: str | None = None, format: str | None = None,
                        crf: int | None = None) -> bool | str:
        """Everything that can be known before the frames exist, so that a bad setting never costs a render."""
        if format is not None and format not in FORMATS:
            return f"format {format!r} is unknown; choose one of {', '.join(FORMATS)}."
        if crf is not None:
            from ..musedance_core.video import FORMATS as KINDS

            top = KINDS[format].max_crf if format in KINDS else max(k.max_crf for k in KINDS.values())
            if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= top:
                return f"crf {crf!r} is outside 0..{top} for {format or 'this format'}; lower is better quality."
        if filename_prefix is not None:
            try:
                check_prefix(filename_prefix)
            except ValueError as err:
                return str(err)
        return True

    def run(self, images: torch.Tensor, fps: float, filename_prefix: str, format: str, crf: int, audio=None,
            save_workflow: bool = True, prompt: dict | None = None, extra_pnginfo: dict | None = None):
        from ..musedance_core.video import video_format, write_video

        kind = video_format(format)
        metadata = workflow_metadata(save_workflow, prompt, extra_pnginfo)
        path, name, subfolder = output_path(filename_prefix, kind.extension)
        remove_partial_videos(path.parent, PARTIAL_FILE_AGE)
        wave, rate = None, None
        if audio is not None:
            wave, rate = audio["waveform"][0], int(audio["sample_rate"])  # first item of a batch: [C, T]
            if wave.shape[0] > 2:
                wave = wave.mean(0, keepdim=True)
        write_video(path, images, fps, audio=wave, sample_rate=rate, crf=crf, format=format, metadata=metadata)
        return saved_video(path, name, subfolder)


def workflow_metadata(save_workflow: bool, prompt: dict | None, extra_pnginfo: dict | None) -> dict[str, str]:
    """The tags a saved video carries: as ComfyUI's SaveVideo, the prompt and each extra_pnginfo entry ("workflow")."""
    import json

    if not save_workflow:
        return {}
    metadata = {key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()}
    if prompt is not None:
        metadata["prompt"] = json.dumps(prompt)
    return metadata


def saved_video(path: Path, name: str, subfolder: str) -> dict:
    """A video node's answer for the file it wrote: the UI's player entry, its path (and VIDEO where the host has it)."""
    result = {"filename": name, "subfolder": subfolder, "type": "output"}
    relative = f"{subfolder}/{name}" if subfolder else name
    # As ComfyUI's own SaveVideo/SaveWEBM: the frontend plays an animated "images" entry as a video.
    outputs = (relative,) + ((VIDEO(str(path)),) if VIDEO else ())
    return {"ui": {"images": [result], "animated": (True,)}, "result": outputs}


NODE_CLASS_MAPPINGS = {"MuseDanceVideoCombine": SaveDanceVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"MuseDanceVideoCombine": "Save Dance Video (MuseDance)"}
