"""The main job: a reference image and a piece of music -> a dance video, with a contact sheet and a beat plot.

    python -m musedance_demo [--image PNG] [--music FILE] [--prompt TEXT] [--start S] [--seconds S]
                                  [--model auto|CKPT] [--ast FOLDER] [--out outputs] [--steps 20] [--seed 0]
                                  [--size N] [--noise-share S] [--beat-guidance G]

Defaults: the sample in musedance_demo/assets/ (a dancer and a track no model heard) and, with --model
auto, one of the two default models that ship in models/, both trained on the synthetic music-dance
dataset at 64x64 and 12 fps: the MuseDance default (`python -m trainer.default_model`) for the sample
dancer, the kind of figure it was trained on, and the flow default (`python -m trainer.flow_default_model`)
for any other picture, because it moves the picture's own pixels and keeps its size (`choose_model`
says why, the job prints it). Writes into --out (default outputs/):
    musedance_demo.mp4          the video with the music muxed in, trimmed to the frames, written clip by clip
    musedance_demo_contact.png  the first frames, the frames on a beat framed in red
    musedance_demo_beats.png    the music (waveform, onset strength, beats in red) over the video's
                                motion (green: optical-flow magnitude between frames)
and prints how well the motion follows the music (AV-Align, 2D-MM Align against its chance level) and
how much of the picture every frame keeps (musedance_core.evaluation.appearance). The image is framed
to a square by cropping (MuseDance: the model's size, 64; flow: the picture's shorter side, at most
1024); MuseDance computes its mask automatically (or takes the alpha channel), the flow family takes
only an alpha channel, which keeps everything outside it still. Needs no network.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from musedance_core.config import (
    AUTO,
    DEFAULT_AST_NAME,
    DEFAULT_CHECKPOINT_NAME,
    DEFAULT_FLOW_CHECKPOINT_NAME,
    MAX_GUIDANCE,
    SamplerSettings,
)

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent  # a checkout: the default model lies in its models/ folder
DEFAULT_MODEL = ROOT / "models" / "musedance" / DEFAULT_CHECKPOINT_NAME
DEFAULT_FLOW_MODEL = ROOT / "models" / "musedance" / DEFAULT_FLOW_CHECKPOINT_NAME
DEFAULT_AST = ROOT / "models" / "audio_encoders" / DEFAULT_AST_NAME
ASSETS = PACKAGE / "assets"  # installed with the package
NAME = "musedance_demo"
MAX_SIDE = 1024  # the flow family keeps the picture's size up to this
SHEET_SIDE = 128  # contact sheet, plot and scores work on frames at most this large
SHEET_FRAMES = 48  # the contact sheet shows the first frames


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m musedance_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=ASSETS / "sample_reference.png", help="reference image")
    parser.add_argument("--music", type=Path, default=ASSETS / "sample_music.wav",
                        help="music file (wav, flac, mp3, ogg, m4a)")
    parser.add_argument("--prompt", help="motion description (default: the sample's prompt with the sample "
                        "image, else 'a figure dancing to the beat')")
    parser.add_argument("--start", type=float, default=0.0, help="where in the music to start, seconds")
    parser.add_argument("--seconds", type=float, default=4.0, help="video length in seconds (at most 600)")
    parser.add_argument("--fps", type=float, help="frame rate (default: the model's, 12)")
    parser.add_argument("--size", type=int, help="video side in pixels (default: a MuseDance model's training size, "
                        f"64 for the default; the flow family keeps the picture's shorter side, at most {MAX_SIDE})")
    parser.add_argument("--model", default=AUTO,
                        help="a checkpoint of either family (.safetensors), or 'auto' (default): the MuseDance "
                             "default for the sample dancer, the flow default for your own picture")
    parser.add_argument("--ast", type=Path, default=DEFAULT_AST, help="AST folder in Hugging Face layout")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default outputs/)")
    auto = "default: the model's recommendation"
    parser.add_argument("--steps", type=int, help=f"DDIM steps ({auto})")
    parser.add_argument("--guidance", type=float,
                        help=f"classifier-free guidance scale, 1 to {MAX_GUIDANCE:g} ({auto})")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--noise-share", type=float,
                        help=f"starting noise shared by all frames, 0..1; 0: independent noise per frame ({auto})")
    parser.add_argument("--beat-guidance", type=_beat_guidance, default=AUTO,
                        help="a guidance scale of the beats' own, or 'off' to guide them with the rest: above "
                             f"--guidance it pushes the video further towards what the beats change ({auto})")
    parser.add_argument("--reference-start", action=argparse.BooleanOptionalAction,
                        help="start every frame from the reference latent noised to the first step instead of pure "
                             f"noise: keeps the reference's colours and background ({auto})")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600].")
    if args.fps is not None and args.fps <= 0:
        parser.error("--fps must be positive.")
    if args.size is not None and (args.size <= 0 or args.size % 8 or args.size > 4096):
        parser.error("--size must be a positive multiple of 8, at most 4096.")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1.")
    if args.guidance is not None and not 1.0 <= args.guidance <= MAX_GUIDANCE:
        parser.error(f"--guidance must be in [1, {MAX_GUIDANCE:g}].")
    if args.noise_share is not None and not 0.0 <= args.noise_share <= 1.0:
        parser.error("--noise-share must be in [0, 1].")
    if isinstance(args.beat_guidance, float) and not 0.0 <= args.beat_guidance <= MAX_GUIDANCE:
        parser.error(f"--beat-guidance must be in [0, {MAX_GUIDANCE:g}].")
    for name, path, what in (("--image", args.image, "an image file"), ("--music", args.music, "a music file")):
        if not path.is_file():
            parser.error(f"{name} {path} does not exist; give {what}.")
    shipped = "the default models ship in the checkout's models/ folder, not in the installed package"
    args.model, args.model_reason = choose_model(args.model, args.image)
    if not args.model.is_file():
        parser.error(f"--model {args.model} does not exist; give a MuseDance or flow .safetensors checkpoint "
                     f"({shipped if args.model in (DEFAULT_MODEL, DEFAULT_FLOW_MODEL) else 'a file path'}).")
    from musedance_core.loading.formats import (
        FLOW_FAMILY,
        checkpoint_family,
        musedance_checkpoint_problem,
        safetensors_header,
    )

    if problem := musedance_checkpoint_problem(args.model):
        parser.error(f"--model: {problem}")
    args.flow = checkpoint_family(safetensors_header(args.model).get("__metadata__")) == FLOW_FAMILY
    if args.flow:
        given = [name for name, value in (("--noise-share", args.noise_share), ("--reference-start", args.reference_start))
                 if value is not None]
        if given:
            parser.error(f"{', '.join(given)}: MuseDance's sampler options; {args.model.name} is a flow-family "
                         "model, which takes --steps, --guidance and --beat-guidance.")
    if not args.ast.is_dir():
        parser.error(f"--ast {args.ast} is not a folder; give an AST folder (config.json, model.safetensors)"
                     f"{' (' + shipped + ')' if args.ast == DEFAULT_AST else ''}.")
    if args.prompt is None:
        sample = ASSETS / "sample_prompt.txt"
        same = args.image.resolve() == (ASSETS / "sample_reference.png").resolve() and sample.is_file()
        args.prompt = sample.read_text(encoding="utf-8").strip() if same else "a figure dancing to the beat"
    return args


def is_sample(image: Path) -> bool:
    return image.resolve() == (ASSETS / "sample_reference.png").resolve()


def choose_model(model: str | Path, image: Path) -> tuple[Path, str]:
    """The checkpoint to use and why: `model` itself unless it is 'auto'."""
    if str(model) != AUTO:
        return Path(model), "given with --model"
    if is_sample(image):
        return DEFAULT_MODEL, ("auto: the sample dancer is the kind of figure the MuseDance default was trained on "
                               "(--model models/musedance/" + DEFAULT_FLOW_CHECKPOINT_NAME + " for the flow default)")
    return DEFAULT_FLOW_MODEL, (
        "auto: your own picture goes to the flow default, which moves the picture's own pixels and keeps its "
        "size; on photographs it keeps the subject in every frame where the MuseDance default, trained on "
        "64-pixel cartoon figures, loses it (BENCHMARKS.md, \"Which default for your picture\"; "
        "--model models/musedance/" + DEFAULT_CHECKPOINT_NAME + " for the MuseDance default)")


def _beat_guidance(text: str) -> float | str | None:
    if text in ("off", AUTO):
        return None if text == "off" else AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'off' or 'auto', got {text!r}") from None


def sampler_settings(recommended: SamplerSettings, args: argparse.Namespace) -> SamplerSettings:
    """The model's recommended settings with the ones given on the command line in their place."""
    given = {"steps": args.steps, "guidance_scale": args.guidance, "noise_share": args.noise_share,
             "reference_start": args.reference_start}
    chosen = {name: value for name, value in given.items() if value is not None}
    if args.beat_guidance != AUTO:
        chosen["beat_guidance_scale"] = args.beat_guidance
    return dataclasses.replace(recommended, **chosen)


