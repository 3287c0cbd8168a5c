"""The sampler: determinism, shapes, clip-by-clip memory, one batched CFG forward, callbacks, dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import randomize_temporal_outputs
from musedance_core import GenerationStopped, MuseDancePipeline

FAST = dict(num_inference_steps=2, guidance_scale=2.0)


def _count_calls(module: torch.nn.Module, store: list) -> None:
    module.register_forward_pre_hook(lambda mod, args, kwargs: store.append((args, kwargs)), with_kwargs=True)


def test_deterministic_for_a_fixed_seed_with_right_shape_and_range(tiny_pipe, sample_inputs):
    inputs = sample_inputs(frames=10)
    a = tiny_pipe(**inputs, seed=3, **FAST)
    b = tiny_pipe(**inputs, seed=3, **FAST)
    c = tiny_pipe(**inputs, seed=4, **FAST)
    assert a.shape == (10, 32, 32, 3)
    assert a.dtype == torch.float32 and a.device.type == "cpu"
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_music_tokens_made_a_clip_at_a_time_give_the_same_video(tiny_config, tiny_pipe, sample_inputs):
    """FrameTokens (the song's AST columns, each clip's tokens made when the sampler reaches it) give the video
    that the whole span's token tensor gives, bit for bit; the sampler asks only for each clip's frames."""
    import numpy as np

    from musedance_core.audio.ast_encoder import FrameTokens, MusicEncoder, random_ast

    encoder = MusicEncoder(*random_ast(tiny_config.unet.music_dim))
    wave = np.random.default_rng(0).normal(0, 0.1, 16_000 * 3).astype(np.float32)
    lazy = FrameTokens(encoder.encode_music(wave), fps=12, num_frames=22, start_time=0.5)
    inputs = sample_inputs(frames=22)
    inputs["music_tokens"] = lazy.tensor()
    whole = tiny_pipe(**inputs, seed=3, clip_length=8, **FAST)
    asked = []
    real_frames = FrameTokens.frames

    def frames(self, first, count):
        asked.append((first, count))
        return real_frames(self, first, count)

    FrameTokens.frames = frames
    try:
        inputs["music_tokens"] = lazy
        streamed = tiny_pipe(**inputs, seed=3, clip_length=8, **FAST)
    finally:
        FrameTokens.frames = real_frames
    assert torch.equal(streamed, whole)
    assert asked == [(0, 8), (6, 2), (8, 8), (14, 2), (16, 6)]  # each clip, and the M frames before it


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_a_video_continued_from_its_last_frames_picks_up_where_it_stopped(tiny_config, tiny_pipe, sample_inputs, eta):
    """Continuing at frame 16 (after two clips of 8): only frames 16.. are made, the first new clip's motion context
    is the VAE encoding of the video's last M frames, and every new clip starts from the noise (and, with eta > 0,
    draws the per-step noise) an unbroken run gives it."""
    from musedance_core.sampling.conditioning import encode_frames

    inputs = sample_inputs(frames=30)
    noises, contexts = [], []
    real = MuseDancePipeline._denoise_clip

    def record(self, guide, scheduler, noise, *args):
        noises.append(noise.clone())
        return real(self, guide, scheduler, noise, *args)

    def on_step(info):
        if info.step == 0:
            contexts.append((info.clip_index, info.num_clips, info.context_latents.clone()))

    MuseDancePipeline._denoise_clip = record
    try:
        whole = tiny_pipe(**inputs, seed=5, clip_length=8, eta=eta, **FAST)
        whole_noise = list(noises)
        noises.clear()
        contexts.clear()
        rest = tiny_pipe(**inputs, seed=5, clip_length=8, eta=eta, start_frame=16, context_frames=whole[:16],
                         callback=on_step, **FAST)
    finally:
        MuseDancePipeline._denoise_clip = real
    assert rest.shape[0] == 14 and [(i, n) for i, n, _ in contexts] == [(2, 4), (3, 4)]
    expected = encode_frames(tiny_pipe.vae, whole[16 - tiny_config.motion_frames : 16], tiny_config.vae.scaling_factor)
    torch.testing.assert_close(contexts[0][2][0], expected.float())
    assert all(torch.equal(a, b) for a, b in zip(noises, whole_noise[2:])) and len(noises) == 2
    if eta == 0:  # the context was re-encoded from pixels, so the frames differ a little from the unbroken run's
        assert (rest - whole[16:]).abs().mean() < (rest - tiny_pipe(**inputs, seed=6, clip_length=8, **FAST)[16:]).abs().mean()
    with pytest.raises(ValueError, match="needs the video's last 2 frames"):
        next(tiny_pipe.iter_clips(**inputs, seed=5, clip_length=8, start_frame=16, context_frames=whole[:1], **FAST))


def test_a_text_schedule_changes_the_prompt_at_the_right_clips(tiny_config, tiny_pipe, sample_inputs):
    """Prompt A until frame 16, B from there: clips 0 and 1 (and their motion contexts) are conditioned on A's
    rows, clips 2 and 3 on B's; a schedule whose only prompt is the main one changes nothing."""
    from musedance_core.sampling.guidance import GuidedDenoiser

    inputs = sample_inputs(frames=30)
    prompt_b = torch.randn_like(inputs["text_embeds"])
    seen = []
    real = MuseDancePipeline._denoise_clip

    def record(self, guide, scheduler, noise, start_latent, conditions, *args):
        seen.append(conditions[0].clone())
        return real(self, guide, scheduler, noise, start_latent, conditions, *args)

    from musedance_core.sampling import pipeline as module

    contexts = []
    real_context = module.motion_context

    def record_context(unet, latents, text, *args):
        contexts.append(text.clone())
        return real_context(unet, latents, text, *args)

    MuseDancePipeline._denoise_clip = record
    module.motion_context = record_context
    try:
        plain = tiny_pipe(**inputs, seed=5, clip_length=8, **FAST)
        seen.clear()
        contexts.clear()
        scheduled = tiny_pipe(**inputs, seed=5, clip_length=8, text_schedule=[(16, prompt_b)], **FAST)
        same = tiny_pipe(**inputs, seed=5, clip_length=8, text_schedule=[(0, inputs["text_embeds"])], **FAST)
    finally:
        MuseDancePipeline._denoise_clip = real
        module.motion_context = real_context
    guide = GuidedDenoiser(tiny_pipe.unet, FAST["guidance_scale"], tiny_pipe.recommended.beat_guidance_scale)
    rows_a = guide.text_rows(inputs["text_embeds"], null_text=torch.zeros_like(inputs["text_embeds"]))
    rows_b = guide.text_rows(prompt_b, null_text=torch.zeros_like(prompt_b))
    assert [torch.equal(t, rows_a) for t in seen[:4]] == [True, True, False, False]
    assert [torch.equal(t, rows_b) for t in seen[:4]] == [False, False, True, True]
    assert [torch.equal(t, rows_b) for t in contexts[:4]] == [False, False, True, True]
    assert torch.equal(scheduled[:16], plain[:16]) and not torch.equal(scheduled[16:], plain[16:])
    assert torch.equal(same, plain)
    with pytest.raises(ValueError, match="first frames must be frames of the music"):
        tiny_pipe(**inputs, seed=5, clip_length=8, text_schedule=[(30, prompt_b)], **FAST)


