"""AnimateDiff motion-module files (original key names, v1/v2/v3) into the MuseDance UNet's motion modules."""

from __future__ import annotations

import pytest
import torch

import ldm_layout as L
from musedance_core.loading.animatediff import inspect_motion_module
from musedance_core.loading.loader import load_pipeline
from musedance_core.loading.weights import WeightsFileError, open_weights
from tiny_files import tiny_motion_adapter, tiny_sd15, write_animatediff

# Same weights, same ops (diffusers' AnimateDiffTransformer3D on both sides): fp32 rounding only.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    source = tiny_sd15(seed=3)
    return source, source.write(tmp_path_factory.mktemp("sd"))


def _module_pairs(pipe, adapter):
    """(ours, theirs) for every motion module the adapter has, by its diffusers name."""
    ours = dict(pipe.unet.named_modules())
    theirs = dict(adapter.named_modules())
    names = sorted(n for n in theirs if n.rsplit(".", 1)[0].endswith("motion_modules") and n[-1].isdigit())
    return [(n, ours[n], theirs[n]) for n in names]


@pytest.mark.parametrize("version, suffix", [("v2", ".ckpt"), ("v2", ".safetensors"), ("v3", ".safetensors"), ("v1", ".ckpt")])
def test_motion_modules_match_the_adapter_they_came_from(base, tmp_path, version, suffix):
    source, base_path = base
    pe_length = L.ANIMATEDIFF_PE_LENGTH[version]
    adapter = tiny_motion_adapter(source.config, seed=5, max_seq_length=pe_length).eval()
    path = write_animatediff(adapter, tmp_path / f"mm_{version}{suffix}", version)
    info = inspect_motion_module(open_weights(path))
    assert (info.version, info.pe_length, info.has_mid_block) == (version, pe_length, version == "v2")

    pipe = load_pipeline(base=base_path, motion_module=path, config=source.config)
    assert pipe.load_report.sources["unet.motion"] == path.name
    pairs = [pair for pair in _module_pairs(pipe, adapter) if version == "v2" or not pair[0].startswith("mid_block")]
    assert len(pairs) == (7 if version == "v2" else 6)  # 1 + 1 down, 1 mid, 2 + 2 up (tiny layout; no mid in v1/v3)
    gen = torch.Generator().manual_seed(0)
    frames = min(16, pe_length)
    for name, ours, theirs in pairs:
        channels = ours.proj_in.in_features
        x = torch.randn(2 * frames, channels, 3, 3, generator=gen)
        with torch.no_grad():
            expected = theirs(x, num_frames=frames)
            got = ours(x, frames)
        torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0, msg=name)
        assert (got - x).abs().max() > 1e-3  # the loaded module is not the identity

    mid = pipe.unet.mid_block.motion_modules[0]
    if version == "v2":
        assert mid.proj_out.weight.any()
    else:  # no mid-block module in the file: it starts as the identity, and the report says so
        assert not mid.proj_out.weight.any()
        assert "unet.motion" in pipe.load_report.initialised


def test_positional_table_is_extended_past_the_files_length(base, tmp_path):
    """v1 files hold 24 rows; K + M up to the model's 64 must work, with the file's rows first."""
    source, base_path = base
    adapter = tiny_motion_adapter(source.config, seed=6, max_seq_length=24)
    file_tables = L.animatediff_layout(adapter.state_dict(), "v1")
    # Make the file's rows recognisable: a file whose table differs from the sinusoid must win where it has rows.
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    file_tables[key] = file_tables[key] + 0.5
    path = L.write_safetensors(tmp_path / "mm_sd_v15.safetensors", file_tables)
    pipe = load_pipeline(base=base_path, motion_module=path, config=source.config)
    table = pipe.unet.down_blocks[0].motion_modules[0].transformer_blocks[0].pos_embed.pe
    assert table.shape[1] == source.config.unet.temporal_max_seq_length
    torch.testing.assert_close(table[:, :24], file_tables[key], atol=0, rtol=0)
    continued = L.sinusoidal_table(table.shape[1], table.shape[2])
    torch.testing.assert_close(table[:, 24:], continued[:, 24:], atol=1e-5, rtol=0)
    # A clip of K + M = 40 frames (longer than the file's 24) runs through the motion module.
    module = pipe.unet.down_blocks[0].motion_modules[0]
    x = torch.randn(30, module.proj_in.in_features, 2, 2)
    context = torch.randn(10, module.proj_in.in_features, 2, 2)
    with torch.no_grad():
        assert module(x, 30, context).shape == x.shape


def test_a_motion_module_for_another_unet_is_refused(base, tmp_path):
    source, base_path = base
    adapter = tiny_motion_adapter(source.config, block_out_channels=(48, 64))
    path = write_animatediff(adapter, tmp_path / "mm_sdxl.safetensors", "v2")
    with pytest.raises(WeightsFileError, match="other shapes"):
        load_pipeline(base=base_path, motion_module=path, config=source.config)


def test_an_sd_checkpoint_given_as_motion_module_is_refused(base):
    source, base_path = base
    with pytest.raises(WeightsFileError, match="not an AnimateDiff motion module.*models/checkpoints"):
        load_pipeline(base=base_path, motion_module=base_path, config=source.config)


def test_the_checkpoints_own_motion_modules_win_over_an_animatediff_file(base, tmp_path):
    from musedance_core.loading.checkpoint import save_checkpoint

    source, base_path = base
    adapter = tiny_motion_adapter(source.config, seed=9)
    mm = write_animatediff(adapter, tmp_path / "mm.safetensors", "v2")
    first = load_pipeline(base=base_path, config=source.config, with_text_encoder=False)
    with torch.no_grad():
        first.unet.mid_block.motion_modules[0].proj_out.weight.fill_(0.25)
    ckpt = save_checkpoint(tmp_path / "trained.safetensors", source.config, {"unet": first.unet}, temporal_only=True)
    pipe = load_pipeline(ckpt, base=base_path, motion_module=mm, with_text_encoder=False)
    assert pipe.load_report.sources["unet.motion"] == "trained.safetensors"
    assert torch.all(pipe.unet.mid_block.motion_modules[0].proj_out.weight == 0.25)
    assert any("mm.safetensors" in note for note in pipe.load_report.notes)
