"""The two training stages on the tiny model: learning, freezing, exact resume, two processes, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from musedance_core.config import MuseDanceConfig
from musedance_core.loading.loader import load_pipeline
from musedance_core.models.unet import is_temporal_parameter
from musedance_core.sampling.conditioning import reference_features
from tiny_files import write_tiny_musedance
from trainer.clips import PreparedClip
from trainer.config import config_from_dict, load_config
from trainer.stages import row_generator, sample_row
from trainer.train import STATE_FILE, Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "trainer" / "configs"
SIZE = 32


def make_clips(count: int = 2, frames: int = 12, seed: int = 0) -> list[PreparedClip]:
    """Synthetic dancers: a bright disc moving over a dark background, with its mask, beats and music."""
    config = MuseDanceConfig.tiny()
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    clips = []
    for c in range(count):
        centres = torch.linspace(10, 22, frames) + c
        masks = torch.stack([((xx - x) ** 2 + (yy - 16) ** 2 < 36).float() for x in centres])
        background = torch.rand(SIZE, SIZE, 3, generator=gen) * 60
        colour = torch.tensor([200.0, 120 + 40 * c, 60])
        frames_u8 = (background + masks[..., None] * colour).clamp(0, 255).to(torch.uint8)
        beats = torch.zeros(frames)
        beats[c::4] = 1
        music = torch.randn(frames, 3, config.unet.music_dim, generator=gen)
        clips.append(PreparedClip(f"clip{c}", frames_u8, masks, beats, music, f"a dancer spins, take {c}", 12.0))
    return clips


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A self-contained tiny MuseDance checkpoint (random weights everywhere, with a tokenizer)."""
    return write_tiny_musedance(tmp_path_factory.mktemp("base") / "tiny.safetensors")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these tiny models run ~20x slower when threads fight over shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_accelerate(fresh_accelerate):
    """Every Trainer of a test starts from a clean Accelerate state (tests/conftest.py)."""


def tiny_config(stage: int, base: Path, output: Path, **train):
    overrides = {"model.base": str(base), "output": str(output)}
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return load_config(CONFIGS / f"tiny_stage{stage}.yaml", overrides)


