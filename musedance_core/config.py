"""Model configuration: one dataclass tree for the full SD1.5-sized model and the tiny test model.

The spatial fields use diffusers' names and meanings, so `UNetConfig.diffusers_kwargs()` builds a
`UNet2DConditionModel` whose state dict loads into `MuseDanceUNet` by name (and the reverse).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# The default model that ships in the pack's models/ folder (trainer/default_model.py makes it), by file name
# in models/musedance/ and folder name in models/audio_encoders/.
DEFAULT_CHECKPOINT_NAME = "musedance_default.safetensors"
DEFAULT_AST_NAME = "musedance_default_ast"
DEFAULT_FLOW_CHECKPOINT_NAME = "musedance_flow_default.safetensors"

MAX_GUIDANCE = 30.0  # the sampler's guidance scales (classifier-free and the beats' own) go up to this
AUTO = "auto"  # a sampler setting left to the model's recommendation (`SamplerSettings`)
MAX_BEAT_PHASE_BINS = 64  # UNetConfig.beat_phase_bins
MAX_TEMPORAL_FF_MULT = 8  # UNetConfig.temporal_ff_mult


@dataclass
class UNetConfig:
    """Denoising UNet (and ReferenceNet) layout plus the three temporal modules of every slot."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    )
    up_block_types: tuple[str, ...] = (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    )
    layers_per_block: int = 2
    # diffusers calls this `attention_head_dim` for SD1.x, but it is the number of heads (8).
    num_attention_heads: int = 8
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    # Temporal modules (music, beat, motion).
    music_dim: int = 768  # width of the AST tokens the music module attends to
    beat_dim: int = 320  # width of the beat embedding tokens
    beat_window: int = 2  # each frame attends to the beats of frames k-w..k+w
    # 0: the paper's beat tokens only. P > 0: one more token per frame, its phase within the beat
    # interval in P bins and the beat's parity (temporal.beat_phase_ids); not in the paper.
    beat_phase_bins: int = 0
    temporal_num_attention_heads: int = 8
    # Width of the music and beat modules' feed-forward layers, in multiples of the channels (GEGLU). The
    # paper gives no module sizes: 4 is AnimateDiff's (the motion modules keep it, to load its weights); 2 is
    # the lean configuration (benchmarks/flop_count.py --ff-mult 2).
    temporal_ff_mult: int = 4
    temporal_max_seq_length: int = 64  # positional encodings cover K + M frames up to this
    temporal_dropout: float = 0.05  # the paper's dropout on the temporal modules (training only)

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        self.down_block_types = tuple(self.down_block_types)
        self.up_block_types = tuple(self.up_block_types)
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"UNetConfig: down_block_types ({len(self.down_block_types)}) and up_block_types "
                f"({len(self.up_block_types)}) must both have one entry per block_out_channels ({n})."
            )
        allowed_down = {"CrossAttnDownBlock2D", "DownBlock2D"}
        allowed_up = {"CrossAttnUpBlock2D", "UpBlock2D"}
        for kind in self.down_block_types:
            if kind not in allowed_down:
                raise ValueError(f"UNetConfig: down block type {kind!r} is not one of {sorted(allowed_down)}.")
        for kind in self.up_block_types:
            if kind not in allowed_up:
                raise ValueError(f"UNetConfig: up block type {kind!r} is not one of {sorted(allowed_up)}.")
        for ch in self.block_out_channels:
            if ch % self.norm_num_groups or ch % self.num_attention_heads or ch % self.temporal_num_attention_heads:
                raise ValueError(
                    f"UNetConfig: every block width must be divisible by norm_num_groups "
                    f"({self.norm_num_groups}) and by the head counts; {ch} is not."
                )
        if self.temporal_max_seq_length < 2:
            raise ValueError("UNetConfig: temporal_max_seq_length must be at least 2.")
        if self.beat_window < 0:
            raise ValueError(f"UNetConfig: beat_window must be 0 or more, got {self.beat_window}.")
        if isinstance(self.temporal_ff_mult, bool) or not isinstance(self.temporal_ff_mult, int) or not (
                1 <= self.temporal_ff_mult <= MAX_TEMPORAL_FF_MULT):
            raise ValueError(f"UNetConfig: temporal_ff_mult must be an integer from 1 to {MAX_TEMPORAL_FF_MULT}, "
                             f"got {self.temporal_ff_mult!r}.")
        if not 0 <= self.beat_phase_bins <= MAX_BEAT_PHASE_BINS:
            raise ValueError(f"UNetConfig: beat_phase_bins must be 0 (off) to {MAX_BEAT_PHASE_BINS}, "
                             f"got {self.beat_phase_bins}.")

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Arguments for diffusers' `UNet2DConditionModel` with the same spatial layout (the ReferenceNet)."""
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            block_out_channels=self.block_out_channels,
            down_block_types=self.down_block_types,
            up_block_types=self.up_block_types,
            layers_per_block=self.layers_per_block,
            attention_head_dim=self.num_attention_heads,
            cross_attention_dim=self.cross_attention_dim,
            norm_num_groups=self.norm_num_groups,
            norm_eps=self.norm_eps,
        )


