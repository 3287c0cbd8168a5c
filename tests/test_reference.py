"""Reference attention: numerically the paper's "concatenate along width, self-attend, keep the first half"."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from musedance_core.models.reference import (
    ReferenceBank,
    ReferenceReadProcessor,
    ReferenceWriteProcessor,
    spatial_self_attention_layers,
)


def _layer(channels: int = 16, heads: int = 2) -> Attention:
    torch.manual_seed(0)
    layer = Attention(query_dim=channels, heads=heads, dim_head=channels // heads, processor=AttnProcessor2_0())
    return layer.eval()


def test_read_equals_concat_along_width_and_keep_first_half():
    batch, frames, height, width, channels = 2, 3, 4, 5, 16
    layer = _layer(channels)
    frame_tokens = torch.randn(batch, frames, height, width, channels)
    ref_tokens = torch.randn(batch, height, width, channels)

    # The paper's formulation, with diffusers' stock processor: [x_d | x_R] along W, self-attention, first half.
    joined = torch.cat([frame_tokens, ref_tokens[:, None].expand(-1, frames, -1, -1, -1)], dim=3)
    with torch.no_grad():
        full = layer(joined.reshape(batch * frames, height * 2 * width, channels))
    expected = full.reshape(batch * frames, height, 2 * width, channels)[:, :, :width]

    bank = ReferenceBank()
    bank.tokens["layer"] = ref_tokens.reshape(batch, height * width, channels)
    layer.set_processor(ReferenceReadProcessor("layer", bank))
    with torch.no_grad():
        ours = layer(frame_tokens.reshape(batch * frames, height * width, channels))
    torch.testing.assert_close(ours.reshape(batch * frames, height, width, channels), expected, atol=1e-5, rtol=1e-5)


def test_dropped_rows_are_plain_self_attention_and_kept_rows_see_the_reference():
    batch, frames, tokens, channels = 2, 2, 6, 16
    layer = _layer(channels)
    x = torch.randn(batch * frames, tokens, channels)
    with torch.no_grad():
        plain = layer(x)
    bank = ReferenceBank()
    bank.tokens["layer"] = torch.randn(batch, 4, channels)
    bank.keep = torch.tensor([False, True])
    layer.set_processor(ReferenceReadProcessor("layer", bank))
    with torch.no_grad():
        read = layer(x)
    torch.testing.assert_close(read[:frames], plain[:frames], atol=1e-6, rtol=1e-6)
    assert (read[frames:] - plain[frames:]).abs().max() > 1e-3


def test_empty_bank_is_plain_self_attention_and_writer_stores_inputs():
    layer = _layer()
    x = torch.randn(3, 6, 16)
    with torch.no_grad():
        plain = layer(x)
    bank = ReferenceBank()
    layer.set_processor(ReferenceWriteProcessor("w", bank))
    with torch.no_grad():
        written = layer(x)
    torch.testing.assert_close(written, plain)
    assert torch.equal(bank.tokens["w"], x)
    layer.set_processor(ReferenceReadProcessor("missing", bank))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain)


def test_reference_net_writes_every_layer_the_unet_reads(tiny_pipe, sample_inputs):
    inputs = sample_inputs()
    reads = set(spatial_self_attention_layers(tiny_pipe.unet))
    writes = set(spatial_self_attention_layers(tiny_pipe.reference_net))
    assert reads == writes and len(reads) > 0
    encoding = tiny_pipe.encode_reference(inputs["reference_image"], inputs["mask"], inputs["text_embeds"])
    assert set(encoding.tokens) == reads
    assert len(tiny_pipe.bank) == 0  # the pipeline's bank is emptied after encoding
    for name, layer in spatial_self_attention_layers(tiny_pipe.unet).items():
        assert encoding.tokens[name].shape[-1] == layer.to_q.in_features


def test_reference_image_changes_the_denoiser_output(tiny_pipe, sample_inputs):
    inputs = sample_inputs()
    other = sample_inputs(seed=1)
    kwargs = dict(num_inference_steps=2, guidance_scale=1.0, seed=0)
    common = {k: inputs[k] for k in ("text_embeds", "music_tokens", "beats")}
    a = tiny_pipe(reference_image=inputs["reference_image"], mask=inputs["mask"], **common, **kwargs)
    b = tiny_pipe(reference_image=other["reference_image"], mask=inputs["mask"], **common, **kwargs)
    assert (a - b).abs().max() > 1e-3
