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
    with pytest.raises(ValueError, match="unknown key 'fsp'"):
        MuseDanceConfig.from_dict({"fsp": 12})


def test_inconsistent_settings_are_errors():
    with pytest.raises(ValueError, match="exceeds unet.temporal_max_seq_length"):
        MuseDanceConfig(clip_length=63)
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(block_out_channels=(30, 60, 120, 120))
    with pytest.raises(ValueError, match="one entry per block_out_channels"):
        UNetConfig(block_out_channels=(320, 640))
