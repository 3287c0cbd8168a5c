"""Tiny source models and the files they are written to, in the formats users actually have.

Every model here has random weights everywhere (no zero-initialised layer that could hide a wiring
mistake), so a loaded model can be compared with the model its file came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel

import ldm_layout as L
from musedance_core.config import MuseDanceConfig
from musedance_core.models.text_encoder import build_text_encoder


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter random (std 0.05 around its initial value), deterministically."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return module.eval()


@dataclass
class TinySD15:
    """A tiny SD1.5-layout model: its three diffusers/transformers parts and its single-file state dict."""

    config: MuseDanceConfig
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel

    def ldm_state_dict(self, with_position_ids: bool = True) -> dict[str, torch.Tensor]:
        u = self.config.unet
        return L.sd15_single_file(
            self.unet.state_dict(), self.vae.state_dict(), self.text_encoder.state_dict(),
            u.layers_per_block, len(u.block_out_channels), add_position_ids=with_position_ids,
        )

    def write(self, folder: Path, name: str = "tiny_sd15.safetensors") -> Path:
        path = Path(folder) / name
        sd = self.ldm_state_dict()
        if path.suffix == ".ckpt":
            return L.write_ckpt(path, sd)
        return L.write_safetensors(path, sd)


def tiny_sd15(config: MuseDanceConfig | None = None, seed: int = 0) -> TinySD15:
    config = config or MuseDanceConfig.tiny()
    torch.manual_seed(seed)
    unet = randomize(UNet2DConditionModel(**config.unet.diffusers_kwargs()), seed + 1)
    vae = randomize(AutoencoderKL(**config.vae.diffusers_kwargs()), seed + 2)
    text = randomize(build_text_encoder(config.text_encoder), seed + 3)
    return TinySD15(config, unet, vae, text)


def tiny_motion_adapter(config: MuseDanceConfig | None = None, seed: int = 0, max_seq_length: int = 32,
                        block_out_channels: tuple[int, ...] | None = None) -> MotionAdapter:
    """diffusers' MotionAdapter laid out like the tiny MuseDance UNet's motion modules, all weights random."""
    config = config or MuseDanceConfig.tiny()
    u = config.unet
    torch.manual_seed(seed)
    adapter = MotionAdapter(
        block_out_channels=block_out_channels or u.block_out_channels,
        motion_layers_per_block=u.layers_per_block,
        motion_mid_block_layers_per_block=1,
        motion_num_attention_heads=u.temporal_num_attention_heads,
        motion_norm_num_groups=u.norm_num_groups,
        motion_max_seq_length=max_seq_length,
        use_motion_mid_block=True,
    )
    return randomize(adapter, seed + 7)


def write_animatediff(adapter: MotionAdapter, path: Path, version: str) -> Path:
    """The adapter in the original AnimateDiff layout of `version` ("v1", "v2", "v3") as .safetensors or .ckpt."""
    sd = L.animatediff_layout(adapter.state_dict(), version)
    if Path(path).suffix == ".ckpt":
        return L.write_ckpt(path, sd, wrap_state_dict=False)
    return L.write_safetensors(path, sd)


# The model names the example workflows (workflows/*.json) use; tests put tiny models under them.
WORKFLOW_CHECKPOINT = "musedance_default.safetensors"
WORKFLOW_FLOW_CHECKPOINT = "musedance_flow_default.safetensors"
WORKFLOW_AST = "musedance_default_ast"


def write_tiny_musedance(path: Path, config: MuseDanceConfig | None = None, seed: int = 0) -> Path:
    """A self-contained tiny MuseDance checkpoint (with CLIP and a small real BPE tokenizer), every layer random."""
    import tempfile

    from helpers import randomize_temporal_outputs
    from musedance_core.loading.checkpoint import save_checkpoint
    from musedance_core.models.text_encoder import read_tokenizer_files
    from musedance_core.sampling.pipeline import MuseDancePipeline

    config = config or MuseDanceConfig.tiny()
    pipe = MuseDancePipeline.from_config(config, seed=seed, text_encoder=True)
    randomize_temporal_outputs(pipe.unet, seed)
    randomize_temporal_outputs(pipe.mask_encoder, seed + 1)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = read_tokenizer_files(L.write_clip_tokenizer(folder))
    return save_checkpoint(path, config, pipe.modules(), tokenizer_files=tokenizer)


def write_workflow_models(models_dir: Path, config: MuseDanceConfig | None = None) -> dict[str, Path]:
    """Tiny models under the names the example workflows use, in ComfyUI's folder layout below `models_dir`."""
    from musedance_core.audio.ast_encoder import save_random_ast

    from musedance_core.config import FlowDanceConfig
    from musedance_core.loading.flow_checkpoint import save_flow_checkpoint
    from musedance_core.sampling.flow_pipeline import FlowDancePipeline

    config = config or MuseDanceConfig.tiny()
    models_dir = Path(models_dir)
    flow = FlowDanceConfig.tiny()
    flow.unet.music_dim = config.unet.music_dim  # both families read the one AST
    return {
        "musedance": write_tiny_musedance(models_dir / "musedance" / WORKFLOW_CHECKPOINT, config),
        "flow": save_flow_checkpoint(models_dir / "musedance" / WORKFLOW_FLOW_CHECKPOINT,
                                     FlowDancePipeline.from_config(flow)),
        "audio_encoders": save_random_ast(models_dir / "audio_encoders" / WORKFLOW_AST, hidden_size=config.unet.music_dim),
    }
