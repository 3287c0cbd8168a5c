"""Dataset preparation: a folder of dance clips -> frames, masks, beats and music tokens in shards.

Input, one clip per video file in `--clips` (processed in sorted name order):
    <name>.mp4 (or .mov, .webm, .mkv)   the dance, with its music as the audio track
    <name>.txt                          the caption (motion description); required
    <name>.mask.mp4 (any video suffix)  optional foreground mask video, grey = subject
Output in `--out`:
    shards/shard-00000.safetensors ...  per clip `<name>/frames` uint8 [N, H, W, 3], `<name>/masks`
                                        uint8 [N, H, W] (0..255), `<name>/beats` float32 [N] and
                                        `<name>/music` float16 [N, L, d]
    manifest.json                       settings, the prepared clips and the skipped ones with reasons

Each step calls what inference calls, so training and sampling cannot drift apart: frame k of a
clip shows time k / fps (the source frame nearest that time, ties to the earlier one), the same
times `beats.beat_vector` and `MusicEncoder.encode` use; beats come from `analyze_beats` on the
whole track, as in the Beat Extract node; music tokens from `MusicEncoder.encode`, as in AST
Music Encode; frames are framed by `framing.fit_image` and masks made by `masks.foreground_mask`
at the source size and framed by the same `Framing`, as ReferenceNet Encode does.

Shards are written atomically and the manifest is rewritten after each one, so an interrupted run
keeps every finished shard; run the same command again to carry on. Clips skipped last time are
tried again (a fixed file is picked up). Run with `python -m trainer.prepare --help`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import secrets
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import torch
from safetensors.torch import save_file

from musedance_core.audio.ast_encoder import GLOBAL_TOKENS, MusicEncoder, patch_grid
from musedance_core.audio.beats import analyze_beats, beat_vector
from musedance_core.audio.music import TARGET_SAMPLE_RATE, load_music
from musedance_core.masks.framing import Framing, fit_image
from musedance_core.masks.subject import MaskWarning, foreground_mask

FORMAT = "musedance-prepared"
VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv")
MASK_TAG = ".mask"  # <name>.mask.mp4 is the mask video of <name>.mp4
MASK_MODES = ("auto", "video", "none")
MUSIC_WINDOW = 2  # AST columns either side of each frame (MusicEncoder.encode's default)


@dataclass(frozen=True)
class PrepareSettings:
    """What the prepared data depends on (checked on resume) plus how the run is organised.

    masks: "auto" takes the clip's mask video when it has one, otherwise computes the automatic
    mask (border-seeded GrabCut) on every frame, about 1.5 s a frame at 640x640 or 1280x720 on a
    shared 2-core CPU; "video" takes mask videos only and skips clips without one; "none" marks the whole frame as the
    subject, which is what the sampler does when given no mask. There is no "first frame only"
    mode: the dancer moves, and training may take any frame as the reference.
    """

    fps: float = 12.0
    height: int = 640
    width: int = 640
    resize: str = "crop"
    masks: str = "auto"
    min_frames: int = 50  # stage 2 needs clips of K + M frames (48 + 2 at the defaults)
    clips_per_shard: int = 16

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and 1 <= self.fps <= 120):
            raise ValueError(f"fps must be between 1 and 120, got {self.fps!r}.")
        if self.height < 8 or self.width < 8 or self.height % 8 or self.width % 8:
            raise ValueError(f"the training size must be multiples of 8 (the VAE's factor), "
                             f"got {self.width}x{self.height}.")
        if self.resize not in ("crop", "pad"):
            raise ValueError(f"resize must be crop or pad, got {self.resize!r}.")
        if self.masks not in MASK_MODES:
            raise ValueError(f"masks must be one of {', '.join(MASK_MODES)}, got {self.masks!r}.")
        if self.min_frames < 1 or self.clips_per_shard < 1:
            raise ValueError(f"min_frames and clips_per_shard must be at least 1, "
                             f"got {self.min_frames} and {self.clips_per_shard}.")


@dataclass(frozen=True)
class ClipFiles:
    name: str
    video: Path
    caption: Path
    mask: Path | None


@dataclass
class PrepareReport:
    prepared: list[str] = field(default_factory=list)  # clips prepared by this run
    reused: list[str] = field(default_factory=list)  # clips already in the manifest
    skipped: list[dict] = field(default_factory=list)  # [{"name", "reason"}]


class SkipClip(Exception):
    """A clip that cannot be prepared; the message is the one-line reason in the manifest."""


# --- input ---------------------------------------------------------------------------------------


def find_clips(folder: Path) -> list[ClipFiles]:
    """The clips of `folder` in sorted name order; mask videos are attached to their clip."""
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    masks = {p.stem[: -len(MASK_TAG)]: p for p in videos if p.stem.endswith(MASK_TAG)}
    clips = [p for p in videos if not p.stem.endswith(MASK_TAG)]
    twice = sorted(name for name, count in Counter(p.stem for p in clips).items() if count > 1)
    if twice:
        raise ValueError(f"several videos share the name {', '.join(twice)} (e.g. {twice[0]}.mp4 and {twice[0]}.mov); "
                         "rename them so each clip has one video.")
    return [ClipFiles(p.stem, p, p.with_suffix(".txt"), masks.get(p.stem)) for p in clips]


def frame_time(k: int, fps: float) -> Fraction:
    """Time of output frame k: k / fps, exactly (the sampler's, the beat vector's and AST's frame timing)."""
    return k / Fraction(fps).limit_denominator(1_000_000)


def frames_at(path: Path, fps: float, max_frames: int) -> Iterator[tuple[int, av.VideoFrame]]:
    """(source frame index, decoded frame) for output frames k = 0, 1, ... at times k / fps.

    Each output frame takes the source frame whose timestamp (from the first frame) is nearest,
    ties to the earlier one; a source frame can serve several output frames (the same object is
    yielded again). Stops at `max_frames` or at the end of the video: no output frame lies at or
    after the last frame's end. Timestamps are exact (pts * time_base).
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise SkipClip(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        previous: tuple[int, Fraction, av.VideoFrame] | None = None
        step = None
        k = 0
        for index, frame in enumerate(container.decode(stream)):
            if frame.pts is None:
                raise SkipClip(f"{path.name}: video frame {index} has no timestamp")
            if previous is None:
                origin = frame.pts * frame.time_base
            time = frame.pts * frame.time_base - origin
            if previous is not None:
                step = time - previous[1]
                middle = (previous[1] + time) / 2
                while k < max_frames and frame_time(k, fps) <= middle:
                    yield previous[0], previous[2]
                    k += 1
            if k >= max_frames:
                return
            previous = (index, time, frame)
        if previous is None:
            return
        if not step or step <= 0:  # one frame, or broken timestamps: the stream's nominal rate
            rate = stream.average_rate or stream.guessed_rate or Fraction(fps)
            step = 1 / Fraction(rate)
        end = previous[1] + step
        while k < max_frames and frame_time(k, fps) < end:
            yield previous[0], previous[2]
            k += 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- one clip ------------------------------------------------------------------------------------


@dataclass
class PreparedArrays:
    frames: torch.Tensor  # uint8 [N, H, W, 3]
    masks: torch.Tensor  # uint8 [N, H, W]
    beats: torch.Tensor  # float32 [N]
    music: torch.Tensor  # float16 [N, L, d]
    mask_source: str


def prepare_clip(clip: ClipFiles, settings: PrepareSettings, encoder: MusicEncoder) -> PreparedArrays:
    """Frames, masks, beats and music tokens of one clip, or SkipClip with the reason."""
    if settings.masks == "video" and clip.mask is None:
        raise SkipClip(f"no mask video {clip.name}{MASK_TAG}.mp4 (--masks video)")
    try:
        with av.open(str(clip.video)) as container:
            if not container.streams.video:
                raise SkipClip("the file has no video stream")
            if not container.streams.audio:
                raise SkipClip("no audio track: the music must be the video's audio")
    except av.error.FFmpegError as error:
        raise SkipClip(f"unreadable video ({error})") from None
    try:
        music = load_music(clip.video)  # the whole track, 16 kHz mono
    except ValueError as error:
        raise SkipClip(f"unreadable audio ({error})") from None
    fps, size = settings.fps, (settings.height, settings.width)
    audio_frames = int(music.duration * fps + 1e-6)  # whole frames only, as Beat Extract does

    frames: list[torch.Tensor] = []
    framing = last = None
    try:
        for index, frame in frames_at(clip.video, fps, audio_frames):
            if index == last:
                frames.append(frames[-1])  # one source frame shown twice (fps above the source's)
                continue
            framed, framing = fit_image(frame.to_ndarray(format="rgb24"), *size, settings.resize)
            frames.append(_to_uint8(framed[0]))
            last = index
    except av.error.FFmpegError as error:
        raise SkipClip(f"unreadable video ({error})") from None
    count = len(frames)
    if count < settings.min_frames:
        raise SkipClip(f"too short: {count} frames at {fps:g} fps ({count / fps:.2f} s), "
                       f"--min-frames is {settings.min_frames}")

    masks, mask_source = _clip_masks(clip, settings, count, framing)
    analysis = analyze_beats(music.waveform, music.sample_rate)
    beats = torch.from_numpy(beat_vector(analysis.times, fps, count))
    tokens = encoder.encode(music.waveform, fps, count, start_time=0.0, window=MUSIC_WINDOW)
    return PreparedArrays(torch.stack(frames), masks, beats, tokens.to("cpu", torch.float16), mask_source)


def _clip_masks(clip: ClipFiles, settings: PrepareSettings, count: int, framing: Framing) -> tuple[torch.Tensor, str]:
    """uint8 masks [count, H, W] and their source ("video", "automatic" or "none").

    A second pass over the video, so that only frames at the training size are held: each mask is
    made at the source size by `foreground_mask` (from the mask video's grey frame at the same
    time, or automatically) and framed like its frame.
    """
    if settings.masks == "none":
        return torch.full((count, settings.height, settings.width), 255, dtype=torch.uint8), "none"
    mask_frames = None if clip.mask is None else frames_at(clip.mask, settings.fps, count)
    name = clip.mask.name if clip.mask is not None else clip.video.name
    out: list[torch.Tensor] = []
    last = None
    try:
        for index, frame in frames_at(clip.video, settings.fps, count):
            key, given = index, None
            if mask_frames is not None:
                picked = next(mask_frames, None)
                if picked is None:
                    raise SkipClip(f"mask video {name} is shorter than the clip ({len(out)} of {count} frames "
                                   f"at {settings.fps:g} fps)")
                key, given = (index, picked[0]), torch.from_numpy(picked[1].to_ndarray(format="gray"))
            if key == last:
                out.append(out[-1])
                continue
            with warnings.catch_warnings():  # an empty mask falls back to the whole frame, as in the sampler
                warnings.simplefilter("ignore", MaskWarning)
                mask = foreground_mask(frame.to_ndarray(format="rgb24"), mask=given).mask
            out.append(_to_uint8(framing.apply(mask[None])[0]))
            last = key
    except av.error.FFmpegError as error:
        raise SkipClip(f"unreadable video or mask video ({error})") from None
    except ValueError as error:  # e.g. a mask video of another aspect ratio
        raise SkipClip(f"mask from {name} failed: {error}") from None
    return torch.stack(out), "automatic" if mask_frames is None else "video"


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


# --- output --------------------------------------------------------------------------------------


def dataset_settings(settings: PrepareSettings, ast_folder: Path, encoder: MusicEncoder) -> dict:
    """The settings the prepared data depends on; a resumed run must match them exactly."""
    f_dim, _ = patch_grid(encoder.model.config)
    length = GLOBAL_TOKENS + f_dim * (2 * MUSIC_WINDOW + 1)
    return {
        "fps": float(settings.fps),
        "height": settings.height,
        "width": settings.width,
        "resize": settings.resize,
        "masks": settings.masks,
        "audio_sample_rate": TARGET_SAMPLE_RATE,
        "ast": ast_folder.name,
        "music_shape": [length, int(encoder.model.config.hidden_size)],
        "music_window": MUSIC_WINDOW,
    }


def write_atomic(path: Path, write) -> None:
    """Call write(temporary_path), then move the result onto `path`; nothing partial is left behind."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_manifest(out: Path, manifest: dict) -> None:
    write_atomic(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"))


def load_manifest(out: Path, settings: dict, overwrite: bool) -> dict:
    """The manifest to carry on from: the existing one when its settings match, else a new one."""
    path = out / MANIFEST
    fresh = {"format": FORMAT, "version": VERSION, "settings": settings, "clips": [], "skipped": []}
    if overwrite or not path.exists():
        return fresh
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path} is not a MuseDance dataset manifest of version {VERSION}; "
                         "use another --out folder or --overwrite.")
    if manifest["settings"] != settings:
        changed = sorted(k for k in settings.keys() | manifest["settings"].keys()
                         if manifest["settings"].get(k) != settings.get(k))
        detail = ", ".join(f"{k}: {manifest['settings'].get(k)!r} there, {settings.get(k)!r} now" for k in changed)
        raise ValueError(f"{out} was prepared with other settings ({detail}); use another --out folder, "
                         "the same settings to carry on, or --overwrite to start again.")
    return manifest


