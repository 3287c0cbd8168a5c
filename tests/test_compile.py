"""The hot paths trace with torch.compile(fullgraph=True): any graph break would raise here.

The "eager" backend runs Dynamo's full tracing (where graph breaks are found) without generating
code, which keeps this check to seconds on a CPU.
"""

from __future__ import annotations

import torch

from helpers import randomize_temporal_outputs
from musedance_core.models.reference import spatial_self_attention_layers
from musedance_core.models.temporal import beat_windows


def test_unet_with_reference_and_motion_context_compiles_without_graph_breaks(tiny_pipe, sample_inputs):
    torch._dynamo.reset()
    pipe = tiny_pipe
    randomize_temporal_outputs(pipe.unet)
    inputs = sample_inputs()
    encoding = pipe.encode_reference(inputs["reference_image"], inputs["mask"], inputs["text_embeds"])
    pipe.bank.fill(encoding.tokens, 2, keep=torch.tensor([False, True]))
    cfg = pipe.config.unet
    text = torch.randn(2, 77, cfg.cross_attention_dim)
    beats = beat_windows(torch.ones(2, 5), 0, 5, cfg.beat_window)
    with torch.no_grad():
        _, context = pipe.unet(torch.randn(2, 2, 4, 4, 4), 0, text, torch.randn(2, 2, 6, cfg.music_dim),
                               beats[:, :2], return_motion_context=True)
        x = torch.randn(2, 5, 4, 4, 4)
        music = torch.randn(2, 5, 6, cfg.music_dim)
        expected = pipe.unet(x, 500, text, music, beats, motion_context=context)
        compiled = torch.compile(pipe.unet, fullgraph=True, backend="eager")
        out = compiled(x, 500, text, music, beats, motion_context=context)
    torch.testing.assert_close(out, expected)


def test_reference_net_writer_compiles_without_graph_breaks(tiny_pipe):
    torch._dynamo.reset()
    cfg = tiny_pipe.config.unet
    latent = torch.randn(1, 4, 4, 4)
    text = torch.randn(1, 77, cfg.cross_attention_dim)
    compiled = torch.compile(tiny_pipe.reference_net, fullgraph=True, backend="eager")
    with torch.no_grad():
        compiled(latent, 0, encoder_hidden_states=text)
    assert set(tiny_pipe.bank.tokens) == set(spatial_self_attention_layers(tiny_pipe.reference_net))
