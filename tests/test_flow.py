"""DabFusion's latent flow auto-encoder (musedance_core/models/flow.py): warping, full-resolution composition,
the mask's limit, and that its flow predictor learns the motion between two frames."""

from __future__ import annotations

import pytest
import torch

from musedance_core.config import FlowAutoencoderConfig
from musedance_core.models.flow import OCCLUSION_START, LatentFlowAutoencoder, compose, limit_to_mask, warp

SMALL = dict(block_out_channels=(16, 32, 32), residual_blocks=1, flow_block_out_channels=(16, 32, 32, 64))


def test_warp_is_a_backward_warp_in_normalised_units_at_any_size():
    source = torch.rand(1, 3, 8, 8)
    assert torch.equal(warp(source, torch.zeros(1, 2, 8, 8)), source)
    one_cell_right = torch.zeros(1, 2, 8, 8)
    one_cell_right[:, 0] = 2 / 8  # x: the image spans 2 units
    moved = warp(source, one_cell_right)
    assert torch.allclose(moved[..., :-1], source[..., 1:], atol=1e-6)  # output[p] = source[p + f]
    # A flow made at 16x16 moves a 64x64 picture by the same share of its width: 8 pixels for 2/8 units.
    picture = torch.rand(1, 3, 64, 64)
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 1] = 2 / 8  # y: an eighth of the height
    assert torch.allclose(warp(picture, flow)[..., :-8, :], picture[..., 8:, :], atol=1e-5)


def test_compose_takes_the_references_own_pixels_where_visible_and_the_decoder_elsewhere():
    reference, decoded = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 16, 16)
    still = torch.zeros(1, 2, 16, 16)
    assert torch.equal(compose(reference, still, torch.ones(1, 1, 16, 16), decoded), reference)
    hidden = compose(reference, still, torch.zeros(1, 1, 16, 16), decoded)
    assert hidden.shape == reference.shape
    assert torch.allclose(hidden, torch.nn.functional.interpolate(decoded, size=(64, 64), mode="bilinear"))


def test_the_mask_keeps_everything_else_still():
    flow, occlusion = torch.randn(1, 2, 8, 8), torch.rand(1, 1, 8, 8)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16, :] = 1  # the subject fills the top half
    limited, visible = limit_to_mask(flow, occlusion, mask)
    assert torch.equal(limited[..., 4:, :], torch.zeros_like(limited[..., 4:, :]))
    assert torch.equal(visible[..., 4:, :], torch.ones_like(visible[..., 4:, :]))
    assert torch.allclose(limited[..., :3, :], flow[..., :3, :]) and torch.allclose(visible[..., :3, :], occlusion[..., :3, :])


def test_shapes_and_an_untrained_model_warps_nothing():
    model = LatentFlowAutoencoder(FlowAutoencoderConfig(**SMALL))
    reference, driving = torch.rand(2, 3, 32, 48) * 2 - 1, torch.rand(2, 3, 32, 48) * 2 - 1
    out, flow, occlusion = model(reference, driving)
    assert out.shape == (2, 3, 32, 48) and flow.shape == (2, 2, 8, 12) and occlusion.shape == (2, 1, 8, 12)
    assert torch.equal(flow, torch.zeros_like(flow))
    assert torch.allclose(occlusion, torch.full_like(occlusion, torch.sigmoid(torch.tensor(OCCLUSION_START)).item()))
    with pytest.raises(ValueError, match="multiple of 4 pixels"):
        model(torch.rand(1, 3, 30, 32), torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="more than 2 downsamplings"):
        LatentFlowAutoencoder(FlowAutoencoderConfig(block_out_channels=(8, 16, 16), flow_block_out_channels=(8, 16, 16)))


def _moved_squares(count: int, size: int = 32):
    """Pairs of frames: a coloured square over a gradient, and the same square moved sideways by -4..4 pixels."""
    references, driving = [], []
    for n in range(count):
        g = torch.Generator().manual_seed(n)
        background = torch.full((3, size, size), -0.6)
        background[1] = torch.linspace(-0.6, 0.2, size)[None, :]
        x0, y0 = (int(torch.randint(6, 14, (1,), generator=g)) for _ in range(2))
        dx = int(torch.randint(-4, 5, (1,), generator=g))
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        a, b = background.clone(), background.clone()
        a[:, y0 : y0 + 10, x0 : x0 + 10] = colour
        b[:, y0 : y0 + 10, x0 + dx : x0 + dx + 10] = colour
        references.append(a)
        driving.append(b)
    return torch.stack(references), torch.stack(driving)