def fixed_rows(trainer: Trainer, count: int = 4):
    """A held-out evaluation batch: the same rows before and after training."""
    return trainer.rows(step=10**6, batch_size=count, first_row=0)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_configs_load_and_refuse_unknown_keys(tmp_path):
    for name in ("stage1", "stage2"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.optim.lr == 1e-5 and cfg.train.steps == 30000 and cfg.data.resolution == (640, 640)
        assert cfg.train.batch_size == (12 if name == "stage1" else 2)
    assert load_config(CONFIGS / "stage2.yaml").data.clip_length == 48
    with pytest.raises(ValueError, match="unknown keys.*learning_rate"):
        config_from_dict({"model": {"base": "x"}, "optim": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict({"model": {"base": "x"}, "epochs": 3})


def test_stage1_sampling_window():
    clips = make_clips(1, frames=20)
    for r in range(200):
        gen = row_generator(0, 0, r)
        row = sample_row(1, clips, gen, frame_window=3, clip_length=8, motion_frames=2, beat_window=2,
                         uncond_rate=0.0, num_timesteps=1000)
        i = next(k for k in range(20) if torch.equal(clips[0].frames[k], row.reference))
        j = next(k for k in range(20) if torch.equal(clips[0].frames[k], row.frames[0]))
        assert 3 <= i < 17 and j != i and abs(j - i) <= 3
    # Pure function of (seed, step, row).
    a = sample_row(2, clips, row_generator(5, 7, 1), frame_window=3, clip_length=8, motion_frames=2, beat_window=2,
                   uncond_rate=0.5, num_timesteps=1000)
    b = sample_row(2, clips, row_generator(5, 7, 1), frame_window=3, clip_length=8, motion_frames=2, beat_window=2,
                   uncond_rate=0.5, num_timesteps=1000)
    assert torch.equal(a.frames, b.frames) and a.timestep == b.timestep and a.uncond == b.uncond


def test_reference_path_matches_the_sampler(base, tmp_path):
    trainer = Trainer(tiny_config(1, base, tmp_path), make_clips())
    model = trainer._unwrapped
    model.train(False)
    row = fixed_rows(trainer, 1)[0]
    batch = trainer.batch([row])
    with torch.no_grad():
        ours = reference_features(model.reference_net, model.mask_encoder, model.bank, batch["ref_latent"],
                                  batch["mask"], batch["ref_text"])
    encoding = trainer.pipe.encode_reference(row.reference.float()[None] / 255, row.mask, trainer._text(row.caption)[None])
    assert torch.allclose(batch["ref_latent"], encoding.latent)
    assert ours.keys() == encoding.tokens.keys() and len(ours) > 0
    for name in ours:
        torch.testing.assert_close(ours[name], encoding.tokens[name])


def test_trainer_conditions_the_unet_as_the_sampler_does(base, tmp_path):
    """The same clip, prompt and beats through the trainer's batch and the sampler's second clip: the UNet
    sees the same text, music and beat ids in the unconditional, beats-dropped and conditional rows, the
    same reference keep mask, and the same conditions for the motion context."""
    import dataclasses

    trainer = Trainer(tiny_config(2, base, tmp_path), make_clips(1, frames=16))
    k = trainer.clip_length
    clip = trainer.clips[0]
    rows = [trainer.rows(step=s, batch_size=1, first_row=0)[0] for s in range(200)]
    row = next(r for r in rows if torch.equal(r.frames, clip.frames[k : 2 * k]))  # the clip at frame K
    batch = trainer.batch([dataclasses.replace(row, uncond=True), dataclasses.replace(row, beats_dropped=True), row])

    calls, clips = [], []
    trainer.pipe.unet.register_forward_pre_hook(lambda mod, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    clip_conditions = trainer.pipe.unet.clip_conditions

    def record_clip(*args, **kwargs):  # a clip's conditions, made once for all of its steps
        if kwargs.get("find_uniform", True):
            clips.append(args)
        return clip_conditions(*args, **kwargs)

    trainer.pipe.unet.clip_conditions = record_clip
    keeps = []
    fill = trainer.pipe.bank.fill
    trainer.pipe.bank.fill = lambda tokens, repeats=1, keep=None: (keeps.append(keep), fill(tokens, repeats, keep))
    trainer.pipe(reference_image=row.reference.float() / 255, mask=row.mask, text_embeds=trainer._text(row.caption),
                 music_tokens=clip.music[: 2 * k].float(), beats=clip.beats[: 2 * k].float(), num_inference_steps=1,
                 guidance_scale=2.0, beat_guidance_scale=4.0)
    context_call = [args for args, kwargs in calls][-2]  # the second clip: context, then its step
    assert [kwargs.get("return_motion_context", False) for _, kwargs in calls][-2:] == [True, False]
    assert "conditions" in calls[-1][1] and len(clips) == 2
    for name, index in (("text", 0), ("music", 1), ("windows", 2)):
        assert torch.equal(clips[-1][index], batch[name]), name
    assert torch.equal(keeps[-1].cpu(), batch["keep"].cpu())
    assert torch.equal(context_call[3], batch["context_music"]) and torch.equal(context_call[4], batch["context_windows"])
    assert torch.equal(context_call[2], batch["text"])
    # and the rows differ where they should: the check above can fail
    assert not torch.equal(batch["windows"][1], batch["windows"][2]) and torch.equal(batch["music"][1], batch["music"][2])
    assert not batch["music"][0].any() and not batch["text"][0].any()


@pytest.mark.parametrize("stage", [1, 2])
def test_loss_falls(base, tmp_path, stage):
    clips = make_clips()
    # Stage 2 starts from the tiny base standing in for a stage-1 export (both are full MuseDance files).
    trainer = Trainer(tiny_config(stage, base, tmp_path, uncond_rate=0.0), clips)
    rows = fixed_rows(trainer)
    before = trainer.eval_loss(rows)
    trainer.train()
    after = trainer.eval_loss(rows)
    assert after < 0.8 * before, (before, after)


def test_stage2_freezes_stage1_weights(base, tmp_path):
    before = load_pipeline(base)
    trainer = Trainer(tiny_config(2, base, tmp_path, steps=4, checkpoint_every=100), make_clips())
    trainer.train()
    after = trainer.pipe
    changed = 0
    for component, module in before.modules().items():
        trained = dict(after.modules()[component].named_parameters())
        for name, p in module.named_parameters():
            if component == "unet" and is_temporal_parameter(name):
                changed += not torch.equal(p, trained[name])
            else:
                assert torch.equal(p, trained[name]), f"{component}.{name} changed in stage 2"
        for name, buf in module.named_buffers():
            assert torch.equal(buf, dict(after.modules()[component].named_buffers())[name])
    assert changed > 0.5 * sum(is_temporal_parameter(name) for name, _ in before.unet.named_parameters())


@pytest.mark.parametrize("left_out", ["beat", "music", "motion"])
def test_stage2_ablation_leaves_the_module_it_leaves_out_untouched(base, tmp_path, left_out):
    """train.temporal_modules without one module: that module keeps its starting weights bit for bit
    (the identity after a real stage 1, i.e. the model without it) while the other two learn."""
    groups = {"music": ("music_modules.",), "beat": ("beat_modules.", "beat_encoder."), "motion": ("motion_modules.",)}
    kept = [m for m in groups if m != left_out]
    before = dict(load_pipeline(base).unet.named_parameters())
    trainer = Trainer(tiny_config(2, base, tmp_path, steps=3, checkpoint_every=100, temporal_modules=kept),
                      make_clips())
    trainer.train()
    after = dict(trainer.pipe.unet.named_parameters())
    for module, prefixes in groups.items():
        names = [n for n in before if any(p in n for p in prefixes)]
        changed = sum(not torch.equal(before[n], after[n]) for n in names)
        if module == left_out:
            assert changed == 0, f"{module} was left out but {changed} of its tensors changed"
        else:
            assert changed > 0.5 * len(names), f"{module} should learn: {changed}/{len(names)} tensors changed"


def test_temporal_modules_option_is_checked(base, tmp_path):
    for bad in ([], ["beat", "tempo"], ["beat", "beat"]):
        with pytest.raises(ValueError, match="temporal_modules must list some of music, beat, motion"):
            tiny_config(2, base, tmp_path, temporal_modules=bad)
    with pytest.raises(ValueError, match="temporal_modules is for stage 2"):
        tiny_config(1, base, tmp_path, temporal_modules=["music"])


def test_stage1_trains_spatial_not_temporal(base, tmp_path):
    before = load_pipeline(base)
    trainer = Trainer(tiny_config(1, base, tmp_path, steps=2, checkpoint_every=100), make_clips())
    trainer.train()
    for name, p in before.unet.named_parameters():
        same = torch.equal(p, dict(trainer.pipe.unet.named_parameters())[name])
        assert same == is_temporal_parameter(name) or "conv_out" in name and not same, name
    for component in ("vae", "text_encoder"):
        for name, p in before.modules()[component].named_parameters():
            assert torch.equal(p, dict(trainer.pipe.modules()[component].named_parameters())[name])
    assert any(not torch.equal(p, q) for p, q in zip(before.reference_net.parameters(), trainer.pipe.reference_net.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(before.mask_encoder.parameters(), trainer.pipe.mask_encoder.parameters()))


@pytest.mark.parametrize("stage", [1, 2])
def test_resume_is_exact(base, tmp_path, stage):
    clips = make_clips()
    steps = 6
    straight = Trainer(tiny_config(stage, base, tmp_path / "a", steps=steps, checkpoint_every=3), clips)
    straight.train()
    expected = tensors(straight.export())
    del straight

    first = Trainer(tiny_config(stage, base, tmp_path / "b", steps=steps // 2, checkpoint_every=3), clips)
    first.train()
    del first
    # A crash during a later save leaves only a temporary folder, which resume ignores.
    (tmp_path / "b" / "checkpoints" / ".tmp-step-00000004").mkdir()
    second = Trainer(tiny_config(stage, base, tmp_path / "b", steps=steps, checkpoint_every=3), clips)
    second.train(resume=True)
    assert second.step == steps
    got = tensors(second.export())
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_export_loads_and_generates(base, tmp_path, sample_inputs):
    stage1 = Trainer(tiny_config(1, base, tmp_path / "s1", steps=2), make_clips())
    stage1.train()
    full = stage1.export(tmp_path / "models")
    pipe = load_pipeline(full)
    assert pipe.tokenizer is not None and pipe.load_report.initialised == []
    text = pipe.encode_prompt("a dancer spins")
    inputs = sample_inputs(frames=10)
    frames = pipe(text_embeds=text, music_tokens=inputs["music_tokens"], beats=inputs["beats"],
                  reference_image=inputs["reference_image"], mask=inputs["mask"], num_inference_steps=2)
    assert frames.shape == (10, SIZE, SIZE, 3) and torch.isfinite(frames).all()

    # Stage 2 from the stage-1 export, written temporal-only, loads on top of that export.
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    cfg = tiny_config(2, full, tmp_path / "s2", steps=2)
    cfg.export.temporal_only = True
    stage2 = Trainer(cfg, make_clips())
    stage2.train()
    part = stage2.export(tmp_path / "models")
    pipe2 = load_pipeline(part, base=full)
    for name, p in stage2.pipe.unet.named_parameters():
        assert torch.equal(p, dict(pipe2.unet.named_parameters())[name]), name
    frames = pipe2(text_embeds=text, music_tokens=inputs["music_tokens"], beats=inputs["beats"],
                   reference_image=inputs["reference_image"], mask=inputs["mask"], num_inference_steps=2)
    assert torch.isfinite(frames).all()


def save_clips(clips: list[PreparedClip], path: Path) -> Path:
    """The clips as a `.pt` file, the dataset form `python -m trainer.train --data` reads besides prepared folders."""
    torch.save([{f: getattr(c, f) for f in ("name", "frames", "masks", "beats", "music", "caption", "fps")} for c in clips],
               path)
    return path


def train_command(stage: int, base: Path, data: Path, output: Path, **train) -> list[str]:
    """Arguments of `-m trainer.train` for a tiny run (prefix them with a launcher)."""
    sets = [f"model.base={base}"] + [f"train.{k}={v}" for k, v in train.items()]
    return ["-m", "trainer.train", "--config", str(CONFIGS / f"tiny_stage{stage}.yaml"), "--data", str(data),
            "--output", str(output)] + [arg for item in sets for arg in ("--set", item)]


def subprocess_env(**extra: str) -> dict[str, str]:
    """One thread, as the `one_thread` fixture gives this process, so that both compute bit for bit alike."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)


def test_two_processes_match_one_with_double_batch(base, tmp_path):
    """Two gloo processes on the CPU (batch 1 each) against one process with batch 2: the same weights.

    Launched by torchrun with ACCELERATE_USE_CPU: `accelerate launch --cpu --num_processes 2` starts a
    single process (Accelerate spreads CPU runs over processes only through mpirun), which trains on
    row 0 alone. Adam turns a near-zero gradient into a step of about lr whatever its sign, so float
    summation order could flip whole steps; a large eps makes Adam's step proportional to the
    gradient, so the comparison measures the gradients' agreement, clipping (norm ~50 -> 1) included.
    """
    clips = make_clips()
    data = save_clips(clips, tmp_path / "clips.pt")
    steps = 3
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *train_command(1, base, data, tmp_path / "two", steps=steps, batch_size=1), "--set", "optim.eps=1.0"]
    done = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((tmp_path / "two" / "checkpoints" / f"step-{steps:08d}" / STATE_FILE).read_text())
    assert state["num_processes"] == 2
    two = tensors(next((tmp_path / "two" / "export").glob("*.safetensors")))

    config = tiny_config(1, base, tmp_path / "one", steps=steps, batch_size=2)
    config.optim.eps = 1.0
    one = Trainer(config, clips)
    one.train()
    single = tensors(one.export())
    start = tensors(base)
    # Gradients agree to ~5e-6 relative (summation order); the weights then differ by at most an ulp
    # or two of themselves (measured: 185 of 1217 tensors differ at all, by at most 1.5e-8 absolute,
    # against updates of up to 1.1e-4). One process seeing only row 0 moves weights by ~5e-5.
    for name in single:
        torch.testing.assert_close(two[name], single[name], rtol=1e-6, atol=1e-7, msg=name)
    gap = sum(float((two[k] - single[k]).double().square().sum()) for k in single) ** 0.5
    update = sum(float((single[k] - start[k]).double().square().sum()) for k in single) ** 0.5
    assert gap < 1e-3 * update, (gap, update)  # measured 3e-5 of the update


# `python -m trainer.train` that SIGKILLs itself (no cleanup, no flush, as a power cut) at POINT:STEP: right
# after save_state of STEP returns ("after-save"), or when the save of STEP renames its temporary folder
# into place ("before-rename").
KILLED_AT = """
import os, signal, sys
from trainer import train
point, step = sys.argv[1].split(":")
step = int(step)
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if point == "after-save":
    save_state = train.Trainer.save_state
    def saved(self):
        path = save_state(self)
        if self.step == step:
            die()
        return path
    train.Trainer.save_state = saved
else:
    replace = os.replace
    def renamed(src, dst):
        if os.path.basename(src) == f".tmp-step-{step:08d}":
            die()
        return replace(src, dst)
    train.os.replace = renamed
train.main(sys.argv[2:])
"""


@pytest.mark.parametrize("point, resumes_from", [("after-save:2", 2), ("before-rename:4", 2)])
def test_resume_after_a_hard_kill(base, tmp_path, point, resumes_from):
    """SIGKILL right after a checkpoint, or inside a save before its rename; `--resume` still ends bit-identical.

    Four steps, a checkpoint every two. Killed inside step 4's save, the run leaves a complete
    temporary folder that must not count: the resumed run starts from step 2 and redoes steps 3 and 4.
    """
    clips = make_clips()
    data = save_clips(clips, tmp_path / "clips.pt")
    steps = 4
    args = train_command(1, base, data, tmp_path / "run", steps=steps, checkpoint_every=2)
    crashed = subprocess.run([sys.executable, "-c", KILLED_AT, point, *args[2:]], cwd=ROOT, env=subprocess_env(),
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    left = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    complete = f"step-{resumes_from:08d}"
    assert left == ([complete] if point.startswith("after") else [f".tmp-step-{steps:08d}", complete]), left
    assert (tmp_path / "run" / "checkpoints" / left[0] / STATE_FILE).is_file()  # even the temporary one is whole
    assert not (tmp_path / "run" / "export").exists()

    resumed = subprocess.run([sys.executable, *args, "--resume"], cwd=ROOT, env=subprocess_env(), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    got = tensors(next((tmp_path / "run" / "export").glob("*.safetensors")))

    straight = Trainer(tiny_config(1, base, tmp_path / "straight", steps=steps, checkpoint_every=2), clips)
    straight.train()
    expected = tensors(straight.export())
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_beat_drop_rate_trains_rows_with_the_beats_unknown_and_the_rest_kept(base, tmp_path):
    """train.beat_drop_rate: the beat-guidance row (beats unknown, text and music kept); rate 0 draws nothing,
    so every row is the one an older run drew."""
    from musedance_core.models.temporal import UNKNOWN_BEAT

    clips = make_clips()
    plain = Trainer(tiny_config(2, base, tmp_path / "a", uncond_rate=0.0), clips)
    dropped = Trainer(tiny_config(2, base, tmp_path / "b", uncond_rate=0.0, beat_drop_rate=1.0), clips)
    rows, rows_dropped = plain.rows(3, 2, 0), dropped.rows(3, 2, 0)
    for a, b in zip(rows, rows_dropped):
        assert not a.beats_dropped and b.beats_dropped and a.timestep == b.timestep and a.noise_seed == b.noise_seed
    batch, batch_dropped = plain.batch(rows), dropped.batch(rows_dropped)
    assert (batch["windows"] != UNKNOWN_BEAT).any() and (batch_dropped["windows"] == UNKNOWN_BEAT).all()
    assert (batch_dropped["context_windows"] == UNKNOWN_BEAT).all()
    for key in ("music", "text", "context_music", "latents", "noise"):
        torch.testing.assert_close(batch_dropped[key], batch[key])
    assert batch["music"].abs().sum() > 0 and batch["text"].abs().sum() > 0
    # Rows drawn as unconditional stay unconditional (everything dropped), never counted as beat-dropped.
    both = Trainer(tiny_config(2, base, tmp_path / "c", uncond_rate=1.0, beat_drop_rate=1.0), clips)
    assert all(r.uncond and not r.beats_dropped for r in both.rows(3, 4, 0))
    for bad, stage in ((1.5, 2), (-0.1, 2), (0.2, 1)):
        with pytest.raises(ValueError, match="beat_drop_rate"):
            tiny_config(stage, base, tmp_path / "d", beat_drop_rate=bad)
