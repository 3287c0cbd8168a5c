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


def test_sampler_compiles_the_unet_once_and_reuses_it(tiny_pipe, sample_inputs):
    torch._dynamo.reset()
    pipe = tiny_pipe
    randomize_temporal_outputs(pipe.unet)
    k = pipe.config.clip_length
    inputs = sample_inputs(frames=2 * k)  # two clips of the same shape
    settings = dict(num_inference_steps=2, guidance_scale=2.0, beat_guidance_scale=3.0)
    eager = pipe(**inputs, **settings)
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward  # runs the traced graph as it is

    compiled = pipe.compile_unet(backend=counting_backend)
    assert pipe.compile_unet(backend=counting_backend) is compiled
    stops = []
    first = pipe(**inputs, **settings, compile_unet=True, interrupt=lambda: stops.append(1))
    assert len(graphs) == 1  # one graph for every step of both clips: no graph breaks, no recompiles
    second = pipe(**inputs, **settings, compile_unet=True)
    assert len(graphs) == 1  # the next video reuses it
    torch.testing.assert_close(first, eager, rtol=0, atol=1e-5)
    torch.testing.assert_close(second, eager, rtol=0, atol=1e-5)
    # After every step (and before each clip's decode), not from hooks inside the traced UNet.
    assert len(stops) == 2 * (settings["num_inference_steps"] + -(-k // 8)), len(stops)
