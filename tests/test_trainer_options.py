"""The trainer's run options on the tiny model: accumulation, gradient checkpointing, bf16, EMA, TensorBoard."""

from __future__ import annotations

import pytest
import torch
from test_trainer import CONFIGS, make_clips, tiny_config

from tiny_files import write_tiny_musedance
from trainer.config import load_config
from trainer.train import Trainer


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_tiny_musedance(tmp_path_factory.mktemp("base") / "tiny.safetensors")


@pytest.fixture(autouse=True)
def isolated(fresh_accelerate):
    """One thread (the tiny models crawl when threads fight over shared cores), fresh Accelerate singletons."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained(base, output, stage=1, **train) -> Trainer:
    """A trainer after training. Adam's eps = 1 makes each update proportional to the gradient, so
    comparisons between runs measure the gradients' agreement: with the usual tiny eps Adam turns
    float-rounding-sized gradients into steps of about lr whatever their size."""
    config = tiny_config(stage, base, output, **train)
    config.optim.eps = 1.0
    trainer = Trainer(config, make_clips())
    trainer.train()
    return trainer


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer._unwrapped.named_parameters() if p.requires_grad}


def largest_difference(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def test_accumulating_two_halves_equals_one_batch(base, tmp_path):
    """batch 1 x 2 accumulation steps sees the same rows as batch 2 at once: same update up to float rounding."""
    whole = weights(trained(base, tmp_path / "a", steps=2, batch_size=2))
    halves = weights(trained(base, tmp_path / "b", steps=2, batch_size=1, gradient_accumulation=2))
    start = weights(Trainer(tiny_config(1, base, tmp_path / "c"), make_clips()))
    assert largest_difference(whole, start) > 1e-5  # training moved the weights, so agreement means something
    assert largest_difference(whole, halves) < 1e-7  # measured 1.5e-8 (one float32 ulp) against 7.5e-5 moved


@pytest.mark.parametrize("stage", [1, 2])
def test_gradient_checkpointing_gives_the_same_training(base, tmp_path, stage):
    plain = trained(base, tmp_path / "a", stage, steps=2, gradient_checkpointing=False)
    checkpointed = trained(base, tmp_path / "b", stage, steps=2, gradient_checkpointing=True)
    assert checkpointed._unwrapped.unet.gradient_checkpointing and not plain._unwrapped.unet.gradient_checkpointing
    # Recomputing the same operations gives the same gradients: measured identical to the bit.
    assert largest_difference(weights(plain), weights(checkpointed)) < 1e-7


def test_bf16_trains(base, tmp_path):
    trainer = trained(base, tmp_path / "bf16", steps=3, mixed_precision="bf16")
    assert all(torch.isfinite(p).all() for p in weights(trainer).values())
    assert trainer.step == 3


def test_ema_export_and_tensorboard_log(base, tmp_path):
    from safetensors.torch import load_file

    trainer = trained(base, tmp_path / "ema", steps=3, ema={"enabled": True, "decay": 0.5}, log_every=1)
    exported = load_file(str(trainer.export(tmp_path / "models")))
    live = trainer._unwrapped.unet.state_dict()
    differs = [n for n, p in trainer._unwrapped.unet.named_parameters()
               if p.requires_grad and not torch.equal(exported[f"unet.{n}"], live[n])]
    assert differs  # the export holds the averaged weights, not the last step's
    events = list((tmp_path / "ema").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "loss" in scalars and "samples_per_s" in scalars


def test_motion_weights_put_the_loss_where_the_clip_moves():
    from trainer.stages import motion_weights

    latents = torch.zeros(2, 6, 4, 3, 3)
    latents[0, :, 1, 2, 2] = torch.tensor([0.0, 1.0, 0.0, -1.0, 0.0, 1.0])  # clip 0: one element moves
    w = motion_weights(latents, 4.0)
    assert torch.allclose(w.mean(dim=(1, 2, 3, 4)), torch.ones(2))  # the loss keeps its scale
    assert torch.allclose(w[1], torch.ones_like(w[1]))  # a still clip: the plain MSE
    moving, still = w[0, :, 1, 2, 2], w[0, :, 0]
    assert float(moving.min()) > float(still.max()) and float(still.max()) < 1.0
    assert torch.equal(motion_weights(latents, 0.0), torch.ones_like(latents))


@pytest.mark.parametrize("option", ["motion_loss_weight", "velocity_loss_weight"])
def test_loss_weight_trains_stage_2_and_is_refused_for_stage_1(option, base, tmp_path):
    plain = trained(base, tmp_path / "plain", stage=2, steps=2)
    weighted = trained(base, tmp_path / "weighted", stage=2, steps=2, **{option: 4.0})
    assert any(not torch.equal(a, b) for a, b in zip(weights(plain).values(), weights(weighted).values()))
    with pytest.raises(ValueError, match=f"{option} must be >= 0 and is for stage 2"):
        tiny_config(1, base, tmp_path / "s1", **{option: 1.0}).validate()


def phase_config(stage: int, base, output, bins, **train):
    overrides = {"model.base": str(base), "output": str(output), "model.beat_phase_bins": bins}
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return load_config(CONFIGS / f"tiny_stage{stage}.yaml", overrides)


def test_beat_phase_bins_give_stage_2_a_fresh_phase_encoder_and_reach_the_export(base, tmp_path):
    from safetensors.torch import load_file

    from musedance_core.loading.checkpoint import read_checkpoint_info
    from musedance_core.models.temporal import beat_token_count

    config = phase_config(2, base, tmp_path / "phase", 6, steps=2)
    trainer = Trainer(config, make_clips())
    unet_config = trainer.pipe.config.unet
    assert unet_config.beat_phase_bins == 6 and trainer._unwrapped.unet.beat_encoder.phase_bins == 6
    row = trainer.rows(0, 1, 0)[0]
    assert row.windows.shape[-1] == beat_token_count(unet_config.beat_window, 6) == row.context_windows.shape[-1]
    before = trainer._unwrapped.unet.beat_encoder.phase_embedding.weight.detach().clone()
    trainer.train()
    trained_rows = trainer._unwrapped.unet.beat_encoder.phase_embedding.weight.detach()
    assert not torch.equal(before, trained_rows)  # the phase embedding trains in stage 2
    path = trainer.export(tmp_path / "models")
    assert read_checkpoint_info(path).config.unet.beat_phase_bins == 6
    # Starting again from that export with the same encoding keeps its trained encoder.
    kept = Trainer(phase_config(2, path, tmp_path / "again", 6), make_clips())._unwrapped.unet.beat_encoder.phase_embedding.weight.detach()
    assert torch.equal(kept, load_file(str(path))["unet.beat_encoder.phase_embedding.weight"].float())


@pytest.mark.parametrize("stage, bins", [(1, 4), (2, -1), (2, 65), (2, True), (2, 2.5)])
def test_beat_phase_bins_are_checked(base, tmp_path, stage, bins):
    with pytest.raises(ValueError, match="model.beat_phase_bins is for stage 2"):
        phase_config(stage, base, tmp_path / "bad", bins)


def test_the_lean_feed_forward_trains_in_stage_2_and_reaches_the_export(base, tmp_path):
    from musedance_core.loading.checkpoint import read_checkpoint_info
    from musedance_core.loading.loader import load_pipeline

    overrides = {"model.base": str(base), "output": str(tmp_path / "lean"), "model.temporal_ff_mult": 2,
                 "train.steps": 2}
    trainer = Trainer(load_config(CONFIGS / "tiny_stage2.yaml", overrides), make_clips())
    unet = trainer._unwrapped.unet
    channels = unet.down_blocks[0].music_modules[0].ff_norm.weight.shape[0]
    assert trainer.pipe.config.unet.temporal_ff_mult == 2
    assert unet.down_blocks[0].music_modules[0].ff.net[2].in_features == 2 * channels
    assert unet.down_blocks[0].motion_modules[0].transformer_blocks[0].ff.net[2].in_features == 4 * channels
    before = unet.down_blocks[0].beat_modules[0].ff.net[2].weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, unet.down_blocks[0].beat_modules[0].ff.net[2].weight.detach())
    path = trainer.export(tmp_path / "models")
    assert read_checkpoint_info(path).config.unet.temporal_ff_mult == 2
    loaded = load_pipeline(path)
    assert loaded.unet.down_blocks[0].music_modules[0].ff.net[2].in_features == 2 * channels
    with pytest.raises(ValueError, match="model.temporal_ff_mult is for stage 2"):
        load_config(CONFIGS / "tiny_stage1.yaml", {"model.base": str(base), "output": str(tmp_path / "bad"),
                                                   "model.temporal_ff_mult": 2})