@dataclass
class VAEConfig:
    """diffusers `AutoencoderKL` arguments (SD1.5 defaults)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along one side (8 for SD1.5)."""
        return 2 ** (len(self.block_out_channels) - 1)

    def diffusers_kwargs(self) -> dict[str, Any]:
        n = len(self.block_out_channels)
        return dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            norm_num_groups=self.norm_num_groups,
            scaling_factor=self.scaling_factor,
        )


@dataclass
class MaskEncoderConfig:
    """F_m: ControlNet-style hint encoder from the mask (1 channel, image size) to latent size."""

    block_out_channels: tuple[int, ...] = (16, 32, 96, 256)

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)


@dataclass
class FlowAutoencoderConfig:
    """DabFusion's latent flow auto-encoder (models/flow.py): encoder and decoder widths, the flow predictor's."""

    block_out_channels: tuple[int, ...] = (32, 64, 128)  # the latent has the last width, at 1 / 2^(n-1) of the image
    residual_blocks: int = 3  # after the encoder and before the decoder (Johnson et al. use 5)
    flow_block_out_channels: tuple[int, ...] = (32, 64, 128, 256)  # the hourglass, one level per width
    norm_num_groups: int = 8

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        self.flow_block_out_channels = tuple(self.flow_block_out_channels)
        if len(self.block_out_channels) < 2:
            raise ValueError("FlowAutoencoderConfig: block_out_channels needs at least two widths (one downsampling).")

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along one side."""
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass
class FlowUNetConfig:
    """DabFusion's flow denoiser (models/flow_unet.py): a UNet over the frames' flow and occlusion maps, with
    MuseDance's music, beat and motion modules at every level."""

    block_out_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    music_dim: int = 768  # width of the music tokens (the AST's)
    beat_dim: int = 128
    beat_window: int = 2
    beat_phase_bins: int = 0
    num_attention_heads: int = 4
    max_seq_length: int = 64  # frames (context included) the temporal positions cover
    # A residual convolution over neighbouring frames at every pixel, first in every temporal stack (the
    # temporal layers of DabFusion's 3D UNet; attention alone leaves each frame's flow free to jitter).
    # 0: none (files written without this field); otherwise its odd kernel size in frames.
    temporal_kernel: int = 0

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        if self.temporal_kernel < 0 or (self.temporal_kernel and self.temporal_kernel % 2 == 0):
            raise ValueError(f"FlowUNetConfig: temporal_kernel must be 0 (none) or an odd number of frames, "
                             f"got {self.temporal_kernel}.")
        for width in self.block_out_channels:
            if width % self.norm_num_groups or width % self.num_attention_heads:
                raise ValueError(f"FlowUNetConfig: width {width} must divide by norm_num_groups "
                                 f"({self.norm_num_groups}) and num_attention_heads ({self.num_attention_heads}).")


