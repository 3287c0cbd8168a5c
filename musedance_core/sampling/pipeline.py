"""The MuseDance sampler: reference image + music tokens + beats + motion prompt in, video frames out.

`iter_clips` validates every input (a clear ValueError names the argument and what was expected), encodes
the reference once per video (VAE latent plus F_m(mask) through the ReferenceNet at t=0; its self-attention
inputs fill the reference bank that every step of every clip reads), then makes the video clip by clip:
`_denoise_clip` runs DDIM from noise with a `GuidedDenoiser` (guidance.py), conditioned on the motion
context of the M frames before the clip (the last M generated frames, or copies of the reference for the
first clip), and each finished clip is decoded and handed out. Only one clip of latents plus the M context
latents is alive at any time. The conditioning rules are those of the trainer (conditioning.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from ..config import AUTO, MAX_GUIDANCE, MuseDanceConfig, SamplerSettings
from ..masks.subject import mask_condition
from ..models.mask_encoder import build_mask_encoder
from ..models.reference import ReferenceBank, attach_reference_reader, attach_reference_writer
from ..models.text_encoder import TOKENIZER_HELP, build_text_encoder, cut_words, encode_prompt
from ..models.unet import MotionContext, MuseDanceUNet
from .conditioning import (
    decode_latents,
    encode_frames,
    frame_beats,
    motion_context,
    reference_features,
    resolve_dtype,
    sampling_scheduler,
    unknown_frame_beats,
)
from .guidance import GuidedDenoiser

if TYPE_CHECKING:
    from ..audio.ast_encoder import FrameTokens


class GenerationStopped(RuntimeError):
    """Raised when the step callback asks the sampler to stop; no frames are returned."""


@dataclass
class StepInfo:
    """What the per-step callback sees. Return True from the callback to stop the run."""

    clip_index: int
    num_clips: int
    step: int  # 0-based step within the clip
    num_steps: int
    frame_start: int  # index of the clip's first frame in the video
    latents: torch.Tensor  # the clip's latents after this step, [B, K, C, h, w]
    context_latents: torch.Tensor  # the motion context of this clip, [B, M, C, h, w]

    @property
    def progress(self) -> float:
        """Fraction of all denoising steps of the video done, in (0, 1]."""
        return (self.clip_index * self.num_steps + self.step + 1) / (self.num_clips * self.num_steps)


@dataclass
class ReferenceEncoding:
    """A reference image encoded once: its VAE latent and the ReferenceNet tokens for every self-attention layer.

    Several sampler runs (different music, seeds) can share one encoding.
    """

    latent: torch.Tensor  # E(I) of the reference, [1, C, h, w]
    tokens: dict[str, torch.Tensor]  # ReferenceNet self-attention inputs, [1, N, C] per layer
    height: int
    width: int


def mix_frame_noise(own: torch.Tensor, shared: torch.Tensor, share: float) -> torch.Tensor:
    """sqrt(share) * shared + sqrt(1 - share) * own: each frame's noise stays N(0, I) when both are, and
    two frames' noises correlate by `share` (PYoCo's mixed noise prior). own [B, F, ...], shared [B, 1, ...]."""
    return share**0.5 * shared + (1.0 - share) ** 0.5 * own


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.is_tensor(tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(tensor).__name__}.")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check how it was produced.")


def _check_unit_range(name: str, tensor: torch.Tensor) -> None:
    lo, hi = float(tensor.min()), float(tensor.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1]; got [{lo:.4g}, {hi:.4g}]. Nothing is clipped for you.")


def clip_plan(num_frames: int, clip_length: int, cuts: Sequence[int] = (), start_frame: int = 0,
              bars: Sequence[int] = ()) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, length) of the clips made before start_frame and of those still to make.

    Clips are clip_length frames, except that a clip also ends at every cut (a frame where the prompt
    changes), so a new prompt begins with its own clip. With `bars` (the frames where a bar starts), a
    clip that would end clip_length frames after its start ends instead on the last bar line in its
    second half, so the seams between clips fall where the dance's phrases change. The clips from
    start_frame on follow the same plan when start_frame is one of its boundaries, else a plan of their
    own from start_frame.
    """
    def plan(first: int) -> list[tuple[int, int]]:
        ahead = sorted(c for c in set(cuts) if first < c < num_frames)
        lines = sorted(set(bars))
        clips, position = [], first
        while position < num_frames:
            full = position + clip_length
            end = min([full, num_frames, *[c for c in ahead if c > position][:1]])
            if end == full < num_frames:
                on_bars = [b for b in lines if position + clip_length // 2 < b <= full]
                end = on_bars[-1] if on_bars else end
            clips.append((position, end - position))
            position = end
        return clips

    whole = plan(0)
    done = [clip for clip in whole if clip[0] < start_frame]
    todo = [clip for clip in whole if clip[0] >= start_frame]
    if start_frame and (not todo or todo[0][0] != start_frame):
        todo = plan(start_frame)
    return done, todo


def unet_parts(unet: nn.Module) -> list[nn.Module]:
    """The parts of every UNet block (the elements of the blocks' module lists: ResNets, attention, temporal
    modules), in the order of the blocks: the points between which a running step can be stopped."""
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    return [part for block in blocks for child in block.children() if isinstance(child, nn.ModuleList) for part in child]


def add_stop_points(unet: nn.Module, interrupt: Callable[[], None] | None) -> list:
    """Call `interrupt` before every part of the UNet's blocks (see unet_parts); the hooks' handles, to remove."""
    if interrupt is None:
        return []
    return [part.register_forward_pre_hook(lambda module, args: interrupt()) for part in unet_parts(unet)]


def _move(modules: dict[str, nn.Module], device: torch.device | str) -> None:
    for module in modules.values():
        nn.Module.to(module, device=device)  # not diffusers' ModelMixin.to, which warns on every call


FAR_FROM_TRAINING = 1.5  # MuseDancePipeline.size_note: a side this many times the trained one, or less by as much


class MuseDancePipeline:
    """Holds the models and samples videos; see the module docstring for the data path."""

    def __init__(
        self,
        config: MuseDanceConfig,
        unet: MuseDanceUNet,
        reference_net: UNet2DConditionModel,
        mask_encoder: nn.Module,
        vae: AutoencoderKL,
        scheduler: DDIMScheduler | None = None,
        text_encoder: CLIPTextModel | None = None,
        tokenizer: CLIPTokenizer | None = None,
    ) -> None:
        self.config = config
        self.unet = unet
        self.reference_net = reference_net
        self.mask_encoder = mask_encoder
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.load_report = None  # set by musedance_core.load_pipeline
        # Used for every sampler setting a call leaves on auto; a checkpoint's own come with load_pipeline.
        self.recommended = SamplerSettings()
        self.training_size: tuple[int, int] | None = None  # (height, width) it was trained on, when the file says
        self.scheduler = scheduler or self.default_scheduler(config)
        self.bank = ReferenceBank()
        attach_reference_writer(self.reference_net, self.bank)
        attach_reference_reader(self.unet, self.bank)
        self._compiled_unet: nn.Module | None = None
        self._compiled_settings: tuple = ()

    @staticmethod
    def default_scheduler(config: MuseDanceConfig) -> DDIMScheduler:
        return sampling_scheduler(config)

    @classmethod
    def from_config(cls, config: MuseDanceConfig, seed: int = 0, text_encoder: bool = False) -> "MuseDancePipeline":
        """Build every component from `config` with random weights (seeded); the temporal modules and F_m start as identity.

        text_encoder: also build a random CLIP text encoder (no tokenizer: set `pipe.tokenizer` to encode prompts).
        To load real weights use `musedance_core.loading.loader.load_pipeline`.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = MuseDanceUNet(config.unet)
            reference_net = UNet2DConditionModel(**config.unet.diffusers_kwargs())
            mask_encoder = build_mask_encoder(config.mask_encoder, config.vae.latent_channels)
            vae = AutoencoderKL(**config.vae.diffusers_kwargs())
            clip = build_text_encoder(config.text_encoder) if text_encoder else None
        pipe = cls(config, unet, reference_net, mask_encoder, vae, text_encoder=clip)
        return pipe.eval()

    def modules(self) -> dict[str, nn.Module]:
        """The models by checkpoint component name (the text encoder only when there is one)."""
        modules = {"unet": self.unet, "reference_net": self.reference_net, "mask_encoder": self.mask_encoder, "vae": self.vae}
        if self.text_encoder is not None:
            modules["text_encoder"] = self.text_encoder
        return modules

    def used_while_sampling(self) -> dict[str, nn.Module]:
        """The modules the denoising loop calls: the UNet and the VAE's decoder half (with `idle_while_sampling`,
        every module of `modules()` once)."""
        used = {"unet": self.unet, "vae_decoder": self.vae.decoder}
        if getattr(self.vae, "post_quant_conv", None) is not None:  # diffusers leaves it out with use_post_quant_conv=False
            used["vae_post_quant_conv"] = self.vae.post_quant_conv
        return used

    def idle_while_sampling(self) -> dict[str, nn.Module]:
        """The modules the denoising loop never calls, once the reference, the prompts and a continued video's
        last frames are encoded: the ReferenceNet, F_m, the text encoder and the VAE's encoder half."""
        idle = {"reference_net": self.reference_net, "mask_encoder": self.mask_encoder, "vae_encoder": self.vae.encoder}
        if getattr(self.vae, "quant_conv", None) is not None:  # diffusers leaves it out with use_quant_conv=False
            idle["vae_quant_conv"] = self.vae.quant_conv
        if self.text_encoder is not None:
            idle["text_encoder"] = self.text_encoder
        return idle

    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        """CLIP hidden states [B, 77, D] of the motion prompt(s), ready for `text_embeds`."""
        if self.text_encoder is None:
            raise ValueError(
                "this pipeline has no text encoder: load an SD1.5 base checkpoint or a self-contained MuseDance "
                "checkpoint, or pass text_embeds directly."
            )
        if self.tokenizer is None:
            raise ValueError(f"this pipeline has no tokenizer, so it cannot encode a prompt. {TOKENIZER_HELP}")
        return encode_prompt(self.tokenizer, self.text_encoder, prompt, self.config.text_length)

    def size_note(self, height: int, width: int) -> str | None:
        """A warning when frames of height x width are far (more than FAR_FROM_TRAINING times, larger or smaller,
        along a side) from the size the model was trained at; None when near it or when that size is unknown."""
        if self.training_size is None:
            return None
        trained_h, trained_w = self.training_size
        ratios = (height / trained_h, width / trained_w)
        if all(1 / FAR_FROM_TRAINING <= r <= FAR_FROM_TRAINING for r in ratios):
            return None
        return (f"{width}x{height} is far from the {trained_w}x{trained_h} this model was trained at: expect "
                "repeated or broken figures above it and lost detail below it. Its own size works best.")

    def cut_from_prompt(self, prompt: str) -> str:
        """What `encode_prompt` leaves out of a prompt longer than the text encoder reads ("" when nothing)."""
        return cut_words(self.tokenizer, prompt, self.config.text_length) if self.tokenizer is not None else ""

    def eval(self) -> "MuseDancePipeline":
        for m in self.modules().values():
            m.eval().requires_grad_(False)
        return self

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> "MuseDancePipeline":
        dtype = resolve_dtype(dtype) if dtype is not None else None
        if (device is None or torch.device(device) == self.device) and dtype in (None, self.dtype):
            return self
        for m in self.modules().values():
            # nn.Module.to: diffusers' ModelMixin.to warns on every dtype cast about from_pretrained,
            # which does not apply to models built here.
            nn.Module.to(m, device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- reference --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_reference(
        self, reference_image: torch.Tensor, mask: torch.Tensor | None, text_embeds: torch.Tensor,
        interrupt: Callable[[], None] | None = None,
    ) -> ReferenceEncoding:
        """Run the VAE, F_m and the ReferenceNet once on the reference (on the ReferenceNet's device and dtype,
        which need not be the UNet's: see `idle_while_sampling`).

        interrupt: called between the parts of the ReferenceNet's blocks; it raises to stop (see iter_clips).
        """
        image = self._check_image(reference_image)
        height, width = image.shape[1:3]
        condition = mask_condition(mask, height, width)
        text = self._check_text("text_embeds", text_embeds)
        weight = next(self.reference_net.parameters())
        device, dtype = weight.device, weight.dtype
        hooks = add_stop_points(self.reference_net, interrupt)
        try:
            latent = encode_frames(self.vae, image, self.config.vae.scaling_factor)
            tokens = reference_features(self.reference_net, self.mask_encoder, self.bank, latent, condition.to(device),
                                        text.to(device=device, dtype=dtype))
        finally:
            for hook in hooks:
                hook.remove()
        return ReferenceEncoding(latent=latent, tokens=tokens, height=height, width=width)

    # -- sampling ---------------------------------------------------------------------------------
    def compile_unet(self, backend: str | Callable = "inductor", mode: str | None = None) -> nn.Module:
        """The UNet under `torch.compile`, as `iter_clips(compile_unet=True)` runs its denoising steps.

        Made on the first call and kept with the pipeline, so each frame size and clip length is compiled
        once (on its first step) and reused by every later clip and video; shapes are static
        (`dynamic=False`), as a clip's are. A later call with other settings compiles anew.
        """
        settings = (backend, mode)
        if self._compiled_unet is None or self._compiled_settings != settings:
            self._compiled_unet = torch.compile(self.unet, backend=backend, mode=mode, dynamic=False)
            self._compiled_settings = settings
        return self._compiled_unet

    def __call__(self, **kwargs) -> torch.Tensor:
        """Generate the whole video: float frames [F, H, W, 3] in [0, 1] on the CPU. Arguments as `iter_clips`."""
        return torch.cat(list(self.iter_clips(**kwargs)), dim=0)

    @torch.no_grad()
    def iter_clips(
        self,
        *,
        text_embeds: torch.Tensor,
        music_tokens: torch.Tensor | "FrameTokens",
        beats: torch.Tensor,
        reference_image: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        reference: ReferenceEncoding | None = None,
        negative_text_embeds: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        eta: float = 0.0,
        seed: int = 0,
        noise_share: float | None = None,
        beat_guidance_scale: float | str | None = AUTO,
        reference_start: bool | None = None,
        clip_length: int | None = None,
        motion_frames: int | None = None,
        decode_chunk_size: int = 8,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        callback: Callable[[StepInfo], bool | None] | None = None,
        start_frame: int = 0,
        context_frames: torch.Tensor | None = None,
        text_schedule: Sequence[tuple[int, torch.Tensor]] = (),
        interrupt: Callable[[], None] | None = None,
        bar_frames: Sequence[int] = (),
        guidance_schedule: Sequence[tuple[int, dict]] = (),
        one_row_at_a_time: bool = False,
        vae_tile_size: int = 0,
        compile_unet: bool = False,
        offload_idle: torch.device | str | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the video clip by clip, each as float frames [K, H, W, 3] in [0, 1] on the CPU.

        text_embeds: [1, T, D] or [T, D] CLIP hidden states of the motion prompt.
        music_tokens: [F, L, music_dim] per-frame music tokens, a tensor or `FrameTokens` (made a clip at a
        time); beats: [F] of 0/1, one per frame.
        Either reference_image ([H, W, 3] or [1, H, W, 3] in [0, 1], sides multiples of 8) with an
        optional foreground mask ([H, W] in [0, 1]; None means the whole image is foreground), or a
        `reference` from `encode_reference`.
        num_inference_steps, guidance_scale, noise_share, reference_start left as None, and
        beat_guidance_scale left as "auto", take the model's recommended settings (`self.recommended`,
        from the checkpoint's metadata).
        guidance_scale 1 disables classifier-free guidance; above 1 the unconditional half has no
        reference, negative (default zero) text, zero music tokens and unknown beats.
        noise_share in [0, 1] mixes one noise image shared by all frames into each frame's starting noise,
        sqrt(s) * shared + sqrt(1 - s) * own (PYoCo's "mixed" noise prior; each frame's noise stays N(0, I)):
        0 is independent noise per frame, 1 the same noise for every frame; higher values keep what the
        music does not change (background, colours) the same from frame to frame.
        reference_start: start every frame from the reference latent noised to the first timestep,
        sqrt(a_t) * z_ref + sqrt(1 - a_t) * noise, instead of pure noise. SD1.5's schedule keeps signal at
        its last timesteps (and DDIM's "leading" spacing begins below them), so in training the model saw
        x_t carry the frame's low frequencies (its colours, where the figure is) and learnt to read them
        from x_t; pure noise then hands every frame random colours. The frames of a dance share the
        reference's background and figure, so the noised reference is the start the model was trained on
        (as FrameInit in ConsistI2V or an image-to-video img2img start).
        beat_guidance_scale: a guidance scale of the beats' own, None to guide them with the rest.
        Given, each step also predicts with the beats unknown and the text, music and reference
        kept (the row a model trained with train.beat_drop_rate knows) and combines
        eps_u + g (eps_nobeats - eps_u) + g_b (eps - eps_nobeats) (one more model row per step; eps_u only
        with guidance_scale g > 1). g_b = g is plain guidance; g_b > g pushes the video further towards
        what the beats change.
        callback(StepInfo) runs after every denoising step; returning True raises GenerationStopped.
        text_schedule: (first frame, text_embeds) pairs: from that frame on the video follows that motion prompt
        (the latest such), before the first pair text_embeds; a clip ends where the prompt changes, so each
        prompt begins with a clip of its own (see clip_plan), and each clip's motion context is read with the
        clip's own prompt. A song's sections can so each have their moves, from their first frame.
        bar_frames: the frames where a bar starts; given, clips end on bar lines (see clip_plan).
        guidance_schedule: (first frame, settings) pairs: from that frame on, the settings' guidance_scale and
        beat_guidance_scale (None: the beats guided with the rest) replace the call's; a scale a pair leaves
        out keeps the call's. A clip ends where the settings change, as for text_schedule.
        interrupt: called between the parts of every UNet block (ResNets, attention, temporal modules) and before
        every clip and VAE chunk; it raises to stop (a Cancel), so a stop takes effect within a fraction of one
        step however large the frames, not only between steps as with callback.
        start_frame, context_frames: continue a video that already has frames 0 .. start_frame - 1 (a render that
        was stopped, or a video to extend with more music): music_tokens and beats still describe the whole
        span from frame 0, context_frames ([n >= M, H, W, 3] in [0, 1]) are that video's last frames, whose
        last M (VAE-encoded) are the motion context of the first new clip, and clips are yielded from
        start_frame on. The random stream is first advanced past the clips of the grid 0, K, 2K, ... that lie
        before start_frame, so a video continued on that grid draws the noise an unbroken run would have.
        Low-memory options: one_row_at_a_time runs guidance's rows through the UNet one after another (the
        same frames; each step's activations for one row instead of two or three, a little slower);
        decode_chunk_size frames are VAE-decoded at a time; vae_tile_size > 0 decodes frames larger than that
        in overlapping tiles of that many pixels a side, blended at the seams (the frames then differ slightly
        from an untiled decode). offload_idle: a device (e.g. "cpu" when sampling on a GPU) where the modules
        the denoising loop does not use (`idle_while_sampling`) wait while the clips are made: they move there
        once the reference and a continued video's last frames are encoded, before the first UNet pass, and
        back to the pipeline's device when the run ends (also on an error or a stop); the same frames, their
        weights off the device.
        compile_unet: run the denoising steps through `compile_unet()` (made with its defaults on first use);
        interrupt is then called after every step instead of inside the UNet's blocks.
        """
        if not isinstance(compile_unet, bool):
            raise ValueError(f"compile_unet must be True or False, got {compile_unet!r}.")
        if beat_guidance_scale == AUTO:
            beat_guidance_scale = self.recommended.beat_guidance_scale
        num_inference_steps = self.recommended.steps if num_inference_steps is None else num_inference_steps
        guidance_scale = self.recommended.guidance_scale if guidance_scale is None else guidance_scale
        noise_share = self.recommended.noise_share if noise_share is None else noise_share
        reference_start = self.recommended.reference_start if reference_start is None else reference_start
        k = self.config.clip_length if clip_length is None else clip_length
        m = self.config.motion_frames if motion_frames is None else motion_frames
        num_frames = self._check_sampling_args(
            music_tokens, beats, num_inference_steps, guidance_scale, eta, k, m, decode_chunk_size, noise_share,
            vae_tile_size,
        )
        if isinstance(start_frame, bool) or not isinstance(start_frame, int) or not 0 <= start_frame < num_frames:
            raise ValueError(f"start_frame must be a frame of the music, 0 to {num_frames - 1}, got {start_frame!r}.")
        if start_frame and m and (context_frames is None or context_frames.ndim != 4 or context_frames.shape[0] < m):
            raise ValueError(f"continuing at frame {start_frame} needs the video's last {m} frames as context_frames "
                             f"[n >= {m}, H, W, 3], got {None if context_frames is None else tuple(context_frames.shape)}.")
        if not isinstance(reference_start, bool):
            raise ValueError(f"reference_start must be True or False, got {reference_start!r}.")
        if offload_idle is not None:
            try:
                offload_idle = torch.device(offload_idle)
            except (RuntimeError, TypeError):
                raise ValueError(f"offload_idle must be a device (e.g. \"cpu\") or None, got {offload_idle!r}.") from None
        if beat_guidance_scale is not None and (
                isinstance(beat_guidance_scale, bool) or not isinstance(beat_guidance_scale, (int, float))
                or not 0.0 <= float(beat_guidance_scale) <= MAX_GUIDANCE):
            raise ValueError(f"beat_guidance_scale must be \"auto\" (the model's), None (guide the beats with the "
                             f"rest) or in [0, {MAX_GUIDANCE:g}], got {beat_guidance_scale!r}.")
        text = self._check_text("text_embeds", text_embeds)
        negative = (
            torch.zeros_like(text) if negative_text_embeds is None
            else self._check_text("negative_text_embeds", negative_text_embeds)
        )
        if reference is None:
            if reference_image is None:
                raise ValueError("give reference_image (and optionally mask), or a reference from encode_reference().")
            image = self._check_image(reference_image)
            mask_condition(mask, image.shape[1], image.shape[2])
        elif reference_image is not None:
            raise ValueError("give either reference_image or reference, not both.")
        if device is not None or dtype is not None:
            self.to(device, dtype)
        device, dtype = self.device, self.dtype
        if reference is None:
            reference = self.encode_reference(reference_image, mask, text)

        settings = [(0, {})]  # (first frame, the scales that replace the call's), by first frame
        for first, chosen in sorted(guidance_schedule, key=lambda pair: pair[0]):
            if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first < num_frames:
                raise ValueError(f"guidance_schedule's first frames must be frames of the music, 0 to {num_frames - 1}; "
                                 f"got {first!r}.")
            unknown = set(chosen) - {"guidance_scale", "beat_guidance_scale"}
            scale, beat_scale = chosen.get("guidance_scale", 1.0), chosen.get("beat_guidance_scale")
            if unknown or not 1.0 <= float(scale) <= MAX_GUIDANCE or (
                    beat_scale is not None and not 0.0 <= float(beat_scale) <= MAX_GUIDANCE):
                raise ValueError(f"guidance_schedule at frame {first}: {chosen!r} must give guidance_scale in [1, "
                                 f"{MAX_GUIDANCE:g}] and beat_guidance_scale None or in [0, {MAX_GUIDANCE:g}], nothing else.")
            settings.append((first, dict(chosen)))
        guides: dict[tuple, GuidedDenoiser] = {}
        if compile_unet and self._compiled_unet is None:
            self.compile_unet()
        step_unet = self._compiled_unet if compile_unet else self.unet

        def guide_at(start: int) -> GuidedDenoiser:
            """The guided denoiser of the settings in force at frame `start`."""
            chosen = [pair for first, pair in settings if first <= start][-1]  # sorted: the latest wins
            key = (chosen.get("guidance_scale", guidance_scale), chosen.get("beat_guidance_scale", beat_guidance_scale))
            if key not in guides:
                guides[key] = GuidedDenoiser(step_unet, *key, one_row_at_a_time=one_row_at_a_time, bank=self.bank)
            return guides[key]

        guide = guide_at(0)
        prompts = [(0, text)]  # (first frame, text), by first frame; a later pair for the same frame wins
        for first, embeds in sorted(text_schedule, key=lambda pair: pair[0]):
            if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first < num_frames:
                raise ValueError(f"text_schedule's first frames must be frames of the music, 0 to {num_frames - 1}; "
                                 f"got {first!r}.")
            prompts.append((first, self._check_text("text_schedule's text_embeds", embeds)))
        text_rows_of: dict[tuple, torch.Tensor] = {}

        def text_rows(start: int, guide: GuidedDenoiser) -> torch.Tensor:
            """The guidance rows of the prompt in force at frame `start`."""
            index = max(i for i, (first, _) in enumerate(prompts) if first <= start)
            if (index, id(guide)) not in text_rows_of:
                text_rows_of[index, id(guide)] = guide.text_rows(prompts[index][1], null_text=negative).to(
                    device=device, dtype=dtype)
            return text_rows_of[index, id(guide)]

        # Music tokens stay where the caller keeps them (a whole song's can be hundreds of MB, or are made a
        # clip at a time from FrameTokens); each clip's frames move to the device when their turn comes.
        def music(start: int, length: int) -> torch.Tensor:
            if isinstance(music_tokens, torch.Tensor):
                return music_tokens[start : start + length][None]
            tokens = music_tokens.frames(start, length)
            _check_finite("music_tokens", tokens)
            return tokens[None]
        beat_vector = beats.reshape(1, num_frames).to(device)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        # A scheduler of this run's own: self.scheduler is only the template, so runs share no state.
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        latent_shape = reference.latent.shape[1:]
        # Drawn only when used, so noise_share=0 keeps the generator stream (and old seeds' videos) as it was.
        shared = (torch.randn((1, 1, *latent_shape), generator=generator, dtype=torch.float32)
                  if noise_share > 0 else None)

        def rows(start: int, length: int, known: bool, guide: GuidedDenoiser) -> tuple[torch.Tensor, torch.Tensor]:
            """Music tokens and beat ids of frames start..start+length-1 as the guidance rows; for the
            reference copies of the first clip's context, which sit at no time in the music, zero tokens
            and unknown beats."""
            if known:
                tokens = music(start, length)
                windows = frame_beats(self.config.unet, beat_vector, start, length)
            else:
                tokens = torch.zeros((1, length, *music_tokens.shape[-2:]))
                windows = unknown_frame_beats(self.config.unet, 1, length, device)
            return guide.music_rows(tokens.to(device=device, dtype=dtype), windows)

        tokens = {name: t.to(device=device, dtype=dtype) for name, t in reference.tokens.items()}
        self.bank.fill(tokens, guide.rows, keep=guide.reference_keep(device))
        bank_rows = (guide.rows, guide.unconditional_row)
        # Hooks inside a compiled UNet would be traced into its graphs: it is interrupted between steps instead.
        hooks = add_stop_points(self.unet, None if compile_unet else interrupt)
        idle: dict[str, nn.Module] = {}
        try:
            # First clip: the motion context is M copies of the reference latent, or a continued video's last M frames.
            context_latents = reference.latent.to(device=device, dtype=torch.float32)[:, None].expand(1, m, *latent_shape)
            context_known = False
            if start_frame and m:
                pixels = self._check_context(context_frames[-m:], reference)
                context_latents = encode_frames(self.vae, pixels, self.config.vae.scaling_factor).to(
                    device=device, dtype=torch.float32)[None]
                context_known = True
            if offload_idle is not None:  # the encoders' last use is behind: they wait there until the run ends
                idle = self.idle_while_sampling()
                _move(idle, offload_idle)
            cuts = [first for first, _ in prompts[1:]] + [first for first, _ in settings[1:]]
            done, todo = clip_plan(num_frames, k, cuts=cuts, start_frame=start_frame, bars=bar_frames)
            for skipped, length in done:  # the random draws of the clips already made
                shape = (1, min(length, start_frame - skipped), *latent_shape)
                for _ in range(1 + (num_inference_steps if eta > 0 else 0)):  # the start noise; DDIM's per step
                    torch.randn(shape, generator=generator, dtype=torch.float32)
            first_index = len(done)
            for clip_index, (start, length) in enumerate(todo, first_index):
                guide = guide_at(start)
                if (guide.rows, guide.unconditional_row) != bank_rows:  # the reference as this clip's rows
                    self.bank.fill(tokens, guide.rows, keep=guide.reference_keep(device))
                    bank_rows = (guide.rows, guide.unconditional_row)
                context = None
                if m:
                    context_rows = context_latents.to(dtype).expand(guide.rows, *context_latents.shape[1:])
                    context = motion_context(self.unet, context_rows, text_rows(start, guide),
                                             *rows(start - m, m, context_known, guide))
                noise = torch.randn((1, length, *latent_shape), generator=generator, dtype=torch.float32)
                if shared is not None:
                    noise = mix_frame_noise(noise, shared, noise_share)

                def step_done(step: int, latents: torch.Tensor) -> None:
                    if compile_unet and interrupt is not None:
                        interrupt()
                    if callback is not None and callback(
                        StepInfo(clip_index, first_index + len(todo), step, num_inference_steps, start, latents,
                                 context_latents)
                    ):
                        raise GenerationStopped(f"stopped by the callback at clip {clip_index + 1}, step {step + 1}.")

                latents = self._denoise_clip(
                    guide, scheduler, noise.to(device), reference.latent if reference_start else None,
                    (text_rows(start, guide), *rows(start, length, True, guide)), context, num_inference_steps, eta,
                    generator, step_done,
                )
                if m:
                    context_latents = latents[:, -m:] if length >= m else torch.cat([context_latents, latents], 1)[:, -m:]
                    context_known = length >= m
                del context
                frames = []
                for chunk in latents[0].split(decode_chunk_size):
                    if interrupt is not None:
                        interrupt()
                    frames.append(self.decode(chunk, decode_chunk_size, tile_size=vae_tile_size))
                yield torch.cat(frames)
        finally:
            for hook in hooks:
                hook.remove()
            self.bank.clear()
            if idle:
                _move(idle, device)

    def _denoise_clip(
        self, guide: GuidedDenoiser, scheduler: DDIMScheduler, noise: torch.Tensor, start_latent: torch.Tensor | None,
        conditions: tuple[torch.Tensor, torch.Tensor, torch.Tensor], context: MotionContext | None, steps: int,
        eta: float, generator: torch.Generator, step_done: Callable[[int, torch.Tensor], None],
    ) -> torch.Tensor:
        """DDIM from `noise` [1, K, C, h, w] (or from `start_latent` noised to the first timestep) to clean
        latents, with the guided denoiser; `step_done(step, latents)` after every step."""
        scheduler.set_timesteps(steps, device=noise.device)
        if start_latent is None:
            latents = noise * scheduler.init_noise_sigma
        else:  # q(x_t0 | z_ref): the reference, noised to the first timestep
            start = start_latent.to(device=noise.device, dtype=torch.float32)[:, None].expand_as(noise)
            latents = scheduler.add_noise(start, noise, scheduler.timesteps[:1])
        clip = guide.clip_conditions(*conditions)
        for step, t in enumerate(scheduler.timesteps):
            model_in = scheduler.scale_model_input(latents, t).to(self.dtype)
            noise_pred = guide(model_in, t, clip, context=context)
            latents = scheduler.step(noise_pred, t, latents, eta=eta, generator=generator).prev_sample
            step_done(step, latents)
        return latents

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: int = 8, tile_size: int = 0) -> torch.Tensor:
        """VAE-decode latents [F, C, h, w] a chunk of frames at a time -> float frames [F, H, W, 3] in [0, 1] on the CPU;
        tile_size > 0: frames larger than that in blended tiles of that side (less memory)."""
        return decode_latents(self.vae, latents, self.config.vae.scaling_factor, chunk_size, tile=tile_size or None)

    # -- input checks -----------------------------------------------------------------------------
    def _check_image(self, image: torch.Tensor) -> torch.Tensor:
        _check_finite("reference_image", image)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"reference_image must be [H, W, 3] or [1, H, W, 3], got shape {tuple(image.shape)}.")
        if image.shape[-1] != 3:
            raise ValueError(
                f"reference_image must have 3 channels (RGB, last axis), got {image.shape[-1]}; "
                "drop the alpha channel or convert grayscale to RGB first."
            )
        height, width = image.shape[1:3]
        step = self.config.vae.downscale
        if height % step or width % step or height == 0 or width == 0:
            raise ValueError(
                f"reference_image sides must be positive multiples of {step}, got {height}x{width}; "
                f"resize or crop to e.g. {max(step, height // step * step)}x{max(step, width // step * step)}."
            )
        _check_unit_range("reference_image", image)
        return image.float()

    def _check_context(self, frames: torch.Tensor, reference: ReferenceEncoding) -> torch.Tensor:
        """A continued video's last frames [M, H, W, 3] in [0, 1], of the reference's size, on the device."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or tuple(frames.shape[1:3]) != (reference.height, reference.width):
            raise ValueError(f"context_frames must be [n, {reference.height}, {reference.width}, 3], the video's own "
                             f"size, got {tuple(frames.shape)}.")
        _check_unit_range("context_frames", frames)
        return frames.to(device=self.device, dtype=torch.float32)

    def _check_text(self, name: str, text: torch.Tensor) -> torch.Tensor:
        _check_finite(name, text)
        if text.ndim == 2:
            text = text[None]
        expected = (1, self.config.text_length, self.config.unet.cross_attention_dim)
        if tuple(text.shape) != expected:
            raise ValueError(f"{name} must have shape {list(expected)} (or without the batch axis), got {list(text.shape)}.")
        return text

    def _check_sampling_args(
        self, music_tokens: torch.Tensor | "FrameTokens", beats: torch.Tensor, steps: int, guidance: float, eta: float,
        clip_length: int, motion_frames: int, decode_chunk_size: int, noise_share: float, vae_tile_size: int = 0,
    ) -> int:
        _check_finite("beats", beats)
        if isinstance(music_tokens, torch.Tensor):  # lazy tokens (FrameTokens) are checked clip by clip
            _check_finite("music_tokens", music_tokens)
        if beats.ndim != 1 or beats.shape[0] < 1:
            raise ValueError(f"beats must be a 1-D vector with one value per frame, got shape {tuple(beats.shape)}.")
        if not bool(((beats == 0) | (beats == 1)).all()):
            raise ValueError("beats must hold only 0 (no beat) and 1 (beat) per frame.")
        num_frames = beats.shape[0]
        music_dim = self.config.unet.music_dim
        if music_tokens.ndim != 3 or music_tokens.shape[-1] != music_dim:
            raise ValueError(
                f"music_tokens must be [frames, tokens, {music_dim}], got shape {tuple(music_tokens.shape)}."
            )
        if music_tokens.shape[0] != num_frames:
            raise ValueError(
                f"music_tokens has {music_tokens.shape[0]} frames but beats has {num_frames}; "
                "both must come from the same music at the same fps and duration."
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.config.scheduler.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be an integer in [1, {self.config.scheduler.num_train_timesteps}], got {steps!r}."
            )
        if not isinstance(guidance, (int, float)) or not 1.0 <= float(guidance) <= MAX_GUIDANCE:
            raise ValueError(f"guidance_scale must be in [1, {MAX_GUIDANCE:g}] (1 disables guidance), got {guidance!r}.")
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0 is deterministic DDIM), got {eta!r}.")
        if isinstance(noise_share, bool) or not isinstance(noise_share, (int, float)) or not 0.0 <= noise_share <= 1.0:
            raise ValueError(f"noise_share must be in [0, 1] (0: independent noise per frame, 1: the same noise "
                             f"for all), got {noise_share!r}.")
        if clip_length < 1 or motion_frames < 0:
            raise ValueError(f"clip_length must be >= 1 and motion_frames >= 0, got {clip_length} and {motion_frames}.")
        max_len = self.config.unet.temporal_max_seq_length
        if clip_length + motion_frames > max_len:
            raise ValueError(
                f"clip_length + motion_frames = {clip_length + motion_frames} exceeds the model's temporal "
                f"positional encoding length {max_len}; use shorter clips."
            )
        if decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be >= 1, got {decode_chunk_size}.")
        if isinstance(vae_tile_size, bool) or not isinstance(vae_tile_size, int) or (
                vae_tile_size and (vae_tile_size < 64 or vae_tile_size % self.config.vae.downscale)):
            raise ValueError(f"vae_tile_size must be 0 (no tiles) or a side of at least 64 pixels that is a multiple of "
                             f"{self.config.vae.downscale}, got {vae_tile_size!r}.")
        return num_frames
