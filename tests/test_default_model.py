"""The default model that ships in models/: what the recipe (trainer/default_model.py) made, and its pieces."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from musedance_core.audio.ast_encoder import MusicEncoder
from musedance_core.loading.checkpoint import read_checkpoint_info
from musedance_core.loading.loader import load_pipeline
from musedance_core.models.text_encoder import tokenizer_from_files, word_tokenizer_files
from trainer.config import load_config
from trainer.default_model import AST_NAME, CONFIGS, MODEL_NAME, caption_words, default_config

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "musedance" / MODEL_NAME
AST = ROOT / "models" / "audio_encoders" / AST_NAME


def test_word_tokenizer_gives_each_word_one_token_and_spells_out_the_rest():
    files = word_tokenizer_files(["arms", "pumps", "beat", "four-legged"])
    tokenizer = tokenizer_from_files(files)
    vocab = json.loads(files["vocab.json"])
    ids = tokenizer("pumps arms beat").input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == ["<|startoftext|>", "pumps</w>", "arms</w>", "beat</w>",
                                                   "<|endoftext|>"]
    assert max(ids) < len(vocab) and vocab["<|endoftext|>"] == len(vocab) - 1
    assert len(tokenizer("zebra").input_ids) > 3  # unknown words still tokenize, piece by piece


def test_caption_words_split_like_clips_tokenizer(tmp_path):
    (tmp_path / "a.txt").write_text("A red human-like figure pumps its arms, hitting every beat\n")
    (tmp_path / "b.txt").write_text("a box squashes\n")
    assert caption_words(tmp_path) == sorted({"a", "red", "human", "-", "like", "figure", "pumps", "its", "arms",
                                              "hitting", "every", "beat", "box", "squashes"})


def test_the_shipped_model_is_the_recipes_small_self_contained_model():
    assert MODEL.is_file(), f"{MODEL} is missing: run python -m trainer.default_model"
    assert MODEL.stat().st_size <= 30 * 2**20
    info = read_checkpoint_info(MODEL)
    assert {"unet", "reference_net", "mask_encoder", "vae", "text_encoder"} <= set(info.components)
    assert set(info.tokenizer_files) == {"vocab.json", "merges.txt"}
    assert info.extra.get("training_stage") == "2"
    vocab = len(json.loads(info.tokenizer_files["vocab.json"]))
    config = info.config
    # what the recipe builds (trained VAE scale), with the beat encoding its stage-2 config trains
    built = default_config(vocab, config.vae.scaling_factor)
    stage2 = load_config(CONFIGS / "default_stage2.yaml", {"model.base": "-"})
    if stage2.model.beat_phase_bins is not None:
        built.unet.beat_phase_bins = stage2.model.beat_phase_bins
    assert config == built
    assert config.vae.scaling_factor != 1.0
    # the recipe's skip test: done at its stage-2 budget, more steps would train on
    from trainer.default_model import trained_to
    steps = int(info.extra["training_step"])
    assert trained_to(MODEL, steps) and not trained_to(MODEL, steps + 1)


def test_the_shipped_model_and_its_ast_generate_frames_that_move():
    pipe = load_pipeline(MODEL)  # needs no other file: VAE, text encoder and tokenizer are inside
    encoder = MusicEncoder.from_folder(AST)
    assert encoder.model.config.hidden_size == pipe.config.unet.music_dim
    fps, frames = pipe.config.fps, 12
    t = torch.arange(16000 * 2) / 16000
    music = (torch.sin(2 * torch.pi * 60 * t) * (t % 0.5 < 0.05)).numpy()  # a click every half second
    beats = torch.zeros(frames)
    beats[::6] = 1
    image = torch.full((64, 64, 3), 0.4)
    image[20:52, 26:38] = torch.tensor([0.9, 0.2, 0.2])
    video = pipe(reference_image=image, mask=(image[..., 1] < 0.3).float(),
                 text_embeds=pipe.encode_prompt("a red human-like figure pumps its arms"),
                 music_tokens=encoder.encode(music, fps, frames), beats=beats, num_inference_steps=4, seed=0)
    assert video.shape == (frames, 64, 64, 3) and torch.isfinite(video).all()
    assert (video[1:] - video[:-1]).abs().mean() > 1e-3  # not a still image


def test_base_checkpoint_has_a_trained_vae_and_the_referencenet_as_a_copy_of_the_unet(tmp_path):
    from trainer.clips import PreparedClip
    from trainer.default_model import build_base

    gen = torch.Generator().manual_seed(0)
    clips = [PreparedClip(f"c{i}", (torch.rand(4, 64, 64, 3, generator=gen) * 255).to(torch.uint8),
                          torch.zeros(4, 64, 64), torch.zeros(4), torch.zeros(4, 2, 64), "a box hops", 12.0)
             for i in range(2)]
    files = word_tokenizer_files(["a", "box", "hops"])
    path = build_base(tmp_path, clips, files, vae_steps=2)
    assert build_base(tmp_path, clips, files, vae_steps=2) == path  # made once; a second call keeps it
    pipe = load_pipeline(path)
    assert pipe.config.vae.scaling_factor != 1.0  # measured on the frames
    reference = pipe.reference_net.state_dict()
    for name, tensor in pipe.unet.state_dict().items():
        if name in reference:
            assert torch.equal(tensor, reference[name]), name
    assert pipe.encode_prompt("a box hops").shape == (1, 77, 64)


def test_stage1_from_model_keeps_the_model_but_its_temporal_modules(tmp_path):
    from musedance_core.models.unet import is_temporal_parameter
    from trainer.default_model import stage1_from_model, trained_to

    out = stage1_from_model(MODEL, tmp_path / "stage1.safetensors")
    info = read_checkpoint_info(out)
    assert info.extra["training_stage"] == "1" and not trained_to(out, int(read_checkpoint_info(MODEL).extra["training_step"]))
    assert not list(tmp_path.glob(".*.tmp"))
    made, shipped = load_pipeline(out), load_pipeline(MODEL)
    assert {"unet.music_beat", "unet.motion"} <= set(made.load_report.initialised)
    ours, theirs = made.unet.state_dict(), shipped.unet.state_dict()
    spatial = [n for n in theirs if not is_temporal_parameter(n)]
    assert spatial and all(torch.equal(ours[n], theirs[n]) for n in spatial)
    assert all(torch.equal(a, b) for a, b in zip(made.reference_net.state_dict().values(),
                                                  shipped.reference_net.state_dict().values()))
    # the temporal modules start again as identities (zero output layers); the model's had learnt
    outputs = [n for n in theirs if is_temporal_parameter(n) and ".proj_out." in n]
    assert outputs and not any(ours[n].any() for n in outputs)
    assert any(theirs[n].any() for n in outputs)