def flow_described(settings: SamplerSettings) -> str:
    """The settings the flow family uses (the others are MuseDance's)."""
    beats = "" if settings.beat_guidance_scale is None else f", beat guidance {settings.beat_guidance_scale:g}"
    return f"steps {settings.steps}, guidance {settings.guidance_scale:g}{beats}"


def load_image(path: Path) -> np.ndarray:
    """RGB or RGBA float [H, W, C] in [0, 1] (an alpha channel becomes the mask)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        return np.asarray(image, dtype=np.float32) / 255.0


def save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def thumbnails(frames: torch.Tensor) -> torch.Tensor:
    """Frames [F, H, W, 3] at most SHEET_SIDE pixels along a side (area-averaged), for the sheet, plot and scores."""
    height, width = frames.shape[1:3]
    scale = SHEET_SIDE / max(height, width)
    if scale >= 1:
        return frames
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=size, mode="bilinear",
                                            align_corners=False, antialias=True)
    return small.clamp(0, 1).permute(0, 2, 3, 1)


def flow_size(picture: np.ndarray) -> int:
    """The flow family's default side: the picture's shorter side, a multiple of 8, at most MAX_SIDE."""
    return max(8, min(min(picture.shape[:2]), MAX_SIDE) // 8 * 8)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    from musedance_core.audio.ast_encoder import MusicEncoder
    from musedance_core.audio.beats import analyze_beats, beat_vector
    from musedance_core.audio.music import load_music
    from musedance_core.audio.timing import frame_count, frame_samples
    from musedance_core.evaluation.appearance import appearance_scores
    from musedance_core.evaluation.flow import flow_magnitudes
    from musedance_core.evaluation.metrics import evaluate_video
    from musedance_core.loading.flow_checkpoint import load_flow_pipeline
    from musedance_core.loading.loader import load_pipeline
    from musedance_core.masks.framing import fit_image
    from musedance_core.masks.subject import foreground_mask
    from musedance_core.plots import beat_plot, contact_sheet
    from musedance_core.video import VideoWriter

    pipe = load_flow_pipeline(args.model) if args.flow else load_pipeline(args.model)
    fps = args.fps or pipe.config.fps
    whole = load_music(args.music)  # the beat tracker reads the whole song, as Beat Extract does
    if args.start >= whole.duration:
        raise SystemExit(f"error: --start {args.start} s is past the end of the music ({whole.duration:.2f} s).")
    to_the_end = args.seconds >= whole.duration - args.start
    seconds = whole.duration - args.start if to_the_end else args.seconds
    frames = frame_count(seconds, fps, to_the_end=to_the_end)
    if frames < 1:
        raise SystemExit(f"error: {seconds:.3f} s of music make no frame at {fps:g} fps; give more --seconds.")
    analysis = analyze_beats(whole.waveform, whole.sample_rate)
    beats = beat_vector(analysis.times - args.start, fps, frames)
    tokens = MusicEncoder.from_folder(args.ast).encode(whole.waveform, fps, frames, start_time=args.start)

    picture = load_image(args.image)
    if args.flow:  # its mask only limits where it may move: taken from an alpha channel, never guessed
        size = args.size or flow_size(picture)
        mask = torch.from_numpy(picture[..., 3].copy()) if picture.shape[-1] == 4 else None
    else:
        size = args.size or 64
        mask = foreground_mask(picture).mask
    image, framing = fit_image(picture[..., :3], size, size, mode="crop")
    if mask is not None:
        mask = framing.apply(mask[None] if mask.ndim == 2 else mask)
    prompt = "unused by the flow family" if args.flow else repr(args.prompt)
    print(f"music: {args.music.name}, {seconds:.2f} s from {args.start:g} s, {analysis.tempo:.1f} BPM, "
          f"{int(beats.sum())} beats; image: {args.image.name} -> {size}x{size}; prompt: {prompt}; "
          f"model: {args.model.name} ({args.model_reason})", flush=True)
    if note := pipe.size_note(size, size) if not args.flow else None:
        print(f"warning: {note}", flush=True)
    settings = sampler_settings(pipe.recommended, args)
    described = flow_described(settings) if args.flow else settings.describe()
    print(f"sampler: {described} (the model's recommendation where not given)", flush=True)

    num_clips = -(-frames // pipe.config.clip_length)

    def report(clip_index: int, step: int) -> None:
        if step + 1 == settings.steps:
            print(f"  clip {clip_index + 1}/{num_clips} done", flush=True)

    beat_tensor = torch.from_numpy(beats)
    if args.flow:
        reference = pipe.encode_reference(image[0], None if mask is None else mask[0])
        clips = pipe.iter_clips(reference, tokens, beat_tensor, num_inference_steps=settings.steps,
                                guidance_scale=settings.guidance_scale, beat_guidance_scale=settings.beat_guidance_scale,
                                seed=args.seed, callback=report)
    else:
        clips = iter([pipe(reference_image=image[0], mask=mask[0], text_embeds=pipe.encode_prompt(args.prompt),
                           music_tokens=tokens, beats=beat_tensor, num_inference_steps=settings.steps,
                           guidance_scale=settings.guidance_scale, seed=args.seed, noise_share=settings.noise_share,
                           beat_guidance_scale=settings.beat_guidance_scale, reference_start=settings.reference_start,
                           callback=lambda info: report(info.clip_index, info.step) or False)])

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    audio = whole.waveform[frame_samples(args.start, frames, fps, whole.sample_rate)]
    small, appearance, done = [], [], 0
    with VideoWriter(out / f"{NAME}.mp4", fps, sample_rate=whole.sample_rate, audio_channels=1) as writer:
        for clip in clips:  # written as made: a long song at a large size never sits in memory whole
            count = clip.shape[0]
            samples = frame_samples(args.start + done / fps, count, fps, whole.sample_rate)
            writer.write(clip, whole.waveform[samples][None])
            small.append(thumbnails(clip))
            appearance.append(appearance_scores(clip, image[0]))
            done += count
        path = writer.path
    generated = time.perf_counter() - started
    video = torch.cat(small)
    frames_np = video.numpy()
    shown = min(frames, SHEET_FRAMES)
    save_png(out / f"{NAME}_contact.png", contact_sheet(frames_np[:shown], columns=12, beat_flags=beats[:shown],
                                                       scale=max(1, 128 // frames_np.shape[1])))
    motion = np.concatenate([[0.0], flow_magnitudes(frames_np)]) if frames > 1 else None
    save_png(out / f"{NAME}_beats.png", beat_plot(whole.waveform, whole.sample_rate, analysis.onset_envelope,
                                                  analysis.frame_rate, analysis.times, args.start, frames / fps,
                                                  motion=motion, fps=fps))
    scores = evaluate_video(video, fps, audio, whole.sample_rate,
                            music_beats=analysis.times[(analysis.times >= args.start)
                                                       & (analysis.times < args.start + frames / fps)] - args.start
                            ).scores()

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    weights = [c.shape[0] for c in small]

    def mean(key: str) -> float:
        return float(np.average([getattr(a, key) for a in appearance], weights=weights))

    def worst(key: str) -> float:
        return min(getattr(a, key + "_worst") for a in appearance)

    print(f"wrote {path} ({frames} frames at {fps:g} fps, {size}x{size}, music muxed in), "
          f"{out / (NAME + '_contact.png')} (the first {shown} frames), {out / (NAME + '_beats.png')}; "
          f"generated in {generated:.1f} s")
    print(f"beat alignment: AV-Align {fmt(scores['av_align'])}, 2D-MM Align {fmt(scores['mm_align'])} "
          f"(chance {fmt(scores['mm_align_chance'])}), mean distance of motion beats to music beats "
          f"{fmt(scores['beat_distance_mean'])} s")
    print(f"appearance against the picture: structure (SSIM) {mean('structure'):.3f} (worst frame "
          f"{worst('structure'):.3f}), colours {mean('colour'):.3f} (worst {worst('colour'):.3f}), detail "
          f"{mean('detail'):.3f} (worst {worst('detail'):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
