"""The MuseDance checkpoint format: bit-exact round trips, storage precisions, partial files, bad files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import ldm_layout as L
from helpers import randomize_temporal_outputs
from musedance_core import MuseDanceConfig, MuseDancePipeline
from musedance_core.loading.checkpoint import FORMAT_VERSION, read_checkpoint_info, save_checkpoint
from musedance_core.loading.loader import load_pipeline
from musedance_core.loading.weights import WeightsFileError
from musedance_core.models.text_encoder import read_tokenizer_files


def _pipe(seed: int = 0) -> MuseDancePipeline:
    pipe = MuseDancePipeline.from_config(MuseDanceConfig.tiny(), seed=seed, text_encoder=True)
    randomize_temporal_outputs(pipe.unet, seed)
    randomize_temporal_outputs(pipe.mask_encoder, seed)
    return pipe


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bytes, so that equality is bit equality (also for NaN and -0.0)."""
    return t.contiguous().view(torch.uint8) if t.is_floating_point() else t


def _assert_bit_identical(a: torch.nn.Module, b: torch.nn.Module, dtype: torch.dtype | None = None) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key, value in sa.items():
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        assert sb[key].dtype == value.dtype, key
        assert torch.equal(_bits(sb[key]), _bits(value)), key


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return L.write_clip_tokenizer(tmp_path_factory.mktemp("tok"))


def test_round_trip_is_bit_exact_and_self_contained(tmp_path, tokenizer_dir):
    pipe = _pipe()
    path = save_checkpoint(
        tmp_path / "musedance_tiny.safetensors", pipe.config, pipe.modules(),
        tokenizer_files=read_tokenizer_files(tokenizer_dir), metadata={"step": "1200"},
    )
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed at the end
    info = read_checkpoint_info(path)
    assert info.format_version == FORMAT_VERSION and info.config == pipe.config
    assert set(info.components) == {"unet", "reference_net", "mask_encoder", "vae", "text_encoder"}
    assert info.extra == {"step": "1200"} and info.dtype == "fp32"

    loaded = load_pipeline(path)  # nothing else: the file is self-contained
    for name, module in pipe.modules().items():
        _assert_bit_identical(module, loaded.modules()[name])
    assert loaded.load_report.initialised == []
    assert loaded.load_report.sources["tokenizer"] == path.name
    prompt = "a robot dancing"
    torch.testing.assert_close(loaded.encode_prompt(prompt), _with_tokenizer(pipe, tokenizer_dir).encode_prompt(prompt))


def _with_tokenizer(pipe, folder):
    from musedance_core.models.text_encoder import load_tokenizer

    pipe.tokenizer = load_tokenizer(folder)
    return pipe


@pytest.mark.parametrize("dtype, name", [(torch.float16, "fp16"), (torch.bfloat16, "bf16")])
def test_half_precision_storage(tmp_path, dtype, name):
    pipe = _pipe(1)
    path = save_checkpoint(tmp_path / f"m_{name}.safetensors", pipe.config, pipe.modules(), dtype=dtype)
    with safe_open(str(path), framework="pt") as f:
        assert f.get_slice("unet.conv_in.weight").get_dtype() == name.upper().replace("FP", "F")
    assert read_checkpoint_info(path).dtype == name
    # Loaded in the stored precision: bit-identical to the source cast to it.
    loaded = load_pipeline(path, dtype=dtype)
    for module_name, module in pipe.modules().items():
        _assert_bit_identical(module, loaded.modules()[module_name], dtype)
    # Loaded as fp32: the stored values, widened exactly.
    wide = load_pipeline(path, dtype="fp32", with_text_encoder=False)
    ref = pipe.unet.conv_in.weight.to(dtype).float()
    assert torch.equal(wide.unet.conv_in.weight, ref)


def test_a_stage2_file_loads_on_top_of_its_base(tmp_path):
    stage1 = _pipe(2)
    base = save_checkpoint(tmp_path / "stage1.safetensors", stage1.config, stage1.modules())
    stage2 = _pipe(2)
    randomize_temporal_outputs(stage2.unet, seed=77)  # "trained" temporal modules
    partial = save_checkpoint(tmp_path / "stage2.safetensors", stage2.config, {"unet": stage2.unet}, temporal_only=True)
    with safe_open(str(partial), framework="pt") as f:
        keys = list(f.keys())
        assert json.loads(f.metadata()["components"]) == ["unet.temporal"]
    assert keys and all(any(k in key for k in ("music_modules", "beat_modules", "motion_modules", "beat_encoder")) for key in keys)
    assert read_checkpoint_info(partial).components == ["unet.temporal"]

    loaded = load_pipeline(partial, base=base)
    merged = loaded.unet.state_dict()
    for key, value in stage2.unet.state_dict().items():
        expected = value if key in keys or f"unet.{key}" in keys else stage1.unet.state_dict()[key]
        assert torch.equal(merged[key], expected), key
    _assert_bit_identical(stage1.reference_net, loaded.reference_net)

    with pytest.raises(WeightsFileError, match="spatial layers.*SD1.5 base"):
        load_pipeline(partial)