def test_interrupt_stops_inside_a_step_between_unet_blocks(tiny_pipe, sample_inputs):
    """`interrupt` is called between the parts of every UNet block (so a large first step stops in a fraction
    of its time): raising there ends the run with the UNet's hooks gone and no reference features left."""
    from musedance_core.sampling.pipeline import unet_parts

    class Stop(Exception):
        pass

    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 10:
            raise Stop

    inputs = sample_inputs(frames=10)
    with pytest.raises(Stop):
        tiny_pipe(**inputs, seed=1, interrupt=interrupt, **FAST)
    assert len(calls) == 10 < len(unet_parts(tiny_pipe.unet))  # inside the first UNet pass of the first step
    assert not tiny_pipe.bank.tokens
    assert all(not part._forward_pre_hooks for part in unet_parts(tiny_pipe.unet))
    counted = []
    tiny_pipe(**inputs, seed=1, interrupt=lambda: counted.append(1), clip_length=8, **FAST)
    # per clip: the motion context's pass and each step's pass through every part, then each VAE chunk
    assert len(counted) > 2 * FAST["num_inference_steps"] * len(unet_parts(tiny_pipe.unet))


def test_a_prompt_change_inside_a_clip_starts_a_clip_of_its_own(tiny_pipe, sample_inputs):
    """A change at frame 12 with clips of 8: the clip plan cuts there ((0, 8), (8, 4), (12, 8), ...), so the new
    prompt rules from its own frame on; a continued video follows the same plan."""
    from musedance_core.sampling.pipeline import clip_plan

    assert clip_plan(30, 8, [12]) == ([], [(0, 8), (8, 4), (12, 8), (20, 8), (28, 2)])
    assert clip_plan(30, 8, [12], start_frame=12) == ([(0, 8), (8, 4)], [(12, 8), (20, 8), (28, 2)])
    assert clip_plan(30, 8, [], start_frame=10) == ([(0, 8), (8, 8)], [(10, 8), (18, 8), (26, 4)])
    assert clip_plan(30, 8, [0, 30, 45]) == clip_plan(30, 8)
    inputs = sample_inputs(frames=30)
    prompt_b = torch.randn_like(inputs["text_embeds"])
    starts = []
    tiny_pipe(**inputs, seed=5, clip_length=8, text_schedule=[(12, prompt_b)],
              callback=lambda info: starts.append((info.frame_start, info.latents.shape[1])) if info.step == 0 else None,
              **FAST)
    assert starts == [(0, 8), (8, 4), (12, 8), (20, 8), (28, 2)]


