"""SD1.5 single-file checkpoints (original LDM key names) through the real loader, against the models they came from."""

from __future__ import annotations

import pytest
import torch

import ldm_layout as L
from musedance_core.config import MuseDanceConfig, UNetConfig
from musedance_core.loading.loader import load_pipeline
from musedance_core.loading.sd15 import checkpoint_family
from musedance_core.loading.weights import WeightsFileError, open_weights
from musedance_core.models.temporal import beat_windows
from tiny_files import tiny_sd15

# The loaded models run the same ops on the same weights as their sources: fp32 outputs agree to
# rounding (the MuseDance UNet folds frames into the batch, so summation order may differ slightly).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def source():
    return tiny_sd15(seed=0)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return L.write_clip_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def loaded(source, tmp_path_factory, tokenizer_dir):
    path = source.write(tmp_path_factory.mktemp("sd"))
    return load_pipeline(base=path, config=source.config, tokenizer=tokenizer_dir)


def test_the_file_has_the_original_layout(source, tmp_path):
    weights = open_weights(source.write(tmp_path))
    keys = set(weights.keys())
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in keys
    assert "first_stage_model.decoder.mid.attn_1.q.weight" in keys
    assert weights.shape("first_stage_model.decoder.mid.attn_1.q.weight")[-2:] == (1, 1)  # 1x1 conv, as in LDM
    assert "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in keys
    assert checkpoint_family(weights) == "SD1"


def test_reference_net_and_spatial_unet_hold_the_sd_weights_exactly(source, loaded):
    theirs = source.unet.state_dict()
    ref = loaded.reference_net.state_dict()
    assert set(ref) == set(theirs)
    assert all(torch.equal(ref[k], theirs[k]) for k in theirs)
    ours = loaded.unet.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    # Separate models: the ReferenceNet must not share storage with the denoising UNet.
    assert loaded.reference_net.conv_in.weight.data_ptr() != loaded.unet.conv_in.weight.data_ptr()


def test_loaded_unet_gives_the_sd_unet_output_frame_by_frame(source, loaded):
    config = source.config
    gen = torch.Generator().manual_seed(1)
    frames = 3
    sample = torch.randn(1, frames, 4, 4, 4, generator=gen)
    text = torch.randn(1, config.text_length, config.unet.cross_attention_dim, generator=gen)
    music = torch.randn(1, frames, 5, config.unet.music_dim, generator=gen)
    beats = beat_windows(torch.ones(1, frames), 0, frames, config.unet.beat_window)
    with torch.no_grad():
        ours = loaded.unet(sample, 300, text, music, beats)
        for f in range(frames):
            theirs = source.unet(sample[0, f][None], 300, encoder_hidden_states=text).sample
            torch.testing.assert_close(ours[0, f][None], theirs, atol=TOLERANCE, rtol=0)
        ref_out = loaded.reference_net(sample[0, :1], 300, encoder_hidden_states=text).sample
        torch.testing.assert_close(ref_out, source.unet(sample[0, :1], 300, encoder_hidden_states=text).sample, atol=0, rtol=0)


def test_loaded_vae_and_text_encoder_match_their_sources(source, loaded):
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    with torch.no_grad():
        latent = loaded.vae.encode(image).latent_dist.mode()
        torch.testing.assert_close(latent, source.vae.encode(image).latent_dist.mode(), atol=0, rtol=0)
        torch.testing.assert_close(loaded.vae.decode(latent).sample, source.vae.decode(latent).sample, atol=0, rtol=0)
        ids = torch.randint(0, 49408, (2, 77), generator=gen)
        torch.testing.assert_close(
            loaded.text_encoder(ids).last_hidden_state, source.text_encoder(ids).last_hidden_state, atol=0, rtol=0
        )


