"""Configuration: JSON round trip, clear errors for inconsistent settings."""

from __future__ import annotations

import pytest

from musedance_core.config import MuseDanceConfig, UNetConfig


@pytest.mark.parametrize("make", [MuseDanceConfig.tiny, MuseDanceConfig.sd15])
def test_json_round_trip(make):
    config = make()
    again = MuseDanceConfig.from_json(config.to_json())
    assert again == config
    assert again.unet.block_out_channels == config.unet.block_out_channels  # tuples, not lists


def test_sd15_matches_the_paper():
    config = MuseDanceConfig.sd15()
    assert (config.fps, config.clip_length, config.motion_frames) == (12.0, 48, 2)
    assert config.unet.cross_attention_dim == 768 and config.unet.block_out_channels == (320, 640, 1280, 1280)
    assert config.vae.downscale == 8


def test_unknown_keys_are_errors():
    data = MuseDanceConfig.tiny().to_dict()
    data["unet"]["music_dims"] = 3
    with pytest.raises(ValueError, match="music_dims"):
        MuseDanceConfig.from_dict(data)
    with pytest.raises(ValueError, match=r"unknown keys \['fsp'\]"):
        MuseDanceConfig.from_dict({"fsp": 12})


def test_inconsistent_settings_are_errors():
    with pytest.raises(ValueError, match="exceeds unet.temporal_max_seq_length"):
        MuseDanceConfig(clip_length=63)
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(block_out_channels=(30, 60, 120, 120))
    with pytest.raises(ValueError, match="one entry per block_out_channels"):
        UNetConfig(block_out_channels=(320, 640))
    with pytest.raises(ValueError, match="beat_phase_bins must be 0"):
        UNetConfig(beat_phase_bins=-1)
    with pytest.raises(ValueError, match="beat_window must be 0 or more"):
        UNetConfig(beat_window=-1)


def test_a_checkpoint_config_without_the_phase_setting_reads_as_the_papers_beat_tokens():
    data = MuseDanceConfig.tiny().to_dict()
    del data["unet"]["beat_phase_bins"]  # what checkpoints written before the setting existed hold
    assert MuseDanceConfig.from_dict(data).unet.beat_phase_bins == 0


def test_sd15_configuration_is_stable_diffusion_1_5s_own():
    """The layouts the SD1.5 loader converts into are SD1.5's (values of its published diffusers configs).

    Built with empty parameters (no memory); the parameter counts are those of the SD1.5 UNet, VAE and
    CLIP ViT-L/14 text encoder.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from musedance_core.loading.weights import empty_parameters
    from musedance_core.models.text_encoder import build_text_encoder

    config = MuseDanceConfig.sd15()
    with empty_parameters():
        unet = UNet2DConditionModel(**config.unet.diffusers_kwargs())
        vae = AutoencoderKL(**config.vae.diffusers_kwargs())
        text = build_text_encoder(config.text_encoder)
    u = unet.config
    assert list(u.block_out_channels) == [320, 640, 1280, 1280] and u.layers_per_block == 2
    assert u.cross_attention_dim == 768 and u.attention_head_dim == 8 and u.norm_num_groups == 32
    assert u.flip_sin_to_cos and u.freq_shift == 0 and u.act_fn == "silu" and not u.use_linear_projection
    assert list(u.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert list(u.up_block_types) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert vae.config.scaling_factor == 0.18215 and list(vae.config.block_out_channels) == [128, 256, 512, 512]
    t = text.config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size) == (768, 12, 12, 3072)
    assert (t.vocab_size, t.max_position_embeddings, t.hidden_act) == (49408, 77, "quick_gelu")
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert sum(p.numel() for p in text.parameters()) == 123_060_480