def test_clips_can_end_on_bar_lines(tiny_pipe, sample_inputs):
    """Bars every 6 frames, clips of 8: each clip ends on the last bar line in its second half (6, 12, 18, ...),
    else after 8 frames; a prompt change still cuts where it is, the music's end too, and a continued video
    keeps the plan."""
    from musedance_core.sampling.pipeline import clip_plan

    bars = range(0, 30, 6)
    assert clip_plan(30, 8, bars=bars) == ([], [(0, 6), (6, 6), (12, 6), (18, 6), (24, 6)])
    assert clip_plan(30, 8, [15], bars=bars) == ([], [(0, 6), (6, 6), (12, 3), (15, 8), (23, 7)])  # 18: 1st half
    assert clip_plan(30, 8, bars=bars, start_frame=18) == ([(0, 6), (6, 6), (12, 6)], [(18, 6), (24, 6)])
    assert clip_plan(30, 8, bars=[0, 3, 21]) == ([], [(0, 8), (8, 8), (16, 5), (21, 8), (29, 1)])  # 3: 1st half
    starts = []
    tiny_pipe(**sample_inputs(frames=30), seed=5, clip_length=8, bar_frames=list(bars),
              callback=lambda info: starts.append((info.frame_start, info.latents.shape[1])) if info.step == 0 else None,
              **FAST)
    assert starts == [(0, 6), (6, 6), (12, 6), (18, 6), (24, 6)]


def test_a_guidance_schedule_changes_the_rows_and_scales_at_its_frames(tiny_pipe, sample_inputs, monkeypatch):
    """Guidance 1 (one row) to frame 12, then guidance 3 with beat guidance 6 (three rows: the reference bank
    filled again for them), then from 20 the beats guided with the rest (two rows): the UNet gets those rows from
    the clip that starts there on, the clips are cut there, and what comes before a change is the plain run's."""
    from musedance_core.sampling import guidance as guidance_module

    inputs = sample_inputs(frames=28)
    plain = tiny_pipe(**inputs, seed=5, clip_length=8, guidance_scale=1.0, beat_guidance_scale=None, num_inference_steps=2)
    seen, scales = [], []
    forward = tiny_pipe.unet.forward
    monkeypatch.setattr(tiny_pipe.unet, "forward", lambda sample, *a, **k: seen.append(sample.shape[:2]) or
                        forward(sample, *a, **k))
    combine = guidance_module.GuidedDenoiser.combine
    monkeypatch.setattr(guidance_module.GuidedDenoiser, "combine", lambda self, prediction: scales.append(
        (self.guidance_scale, self.beat_guidance_scale)) or combine(self, prediction))
    scheduled = tiny_pipe(**inputs, seed=5, clip_length=8, guidance_scale=1.0, beat_guidance_scale=None,
                          guidance_schedule=[(12, {"guidance_scale": 3.0, "beat_guidance_scale": 6.0}),
                                             (20, {"guidance_scale": 3.0, "beat_guidance_scale": None})],
                          num_inference_steps=2)
    steps = 2
    # per clip: the motion context's pass (M frames), then one pass per step (the clip's frames)
    clips = [(0, 8, 1), (8, 4, 1), (12, 8, 3), (20, 8, 2)]
    expected = [shape for _, length, rows in clips for shape in [(rows, 2)] + [(rows, length)] * steps]
    assert [tuple(s) for s in seen] == expected
    assert scales == [(1.0, None)] * 2 * steps + [(3.0, 6.0)] * steps + [(3.0, None)] * steps
    assert torch.equal(scheduled[:12], plain[:12]) and not torch.equal(scheduled[12:], plain[12:])
    assert not tiny_pipe.bank.tokens
    with pytest.raises(ValueError, match="guidance_schedule at frame 4"):
        tiny_pipe(**inputs, guidance_schedule=[(4, {"guidance_scale": 0.5})], **FAST)


