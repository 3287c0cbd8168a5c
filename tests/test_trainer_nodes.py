"""A checkpoint the trainer exports into a models/musedance folder loads in the node pack and generates frames."""

from __future__ import annotations

import sys

import torch
from test_trainer import SIZE, make_clips, tiny_config

from musedance_core.audio.ast_encoder import save_random_ast
from sample_media import draw_reference, synth_music
from tiny_files import write_tiny_musedance
from trainer.train import Trainer


def test_exported_checkpoint_runs_in_the_nodes(pack, tmp_path, monkeypatch, fresh_accelerate):
    models = tmp_path / "models"
    base = write_tiny_musedance(tmp_path / "base.safetensors")
    trainer = Trainer(tiny_config(1, base, tmp_path / "run", steps=2), make_clips())
    trainer.train()
    exported = trainer.export(models / "musedance")
    save_random_ast(models / "audio_encoders" / "ast", hidden_size=trainer.pipe.config.unet.music_dim)

    folders = sys.modules[f"{pack.__name__}.nodes.model_paths"].ModelFolders.from_models_dir(models)
    for name in ("model", "music"):
        monkeypatch.setattr(sys.modules[f"{pack.__name__}.nodes.{name}"], "comfy_model_folders", lambda: folders)
    nodes = pack.NODE_CLASS_MAPPINGS
    assert exported.name in nodes["MuseDanceLoadModel"].INPUT_TYPES()["required"]["checkpoint"][0]
    model = nodes["MuseDanceLoadModel"]().run(exported.name, "none", "none", "auto", "default")[0]
    for name, weight in trainer.pipe.unet.state_dict().items():  # what was trained is what the node runs
        assert torch.equal(weight, model.pipeline.unet.state_dict()[name]), name

    audio = {"waveform": torch.from_numpy(synth_music(2.0))[None, None], "sample_rate": 16_000}
    beats = nodes["MuseDanceBeatExtract"]().run(audio, 12.0, 0.0, 1.0)["result"][0]
    music = nodes["MuseDanceASTEncode"]().run(nodes["MuseDanceLoadAST"]().run("ast")[0], audio, 12.0, 0.0, 1.0)[0]
    image, mask = (torch.from_numpy(a)[None] for a in draw_reference(SIZE))
    encoded = nodes["MuseDanceReferenceEncode"]().run(model, image, "a dancer spins", SIZE, SIZE, "crop", mask=mask)
    reference = encoded["result"][0]
    # The export says the size it was trained at; far from it, ReferenceNet Encode says so on the node.
    assert model.pipeline.training_size == (SIZE, SIZE) and encoded["ui"]["text"] == []
    far = nodes["MuseDanceReferenceEncode"]().run(model, image, "a dancer spins", 2 * SIZE, SIZE, "pad", mask=mask)
    assert far["ui"]["text"] == [f"Size: {2 * SIZE}x{SIZE} is far from the {SIZE}x{SIZE} this model was trained at: "
                                 "expect repeated or broken figures above it and lost detail below it. Its own size "
                                 "works best."]
    frames = nodes["MuseDanceSampler"]().run(model, reference, music, beats, 0, 2, 2.0, 0, 0, 2)["result"][0]
    assert frames.shape == (12, SIZE, SIZE, 3) and torch.isfinite(frames).all()
