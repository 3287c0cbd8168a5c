"""Each cut in the sampler's work per step gives what the computation it replaced gave (the whole video's
check against frames recorded before the cuts is test_sampler_golden.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from helpers import randomize_temporal_outputs
from musedance_core.models.attention import SharedKeysValuesProcessor, project_keys_values
from musedance_core.models.reference import ReferenceBank, ReferenceReadProcessor
from musedance_core.models.temporal import MotionModule, beat_windows


def _masked_reference_attention(attn: Attention, hidden: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor):
    """The reference attention as it was computed before: keys and values of [frame tokens, reference tokens]
    projected for every frame, the reference masked out of the rows that do not keep it."""
    videos, frames = ref.shape[0], hidden.shape[0] // ref.shape[0]
    kv = torch.cat([hidden, ref.repeat_interleave(frames, dim=0)], dim=1)
    own = torch.ones(hidden.shape[0], 1, 1, hidden.shape[1], dtype=torch.bool)
    mask = torch.cat([own, keep.repeat_interleave(frames).view(-1, 1, 1, 1).expand(-1, 1, 1, ref.shape[1])], -1)
    q, k, v = (t.view(t.shape[0], -1, attn.heads, t.shape[-1] // attn.heads).transpose(1, 2)
               for t in (attn.to_q(hidden), attn.to_k(kv), attn.to_v(kv)))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2)
    return attn.to_out[0](out)


def test_reference_keys_values_are_projected_once_and_dropped_rows_skip_the_reference():
    torch.manual_seed(0)
    attn = Attention(query_dim=32, heads=4, dim_head=8).eval()
    bank = ReferenceBank()
    attn.set_processor(ReferenceReadProcessor("layer", bank))
    ref = torch.randn(1, 7, 32)
    projected = []
    attn.to_k.register_forward_hook(lambda module, args, out: projected.append(args[0].shape[1]))
    for keep in (torch.tensor([False, True]), torch.tensor([False, True, True]), torch.tensor([True, False, True])):
        bank.fill({"layer": ref}, len(keep), keep=keep)
        hidden = torch.randn(len(keep) * 3, 5, 32)  # three frames per row
        expected = _masked_reference_attention(attn, hidden, bank.tokens["layer"], keep)
        projected.clear()
        with torch.no_grad():
            first = attn(hidden)
            second = attn(hidden + 1)
        torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(first, second)
        # The reference's 7 tokens once for the video, the frames' own 5 in every call.
        assert projected == [5, 7, 5], projected
    with torch.enable_grad():  # training: nothing is kept between calls, the graph stays whole
        bank.fill({"layer": ref.requires_grad_()}, 2, keep=torch.tensor([True, True]))
        attn(torch.randn(4, 5, 32)).sum().backward()
        assert ref.grad is not None and not bank._projected


def test_frames_share_one_projection_of_the_text():
    torch.manual_seed(0)
    attn = Attention(query_dim=32, cross_attention_dim=16, heads=4, dim_head=8).eval()
    text, hidden = torch.randn(2, 9, 16), torch.randn(2 * 3, 5, 32)
    with torch.no_grad():
        expected = AttnProcessor2_0()(attn, hidden, encoder_hidden_states=text.repeat_interleave(3, dim=0))
        shared = SharedKeysValuesProcessor()(attn, hidden, encoder_hidden_states=project_keys_values(attn, text))
        plain = SharedKeysValuesProcessor()(attn, hidden, encoder_hidden_states=text.repeat_interleave(3, dim=0))
    torch.testing.assert_close(shared, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=1e-5)


def test_motion_module_with_context_equals_animatediff_over_the_joined_frames():
    torch.manual_seed(0)
    module = MotionModule(32, num_heads=4, norm_num_groups=8, max_seq_length=16).eval()
    randomize_temporal_outputs(module)
    batch, frames, context_frames = 2, 5, 2
    hidden = torch.randn(batch * frames, 32, 3, 4)
    context = torch.randn(batch * context_frames, 32, 3, 4)
    joined = torch.cat([context.view(batch, context_frames, 32, 3, 4), hidden.view(batch, frames, 32, 3, 4)], 1)
    with torch.no_grad():
        everything = AnimateDiffTransformer3D.forward(module, joined.flatten(0, 1), num_frames=frames + context_frames)
        expected = everything.view(batch, -1, 32, 3, 4)[:, context_frames:].flatten(0, 1)
        out = module(hidden, frames, context)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert (expected - hidden).abs().max() > 1e-2  # the module does something the check can see


def test_a_clips_conditions_made_once_give_the_steps_what_the_raw_inputs_give(tiny_pipe):
    """clip_conditions projects the text, music and beat keys and values once; a step given them equals a step
    given the raw inputs, also for a row whose music tokens are all alike (guidance's unconditional row has
    zeros), whose music attention is skipped, and the music modules project nothing in the steps."""
    unet = tiny_pipe.unet
    randomize_temporal_outputs(unet)
    cfg = tiny_pipe.config.unet
    torch.manual_seed(0)
    sample, text = torch.randn(2, 4, 4, 4, 4), torch.randn(2, 77, cfg.cross_attention_dim)
    music = torch.randn(2, 4, 6, cfg.music_dim)
    music[0] = torch.randn(cfg.music_dim)  # every token alike (zero in guidance; not here, so values are not 0)
    windows = beat_windows(torch.tensor([[1.0, 0, 0, 1, 0, 0]]).expand(2, -1), 1, 4, cfg.beat_window)
    music_projections = []
    for name, module in unet.conditioned_modules().items():
        if ".music_modules." in name:
            module.cross_attn.to_k.register_forward_hook(lambda *args: music_projections.append(1))
    with torch.no_grad():
        expected = unet(sample, 300, text, music, windows)
        conditions = unet.clip_conditions(text, music, windows)
        assert all(kv.uniform == (True,) * 4 + (False,) * 4 for name, kv in conditions.keys_values.items()
                   if ".music_modules." in name)
        music_projections.clear()
        first = unet(sample, 300, conditions=conditions)
        second = unet(sample * 0.5, 700, conditions=conditions)
    assert not music_projections
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(second, unet(sample * 0.5, 700, text, music, windows), atol=1e-5, rtol=1e-5)


def test_guidance_rows_one_at_a_time_make_the_same_video(tiny_pipe, sample_inputs):
    randomize_temporal_outputs(tiny_pipe.unet)
    inputs = sample_inputs(frames=12)  # two clips, the second with motion context
    settings = dict(num_inference_steps=3, guidance_scale=3.0, beat_guidance_scale=5.0, seed=2)
    batched = tiny_pipe(**inputs, **settings)
    calls = []
    hook = tiny_pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(args[0].shape[0]) if "conditions" in kwargs else None,
        with_kwargs=True)
    try:
        single = tiny_pipe(**inputs, **settings, one_row_at_a_time=True)
    finally:
        hook.remove()
    assert calls and set(calls) == {1}  # every step's rows went through the UNet one by one
    torch.testing.assert_close(single, batched, atol=1e-5, rtol=0)


def test_tiled_decode_covers_the_frame_and_stays_close_to_the_whole_decode(tiny_pipe):
    import pytest

    latents = torch.randn(3, 4, 16, 16)  # 128x128 frames, tiles of 64
    whole = tiny_pipe.decode(latents, 2)
    tiled = tiny_pipe.decode(latents, 2, tile_size=64)
    assert tiled.shape == whole.shape == (3, 128, 128, 3) and not torch.equal(tiled, whole)
    # The first tile's part outside the blended seams is that tile decoded on its own.
    corner = tiny_pipe.decode(latents[:, :, :8, :8], 2)
    torch.testing.assert_close(tiled[:, :48, :48], corner[:, :48, :48], atol=1e-5, rtol=0)
    assert (tiled - whole).abs().mean() < 0.1  # a random VAE's global attention sees other tiles; a real one less
    assert not tiny_pipe.vae.use_tiling  # restored after the call
    with pytest.raises(ValueError, match="vae_tile_size must be 0"):
        next(tiny_pipe.iter_clips(text_embeds=torch.zeros(1, 77, 32), music_tokens=torch.zeros(8, 6, 32),
                                  beats=torch.zeros(8), reference_image=torch.rand(32, 32, 3), vae_tile_size=30))


def test_idle_modules_wait_on_the_offload_device_while_the_unet_runs_and_the_frames_stay_the_same(
        tiny_pipe, sample_inputs, monkeypatch):
    """offload_idle: the modules the loop does not use move there after their last use (the reference and a
    continued video's frames encoded) and before the first UNet pass, none is called while away, and all come
    back when the run ends, also when it is stopped. "cpu:0" stands for the offload device: on a CPU it holds
    the weights where "cpu" does, and the recorded moves tell the two apart."""
    import pytest

    from musedance_core.sampling.pipeline import GenerationStopped

    randomize_temporal_outputs(tiny_pipe.unet)
    inputs = sample_inputs(frames=12)
    settings = dict(num_inference_steps=2, guidance_scale=3.0, seed=2, clip_length=6, motion_frames=2)
    plain = tiny_pipe(**inputs, **settings)
    continued = tiny_pipe(**inputs, **settings, start_frame=6, context_frames=plain[:6])

    idle = tiny_pipe.idle_while_sampling()
    names = {id(module): name for name, module in idle.items()}
    events = []
    real_to = torch.nn.Module.to

    def recorded_to(module, *args, **kwargs):
        if id(module) in names:
            events.append(("to", names[id(module)], str(kwargs.get("device", args[0] if args else None))))
        return real_to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", recorded_to)
    for name, module in {**idle, "unet": tiny_pipe.unet}.items():
        module.register_forward_pre_hook(lambda module, args, name=name: events.append(("call", name)))

    def check(run: list) -> None:
        away = [i for i, e in enumerate(run) if e[0] == "to" and e[2] == "cpu:0"]
        back = [i for i, e in enumerate(run) if e[0] == "to" and e[2] == "cpu"]
        unet = [i for i, e in enumerate(run) if e == ("call", "unet")]
        used = [i for i, e in enumerate(run) if e[0] == "call" and e[1] != "unet"]
        assert sorted(run[i][1] for i in away) == sorted(run[i][1] for i in back) == sorted(idle)
        assert max(used) < min(away) and max(away) < min(unet) and max(unet or away) < min(back)

    offloaded = tiny_pipe(**inputs, **settings, offload_idle="cpu:0")
    assert {name for kind, name, *_ in events if kind == "call"} >= {"reference_net", "mask_encoder", "vae_encoder"}
    check(events)
    torch.testing.assert_close(offloaded, plain, atol=0, rtol=0)
    events.clear()
    again = tiny_pipe(**inputs, **settings, start_frame=6, context_frames=plain[:6], offload_idle="cpu:0")
    assert ("call", "vae_encoder") in events  # the continued video's last frames, before the modules leave
    check(events)
    torch.testing.assert_close(again, continued, atol=0, rtol=0)
    events.clear()
    with pytest.raises(GenerationStopped):
        tiny_pipe(**inputs, **settings, offload_idle="cpu:0", callback=lambda info: True)
    check(events)
    with pytest.raises(ValueError, match="offload_idle must be a device"):
        tiny_pipe(**inputs, **settings, offload_idle="elsewhere")


def test_the_modules_used_and_idle_while_sampling_are_all_the_modules_once(tiny_config):
    from musedance_core import MuseDancePipeline

    pipe = MuseDancePipeline.from_config(tiny_config, text_encoder=True)
    groups = [pipe.used_while_sampling(), pipe.idle_while_sampling()]
    assert "text_encoder" in groups[1] and "unet" in groups[0]
    grouped = [id(p) for group in groups for module in group.values() for p in module.parameters()]
    every = [id(p) for module in pipe.modules().values() for p in module.parameters()]
    assert len(grouped) == len(set(grouped)) and set(grouped) == set(every)
