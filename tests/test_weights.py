"""Reading weight files: lazy safetensors, weights-only pickles, and every kind of bad file."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

import ldm_layout as L
from musedance_core.config import MuseDanceConfig
from musedance_core.loading.loader import load_pipeline
from musedance_core.loading.weights import (
    WeightsFileError,
    assign_weights,
    empty_parameters,
    initialise_missing,
    missing_parameters,
    open_weights,
)
from musedance_core.models.temporal import MotionModule


@pytest.fixture
def tensors():
    gen = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(3, 4, generator=gen),
        "b.bias": torch.randn(7, generator=gen).to(torch.bfloat16),
        "steps": torch.tensor([5, 6], dtype=torch.int64),
    }


def test_safetensors_are_read_one_by_one_and_cast(tmp_path, tensors):
    path = L.write_safetensors(tmp_path / "w.safetensors", tensors, metadata={"note": "x"})
    weights = open_weights(path)
    assert sorted(weights) == sorted(tensors) and weights.metadata == {"note": "x"}
    assert weights.shape("a.weight") == (3, 4)
    for key, value in tensors.items():
        assert weights[key].dtype == value.dtype and torch.equal(weights[key], value)
    half = open_weights(path, dtype=torch.float16)
    assert half["a.weight"].dtype == torch.float16 and torch.equal(half["a.weight"], tensors["a.weight"].half())
    assert half["steps"].dtype == torch.int64  # integers are never cast
    with pytest.raises(KeyError):
        weights["nope"]


def test_ckpt_files_are_unwrapped_and_loaded_weights_only(tmp_path, tensors):
    path = L.write_ckpt(tmp_path / "w.ckpt", tensors)  # {"state_dict": ...}, as Lightning saves
    weights = open_weights(path)
    assert sorted(weights) == sorted(tensors)
    assert torch.equal(weights["a.weight"], tensors["a.weight"])


class _RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(WeightsFileError, match="would run code"):
        open_weights(path)
    assert not marker.exists()
    # A plain (non-zip) pickle with the same payload, as old .bin/.pt files are.
    raw = tmp_path / "evil.pt"
    raw.write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=2))
    with pytest.raises(WeightsFileError):
        open_weights(raw)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_a_truncated_file_is_reported_as_such(tmp_path, tensors, suffix):
    path = tmp_path / f"w{suffix}"
    (L.write_safetensors if suffix == ".safetensors" else L.write_ckpt)(path, tensors)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(WeightsFileError, match="truncated"):
        open_weights(path)


def test_missing_files_and_unknown_types(tmp_path):
    with pytest.raises(WeightsFileError, match="does not exist"):
        open_weights(tmp_path / "nothing.safetensors")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(WeightsFileError, match="unknown weight file type"):
        open_weights(other)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(64))
    with pytest.raises(WeightsFileError, match="is not a safetensors file"):
        open_weights(garbage)


def test_not_a_safetensors_file_is_told_apart_from_a_truncated_one(tmp_path, tensors):
    """The torch-free header reader (what the nodes check at validation) names the real problem of each file."""
    from musedance_core.loading.formats import safetensors_problem

    good = tmp_path / "good.safetensors"
    L.write_safetensors(good, tensors)
    data = good.read_bytes()
    L.write_ckpt(tmp_path / "w.ckpt", tensors)
    files = {
        "cut_in_tensors": data[:-4],
        "cut_in_header": data[:20],
        "empty": b"",
        "web_page": b"<!DOCTYPE html><html><body>Sign in to download</body></html>",
        "pickle": (tmp_path / "w.ckpt").read_bytes(),  # a PyTorch checkpoint renamed
    }
    expected = {"cut_in_tensors": "is truncated: its header describes", "cut_in_header": "is truncated (20 bytes",
                "empty": "is empty or truncated (0 bytes)", "web_page": "is not a safetensors file",
                "pickle": "is not a safetensors file"}
    assert safetensors_problem(good) is None
    for name, content in files.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        problem = safetensors_problem(path)
        assert problem is not None and problem.startswith(f"{name}.safetensors {expected[name]}"), problem
        with pytest.raises(WeightsFileError, match=expected[name].split(" (")[0].split(":")[0]):
            open_weights(path)


def test_a_truncated_musedance_checkpoint_fails_cleanly(tmp_path):
    from musedance_core import MuseDancePipeline
    from musedance_core.loading.checkpoint import save_checkpoint

    pipe = MuseDancePipeline.from_config(MuseDanceConfig.tiny())
    path = save_checkpoint(tmp_path / "m.safetensors", pipe.config, pipe.modules())
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(WeightsFileError, match="truncated"):
        load_pipeline(path)


def test_empty_parameters_cost_nothing_and_keep_buffers():
    with empty_parameters():
        module = MotionModule(32, num_heads=2, norm_num_groups=8, max_seq_length=16)
    assert all(p.is_meta for p in module.parameters())
    assert all(not b.is_meta for b in module.buffers())  # the positional table is computed, not loaded
    assert nn.Linear(2, 2).weight.device.type == "cpu"  # outside the block, nothing changed


def test_assignment_uses_the_tensors_themselves_and_checks_shapes(tmp_path):
    with empty_parameters():
        layer = nn.Linear(4, 3)
    weight, bias = torch.randn(3, 4), torch.randn(3)
    assign_weights(layer, {"weight": weight, "bias": bias}, "layer", tmp_path / "f.safetensors")
    assert layer.weight.data_ptr() == weight.data_ptr()  # no copy
    with empty_parameters():
        other = nn.Linear(4, 3)
    with pytest.raises(WeightsFileError, match="other shapes.*weight \\(file \\(4, 4\\), model \\(3, 4\\)\\)"):
        assign_weights(other, {"weight": torch.zeros(4, 4)}, "layer", tmp_path / "f.safetensors")
    with pytest.raises(WeightsFileError, match="no place in the model"):
        assign_weights(other, {"extra": torch.zeros(1)}, "layer", tmp_path / "f.safetensors")


def test_initialising_what_no_file_gave_starts_the_module_as_the_constructor_would():
    with empty_parameters():
        module = MotionModule(32, num_heads=2, norm_num_groups=8, max_seq_length=16)
    names = initialise_missing(module, "cpu", torch.float16, seed=0)
    assert names and missing_parameters(module) == []
    assert all(p.dtype == torch.float16 for p in module.parameters())
    assert not module.proj_out.weight.any()  # zero output layer: identity
    assert module.proj_in.weight.std() > 0  # the rest has its usual random init
    x = torch.randn(8, 32, 2, 2).half()
    with torch.no_grad():
        torch.testing.assert_close(module.float()(x.float(), 8), x.float())


def test_a_module_given_only_in_part_is_an_error(tmp_path):
    with empty_parameters():
        module = MotionModule(32, num_heads=2, norm_num_groups=8, max_seq_length=16)
    assign_weights(module, {"proj_out.weight": torch.ones(32, 32)}, "motion", tmp_path / "f.safetensors")
    with pytest.raises(WeightsFileError, match="only in part"):
        initialise_missing(module, "cpu", torch.float32)


def test_cast_tensors_never_share_the_staging_buffer(tmp_path, tensors):
    path = L.write_safetensors(tmp_path / "w.safetensors", {"x": torch.randn(64), "y": torch.randn(8, 8)})
    weights = open_weights(path, dtype=torch.bfloat16)
    x, y = weights["x"], weights["y"]  # both read through the same staging buffer
    assert x.untyped_storage().data_ptr() != y.untyped_storage().data_ptr()
    reference = open_weights(path)
    assert torch.equal(x, reference["x"].bfloat16()) and torch.equal(y, reference["y"].bfloat16())