def test_the_flow_predictor_learns_the_motion_between_two_frames():
    """60 Adam steps on 16 pairs: the reference's own pixels, warped by the predicted flow and filled from the
    decoder, match the driving frame far better than the reference itself does (it learnt where things moved)."""
    torch.manual_seed(0)
    model = LatentFlowAutoencoder(FlowAutoencoderConfig(**SMALL))
    reference, driving = _moved_squares(16)
    unmoved = (reference - driving).abs().mean().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(60):
        flow, occlusion = model.flow_predictor(reference, driving)
        loss = (compose(reference, flow, occlusion, model.animate(reference, flow, occlusion)) - driving).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < unmoved / 4, (loss.item(), unmoved)


def _flow_unet():
    from musedance_core.config import FlowUNetConfig
    from musedance_core.models.flow_unet import FlowUNet

    torch.manual_seed(0)
    config = FlowUNetConfig(block_out_channels=(32, 64), music_dim=16, beat_dim=16, num_attention_heads=2)
    return FlowUNet(config, latent_channels=32)


def _clip_inputs(frames: int = 6):
    from musedance_core.models.temporal import beat_windows

    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, frames, 3, 8, 8, generator=g)
    latent = torch.randn(2, 32, 8, 8, generator=g)
    music = torch.randn(2, frames, 4, 16, generator=g)
    beats = beat_windows((torch.arange(frames) % 3 == 0).float()[None].expand(2, frames), 0, frames, 2)
    return sample, latent, music, beats


def test_the_flow_unet_starts_with_identity_temporal_modules_and_then_hears_the_music():
    """Fresh, every frame is denoised on its own (music, beats and other frames change nothing: the temporal
    modules' outputs are zero); once they are not, the music of a frame changes that frame's prediction."""
    unet = _flow_unet().eval()
    sample, latent, music, beats = _clip_inputs()
    with torch.no_grad():
        out = unet(sample, 500, latent, music, beats)
        assert out.shape == sample.shape
        assert torch.equal(out, unet(sample, 500, latent, torch.randn_like(music), beats))
        assert torch.allclose(out[:, :3], unet(sample[:, :3], 500, latent, music[:, :3], beats[:, :3]), atol=1e-5)
        for stack in unet.stacks():
            for module in (stack.music, stack.beat, stack.motion):
                torch.nn.init.normal_(module.proj_out.weight, std=0.02)
        louder = music.clone()
        louder[:, 2] += 1.0
        moved = unet(sample, 500, latent, louder, beats) - unet(sample, 500, latent, music, beats)
    assert moved[:, 2].abs().mean() > 1e-4


def test_the_flow_unet_continues_from_a_motion_context():
    """The hidden states that entered each motion module on earlier frames (return_motion_context) are attended
    to by the next clip's frames; one entry per temporal stack."""
    unet = _flow_unet().eval()
    for stack in unet.stacks():
        torch.nn.init.normal_(stack.motion.proj_out.weight, std=0.02)
    sample, latent, music, beats = _clip_inputs()
    with torch.no_grad():
        _, entered = unet(sample, 500, latent, music, beats, return_motion_context=True)
        last_two = [h.reshape(2, 6, *h.shape[1:])[:, -2:].flatten(0, 1) for h in entered]
        alone = unet(sample[:, :4], 500, latent, music[:, :4], beats[:, :4])
        continued = unet(sample[:, :4], 500, latent, music[:, :4], beats[:, :4], motion_context=last_two)
    assert len(entered) == len(unet.stacks()) and continued.shape == alone.shape
    assert not torch.allclose(continued, alone)
    with pytest.raises(ValueError, match="a motion context holds"):
        unet(sample, 500, latent, music, beats, motion_context=last_two[:-1])


