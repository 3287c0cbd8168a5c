"""One prepared check of speed and memory at the paper's size on one CUDA GPU; one JSON file out.

    bash benchmarks/gpu_check.sh OUT_DIR                       # on the GPU machine (installs carried wheels)
    python benchmarks/gpu_check.py --out OUT_DIR [--size full|tiny] [--device cuda|cpu]

At `--size full` (SD1.5 widths, random weights, bf16): the denoising step of MuseDance against diffusers'
AnimateDiff at 640x640, K = 48 + M = 2, two guidance rows (interleaved, with the share of the card's bf16
peak the FLOP count implies); the whole sampler (reference, 25 DDIM steps with guidance, VAE decode) at
640x640; its peak memory at 512x512 and 640x640; a song of three clips at 512x512 (time and peak memory
clip by clip: time should grow linearly, memory stay flat); and one training step of each stage at the
configs' batch sizes (stage 1: 12 frame pairs, stage 2: 2 clips of 48 + 2 frames) with bf16 autocast,
gradient checkpointing and Adam, its time and peak memory (an out-of-memory is a result, recorded as such).
`--size tiny` runs the same code on the tiny model in seconds (CI runs it on the CPU so it cannot rot).
Every section records its error instead of stopping the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_sampler import bf16_peak  # noqa: E402
from flop_count import count  # noqa: E402
from machine_info import machine  # noqa: E402
from unet_step import MUSIC_TOKENS, AnimateDiffStep, MuseDanceStep, StepSize  # noqa: E402

from musedance_core.config import MuseDanceConfig  # noqa: E402
from musedance_core.sampling.pipeline import MuseDancePipeline  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Plan:
    config: MuseDanceConfig
    sides: tuple[int, int]  # the two frame sizes whose peak memory is measured; the second is the main one
    steps: int  # DDIM steps of the whole-sampler run
    song_steps: int
    repeats: int
    dtype: torch.dtype


def plan_for(size: str, device: str) -> Plan:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if size == "full":
        return Plan(MuseDanceConfig.sd15(), (512, 640), 25, 4, 3, dtype)
    return Plan(MuseDanceConfig.tiny(), (32, 48), 3, 2, 1, dtype)


class Memory:
    """Peak memory of a block: torch.cuda's allocator on a GPU, nothing measured on a CPU (None)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        if not self.cuda:
            return None
        torch.cuda.synchronize()
        return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_pipe(plan: Plan, device: str) -> MuseDancePipeline:
    pipe = MuseDancePipeline.from_config(plan.config, seed=0)
    return pipe.to(device=device, dtype=plan.dtype)


