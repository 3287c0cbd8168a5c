"""The original-layout writers in tests/ldm_layout.py, checked against diffusers' own converters."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_animatediff_checkpoint_to_diffusers,
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

import ldm_layout as L


def _randomized(module: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with every tensor random, so that two swapped tensors cannot compare equal."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in module.state_dict().items()}


def _assert_same(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert set(ours) == set(theirs), (sorted(set(ours) - set(theirs))[:5], sorted(set(theirs) - set(ours))[:5])
    for key, value in ours.items():
        assert theirs[key].shape == value.shape, key
        assert torch.equal(theirs[key], value), key


def _tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=2,
        cross_attention_dim=32,
        norm_num_groups=8,
    )


def _tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=32,
    )


def _tiny_clip() -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=49408,
        max_position_embeddings=77,
    )
    return CLIPTextModel(config)


def _tiny_adapter(mid: bool = True) -> MotionAdapter:
    torch.manual_seed(0)
    return MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=1,
        motion_mid_block_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=8,
        motion_max_seq_length=32,
        use_motion_mid_block=mid,
    )


# --------------------------------------------------------------------------------------------- UNet


def test_unet_round_trips_through_diffusers_converter():
    unet = _tiny_unet()
    sd = _randomized(unet)
    ldm = {L.UNET_PREFIX + k: v for k, v in L.unet_to_ldm(sd, layers_per_block=1, num_blocks=2).items()}
    assert len(ldm) == len(sd)
    assert "model.diffusion_model.output_blocks.1.1.conv.weight" in ldm  # UpBlock2D: upsample at index 1
    assert "model.diffusion_model.input_blocks.2.0.op.weight" in ldm
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in ldm
    back = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    _assert_same(sd, back)


def test_unet_upsample_index_follows_the_attention():
    """An up level with transformers puts its upsample at .2, one without at .1."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=2,
        cross_attention_dim=32,
        norm_num_groups=8,
    )
    sd = _randomized(unet)
    ldm = L.unet_to_ldm(sd, 1, 2)
    assert "output_blocks.1.2.conv.weight" in ldm and "output_blocks.1.1.proj_in.weight" in ldm
    back = convert_ldm_unet_checkpoint({L.UNET_PREFIX + k: v for k, v in ldm.items()}, dict(unet.config))
    _assert_same(sd, back)


def test_unet_unmapped_key_raises():
    sd = _randomized(_tiny_unet())
    with pytest.raises(ValueError, match="no LDM name"):
        L.unet_to_ldm({**sd, "add_embedding.linear_1.weight": torch.zeros(1)}, 1, 2)
    with pytest.raises(ValueError, match="no LDM name"):
        L.unet_to_ldm(sd, 1, 1)  # one level too few: the second level's keys stay unmapped