def test_the_frame_convolution_starts_as_the_identity_reaches_its_neighbours_and_continues_across_the_seam():
    from musedance_core.config import FlowUNetConfig
    from musedance_core.models.flow_unet import TemporalConv

    conv = TemporalConv(8, kernel=3, norm_num_groups=2)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2 * 6, 8, 4, 4, generator=g)
    context = torch.randn(2 * 2, 8, 4, 4, generator=g)
    assert torch.equal(conv(h, 6), h) and torch.equal(conv(h, 6, context), h)
    torch.nn.init.normal_(conv.conv.weight, std=0.1, generator=g)

    def frames(x, n):
        return x.reshape(2, n, 8, 4, 4)

    with torch.no_grad():
        out = frames(conv(h, 6, context), 6)
        moved = h.clone()
        frames(moved, 6)[:, 3] += torch.randn(2, 8, 4, 4, generator=g)
        changed = (frames(conv(moved, 6, context), 6) - out).abs().amax(dim=(0, 2, 3, 4))
        assert (changed[[2, 3, 4]] > 1e-3).all() and torch.equal(changed[[0, 1, 5]], torch.zeros(3))
        # The first frame's left neighbour is the context's last frame; earlier context frames are out of reach.
        last, first = context.clone(), context.clone()
        frames(last, 2)[:, 1] += torch.randn(2, 8, 4, 4, generator=g)
        frames(first, 2)[:, 0] += torch.randn(2, 8, 4, 4, generator=g)
        after_last = frames(conv(h, 6, last), 6) - out
        assert after_last[:, 0].abs().amax() > 1e-3 and torch.equal(after_last[:, 1:], torch.zeros_like(after_last[:, 1:]))
        assert torch.equal(frames(conv(h, 6, first), 6), out)
        # Without a context the edge frame stands in for the one before it.
        alone = frames(conv(h, 6), 6)
        edge = frames(conv(h, 6, torch.cat([frames(h, 6)[:, :1]] * 2, dim=1).flatten(0, 1)), 6)
        assert torch.allclose(alone, edge)
    with pytest.raises(ValueError, match="temporal_kernel must be 0 .none. or an odd number"):
        FlowUNetConfig(temporal_kernel=2)


def test_a_flow_unet_with_the_frame_convolution_round_trips_and_continues_a_clip(tmp_path):
    from musedance_core.config import FlowDanceConfig
    from musedance_core.loading.flow_checkpoint import load_flow_pipeline, save_flow_checkpoint
    from musedance_core.sampling.flow_pipeline import FlowDancePipeline

    config = FlowDanceConfig.tiny()
    config.unet.temporal_kernel = 3
    pipe = FlowDancePipeline.from_config(config)
    assert all(stack.conv is not None for stack in pipe.unet.stacks())
    for stack in pipe.unet.stacks():
        torch.nn.init.normal_(stack.conv.conv.weight, std=0.02)
    loaded = load_flow_pipeline(save_flow_checkpoint(tmp_path / "conv.safetensors", pipe))
    assert loaded.config.unet.temporal_kernel == 3
    reference = torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0))
    music, beats = torch.randn(12, 4, 32), (torch.arange(12) % 4 == 0).float()
    made = [torch.cat(list(p.iter_clips(p.encode_reference(reference), music, beats, num_inference_steps=2)))
            for p in (pipe, loaded)]
    assert made[0].shape == (12, 32, 32, 3) and torch.equal(made[0], made[1])
    plain = _flow_pipeline()
    assert plain.config.unet.temporal_kernel == 0 and all(stack.conv is None for stack in plain.unet.stacks())


def _flow_pipeline():
    from musedance_core.config import FlowDanceConfig
    from musedance_core.sampling.flow_pipeline import FlowDancePipeline

    return FlowDancePipeline.from_config(FlowDanceConfig.tiny())


def test_the_flow_pipeline_keeps_the_references_resolution_and_makes_every_frame():
    pipe = _flow_pipeline()
    picture = torch.rand(96, 80, 3, generator=torch.Generator().manual_seed(0))
    reference = pipe.encode_reference(picture)
    clips = list(pipe.iter_clips(reference, torch.randn(20, 4, 32), (torch.arange(20) % 4 == 0).float(),
                                 num_inference_steps=2, guidance_scale=2.0))
    assert [c.shape for c in clips] == [(8, 96, 80, 3), (8, 96, 80, 3), (4, 96, 80, 3)]
    assert all(torch.isfinite(c).all() and c.min() >= 0 and c.max() <= 1 for c in clips)
    # No motion and nothing occluded is the reference itself, at its own resolution.
    from musedance_core.sampling.flow_pipeline import flows_to_volume

    still = flows_to_volume(torch.zeros(3, 2, 8, 8), torch.ones(3, 1, 8, 8), pipe.config.flow_scale)
    assert torch.allclose(pipe.frames(reference, still), picture.expand(3, -1, -1, -1), atol=1e-5)