def inputs(plan: Plan, side: int, frames: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    cfg = plan.config
    beats = torch.zeros(frames)
    beats[::6] = 1
    mask = torch.zeros(side, side)
    mask[side // 4 : 3 * side // 4, side // 3 : 2 * side // 3] = 1
    return dict(reference_image=torch.rand(side, side, 3, generator=gen), mask=mask,
                text_embeds=torch.randn(1, cfg.text_length, cfg.unet.cross_attention_dim, generator=gen),
                music_tokens=torch.randn(frames, MUSIC_TOKENS if plan.config.unet.music_dim == 768 else 6,
                                         cfg.unet.music_dim, generator=gen), beats=beats)


def section_step(plan: Plan, device: str, memory: Memory) -> dict:
    side = plan.sides[-1]
    size = StepSize(side, side, plan.config.clip_length, plan.config.motion_frames)
    models = {"musedance": MuseDanceStep(plan.config.unet, size, device, plan.dtype),
              "animatediff": AnimateDiffStep(plan.config.unet, size, device, plan.dtype)}
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(plan.repeats + 1):
        for name, model in models.items():
            sync(device)
            started = time.perf_counter()
            model.step()
            sync(device)
            if repeat:
                times[name].append(time.perf_counter() - started)
    result = {"what": f"one denoising step, {size.describe()}",
              "seconds": {name: statistics.median(ts) for name, ts in times.items()},
              "ratio_musedance_to_animatediff": statistics.median(
                  md / ad for md, ad in zip(times["musedance"], times["animatediff"]))}
    del models
    if memory.cuda:
        card, peak = bf16_peak(device)
        if peak:
            flops = {name: count(cls(plan.config.unet, size, "meta", plan.dtype).step)[0]
                     for name, cls in (("musedance", MuseDanceStep), ("animatediff", AnimateDiffStep))}
            result["tflop"] = {name: f / 1e12 for name, f in flops.items()}
            result["share_of_bf16_peak"] = {name: flops[name] / result["seconds"][name] / (peak * 1e12)
                                            for name in flops}
    return result


def section_sampler(plan: Plan, device: str, memory: Memory, pipe: MuseDancePipeline) -> dict:
    side, frames = plan.sides[-1], plan.config.clip_length
    memory.reset()
    sync(device)
    started = time.perf_counter()
    video = pipe(**inputs(plan, side, frames), num_inference_steps=plan.steps, guidance_scale=3.5, device=device)
    sync(device)
    return {"what": f"{frames} frames at {side}x{side}, {plan.steps} DDIM steps, guidance 3.5 (two rows), "
                    "reference, denoising and VAE decode",
            "seconds": time.perf_counter() - started, "peak_gib": memory.peak_gib(), "frames": int(video.shape[0])}


def section_peaks(plan: Plan, device: str, memory: Memory, pipe: MuseDancePipeline) -> dict:
    out = {}
    for side in plan.sides:
        memory.reset()
        pipe(**inputs(plan, side, plan.config.clip_length), num_inference_steps=2, guidance_scale=3.5, device=device)
        out[f"{side}x{side}"] = {"peak_gib": memory.peak_gib()}
    return {"what": f"peak memory of the sampler, one clip of {plan.config.clip_length} frames, two guidance rows, "
                    "default options", **out}


def section_song(plan: Plan, device: str, memory: Memory, pipe: MuseDancePipeline) -> dict:
    side, clips = plan.sides[0], 3
    frames = plan.config.clip_length * clips
    memory.reset()
    marks = []
    sync(device)
    started = time.perf_counter()
    for _ in pipe.iter_clips(**inputs(plan, side, frames), num_inference_steps=plan.song_steps, guidance_scale=3.5,
                             device=device):
        sync(device)
        marks.append({"seconds": time.perf_counter() - started, "peak_gib": memory.peak_gib()})
    return {"what": f"{clips} clips ({frames} frames) at {side}x{side}, {plan.song_steps} DDIM steps, guidance 3.5: "
                    "elapsed time and peak memory after each clip", "clips": marks}


def training_batch(plan: Plan, stage: int, device: str) -> dict:
    cfg = plan.config
    side = plan.sides[-1]
    latent = side // cfg.vae.downscale
    batch = 12 if stage == 1 and plan.sides[-1] >= 512 else 2
    frames = 1 if stage == 1 else cfg.clip_length
    tokens = MUSIC_TOKENS if cfg.unet.music_dim == 768 else 6
    from musedance_core.sampling.conditioning import frame_beats, training_scheduler

    beats = (torch.arange(frames + cfg.motion_frames) % 6 == 0).float()[None].expand(batch, -1)
    out = {
        "ref_latent": torch.randn(batch, 4, latent, latent), "mask": torch.ones(batch, 1, side, side),
        "ref_text": torch.randn(batch, cfg.text_length, cfg.unet.cross_attention_dim),
        "keep": torch.ones(batch, dtype=torch.bool),
        "latents": torch.randn(batch, frames, 4, latent, latent), "noise": torch.randn(batch, frames, 4, latent, latent),
        "timesteps": torch.randint(0, training_scheduler(cfg).config.num_train_timesteps, (batch,)),
        "text": torch.randn(batch, cfg.text_length, cfg.unet.cross_attention_dim),
        "music": torch.randn(batch, frames, tokens, cfg.unet.music_dim),
        "windows": frame_beats(cfg.unet, beats, cfg.motion_frames, frames),
    }
    if stage == 2:
        out["context_latents"] = torch.randn(batch, cfg.motion_frames, 4, latent, latent)
        out["context_music"] = torch.randn(batch, cfg.motion_frames, tokens, cfg.unet.music_dim)
        out["context_windows"] = frame_beats(cfg.unet, beats, 0, cfg.motion_frames)
    return {k: v.to(device) for k, v in out.items()}


def training_step(plan: Plan, stage: int, device: str, memory: Memory) -> dict:
    """One optimizer step of `stage` on a random batch; everything it built is freed when it returns."""
    from trainer.stages import StageModel

    pipe = MuseDancePipeline.from_config(plan.config, seed=0).to(device=device)  # fp32 weights, as the trainer keeps
    model = StageModel(pipe, stage).train()
    pipe.unet.gradient_checkpointing = True
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    batch = training_batch(plan, stage, device)
    result = {"batch": int(batch["latents"].shape[0]),
              "frames": int(batch["latents"].shape[1]) + (plan.config.motion_frames if stage == 2 else 0),
              "trainable_parameters": sum(p.numel() for p in params)}
    memory.reset()
    sync(device)
    started = time.perf_counter()
    try:
        with torch.autocast(device_type="cuda" if memory.cuda else "cpu", dtype=torch.bfloat16, enabled=memory.cuda):
            loss = model(batch)
        loss.backward()
        optimizer.step()
        sync(device)
        result.update(seconds=time.perf_counter() - started, peak_gib=memory.peak_gib(), loss=float(loss.detach()))
    except torch.cuda.OutOfMemoryError as error:
        result.update(out_of_memory=str(error).splitlines()[0], peak_gib=memory.peak_gib())
    finally:
        model.after_micro_step()
    return result


def section_training(plan: Plan, device: str, memory: Memory) -> dict:
    out = {}
    for stage in (1, 2):
        out[f"stage{stage}"] = training_step(plan, stage, device, memory)
        if memory.cuda:
            torch.cuda.empty_cache()
    return {"what": "one optimizer step (Adam's states are created in it), bf16 autocast, gradient checkpointing, "
                    "fp32 weights, the configs' batch sizes", **out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sections", default="step,sampler,peaks,song,training")
    args = parser.parse_args()
    plan = plan_for(args.size, args.device)
    memory = Memory(args.device)
    report: dict = {"size": args.size, "device": args.device, "machine": machine("torch", "diffusers"),
                    "card": torch.cuda.get_device_name(args.device) if memory.cuda else None}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.json"
    pipe = None
    for name in args.sections.split(","):
        started = time.perf_counter()
        try:
            if name in ("sampler", "peaks", "song") and pipe is None:
                pipe = build_pipe(plan, args.device)
            if name == "training" and pipe is not None:
                pipe = None  # the training steps need the memory
                if memory.cuda:
                    torch.cuda.empty_cache()
            result = {"step": lambda: section_step(plan, args.device, memory),
                      "sampler": lambda: section_sampler(plan, args.device, memory, pipe),
                      "peaks": lambda: section_peaks(plan, args.device, memory, pipe),
                      "song": lambda: section_song(plan, args.device, memory, pipe),
                      "training": lambda: section_training(plan, args.device, memory)}[name]()
        except Exception as error:  # a broken section is a result too; the others still run
            result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-2000:]}
        result["section_seconds"] = round(time.perf_counter() - started, 2)
        report[name] = result
        path.write_text(json.dumps(report, indent=1) + "\n")  # after every section, so a timeout keeps the rest
        print(f"{name}: {json.dumps({k: v for k, v in result.items() if k != 'traceback'})[:600]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