def test_prompt_encoding_uses_the_tokenizer_and_the_loaded_text_encoder(source, loaded):
    embeds = loaded.encode_prompt("a person dancing")
    assert embeds.shape == (1, 77, source.config.unet.cross_attention_dim)
    ids = loaded.tokenizer(["a person dancing"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(embeds, source.text_encoder(ids).last_hidden_state, atol=0, rtol=0)
    assert not torch.allclose(embeds, loaded.encode_prompt("a cat"))


def test_untrained_parts_are_reported_and_start_as_identity(loaded):
    report = loaded.load_report
    assert set(report.initialised) == {"unet.music_beat", "unet.motion", "mask_encoder"}
    assert report.sources["unet.spatial"] == report.sources["reference_net"] == "tiny_sd15.safetensors"
    for name, p in loaded.unet.named_parameters():
        assert not p.is_meta, name
        if ("music_modules" in name or "beat_modules" in name or "motion_modules" in name) and ".proj_out." in name:
            assert not p.any(), name
    assert not loaded.mask_encoder.conv_out.weight.any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_loading_casts_straight_to_the_target_dtype(source, tmp_path, dtype):
    path = source.write(tmp_path)
    pipe = load_pipeline(base=path, config=source.config, dtype=dtype)
    for module in pipe.modules().values():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if tensor.is_floating_point():
                assert tensor.dtype == dtype, name
    theirs = source.unet.state_dict()
    ours = pipe.reference_net.state_dict()
    assert all(torch.equal(ours[k], theirs[k].to(dtype)) for k in theirs)


def test_ckpt_files_load_through_weights_only(source, tmp_path):
    path = source.write(tmp_path, "tiny_sd15.ckpt")
    pipe = load_pipeline(base=path, config=source.config, with_text_encoder=False)
    theirs = source.vae.state_dict()
    ours = pipe.vae.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert pipe.text_encoder is None


def test_an_sdxl_checkpoint_is_refused_by_name(tmp_path):
    path = L.write_safetensors(tmp_path / "sdxl.safetensors", L.fake_sdxl_keys())
    with pytest.raises(WeightsFileError, match="SDXL.*Stable Diffusion 1.5"):
        load_pipeline(base=path, config=MuseDanceConfig.tiny())


def test_an_sd2_checkpoint_is_refused_by_name(tmp_path):
    path = L.write_safetensors(tmp_path / "sd21.safetensors", L.fake_sd2_keys())
    with pytest.raises(WeightsFileError, match="Stable Diffusion 2"):
        load_pipeline(base=path, config=MuseDanceConfig.tiny())


def test_a_checkpoint_of_another_size_is_refused(source, tmp_path):
    path = source.write(tmp_path)
    bigger = MuseDanceConfig.tiny()
    bigger.unet = UNetConfig(**{**bigger.unet.__dict__, "block_out_channels": (48, 64)})
    with pytest.raises(WeightsFileError, match="another size"):
        load_pipeline(base=path, config=bigger)


def test_an_animatediff_file_given_as_base_is_refused(tmp_path):
    path = L.write_safetensors(
        tmp_path / "mm.safetensors",
        {"down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": torch.zeros(4, 4)},
    )
    with pytest.raises(WeightsFileError, match="AnimateDiff motion module.*animatediff_models"):
        load_pipeline(base=path, config=MuseDanceConfig.tiny())


def test_missing_tokenizer_files_say_where_to_put_them(source, tmp_path):
    from musedance_core.models.text_encoder import TokenizerNotFound

    path = source.write(tmp_path)
    empty = tmp_path / "tokenizer"
    empty.mkdir()
    (empty / "vocab.json").write_text("{}")
    with pytest.raises(TokenizerNotFound, match="merges.txt missing.*models/musedance/tokenizer.*sd1_tokenizer"):
        load_pipeline(base=path, config=source.config, tokenizer=empty)
    pipe = load_pipeline(base=path, config=source.config)  # no tokenizer anywhere: loads, but cannot encode text
    assert pipe.tokenizer is None and any("vocab.json" in note for note in pipe.load_report.notes)
    with pytest.raises(ValueError, match="no tokenizer.*vocab.json"):
        pipe.encode_prompt("a person dancing")


def test_a_diffusers_layout_folder_gives_the_tokenizer(source, tmp_path, tokenizer_dir):
    import shutil

    root = tmp_path / "stable-diffusion-v1-5"
    shutil.copytree(tokenizer_dir, root / "tokenizer")
    pipe = load_pipeline(base=source.write(tmp_path), config=source.config, tokenizer=root)
    assert pipe.encode_prompt("a cat").shape == (1, 77, source.config.unet.cross_attention_dim)