def test_a_mask_keeps_everything_but_the_subject_as_in_the_reference():
    pipe = _flow_pipeline()
    picture = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(64, 64)
    mask[:24] = 1  # the subject: the top rows
    reference = pipe.encode_reference(picture, mask)
    volume = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # any motion at all
    frames = pipe.frames(reference, volume)
    assert torch.allclose(frames[:, 40:], picture[40:].expand(4, -1, -1, -1), atol=1e-5)
    assert not torch.allclose(frames[:, :16], picture[:16].expand(4, -1, -1, -1), atol=1e-3)


def test_the_flow_pipeline_guides_continues_each_clip_from_the_last_and_can_be_stopped(monkeypatch):
    """Guidance 2: two rows per call (zero music and unknown beats first); per clip one pass over the M frames
    before it (the motion context: still frames for the first clip) and one pass per step."""
    pipe = _flow_pipeline()
    reference = pipe.encode_reference(torch.rand(32, 32, 3))
    calls = []
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda sample, t, *a, **k: calls.append(
        (tuple(sample.shape[:2]), k.get("motion_context") is not None)) or forward(sample, t, *a, **k))
    music, beats = torch.randn(12, 4, 32), (torch.arange(12) % 4 == 0).float()
    list(pipe.iter_clips(reference, music, beats, num_inference_steps=2, guidance_scale=2.0))
    assert calls == [((2, 2), False), ((2, 8), True), ((2, 8), True), ((2, 2), False), ((2, 4), True), ((2, 4), True)]
    calls.clear()
    list(pipe.iter_clips(reference, music, beats, num_inference_steps=2, guidance_scale=1.0, motion_frames=0))
    assert calls == [((1, 8), False)] * 2 + [((1, 4), False)] * 2

    class Stop(Exception):
        pass

    def interrupt():
        if len(calls) >= 3:
            raise Stop

    calls.clear()
    with pytest.raises(Stop):
        list(pipe.iter_clips(reference, music, beats, num_inference_steps=2, guidance_scale=1.0, interrupt=interrupt))
    assert len(calls) == 3


def test_a_flow_checkpoint_round_trips_and_each_family_refuses_the_others_files(tmp_path):
    from safetensors import safe_open

    from musedance_core.loading.checkpoint import read_checkpoint_info
    from musedance_core.loading.flow_checkpoint import load_flow_pipeline, save_flow_checkpoint
    from musedance_core.loading.formats import musedance_checkpoint_problem
    from musedance_core.loading.weights import WeightsFileError
    from tiny_files import write_tiny_musedance

    pipe = _flow_pipeline()
    path = save_flow_checkpoint(tmp_path / "flow.safetensors", pipe, training_size=(32, 32))
    loaded = load_flow_pipeline(path)
    assert loaded.config == pipe.config and loaded.training_size == (32, 32)
    reference = torch.rand(40, 40, 3, generator=torch.Generator().manual_seed(0))
    music, beats = torch.randn(10, 4, 32), (torch.arange(10) % 4 == 0).float()
    made = [torch.cat(list(p.iter_clips(p.encode_reference(reference), music, beats, num_inference_steps=2)))
            for p in (pipe, loaded)]
    assert torch.equal(made[0], made[1])
    half = load_flow_pipeline(save_flow_checkpoint(tmp_path / "half.safetensors", pipe, dtype=torch.float16),
                              dtype="fp32")
    assert next(half.unet.parameters()).dtype == torch.float32

    with safe_open(str(path), "pt") as f:
        assert f.metadata()["family"] == "flow"
    with pytest.raises(WeightsFileError, match="holds the 'flow' model family, not MuseDance"):
        read_checkpoint_info(path)
    assert musedance_checkpoint_problem(path) is None  # Load MuseDance Model takes both families
    musedance = write_tiny_musedance(tmp_path / "musedance.safetensors")
    with safe_open(str(musedance), "pt") as f:
        assert f.metadata()["family"] == "musedance"
    with pytest.raises(WeightsFileError, match="not a flow-family checkpoint"):
        load_flow_pipeline(musedance)