def test_a_partial_file_on_a_base_of_another_configuration_is_refused(tmp_path):
    stage1 = _pipe()
    base = save_checkpoint(tmp_path / "stage1.safetensors", stage1.config, stage1.modules())
    other = MuseDanceConfig.tiny()
    other.clip_length = 4
    partial = save_checkpoint(tmp_path / "stage2.safetensors", other, {"unet": stage1.unet}, temporal_only=True)
    with pytest.raises(WeightsFileError, match="different model configurations"):
        load_pipeline(partial, base=base)


def test_a_newer_format_version_is_refused(tmp_path):
    pipe = _pipe()
    path = save_checkpoint(tmp_path / "m.safetensors", pipe.config, {"mask_encoder": pipe.mask_encoder})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["format_version"] = str(FORMAT_VERSION + 1)
    newer = L.write_safetensors(tmp_path / "newer.safetensors", tensors, metadata=meta)
    with pytest.raises(WeightsFileError, match="newer.*update the MuseDance node pack"):
        load_pipeline(newer)


def test_a_file_without_musedance_metadata_is_not_taken_for_a_checkpoint(tmp_path):
    path = L.write_safetensors(tmp_path / "something.safetensors", {"x": torch.zeros(2)})
    with pytest.raises(WeightsFileError, match="not a MuseDance checkpoint"):
        load_pipeline(path)


def test_a_failed_save_leaves_no_file(tmp_path):
    pipe = _pipe()
    target = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(target, pipe.config, pipe.modules(), metadata={"config": "mine"})
    assert list(tmp_path.iterdir()) == []
    # An existing checkpoint survives a save that fails half-way (here: a tensor safetensors cannot store).
    save_checkpoint(target, pipe.config, {"mask_encoder": pipe.mask_encoder})
    before = target.read_bytes()
    broken = torch.nn.Module()
    broken.register_buffer("shared", torch.zeros(4))
    broken.register_buffer("view", broken.shared[:2])
    with pytest.raises(Exception):
        save_checkpoint(target, pipe.config, {"mask_encoder": broken})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_checkpoint_carries_its_recommended_sampler_settings(tmp_path):
    from musedance_core.config import SamplerSettings
    from musedance_core.loading.checkpoint import write_safetensors

    pipe = _pipe()
    recommended = SamplerSettings(steps=12, guidance_scale=2.0, beat_guidance_scale=4.0, reference_start=True)
    path = save_checkpoint(tmp_path / "m.safetensors", pipe.config, pipe.modules(), sampler=recommended)
    assert read_checkpoint_info(path).sampler == recommended
    assert load_pipeline(path).recommended == recommended
    plain = save_checkpoint(tmp_path / "plain.safetensors", pipe.config, pipe.modules())
    assert read_checkpoint_info(plain).sampler is None and load_pipeline(plain).recommended == SamplerSettings()
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.safetensors", pipe.config, pipe.modules(), metadata={"sampler": "{}"})
    with safe_open(str(path), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    for bad, words in (('{"steps": 0}', "steps must be an integer"), ('{"step": 20}', "unknown keys"), ("[", "unreadable")):
        write_safetensors(tmp_path / "bad.safetensors", tensors, dict(meta, sampler=bad))
        with pytest.raises(WeightsFileError, match="recommended sampler settings are unreadable") as err:
            read_checkpoint_info(tmp_path / "bad.safetensors")
        assert words in str(err.value) or words == "unreadable"


def test_the_shipped_default_model_recommends_the_settings_it_was_tuned_with():
    from pathlib import Path

    from musedance_core.config import SamplerSettings

    shipped = Path(__file__).resolve().parents[1] / "models" / "musedance" / "musedance_default.safetensors"
    assert read_checkpoint_info(shipped).sampler == SamplerSettings(
        steps=20, guidance_scale=2.5, beat_guidance_scale=5.0, noise_share=0.0, reference_start=True)