@pytest.mark.parametrize("frames", [3, 8, 19, 41])
def test_latents_held_are_one_clip_plus_the_motion_context_whatever_the_length(tiny_pipe, sample_inputs, frames):
    k, m = tiny_pipe.config.clip_length, tiny_pipe.config.motion_frames
    seen = []
    out = tiny_pipe(**sample_inputs(frames=frames), num_inference_steps=2, guidance_scale=2.0,
                    callback=lambda info: seen.append(info))
    assert out.shape[0] == frames
    assert len(seen) == math.ceil(frames / k) * 2
    latent_side = 32 // tiny_pipe.config.vae.downscale
    for info in seen:
        assert info.latents.shape == (1, min(k, frames - info.frame_start), 4, latent_side, latent_side)
        assert info.context_latents.shape == (1, m, 4, latent_side, latent_side)
    assert [i.frame_start for i in seen[::2]] == list(range(0, frames, k))
    assert seen[-1].progress == 1.0


def test_clips_are_streamed_and_the_next_clip_is_conditioned_on_the_previous(tiny_config, sample_inputs):
    pipe = MuseDancePipeline.from_config(tiny_config, seed=0)
    randomize_temporal_outputs(pipe.unet)
    inputs = sample_inputs(frames=12)
    seen = []
    clips = pipe.iter_clips(**inputs, **FAST, callback=lambda info: seen.append(info))
    first = next(clips)
    assert first.shape[0] == tiny_config.clip_length
    assert {i.clip_index for i in seen} == {0}  # nothing of clip 2 has run yet
    second = next(clips)
    # The second clip's context is the last M latents of the first clip.
    first_final = seen[1].latents
    torch.testing.assert_close(seen[-1].context_latents, first_final[:, -tiny_config.motion_frames:])
    # With the motion context removed, the second clip comes out differently.
    no_context = torch.cat(list(pipe.iter_clips(**inputs, **FAST, motion_frames=0)))
    assert (no_context[tiny_config.clip_length:] - second).abs().max() > 1e-4


def test_reference_net_runs_once_per_video_and_cfg_is_one_batched_forward(tiny_pipe, sample_inputs):
    ref_calls, unet_calls, decode_calls = [], [], []
    _count_calls(tiny_pipe.reference_net, ref_calls)
    _count_calls(tiny_pipe.unet, unet_calls)
    original_decode = tiny_pipe.vae.decode
    tiny_pipe.vae.decode = lambda z, *a, **kw: (decode_calls.append(z.shape[0]), original_decode(z, *a, **kw))[1]
    frames, steps = 19, 3
    tiny_pipe(**sample_inputs(frames=frames), num_inference_steps=steps, guidance_scale=2.0, decode_chunk_size=3)
    clips = math.ceil(frames / tiny_pipe.config.clip_length)
    assert len(ref_calls) == 1
    # Per clip: one context pass plus one forward per step; each carries both CFG halves.
    assert len(unet_calls) == clips * (1 + steps)
    assert all(args[0].shape[0] == 2 for args, _ in unet_calls)
    assert max(decode_calls) <= 3 and sum(decode_calls) == frames


def test_guidance_one_runs_a_single_row(tiny_pipe, sample_inputs):
    calls = []
    _count_calls(tiny_pipe.unet, calls)
    tiny_pipe(**sample_inputs(frames=4), num_inference_steps=2, guidance_scale=1.0)
    assert all(args[0].shape[0] == 1 for args, _ in calls)