def test_the_beats_can_be_withheld_music_kept(monkeypatch):
    """beats_unknown: the denoiser gets the unknown beat tokens (training's beat-dropped rows) for every frame."""
    from musedance_core.models.temporal import unknown_beats

    pipe = _flow_pipeline()
    reference = pipe.encode_reference(torch.rand(32, 32, 3))
    seen = []
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda sample, t, latent, music, ids, **k: seen.append(ids.clone())
                        or forward(sample, t, latent, music, ids, **k))
    music, beats = torch.randn(8, 4, 32), (torch.arange(8) % 4 == 0).float()
    list(pipe.iter_clips(reference, music, beats, num_inference_steps=1, guidance_scale=1.0, motion_frames=0))
    known = seen.pop()
    list(pipe.iter_clips(reference, music, beats, num_inference_steps=1, guidance_scale=1.0, motion_frames=0,
                         beats_unknown=True))
    config = pipe.config.unet
    assert torch.equal(seen.pop(), unknown_beats(1, 8, config.beat_window, config.beat_phase_bins, "cpu"))
    assert not torch.equal(known, unknown_beats(1, 8, config.beat_window, config.beat_phase_bins, "cpu"))


def test_the_beats_have_a_guidance_scale_of_their_own(monkeypatch):
    """Beat guidance: three rows (no music and unknown beats, music and unknown beats, music and beats) combined
    as MuseDance's GuidedDenoiser combines them; the same scale as plain guidance is plain guidance."""
    from musedance_core.models.temporal import unknown_beats

    pipe = _flow_pipeline()
    reference = pipe.encode_reference(torch.rand(32, 32, 3))
    music, beats = torch.randn(8, 4, 32), (torch.arange(8) % 4 == 0).float()
    seen = []
    forward = pipe.unet.forward

    def spy(sample, t, latent, tokens, ids, **k):
        out = forward(sample, t, latent, tokens, ids, **k)
        seen.append((tokens.clone(), ids.clone(), out.clone()))
        return out

    monkeypatch.setattr(pipe.unet, "forward", spy)
    steps = []
    monkeypatch.setattr(type(pipe), "frames", lambda self, ref, volume: steps.append(volume.clone()) or volume)
    list(pipe.iter_clips(reference, music, beats, num_inference_steps=1, guidance_scale=2.0, beat_guidance_scale=5.0,
                         motion_frames=0))
    (tokens, ids, out), = seen
    config = pipe.config.unet
    unknown = unknown_beats(1, 8, config.beat_window, config.beat_phase_bins, "cpu")[0]
    assert out.shape[0] == 3
    assert torch.equal(tokens[0], torch.zeros_like(tokens[0])) and torch.equal(tokens[1], tokens[2])
    assert torch.equal(tokens[2], music[None].float()[0])
    assert torch.equal(ids[0], unknown) and torch.equal(ids[1], unknown) and not torch.equal(ids[2], unknown)
    guided = out[0] + 2.0 * (out[1] - out[0]) + 5.0 * (out[2] - out[1])
    # One DDIM step from the sampler's noise (seed 0) with that prediction is the clip's volume.
    from musedance_core.sampling.conditioning import sampling_scheduler

    scheduler = sampling_scheduler(pipe.config)
    scheduler.set_timesteps(1)
    noise = torch.randn((1, 8, out.shape[2], *out.shape[3:]), generator=torch.Generator().manual_seed(0))
    expected = scheduler.step(guided[None], scheduler.timesteps[0], noise).prev_sample[0]
    assert torch.allclose(steps.pop(), expected, atol=1e-5)
    seen.clear()
    list(pipe.iter_clips(reference, music, beats, num_inference_steps=1, guidance_scale=2.0, beat_guidance_scale=2.0,
                         motion_frames=0))
    assert seen[0][2].shape[0] == 2  # the beats' own scale equal to plain guidance: no third row
    with pytest.raises(ValueError, match="beat_guidance_scale"):
        next(pipe.iter_clips(reference, music, beats, beat_guidance_scale=-1.0))


def test_flow_clips_can_end_on_bar_lines():
    """bar_frames: a clip ends on the last bar line in its second half, as MuseDance's clip_plan has it."""
    pipe = _flow_pipeline()
    reference = pipe.encode_reference(torch.rand(32, 32, 3))
    music, beats = torch.randn(20, 4, 32), (torch.arange(20) % 4 == 0).float()
    lengths = [c.shape[0] for c in pipe.iter_clips(reference, music, beats, num_inference_steps=1, guidance_scale=1.0)]
    assert lengths == [8, 8, 4]
    lengths = [c.shape[0] for c in pipe.iter_clips(reference, music, beats, num_inference_steps=1, guidance_scale=1.0,
                                                    bar_frames=[6, 13])]
    assert lengths == [6, 7, 7]
