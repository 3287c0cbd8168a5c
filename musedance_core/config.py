"""Model configuration: one dataclass tree for the full SD1.5-sized model and the tiny test model.

The spatial fields use diffusers' names and meanings, so `UNetConfig.diffusers_kwargs()` builds a
`UNet2DConditionModel` whose state dict loads into `MuseDanceUNet` by name (and the reverse).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


# The starting-noise share that the main job and the MuseDance Sampler node start from: 0, independent
# noise per frame, as the paper samples. Higher shares keep what the temporal modules do not change
# (background, colours) the same from frame to frame: with the default model, 0.9 cut the frame-to-frame
# change from 0.065 to 0.015 but lowered PSNR and SSIM against the ground truth and did not bring the motion
# closer to the beat (BENCHMARKS.md), so it is a choice for the user, not the default.
DEFAULT_NOISE_SHARE = 0.0

# The default model that ships in the pack's models/ folder (trainer/default_model.py makes it), by file name
# in models/musedance/ and folder name in models/audio_encoders/.
DEFAULT_CHECKPOINT_NAME = "musedance_default.safetensors"
DEFAULT_AST_NAME = "musedance_default_ast"

MAX_GUIDANCE = 30.0  # the sampler's guidance scales (classifier-free and the beats' own) go up to this

# The main job's beat guidance (the sampler's beat_guidance_scale) with the default model, which trains
# with train.beat_drop_rate: 5 (against guidance 2.5) put its motion stops on the beats on training clips,
# plain guidance did not (BENCHMARKS.md). The sampler node leaves it off unless set.
DEFAULT_BEAT_GUIDANCE = 5.0

# Whether the main job starts every frame from the noised reference latent (the sampler's reference_start)
# instead of pure noise. With the default model, on 24 training clips (sampler settings are chosen on
# training clips, never on the test split), it raised PSNR from 16.2 to 18.2 dB and SSIM from 0.40 to 0.50
# and 2D-MM and AV-Align held or rose; on the test split PSNR +1.6 dB, SSIM +0.08, the beat scores the same
# (BENCHMARKS.md). The sampler node leaves it off unless set; the example workflows set it.
DEFAULT_REFERENCE_START = True

MAX_BEAT_PHASE_BINS = 64  # UNetConfig.beat_phase_bins


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
        sections = {
            "unet": UNetConfig,
            "vae": VAEConfig,
            "mask_encoder": MaskEncoderConfig,
            "text_encoder": TextEncoderConfig,
            "scheduler": SchedulerConfig,
        }
        kwargs: dict[str, Any] = {}
        top_fields = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in top_fields:
                raise ValueError(f"MuseDanceConfig: unknown key {key!r}; expected one of {sorted(top_fields)}.")
            if key in sections:
                section = sections[key]
                names = {f.name for f in dataclasses.fields(section)}
                unknown = set(value) - names
                if unknown:
                    raise ValueError(f"MuseDanceConfig.{key}: unknown keys {sorted(unknown)}.")
                kwargs[key] = section(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "MuseDanceConfig":
        return cls.from_dict(json.loads(text))