def test_full_size_sd15_unet_names_and_shapes():
    with torch.device("meta"):
        unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64)
    ldm = L.unet_to_ldm(unet.state_dict(), layers_per_block=2, num_blocks=4)
    assert len(ldm) == 686
    expected = {
        "input_blocks.0.0.weight": (320, 4, 3, 3),
        "time_embed.0.weight": (1280, 320),
        "time_embed.2.weight": (1280, 1280),
        "input_blocks.1.0.in_layers.0.weight": (320,),
        "input_blocks.1.0.in_layers.2.weight": (320, 320, 3, 3),
        "input_blocks.1.0.emb_layers.1.weight": (320, 1280),
        "input_blocks.1.0.out_layers.3.weight": (320, 320, 3, 3),
        "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
        "input_blocks.11.0.out_layers.3.weight": (1280, 1280, 3, 3),
        "middle_block.0.in_layers.2.weight": (1280, 1280, 3, 3),
        "middle_block.1.proj_in.weight": (1280, 1280, 1, 1),
        "middle_block.2.out_layers.3.weight": (1280, 1280, 3, 3),
        "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
        "output_blocks.11.1.transformer_blocks.0.ff.net.2.weight": (320, 1280),
        "out.0.weight": (320,),
        "out.2.weight": (4, 320, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(ldm[key].shape) == shape, key
    assert "output_blocks.11.2.conv.weight" not in ldm and "input_blocks.12.0.op.weight" not in ldm


# ---------------------------------------------------------------------------------------------- VAE


def test_vae_round_trips_through_diffusers_converter():
    vae = _tiny_vae()
    sd = _randomized(vae)
    ldm = L.vae_to_ldm(sd)
    assert ldm["encoder.mid.attn_1.q.weight"].shape == (16, 16, 1, 1)
    assert ldm["decoder.mid.attn_1.proj_out.weight"].shape == (16, 16, 1, 1)
    # diffusers decoder.up_blocks.0 is LDM decoder.up.3; the last LDM level (up.0) has no upsample
    assert torch.equal(ldm["decoder.up.3.block.1.conv1.weight"], sd["decoder.up_blocks.0.resnets.1.conv1.weight"])
    assert "decoder.up.0.upsample.conv.weight" not in ldm and "decoder.up.3.block.1.norm1.weight" in ldm
    assert "encoder.down.0.block.1.nin_shortcut.weight" not in ldm
    assert "encoder.down.1.block.0.nin_shortcut.weight" in ldm  # 8 -> 16 channels
    full = {L.VAE_PREFIX + k: v for k, v in ldm.items()}
    back = convert_ldm_vae_checkpoint(full, dict(vae.config))
    _assert_same(sd, back)


def test_full_size_sd15_vae_key_count():
    with torch.device("meta"):
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
        )
    ldm = L.vae_to_ldm(vae.state_dict())
    assert len(ldm) == 248
    assert tuple(ldm["decoder.up.3.upsample.conv.weight"].shape) == (512, 512, 3, 3)
    assert tuple(ldm["decoder.up.0.block.0.nin_shortcut.weight"].shape) == (128, 256, 1, 1)
    assert tuple(ldm["quant_conv.weight"].shape) == (8, 8, 1, 1)


# --------------------------------------------------------------------------------------------- CLIP


def _flat(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5.6 CLIPTextModel keys have no "text_model." level."""
    return {k.removeprefix("text_model."): v for k, v in sd.items()}


def test_clip_round_trips_and_loads():
    clip = _tiny_clip()
    sd = _randomized(clip)
    ldm = L.clip_to_ldm(sd)
    assert len(ldm) == len(sd)
    assert "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in ldm
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in ldm
    _assert_same(_flat(sd), _flat(convert_ldm_clip_checkpoint(ldm)))
    # the wrapped (older transformers) layout gives the same file
    _assert_same(ldm, L.clip_to_ldm({"text_model." + k.removeprefix("text_model."): v for k, v in sd.items()}))
    with_ids = L.clip_to_ldm(sd, add_position_ids=True)
    ids = with_ids["cond_stage_model.transformer.text_model.embeddings.position_ids"]
    assert ids.dtype == torch.int64 and torch.equal(ids, torch.arange(77)[None])
    fresh = _tiny_clip()
    missing, unexpected = fresh.load_state_dict(_flat(convert_ldm_clip_checkpoint(ldm)), strict=False)
    assert missing == [] and unexpected == []
    with pytest.raises(ValueError, match="not CLIPTextModel"):
        L.clip_to_ldm({"logit_scale": torch.zeros(())})


# ------------------------------------------------------------------------------ single file writers


def test_single_file_writers(tmp_path):
    unet, vae, clip = _tiny_unet(), _tiny_vae(), _tiny_clip()
    sd = L.sd15_single_file(unet.state_dict(), vae.state_dict(), clip.state_dict(), 1, 2, add_position_ids=True)
    n = len(unet.state_dict()) + len(vae.state_dict()) + len(clip.state_dict()) + 1
    assert len(sd) == n
    # two keys sharing one storage (a view) must not break safetensors
    shared = {**sd, "extra.view": sd["model.diffusion_model.out.2.weight"][:1]}
    loaded = load_file(L.write_safetensors(tmp_path / "tiny.safetensors", shared))
    _assert_same(shared, loaded)
    ckpt = torch.load(L.write_ckpt(tmp_path / "tiny.ckpt", sd), weights_only=True)
    assert set(ckpt) == {"state_dict"}
    _assert_same(sd, ckpt["state_dict"])
    bare = torch.load(L.write_ckpt(tmp_path / "bare.ckpt", sd, wrap_state_dict=False), weights_only=True)
    assert set(bare) == set(sd)


# --------------------------------------------------------------------------------------- AnimateDiff


def test_motion_adapter_round_trips_and_pe_matches_diffusers():
    adapter = _tiny_adapter()
    sd = adapter.state_dict()
    original = L.motion_adapter_to_animatediff(sd, pe_length=32)
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0"
    for name in ("attention_blocks.0.to_q.weight", "attention_blocks.1.to_out.0.bias", "norms.0.weight",
                 "norms.1.bias", "ff_norm.weight", "ff.net.0.proj.weight", "ff.net.2.weight"):
        assert f"{key}.{name}" in original, name
    assert "down_blocks.0.motion_modules.0.temporal_transformer.norm.weight" in original
    assert "up_blocks.1.motion_modules.1.temporal_transformer.proj_out.weight" in original
    assert "mid_block.motion_modules.0.temporal_transformer.proj_in.weight" in original
    assert not any("pos_embed" in k for k in original)

    pes = {k: v for k, v in original.items() if k.endswith("pos_encoder.pe")}
    assert len(pes) == 2 * (2 + 4 + 1)  # two attention blocks per module: 2 down, 4 up, 1 mid
    assert pes[f"{key}.attention_blocks.0.pos_encoder.pe"].shape == (1, 32, 32)
    mid = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0"
    assert pes[f"{mid}.attention_blocks.1.pos_encoder.pe"].shape == (1, 32, 64)
    # diffusers' own sinusoidal buffers are an independent check of the table
    theirs = sd["up_blocks.0.motion_modules.1.transformer_blocks.0.pos_embed.pe"]
    up = "up_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0"
    ours = pes[f"{up}.attention_blocks.1.pos_encoder.pe"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)  # theirs is float32 math

    back = convert_animatediff_checkpoint_to_diffusers(original)
    _assert_same({k: v for k, v in sd.items() if not k.endswith("pos_embed.pe")}, back)
    missing, unexpected = _tiny_adapter().load_state_dict(back, strict=False)
    assert unexpected == [] and all(k.endswith("pos_embed.pe") for k in missing)


def test_sinusoidal_table_formula():
    pe = L.sinusoidal_table(24, 6)
    assert pe.shape == (1, 24, 6)
    for p in (0, 5, 23):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert pe[0, p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[0, p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_channels_by_prefix_overrides_the_to_q_width():
    sd = _tiny_adapter(mid=False).state_dict()
    out = L.motion_adapter_to_animatediff(sd, 16, channels_by_prefix={"down_blocks.0.motion_modules.0": 8})
    pe = "temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    assert out[f"down_blocks.0.motion_modules.0.{pe}"].shape == (1, 16, 8)
    assert out[f"down_blocks.1.motion_modules.0.{pe}"].shape == (1, 16, 64)


@pytest.mark.parametrize("version,length,mid", [("v1", 24, False), ("v2", 32, True), ("v3", 32, False)])
def test_animatediff_versions(version, length, mid):
    sd = _tiny_adapter().state_dict()
    out = L.animatediff_layout(sd, version)
    assert any(k.startswith("mid_block.") for k in out) == mid
    assert all(v.shape[1] == length for k, v in out.items() if k.endswith("pos_encoder.pe"))
    assert L.ANIMATEDIFF_PE_LENGTH[version] == length
    assert "down_blocks.0.motion_modules.0.temporal_transformer.norm.weight" in out
    # already-original input: same result
    again = L.animatediff_layout(L.motion_adapter_to_animatediff(sd, 7), version)
    _assert_same(out, again)


def test_animatediff_errors():
    with pytest.raises(ValueError, match="mid_block"):
        L.animatediff_layout(_tiny_adapter(mid=False).state_dict(), "v2")
    with pytest.raises(ValueError, match="unknown"):
        L.animatediff_layout({}, "v4")
    with pytest.raises(ValueError, match="unexpected"):
        L.motion_adapter_to_animatediff({"conv_in.weight": torch.zeros(1)}, 32)


# ---------------------------------------------------------------------------------------- tokenizer


def test_clip_tokenizer_folder(tmp_path):
    folder = L.write_clip_tokenizer(tmp_path / "tokenizer")
    assert {p.name for p in folder.iterdir()} == {
        "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"
    }
    tok = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    assert tok.model_max_length == 77
    ids = tok("a person dancing", padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    assert len(ids) == 77 and max(ids) < 49408
    assert tok.convert_ids_to_tokens(ids[:5]) == [L.BOS_TOKEN, "a</w>", "person</w>", "dancing</w>", L.EOS_TOKEN]
    assert ids[5:] == [tok.pad_token_id] * 72 and tok.pad_token_id == tok.eos_token_id
    for word in ("dance", "cat", "robot"):
        assert tok.convert_ids_to_tokens(tok(word).input_ids) == [L.BOS_TOKEN, f"{word}</w>", L.EOS_TOKEN]
    # unknown words fall back to byte-level pieces, and decoding restores the text
    assert tok.decode(tok("A zebra, dancing!").input_ids, skip_special_tokens=True) == "a zebra , dancing !"


def test_bytes_to_unicode_is_a_bijection_onto_256_characters():
    table = L.bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[ord("a")] == "a" and table[ord(" ")] == "Ġ"


# ------------------------------------------------------------------------------ other architectures


def test_fake_other_architectures():
    xl = L.fake_sdxl_keys()
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in xl
    assert "model.diffusion_model.label_emb.0.0.weight" in xl and "model.diffusion_model.input_blocks.0.0.weight" in xl
    sd2 = L.fake_sd2_keys()
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in sd2
    assert sd2["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape == (320, 1024)
    assert sd2["model.diffusion_model.input_blocks.0.0.weight"].shape == (320, 4, 3, 3)
    # diffusers' own detector agrees on what the fakes are
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    assert infer_diffusers_model_type(xl) == "xl_base"
    assert infer_diffusers_model_type(sd2) == "v2"