def test_shared_reference_encoding_gives_the_same_video(tiny_pipe, sample_inputs):
    inputs = sample_inputs(frames=6)
    direct = tiny_pipe(**inputs, **FAST)
    encoding = tiny_pipe.encode_reference(inputs.pop("reference_image"), inputs.pop("mask"), inputs["text_embeds"])
    shared = tiny_pipe(reference=encoding, **inputs, **FAST)
    torch.testing.assert_close(shared, direct)


def test_callback_stops_the_run_and_leaves_no_reference_behind(tiny_pipe, sample_inputs):
    seen = []

    def stop_at_third(info):
        seen.append(info.step)
        return len(seen) == 3

    with pytest.raises(GenerationStopped):
        tiny_pipe(**sample_inputs(frames=20), num_inference_steps=2, guidance_scale=2.0, callback=stop_at_third)
    assert len(seen) == 3
    assert len(tiny_pipe.bank) == 0 and tiny_pipe.bank.keep is None


@pytest.mark.parametrize("dtype", ["bf16", torch.float16])
def test_half_precision_runs(tiny_config, sample_inputs, dtype):
    pipe = MuseDancePipeline.from_config(tiny_config, seed=0)
    frames = pipe(**sample_inputs(frames=4), num_inference_steps=2, guidance_scale=2.0, dtype=dtype, device="cpu")
    assert pipe.unet.conv_in.weight.dtype != torch.float32
    assert frames.dtype == torch.float32 and bool(torch.isfinite(frames).all())


def test_mixed_noise_keeps_unit_variance_and_correlates_frames_by_the_share():
    from musedance_core.sampling.pipeline import mix_frame_noise

    gen = torch.Generator().manual_seed(0)
    own, shared = torch.randn(1, 4, 200_000, generator=gen), torch.randn(1, 1, 200_000, generator=gen)
    for share in (0.0, 0.5, 0.9):
        noise = mix_frame_noise(own, shared, share)[0]
        assert abs(float(noise.std()) - 1.0) < 0.01
        corr = float(torch.corrcoef(noise)[0, 1:].mean())
        assert abs(corr - share) < 0.01, (share, corr)


def test_noise_share_one_leaves_only_the_music_to_change_the_frames(tiny_config, sample_inputs):
    inputs = sample_inputs(frames=10)
    pipe = MuseDancePipeline.from_config(tiny_config, seed=0)  # fresh temporal modules: the identity
    default = pipe(**inputs, seed=1, **FAST)
    assert torch.equal(pipe(**inputs, seed=1, noise_share=0.0, **FAST), default)  # 0: the old noise stream
    assert (default[1:] - default[:-1]).abs().amax() > 1e-2  # independent noise: every frame differs
    still = pipe(**inputs, seed=1, noise_share=1.0, **FAST)
    assert (still - still[:1]).abs().amax() < 1e-5  # the same noise and nothing temporal: one frame, repeated
    randomize_temporal_outputs(pipe.unet, seed=0)
    moving = pipe(**inputs, seed=1, noise_share=1.0, **FAST)
    assert (moving[1:] - moving[:-1]).abs().amax() > 1e-3  # the per-frame music and beats move it
    half = pipe(**inputs, seed=1, noise_share=0.5, **FAST)
    assert not torch.equal(half, moving)


