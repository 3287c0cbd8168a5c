"""The flow family's two training stages on the tiny flow model, with MuseDance's trainer: learning, freezing,
exact resume, export, and the options the family refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from musedance_core.loading.flow_checkpoint import load_flow_pipeline
from test_trainer import make_clips, one_thread  # noqa: F401 - one_thread: autouse, one intra-op thread here too
from trainer.config import load_config
from trainer.flow_stages import FlowTrainer
from trainer.train import Trainer, trainer_class

CONFIGS = Path(__file__).resolve().parents[1] / "trainer" / "configs"


@pytest.fixture(autouse=True)
def _fresh_accelerate(fresh_accelerate):
    """Every Trainer of a test starts from a clean Accelerate state (tests/conftest.py)."""


def flow_config(stage: int, output: Path, base: Path | None = None, **train):
    overrides = {"output": str(output), **{f"train.{k}": v for k, v in train.items()}}
    if base is not None:
        overrides["model.base"] = str(base)
    return load_config(CONFIGS / f"tiny_flow_stage{stage}.yaml", overrides)


@pytest.fixture(scope="module")
def stage1_export(tmp_path_factory) -> Path:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    trainer = FlowTrainer(flow_config(1, tmp_path_factory.mktemp("flow_s1"), steps=10, checkpoint_every=100),
                          make_clips())
    trainer.train()
    return trainer.export()


def test_the_family_picks_the_trainer_and_its_options_are_checked(tmp_path):
    assert trainer_class(flow_config(1, tmp_path)) is FlowTrainer
    assert trainer_class(load_config(CONFIGS / "tiny_stage1.yaml", {"model.base": "x"})) is Trainer
    with pytest.raises(ValueError, match="model.base is required for the flow family's stage 2"):
        flow_config(2, tmp_path)
    with pytest.raises(ValueError, match=r"does not take \['train.motion_loss_weight'\]"):
        flow_config(2, tmp_path, base=tmp_path / "x.safetensors", motion_loss_weight=0.2)
    with pytest.raises(ValueError, match="model.flow configures the flow family"):
        load_config(CONFIGS / "tiny_stage1.yaml", {"model.base": "x", "model.flow": {}})
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(CONFIGS / "tiny_flow_stage1.yaml", {"model.flow.sise": 32})
    with pytest.raises(ValueError, match="the flow model works at 32x32; data.resolution is"):
        FlowTrainer(load_config(CONFIGS / "tiny_flow_stage1.yaml", {"output": str(tmp_path), "data.resolution": [64, 64]}),
                    make_clips())


@pytest.mark.parametrize("stage", [1, 2])
def test_loss_falls(stage, stage1_export, tmp_path):
    trainer = FlowTrainer(flow_config(stage, tmp_path, base=stage1_export if stage == 2 else None), make_clips())
    rows = trainer.rows(step=10**6, batch_size=4, first_row=0)
    before = trainer.eval_loss(rows)
    trainer.train()
    after = trainer.eval_loss(rows)
    assert after < 0.8 * before, (before, after)


def test_each_stage_trains_its_part_and_leaves_the_other_bit_identical(stage1_export, tmp_path):
    before = load_flow_pipeline(stage1_export)
    trainer = FlowTrainer(flow_config(2, tmp_path / "s2", base=stage1_export, steps=3, checkpoint_every=100),
                          make_clips())
    trainer.train()
    for name, p in before.autoencoder.state_dict().items():
        assert torch.equal(p, trainer.pipe.autoencoder.state_dict()[name]), f"autoencoder.{name} changed in stage 2"
    unet = trainer.pipe.unet.state_dict()
    assert sum(not torch.equal(p, unet[n]) for n, p in before.unet.state_dict().items()) > 0.5 * len(unet)

    fresh = FlowTrainer(flow_config(1, tmp_path / "s1", steps=2, checkpoint_every=100), make_clips())
    unet_before = {n: p.clone() for n, p in fresh.pipe.unet.state_dict().items()}
    fresh.train()
    assert all(torch.equal(p, fresh.pipe.unet.state_dict()[n]) for n, p in unet_before.items())


@pytest.mark.parametrize("stage", [1, 2])
def test_resume_is_exact(stage, stage1_export, tmp_path):
    base = stage1_export if stage == 2 else None
    clips, steps = make_clips(), 6
    straight = FlowTrainer(flow_config(stage, tmp_path / "a", base, steps=steps, checkpoint_every=3), clips)
    straight.train()
    expected = load_file(str(straight.export()))
    del straight
    first = FlowTrainer(flow_config(stage, tmp_path / "b", base, steps=steps // 2, checkpoint_every=3), clips)
    first.train()
    del first
    second = FlowTrainer(flow_config(stage, tmp_path / "b", base, steps=steps, checkpoint_every=3), clips)
    second.train(resume=True)
    assert second.step == steps
    got = load_file(str(second.export()))
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_the_export_loads_and_generates(stage1_export, tmp_path):
    trainer = FlowTrainer(flow_config(2, tmp_path, base=stage1_export, steps=2, checkpoint_every=100), make_clips())
    trainer.train()
    pipe = load_flow_pipeline(trainer.export())
    assert pipe.training_size == (32, 32)
    reference = pipe.encode_reference(torch.rand(48, 48, 3))
    frames = torch.cat(list(pipe.iter_clips(reference, torch.randn(10, 3, 32), (torch.arange(10) % 4 == 0).float(),
                                            num_inference_steps=2)))
    assert frames.shape == (10, 48, 48, 3) and torch.isfinite(frames).all()


def test_beat_drop_rate_gives_rows_with_the_beats_unknown_and_the_music_kept(stage1_export, tmp_path):
    """The rows the sampler's beats-unknown control stands on: unknown beat ids, the row's music unchanged."""
    from musedance_core.models.temporal import unknown_beats

    trainer = FlowTrainer(flow_config(2, tmp_path, base=stage1_export, uncond_rate=0.0, beat_drop_rate=1.0), make_clips())
    rows = trainer.rows(0, 2, 0)
    assert all(r.beats_dropped and not r.uncond for r in rows)
    batch = trainer.batch(rows)
    unet = trainer.pipe.config.unet
    assert torch.equal(batch["windows"], unknown_beats(2, batch["windows"].shape[1], unet.beat_window,
                                                       unet.beat_phase_bins, "cpu"))
    assert torch.equal(batch["music"], torch.stack([r.music for r in rows]).float())


def test_velocity_loss_adds_the_epsilon_mse_of_frame_differences(stage1_export, tmp_path):
    """train.velocity_loss_weight w: loss = MSE + w * MSE of consecutive-frame differences, same batch."""
    from trainer.stages import velocity_loss

    def loss_of(weight: float):
        trainer = FlowTrainer(flow_config(2, tmp_path / str(weight), base=stage1_export, velocity_loss_weight=weight),
                              make_clips())
        batch = trainer.batch(trainer.rows(0, 2, 0))
        trainer.model.eval()
        with torch.no_grad():
            return float(trainer.model(batch)), batch, trainer

    plain, batch, trainer = loss_of(0.0)
    weighted, _, _ = loss_of(2.0)
    with torch.no_grad():
        model = trainer.model
        target = model.volume(batch["reference"], batch["frames"])
        latent = model.autoencoder.encoder(batch["reference"])
        _, context = model.unet(model.volume(batch["reference"], batch["context"]), 0, latent, batch["context_music"],
                                batch["context_windows"], return_motion_context=True)
        pred = model.unet(model.noise_scheduler.add_noise(target, batch["noise"], batch["timesteps"]),
                          batch["timesteps"], latent, batch["music"], batch["windows"], motion_context=context)
        extra = float(velocity_loss(pred, batch["noise"]))
    assert extra > 0.1
    assert weighted == pytest.approx(plain + 2.0 * extra, rel=1e-5)
    with pytest.raises(ValueError, match="velocity_loss_weight must be >= 0 and is for stage 2"):
        flow_config(1, tmp_path / "s1", velocity_loss_weight=1.0)


def test_velocity_loss_charges_errors_that_change_between_frames_not_shared_ones():
    from trainer.stages import velocity_loss

    noise = torch.randn(2, 6, 3, 4, 4)
    shared = noise + torch.randn(2, 1, 3, 4, 4)  # the same error in every frame
    jitter = noise + torch.randn(2, 6, 3, 4, 4)  # a new error in each frame
    assert float(velocity_loss(noise, noise)) == 0.0
    assert float(velocity_loss(shared, noise)) < 1e-10
    assert float(velocity_loss(jitter, noise)) == pytest.approx(2.0, rel=0.5)  # the difference of two errors
    assert float(velocity_loss(noise[:, :1], noise[:, :1])) == 0.0  # one frame: nothing to compare
