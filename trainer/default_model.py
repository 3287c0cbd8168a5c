"""The recipe of the default model: a small MuseDance trained with trainer/ on the synthetic dataset.

    python -m trainer.default_model [--work runs/default] [--models models] [--assets musedance_demo/assets]
                                    [--stage1-steps N] [--stage2-steps N] [--no-ablations] [--jobs N]
                                    [--stage1-from-model]

No MuseDance weights are public and none can be downloaded, so the pack ships this one (models/),
small enough to generate a 4-second clip in seconds on a CPU. Every step is skipped when its output
exists (a training stage when its export reached the step budget) and the training stages resume
from their last checkpoint, so an interrupted run continues and a larger --stage2-steps trains on
(a larger --stage1-steps trains stage 1 on, but then delete the stage2* run folders and the exports,
which were built on the old stage 1):
1. data: `trainer.synthetic` (music tracks and dancers, split by track) and the music encoder;
2. `trainer.prepare` of both splits at 64x64, 12 fps;
3. a tokenizer of the captions' words, the VAE (`trainer.vae`) trained on the training frames, and
   the base checkpoint: that VAE, a CLIP text encoder and the UNet with random weights, the
   ReferenceNet a copy of the UNet's spatial layers (as the paper starts both from SD1.5);
4. stage 1 (trainer/configs/default_stage1.yaml) and stage 2 (default_stage2.yaml) through
   `python -m trainer.train`, the commands a user runs;
5. the ablations: stage 2 again, same steps, with the beat, the music or the motion module left out.

--stage1-from-model makes stage 1's export from the shipped model instead of steps 3 and 4's VAE and
stage 1 (`stage1_from_model`), to train the ablations again when the run folder is gone.

The music encoder is an AST of the real architecture with seeded random weights, frozen, as the
paper's AST is: there is no pretrained AST to ship, and a frozen random projection of the
spectrogram still carries onsets and timbre. The CLIP text encoder is random and frozen too (its
output still tells the captions apart); the VAE is trained. Nothing else is needed at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from musedance_core.audio.ast_encoder import save_random_ast
from musedance_core.config import (
    DEFAULT_AST_NAME,
    DEFAULT_CHECKPOINT_NAME,
    MaskEncoderConfig,
    MuseDanceConfig,
    TextEncoderConfig,
    UNetConfig,
    VAEConfig,
)
from musedance_core.loading.checkpoint import save_checkpoint, write_safetensors
from musedance_core.loading.formats import safetensors_header
from musedance_core.models.text_encoder import word_tokenizer_files
from musedance_core.models.unet import is_temporal_parameter
from musedance_core.sampling.pipeline import MuseDancePipeline

from .config import load_config
from .data import PreparedDataset
from .prepare import PrepareSettings, prepare_dataset
from .synthetic import generate
from .vae import frame_pool, latent_scaling_factor, reconstruction_psnr, train_vae

CONFIGS = Path(__file__).parent / "configs"
MODEL_NAME, AST_NAME = DEFAULT_CHECKPOINT_NAME, DEFAULT_AST_NAME
SIZE = 64
FPS = 12.0
MUSIC_DIM = 64
LATENT_CHANNELS = 8
SYNTH = {"tracks": 120, "clips_per_track": 3, "seed": 0, "size": SIZE, "fps": FPS, "seconds": 4.0, "test_fraction": 0.25}
VAE_STEPS = 3000
ABLATIONS = {"no_beat": ["music", "motion"], "no_music": ["beat", "motion"], "no_motion": ["music", "beat"]}


def default_config(vocab_size: int, scaling_factor: float) -> MuseDanceConfig:
    """The default model: MuseDance's structure at 64x64 (VAE factor 8, 8x8x8 latents), K = 16, M = 2.

    Sized for a 2-core CPU: a 4-second clip in well under a minute, training in about an hour. Eight
    latent channels instead of SD's four keep the thin limbs of a 64-pixel dancer in the latents.
    """
    return MuseDanceConfig(
        unet=UNetConfig(
            in_channels=LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            block_out_channels=(32, 64, 64),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            num_attention_heads=4,
            cross_attention_dim=64,
            norm_num_groups=16,
            music_dim=MUSIC_DIM,
            beat_dim=32,
            temporal_num_attention_heads=4,
        ),
        vae=VAEConfig(block_out_channels=(16, 32, 64, 64), layers_per_block=1, latent_channels=LATENT_CHANNELS,
                      norm_num_groups=8, scaling_factor=scaling_factor),
        mask_encoder=MaskEncoderConfig(block_out_channels=(8, 16, 32, 32)),
        text_encoder=TextEncoderConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=2, projection_dim=64),
        fps=FPS,
        clip_length=16,
    )


def log(message: str) -> None:
    print(f"[default_model {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_wav(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """16-bit mono PCM WAV (the sample music of the main job)."""
    pcm = (np.clip(waveform, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def caption_words(folder: Path) -> list[str]:
    """The words of every caption in `folder` (CLIP's tokenizer lower-cases and splits off punctuation)."""
    words: set[str] = set()
    for caption in sorted(folder.glob("*.txt")):
        text = caption.read_text(encoding="utf-8").lower()
        words.update("".join(c if c.isalnum() or c in "-'" else " " for c in text).replace("-", " - ").split())
    return sorted(words)


def build_base(work: Path, train: PreparedDataset, tokenizer_files: dict[str, str], vae_steps: int = VAE_STEPS) -> Path:
    """The starting checkpoint of stage 1: trained VAE, random text encoder and UNet, ReferenceNet = UNet."""
    path = work / "base.safetensors"
    if path.is_file():
        return path
    frames, masks = frame_pool(train, stride=2)
    held = frames[::7]
    vocab_size = len(json.loads(tokenizer_files["vocab.json"]))
    config = default_config(vocab_size, scaling_factor=1.0)
    log(f"VAE: {vae_steps} steps on {frames.shape[0]} frames")
    started = time.perf_counter()

    def progress(step: int, loss: float) -> None:
        if step % 250 == 0 or step == vae_steps:
            log(f"  VAE step {step}/{vae_steps} loss {loss:.4f} ({time.perf_counter() - started:.0f} s)")

    vae = train_vae(frames, masks, config.vae, steps=vae_steps, batch_size=16, lr=1e-3, seed=0, progress=progress)
    config.vae.scaling_factor = latent_scaling_factor(vae, held)
    log(f"VAE: reconstruction PSNR {reconstruction_psnr(vae, held):.2f} dB on {held.shape[0]} frames; "
        f"scaling factor {config.vae.scaling_factor:.4f}")
    pipe = MuseDancePipeline.from_config(config, seed=0, text_encoder=True)
    pipe.vae = vae
    # The ReferenceNet starts as a copy of the UNet's spatial layers, as both start from SD1.5 in the paper.
    reference = pipe.reference_net.state_dict()
    spatial = {k: v for k, v in pipe.unet.state_dict().items() if k in reference}
    missing = set(reference) - set(spatial)
    if missing:
        raise RuntimeError(f"the ReferenceNet has parameters the UNet lacks: {sorted(missing)[:5]}")
    pipe.reference_net.load_state_dict(spatial)
    save_checkpoint(path, config, pipe.modules(), tokenizer_files=tokenizer_files, metadata={"recipe": "default_model"})
    return path


def trained_to(path: Path, steps: int) -> bool:
    """True when `path` is an export of a run that reached `steps` (so a larger budget trains on)."""
    if not path.is_file():
        return False
    return (safetensors_header(path).get("__metadata__") or {}).get("training_step") == str(steps)


def stage1_from_model(model: Path, out: Path) -> Path:
    """Stage 1's export made again from a model that stage 2 trained from it; returns `out`.

    Stage 2 trains only the music, beat and motion modules, so the model holds every other weight of
    stage 1 (in the model's storage precision, here fp16). Without its temporal modules, loading the
    file initialises them the way a stage-1 export has them: identities, untrained.
    """
    tensors = {}
    with safe_open(str(model), "pt") as weights:
        meta = dict(weights.metadata() or {})
        for key in weights.keys():
            component, name = key.split(".", 1)
            if component == "unet" and is_temporal_parameter(name):
                continue
            tensor = weights.get_tensor(key)
            tensors[key] = tensor.float() if tensor.is_floating_point() else tensor
    meta.pop("training_step", None)  # not a stage-1 run's step: `trained_to` must not take it for one
    meta.update(dtype="float32", training_stage="1", made_from=f"{model.name} without its temporal modules")
    return write_safetensors(out, tensors, meta)


def prepare_data(work: Path, models: Path) -> tuple[Path, Path]:
    """Steps 1 and 2, shared by both default models: the synthetic dataset, the music encoder and both
    splits prepared at 64x64, 12 fps (each skipped or resumed when done). Returns (synth, ast)."""
    synth = work / "synth"
    if not (synth / "tracks.json").is_file():
        log(f"synthetic dataset {SYNTH}")
        generate(synth, **SYNTH)
    ast = models / "audio_encoders" / AST_NAME
    if not (ast / "model.safetensors").is_file():
        save_random_ast(ast, hidden_size=MUSIC_DIM, seed=0, num_hidden_layers=2)
    settings = PrepareSettings(fps=FPS, height=SIZE, width=SIZE, masks="video", min_frames=48)
    for split in ("train", "test"):
        log(f"prepare {split}")
        prepare_dataset(synth / split, work / f"prepared_{split}", ast, settings, progress=False)
    return synth, ast


def run_stage(config: Path, data: Path, output: Path, sets: dict[str, object], threads: int | None = None) -> None:
    """`python -m trainer.train` (resuming when the run folder has a checkpoint), as a user runs it.

    threads: the run's CPU threads (OMP_NUM_THREADS); None leaves torch's default.
    """
    command = [sys.executable, "-m", "trainer.train", "--config", str(config), "--data", str(data),
               "--output", str(output)]
    for key, value in sets.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    if (output / "checkpoints").is_dir() and any((output / "checkpoints").glob("step-*")):
        command.append("--resume")
    log("$ " + " ".join(command))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1], env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.default_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/default"), help="data and runs (default runs/default)")
    parser.add_argument("--models", type=Path, default=Path("models"),
                        help="where the model and its music encoder go (default models/, what the pack ships)")
    parser.add_argument("--assets", type=Path, default=Path("musedance_demo/assets"),
                        help="where the main job's sample image and music go (default musedance_demo/assets/)")
    parser.add_argument("--vae-steps", type=int, default=VAE_STEPS, help=f"VAE training steps (default {VAE_STEPS})")
    parser.add_argument("--stage1-steps", type=int, help="override train.steps of stage 1")
    parser.add_argument("--stage2-steps", type=int, help="override train.steps of stage 2 and the ablations")
    parser.add_argument("--no-ablations", action="store_true", help="skip the three ablation runs")
    parser.add_argument("--stage1-from-model", action="store_true",
                        help="make stage 1's export from the shipped model (its layers but the temporal modules) "
                             "instead of training the VAE and stage 1: to train the ablations again when the run "
                             "folder is gone")
    parser.add_argument("--jobs", type=int, default=1,
                        help="stage-2 runs (the model and its ablations) trained at once, the CPU threads split "
                             "between them (default 1; 2 trains about 1.5x faster on a 2-core CPU)")
    args = parser.parse_args(argv)
    work, models = args.work.resolve(), args.models.resolve()
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    synth, ast = prepare_data(work, models)
    final = models / "musedance" / MODEL_NAME
    steps2 = {"train.steps": args.stage2_steps} if args.stage2_steps else {}
    budget2 = args.stage2_steps or load_config(CONFIGS / "default_stage2.yaml", {"model.base": "-"}).train.steps
    if args.stage1_from_model:
        if not final.is_file():
            parser.error(f"--stage1-from-model needs the model {final}; run without it to train the model.")
        stage1_export = work / "stage1" / "export" / "musedance_default_stage1_from_model.safetensors"
        if not stage1_export.is_file():
            log(f"stage 1's export from {final}")
            stage1_from_model(final, stage1_export)
    else:
        # 3. tokenizer, VAE, base checkpoint
        train = PreparedDataset(work / "prepared_train")
        tokenizer_files = word_tokenizer_files(caption_words(synth / "train"))
        base = build_base(work, train, tokenizer_files, args.vae_steps)
        # 4. the two stages
        stage1_export = work / "stage1" / "export" / "musedance_default_stage1.safetensors"
        steps1 = {"train.steps": args.stage1_steps} if args.stage1_steps else {}
        budget1 = args.stage1_steps or load_config(CONFIGS / "default_stage1.yaml", {"model.base": "-"}).train.steps
        if not trained_to(stage1_export, budget1):
            run_stage(CONFIGS / "default_stage1.yaml", work / "prepared_train", work / "stage1",
                      {"model.base": str(base), **steps1})
    # 5. stage 2 and the ablations (same budget), --jobs at a time
    runs = []
    if not trained_to(final, budget2):
        runs.append((work / "stage2", {"model.base": str(stage1_export), "export.dir": str(models / "musedance"),
                                        "export.name": MODEL_NAME, **steps2}))
    if not args.no_ablations:
        for name, modules in ABLATIONS.items():
            out = work / "ablations" / f"musedance_default_{name}.safetensors"
            if not trained_to(out, budget2):
                runs.append((work / f"stage2_{name}", {"model.base": str(stage1_export), "export.dir": str(out.parent),
                                                        "export.name": out.name, "train.temporal_modules": modules,
                                                        **steps2}))
    jobs = max(1, min(args.jobs, len(runs) or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for done in [pool.submit(run_stage, CONFIGS / "default_stage2.yaml", work / "prepared_train", output, sets,
                                 threads) for output, sets in runs]:
            done.result()  # a failed run raises here (after the runs already started have finished)
    args.assets.mkdir(parents=True, exist_ok=True)
    write_sample(PreparedDataset(work / "prepared_test"), synth, args.assets)
    log(f"done: {final} ({final.stat().st_size / 2**20:.1f} MiB), {ast}")
    return 0


def write_sample(test: PreparedDataset, synth: Path, assets: Path) -> None:
    """The main job's defaults: the first frame (PNG), the music (WAV, decoded from the source clip) and the
    caption of a test clip (a track the model never saw), a human-like dancer, arms moving, music near 120 BPM."""
    from PIL import Image

    from musedance_core.audio.music import load_music

    index = json.loads((synth / "tracks.json").read_text(encoding="utf-8"))
    bpm = {t["name"]: t["bpm"] for t in index["tracks"]}
    clips = {c["name"]: c for c in index["clips"]}
    names = [e["name"] for e in test.entries]

    def rank(i: int) -> tuple:  # a human-like figure moving its arms, the easiest dance to see at 64 pixels
        clip = clips[names[i]]
        return clip["figure"] != "human", clip["move"] != "arms", abs(bpm[clip["track"]] - 120)

    best = min(range(len(names)), key=rank)
    clip = test[best]
    Image.fromarray(clip.frames[0].numpy()).save(assets / "sample_reference.png")
    music = load_music(synth / "test" / test.entries[best]["source"])
    write_wav(assets / "sample_music.wav", music.waveform, music.sample_rate)
    (assets / "sample_prompt.txt").write_text(clip.caption.strip() + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
