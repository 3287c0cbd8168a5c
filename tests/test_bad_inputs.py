"""Every bad input raises a ValueError naming the argument, before any model runs."""

from __future__ import annotations

import pytest
import torch


def _nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


CASES = {
    "beats shorter than music": (lambda i: {"beats": i["beats"][:-1]}, "music_tokens has 10 frames but beats has 9"),
    "beats not binary": (lambda i: {"beats": i["beats"] * 0.5}, "beats must hold only 0"),
    "beats 2-D": (lambda i: {"beats": i["beats"][None]}, "beats must be a 1-D vector"),
    "image side not multiple of 8": (
        lambda i: {"reference_image": i["reference_image"][:30], "mask": i["mask"][:30]},
        "reference_image sides must be positive multiples of 8",
    ),
    "image with alpha": (
        lambda i: {"reference_image": torch.cat([i["reference_image"], torch.ones(32, 32, 1)], -1)},
        "reference_image must have 3 channels",
    ),
    "image channels first": (lambda i: {"reference_image": i["reference_image"].permute(2, 0, 1)}, "3 channels"),
    "image out of range": (lambda i: {"reference_image": i["reference_image"] * 255}, r"reference_image values must lie in \[0, 1\]"),
    "NaN image": (lambda i: {"reference_image": _nan(i["reference_image"])}, "reference_image contains NaN"),
    "NaN mask": (lambda i: {"mask": _nan(i["mask"])}, "mask contains NaN"),
    "NaN music": (lambda i: {"music_tokens": _nan(i["music_tokens"])}, "music_tokens contains NaN"),
    "NaN text": (lambda i: {"text_embeds": _nan(i["text_embeds"])}, "text_embeds contains NaN"),
    "NaN beats": (lambda i: {"beats": _nan(i["beats"])}, "beats contains NaN"),
    "mask size": (lambda i: {"mask": i["mask"][:16]}, "mask must be"),
    "mask out of range": (lambda i: {"mask": i["mask"] * 2}, r"mask values must lie in \[0, 1\]"),
    "music width": (lambda i: {"music_tokens": i["music_tokens"][..., :5]}, "music_tokens must be"),
    "text width": (lambda i: {"text_embeds": i["text_embeds"][..., :5]}, "text_embeds must have shape"),
    "steps zero": (lambda i: {"num_inference_steps": 0}, "num_inference_steps must be an integer"),
    "steps too many": (lambda i: {"num_inference_steps": 1001}, "num_inference_steps must be an integer"),
    "steps float": (lambda i: {"num_inference_steps": 2.5}, "num_inference_steps must be an integer"),
    "guidance below one": (lambda i: {"guidance_scale": 0.5}, "guidance_scale must be in"),
    "guidance too large": (lambda i: {"guidance_scale": 31.0}, "guidance_scale must be in"),
    "guidance NaN": (lambda i: {"guidance_scale": float("nan")}, "guidance_scale must be in"),
    "eta": (lambda i: {"eta": 1.5}, "eta must be in"),
    "noise share": (lambda i: {"noise_share": 1.5}, "noise_share must be in"),
    "noise share negative": (lambda i: {"noise_share": -0.1}, "noise_share must be in"),
    "reference start not a flag": (lambda i: {"reference_start": "yes"}, "reference_start must be True or False"),
    "clip too long": (lambda i: {"clip_length": 63}, "exceeds the model's temporal positional encoding"),
    "dtype": (lambda i: {"dtype": "fp64"}, "dtype must be one of"),
    "both references": (lambda i: {"reference": object()}, "either reference_image or reference"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_clear_error_before_any_model_runs(tiny_pipe, sample_inputs, case):
    change, message = CASES[case]
    inputs = sample_inputs(frames=10)
    calls = []
    for module in (tiny_pipe.unet, tiny_pipe.reference_net, tiny_pipe.vae):
        module.register_forward_pre_hook(lambda *a: calls.append(1))
    kwargs = dict(inputs, num_inference_steps=2, guidance_scale=2.0)
    kwargs.update(change(inputs))
    with pytest.raises(ValueError, match=message):
        tiny_pipe(**kwargs)
    assert calls == []


def test_missing_reference_is_an_error(tiny_pipe, sample_inputs):
    inputs = sample_inputs()
    del inputs["reference_image"]
    with pytest.raises(ValueError, match="give reference_image"):
        tiny_pipe(**inputs)