def test_reference_start_begins_every_frame_at_the_noised_reference(tiny_pipe, sample_inputs):
    """reference_start: the first denoising step sees sqrt(a_t) z_ref + sqrt(1 - a_t) noise at the first
    timestep, the same noise the plain start uses (the generator stream is unchanged), in every clip."""
    inputs = sample_inputs(frames=10)  # two clips of 6 and 4 frames
    steps = 3
    first_inputs = []
    tiny_pipe.unet.register_forward_pre_hook(
        lambda mod, args, kwargs: first_inputs.append((args[0].clone(), args[1])) if args[1] != 0 else None,
        with_kwargs=True)
    plain = tiny_pipe(**inputs, seed=5, num_inference_steps=steps, guidance_scale=1.0)
    plain_starts = [x for x, t in first_inputs[::steps]]
    first_inputs.clear()
    started = tiny_pipe(**inputs, seed=5, num_inference_steps=steps, guidance_scale=1.0, reference_start=True)
    starts = first_inputs[::steps]
    assert len(starts) == 2 and not torch.equal(started, plain)
    reference = tiny_pipe.encode_reference(inputs["reference_image"], inputs["mask"], inputs["text_embeds"])
    scheduler = type(tiny_pipe.scheduler).from_config(tiny_pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    t0 = scheduler.timesteps[0]
    a = scheduler.alphas_cumprod[t0]
    for (x, t), noise in zip(starts, plain_starts):  # the plain start is the noise itself (DDIM sigma 1)
        assert int(t) == int(t0)
        expected = a.sqrt() * reference.latent[:, None] + (1 - a).sqrt() * noise
        torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    # the reference's signal: frames start closer to the reference than the plain start does
    assert (starts[0][0] - reference.latent[:, None]).pow(2).mean() < (plain_starts[0] - reference.latent[:, None]).pow(2).mean()


def test_a_phase_aware_model_samples_and_hears_the_beat_grid(tiny_config, sample_inputs):
    """beat_phase_bins > 0: the sampler builds the phase column the model expects, for every clip and for
    the unconditional rows, and the grid reaches the video."""
    import dataclasses

    config = dataclasses.replace(tiny_config, unet=dataclasses.replace(tiny_config.unet, beat_phase_bins=4))
    pipe = MuseDancePipeline.from_config(config, seed=0)
    randomize_temporal_outputs(pipe.unet, seed=0)
    inputs = sample_inputs(frames=12)  # two clips: the second has context frames
    video = pipe(**inputs, seed=1, **FAST)
    assert video.shape[0] == 12
    shifted = dict(inputs, beats=inputs["beats"].roll(2))  # same beat period, another phase on every frame
    assert (pipe(**shifted, seed=1, **FAST) - video).abs().max() > 1e-4


def test_beat_guidance_adds_a_row_with_the_beats_unknown_and_scales_what_the_beats_change(tiny_config, sample_inputs):
    from musedance_core.models.temporal import UNKNOWN_BEAT

    inputs = sample_inputs(frames=10)
    pipe = MuseDancePipeline.from_config(tiny_config, seed=0)
    plain = pipe(**inputs, seed=1, **FAST)
    assert torch.equal(pipe(**inputs, seed=1, beat_guidance_scale=FAST["guidance_scale"], **FAST), plain)  # g_b = g
    # Fresh temporal modules (the identity): the beats change nothing, so no beat scale changes the video.
    torch.testing.assert_close(pipe(**inputs, seed=1, beat_guidance_scale=6.0, **FAST), plain, atol=1e-5, rtol=0)
    randomize_temporal_outputs(pipe.unet, seed=0)
    calls, clips = [], []
    _count_calls(pipe.unet, calls)
    clip_conditions = pipe.unet.clip_conditions

    def record_clip(*args, **kwargs):  # a clip's conditions, not the motion context's made inside the UNet's forward
        if kwargs.get("find_uniform", True):
            clips.append(args)
        return clip_conditions(*args, **kwargs)

    pipe.unet.clip_conditions = record_clip
    plain = pipe(**inputs, seed=1, **FAST)
    calls.clear()
    clips.clear()
    strong = pipe(**inputs, seed=1, beat_guidance_scale=6.0, **FAST)
    assert (strong - plain).abs().max() > 1e-3
    steps = [args for args, kwargs in calls if "conditions" in kwargs]
    assert steps and all(args[0].shape[0] == 3 for args in steps) and len(clips) == 2
    for text, music, windows in clips:  # rows: unconditional, beats unknown, conditional
        assert (windows[:2] == UNKNOWN_BEAT).all() and (windows[2] != UNKNOWN_BEAT).any()
        assert torch.equal(music[1], music[2]) and music[2].abs().sum() > 0 and not music[0].any()
        assert torch.equal(text[1], text[2])
    calls.clear()
    pipe(**inputs, seed=1, num_inference_steps=2, guidance_scale=1.0, beat_guidance_scale=3.0)
    assert all(args[0].shape[0] == 2 for args, _ in calls)  # beats unknown, conditional
    for bad in (-1.0, True, "3"):
        with pytest.raises(ValueError, match="beat_guidance_scale"):
            pipe(**inputs, seed=1, beat_guidance_scale=bad, **FAST)