def prepare_dataset(
    clips_folder: str | os.PathLike,
    out: str | os.PathLike,
    ast_folder: str | os.PathLike,
    settings: PrepareSettings = PrepareSettings(),
    *,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "cpu",
) -> PrepareReport:
    """Prepare every clip of `clips_folder` into `out` (see the module docstring); resumes a matching run."""
    clips_folder, out, ast_folder = Path(clips_folder).resolve(), Path(out).resolve(), Path(ast_folder).resolve()
    if not clips_folder.is_dir():
        raise ValueError(f"--clips {clips_folder} is not a folder; give the folder of dance clips.")
    if out == clips_folder or clips_folder in out.parents:
        raise ValueError(f"--out {out} lies inside --clips {clips_folder}; choose an output folder outside it.")
    encoder = MusicEncoder.from_folder(ast_folder, device=device)
    clips = find_clips(clips_folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS).mkdir(exist_ok=True)
    manifest = load_manifest(out, dataset_settings(settings, ast_folder, encoder), overwrite)
    manifest["skipped"] = []  # tried again below
    write_manifest(out, manifest)
    # Shards the manifest does not list are left over from an interrupted write (or --overwrite).
    listed = {entry["shard"] for entry in manifest["clips"]}
    for stale in [*(out / SHARDS).glob("shard-*.safetensors"), *(out / SHARDS).glob(".shard-*.part")]:
        if f"{SHARDS}/{stale.name}" not in listed:
            stale.unlink()
    done = {entry["name"] for entry in manifest["clips"]}
    report = PrepareReport(reused=[c.name for c in clips if c.name in done])
    next_shard = 1 + max((int(Path(e["shard"]).stem.split("-")[1]) for e in manifest["clips"]), default=-1)
    pending: list[tuple[dict, PreparedArrays]] = []

    def flush() -> None:
        nonlocal next_shard, pending
        if not pending:
            return
        shard = f"{SHARDS}/shard-{next_shard:05d}.safetensors"
        tensors = {}
        for entry, arrays in pending:
            entry["shard"] = shard
            for key in ("frames", "masks", "beats", "music"):
                tensors[f"{entry['name']}/{key}"] = getattr(arrays, key).contiguous()
        write_atomic(out / shard, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
        manifest["clips"].extend(entry for entry, _ in pending)
        write_manifest(out, manifest)
        next_shard, pending = next_shard + 1, []

    todo = [c for c in clips if c.name not in done]
    bar = _progress(len(clips), len(clips) - len(todo), progress)
    try:
        for clip in todo:
            bar.set_postfix_str(clip.name)
            try:
                caption = _caption(clip)
                arrays = prepare_clip(clip, settings, encoder)
            except Exception as error:  # noqa: BLE001 - one bad clip must not stop the run; it is reported
                reason = str(error) if isinstance(error, SkipClip) else f"failed: {type(error).__name__}: {error}"
                skip = {"name": clip.name, "reason": reason}
                manifest["skipped"].append(skip)
                report.skipped.append(skip)
            else:
                entry = {"name": clip.name, "shard": None, "num_frames": int(arrays.frames.shape[0]),
                         "caption": caption, "source": clip.video.name,
                         "mask": clip.mask.name if arrays.mask_source == "video" else arrays.mask_source,
                         "source_bytes": clip.video.stat().st_size, "source_sha256": file_sha256(clip.video)}
                pending.append((entry, arrays))
                report.prepared.append(clip.name)
                if len(pending) >= settings.clips_per_shard:
                    flush()
            bar.update(1)
    finally:  # also on Ctrl-C: keep the clips finished so far
        flush()
        write_manifest(out, manifest)
        bar.close()
    return report


def _caption(clip: ClipFiles) -> str:
    if not clip.caption.is_file():
        raise SkipClip(f"no caption file {clip.caption.name}")
    text = clip.caption.read_text(encoding="utf-8").strip()
    if not text:
        raise SkipClip(f"the caption file {clip.caption.name} is empty")
    return text


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm  # a dependency of transformers

    return tqdm(total=total, initial=initial, unit="clip", desc="preparing", disable=not enabled, file=sys.stderr)


# --- command -------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    """'640' (square) or 'WIDTHxHEIGHT' -> (height, width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[1], parts[0]
    raise argparse.ArgumentTypeError(f"size must be N or WIDTHxHEIGHT, e.g. 640 or 512x768, got {text!r}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.prepare",
        description="Prepare a folder of dance clips (<name>.mp4 with its music, <name>.txt caption, optional "
                    "<name>.mask.mp4) for MuseDance training: frames, masks, beats and AST music tokens in shards "
                    "plus manifest.json. Run the same command again to carry on after an interruption.")
    parser.add_argument("--clips", required=True, type=Path, help="folder of clips")
    parser.add_argument("--out", required=True, type=Path, help="output folder (outside --clips)")
    parser.add_argument("--ast", required=True, type=Path,
                        help="AST folder in Hugging Face layout, e.g. models/audio_encoders/<folder>")
    parser.add_argument("--fps", type=float, default=12.0, help="training frame rate (default 12)")
    parser.add_argument("--size", type=_size, default=(640, 640), help="training size: N (square) or WIDTHxHEIGHT, "
                        "multiples of 8 (default 640)")
    parser.add_argument("--resize", choices=("crop", "pad"), default="crop",
                        help="fit frames to the size by a centred crop or by padding (default crop)")
    parser.add_argument("--masks", choices=MASK_MODES, default="auto",
                        help="auto: the clip's mask video, else the automatic mask of every frame (slow on a CPU); "
                             "video: mask videos only, clips without one are skipped; none: the whole frame")
    parser.add_argument("--min-frames", type=int, default=50, help="skip clips shorter than this many frames "
                        "(default 50: one stage-2 clip of 48 + 2 motion frames)")
    parser.add_argument("--clips-per-shard", type=int, default=16, help="clips per shard file (default 16)")
    parser.add_argument("--device", default="cpu", help="device for AST (default cpu)")
    parser.add_argument("--overwrite", action="store_true", help="discard what --out holds and start again")
    args = parser.parse_args(argv)
    try:
        settings = PrepareSettings(fps=args.fps, height=args.size[0], width=args.size[1], resize=args.resize,
                                   masks=args.masks, min_frames=args.min_frames, clips_per_shard=args.clips_per_shard)
        report = prepare_dataset(args.clips, args.out, args.ast, settings, overwrite=args.overwrite, device=args.device)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"prepared {len(report.prepared)} clips, {len(report.reused)} already done, {len(report.skipped)} skipped")
    for skip in report.skipped:
        print(f"  skipped {skip['name']}: {skip['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