@dataclass
class TextEncoderConfig:
    """transformers `CLIPTextConfig` arguments; the defaults are SD1.5's CLIP ViT-L/14 text tower."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    projection_dim: int = 768

    def transformers_kwargs(self) -> dict[str, Any]:
        # CLIP's special tokens: <|startoftext|> and <|endoftext|> are the last two ids of its vocabulary.
        return dict(
            dataclasses.asdict(self), bos_token_id=self.vocab_size - 2, eos_token_id=self.vocab_size - 1, pad_token_id=1
        )


@dataclass
class SchedulerConfig:
    """DDIM settings of Stable Diffusion 1.5."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    steps_offset: int = 1
    timestep_spacing: str = "leading"


@dataclass
class MuseDanceConfig:
    """Everything needed to build a MuseDance model with random weights, and to check a checkpoint against."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    mask_encoder: MaskEncoderConfig = field(default_factory=MaskEncoderConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    text_length: int = 77
    fps: float = 12.0
    clip_length: int = 48  # K: frames generated per clip (4 s at 12 fps)
    motion_frames: int = 2  # M: previous frames the motion module sees

    def __post_init__(self) -> None:
        if len(self.mask_encoder.block_out_channels) != len(self.vae.block_out_channels):
            raise ValueError(
                "MuseDanceConfig: the mask encoder must downsample as much as the VAE: give it "
                f"{len(self.vae.block_out_channels)} widths, not {len(self.mask_encoder.block_out_channels)}."
            )
        if self.clip_length + self.motion_frames > self.unet.temporal_max_seq_length:
            raise ValueError(
                f"MuseDanceConfig: clip_length + motion_frames = {self.clip_length + self.motion_frames} "
                f"exceeds unet.temporal_max_seq_length = {self.unet.temporal_max_seq_length}."
            )
        if self.vae.latent_channels != self.unet.in_channels:
            raise ValueError("MuseDanceConfig: vae.latent_channels must equal unet.in_channels.")
        if self.text_encoder.hidden_size != self.unet.cross_attention_dim:
            raise ValueError(
                f"MuseDanceConfig: text_encoder.hidden_size ({self.text_encoder.hidden_size}) must equal "
                f"unet.cross_attention_dim ({self.unet.cross_attention_dim}): the UNet attends to the text states."
            )
        if self.text_encoder.max_position_embeddings != self.text_length:
            raise ValueError("MuseDanceConfig: text_encoder.max_position_embeddings must equal text_length.")

    @classmethod
    def sd15(cls) -> "MuseDanceConfig":
        """Full size: SD1.5 UNet, VAE and CLIP widths, AST-base music tokens, K=48, M=2."""
        return cls()

    @classmethod
    def tiny(cls) -> "MuseDanceConfig":
        """A two-million-parameter model with the same structure, for tests and the demo."""
        return cls(
            unet=UNetConfig(
                block_out_channels=(32, 64),
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                layers_per_block=1,
                num_attention_heads=2,
                cross_attention_dim=32,
                norm_num_groups=8,
                music_dim=32,
                beat_dim=16,
                temporal_num_attention_heads=2,
            ),
            vae=VAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8),
            mask_encoder=MaskEncoderConfig(block_out_channels=(4, 8, 8, 8)),
            # The full CLIP vocabulary, so the real SD1 tokenizer (ComfyUI's) works with the tiny model.
            text_encoder=TextEncoderConfig(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32
            ),
            clip_length=8,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MuseDanceConfig":
        """Inverse of `to_dict`; unknown keys are an error so a typo cannot pass silently."""
        return dataclass_from_dict(cls, data, "MuseDanceConfig")

    @classmethod
    def from_json(cls, text: str) -> "MuseDanceConfig":
        return cls.from_dict(json.loads(text))


@dataclass
class FlowDanceConfig:
    """The flow family (DabFusion): the latent flow auto-encoder, the flow denoiser and how clips are made."""

    autoencoder: FlowAutoencoderConfig = field(default_factory=FlowAutoencoderConfig)
    unet: FlowUNetConfig = field(default_factory=FlowUNetConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    size: int = 128  # frames are square at this size for the auto-encoder (the paper's 128x128)
    flow_scale: float = 10.0  # flows (normalised units, small) are multiplied by this for the diffusion
    fps: float = 12.0
    clip_length: int = 16  # K: frames generated per clip
    motion_frames: int = 2  # M: earlier frames the motion modules see

    def __post_init__(self) -> None:
        if self.size % self.autoencoder.downscale:
            raise ValueError(f"FlowDanceConfig: size {self.size} must be a multiple of the auto-encoder's "
                             f"downscale {self.autoencoder.downscale}.")
        if self.clip_length + self.motion_frames > self.unet.max_seq_length:
            raise ValueError(f"FlowDanceConfig: clip_length + motion_frames = {self.clip_length + self.motion_frames} "
                             f"exceeds unet.max_seq_length = {self.unet.max_seq_length}.")

    @property
    def latent_size(self) -> int:
        return self.size // self.autoencoder.downscale

    @classmethod
    def tiny(cls) -> "FlowDanceConfig":
        """A small flow model with the same structure, for tests."""
        return cls(
            autoencoder=FlowAutoencoderConfig(block_out_channels=(16, 32, 32), residual_blocks=1,
                                              flow_block_out_channels=(16, 32, 32, 64)),
            unet=FlowUNetConfig(block_out_channels=(32, 64), music_dim=32, beat_dim=16, num_attention_heads=2),
            size=32, clip_length=8,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FlowDanceConfig":
        return dataclass_from_dict(cls, json.loads(text), "FlowDanceConfig")


@dataclass(frozen=True)
class SamplerSettings:
    """Sampler settings a checkpoint recommends (its metadata carries them); the sampler node and the main job
    use them for every value the user leaves on auto. The defaults are for a model that recommends nothing."""

    steps: int = 25
    guidance_scale: float = 3.5
    beat_guidance_scale: float | None = None  # None: the beats are guided with the rest
    noise_share: float = 0.0
    reference_start: bool = False

    def __post_init__(self) -> None:
        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise ValueError(f"SamplerSettings.steps must be an integer in [1, 1000], got {self.steps!r}.")
        if not number(self.guidance_scale) or not 1.0 <= self.guidance_scale <= MAX_GUIDANCE:
            raise ValueError(f"SamplerSettings.guidance_scale must be in [1, {MAX_GUIDANCE:g}], "
                             f"got {self.guidance_scale!r}.")
        beat = self.beat_guidance_scale
        if beat is not None and (not number(beat) or not 0.0 <= beat <= MAX_GUIDANCE):
            raise ValueError(f"SamplerSettings.beat_guidance_scale must be None or in [0, {MAX_GUIDANCE:g}], "
                             f"got {beat!r}.")
        if not number(self.noise_share) or not 0.0 <= self.noise_share <= 1.0:
            raise ValueError(f"SamplerSettings.noise_share must be in [0, 1], got {self.noise_share!r}.")
        if not isinstance(self.reference_start, bool):
            raise ValueError(f"SamplerSettings.reference_start must be true or false, got {self.reference_start!r}.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SamplerSettings":
        return dataclass_from_dict(cls, json.loads(text), "SamplerSettings")

    def describe(self) -> str:
        beat = "off" if self.beat_guidance_scale is None else f"{self.beat_guidance_scale:g}"
        return (f"steps {self.steps}, guidance {self.guidance_scale:g}, beat guidance {beat}, "
                f"noise share {self.noise_share:g}, reference start {'on' if self.reference_start else 'off'}")


def dataclass_from_dict(cls: type, data: Any, where: str) -> Any:
    """Construct dataclass `cls` from a mapping, recursing into fields whose default is a dataclass; unknown
    keys are an error naming `where`, so a typo cannot pass silently."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(fields)}.")
    kwargs = {}
    for key, value in data.items():
        factory = fields[key].default_factory
        section = type(factory()) if factory is not dataclasses.MISSING else None
        if section is not None and dataclasses.is_dataclass(section):
            kwargs[key] = dataclass_from_dict(section, value, f"{where}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)
