"""Write tiny models in the ORIGINAL file layouts, so the real loaders can be tested offline.

* Stable Diffusion 1.x single-file checkpoints (CompVis/LDM key names: ``model.diffusion_model.``,
  ``first_stage_model.``, ``cond_stage_model.transformer.``), as .safetensors or .ckpt;
* AnimateDiff motion-module files (``...motion_modules.N.temporal_transformer...`` names, v1/v2/v3);
* a small, valid CLIP BPE tokenizer folder;
* files with the marker keys of other architectures (SDXL, SD2), for error-path tests.

Inputs are diffusers/transformers state dicts; every converter raises if it meets a key it cannot map,
so a silently dropped tensor cannot make a test pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

# The tokenizer writer lives in the core: the default model's recipe builds its own vocabulary with it.
from musedance_core.models.text_encoder import BOS_TOKEN, EOS_TOKEN, bytes_to_unicode, word_tokenizer_files  # noqa: F401

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

#: positional-encoding length of the original AnimateDiff motion modules, by version
ANIMATEDIFF_PE_LENGTH: dict[str, int] = {"v1": 24, "v2": 32, "v3": 32}

# Inner module names of a UNet resnet: diffusers -> LDM ResBlock.
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
# Inner module names of a VAE resnet: diffusers -> LDM ResnetBlock.
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
# Inner module names of the VAE mid-block attention: diffusers -> LDM AttnBlock (1x1 convs).
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
# A prefix maps to (new prefix, inner-name table or None for "keep the rest as is").
_PrefixMap = dict[str, tuple[str, "dict[str, str] | None"]]


def _convert(state_dict: Mapping[str, Tensor], prefixes: _PrefixMap, what: str) -> dict[str, Tensor]:
    """Rename every key by its longest matching module prefix; raise on any key left unmapped."""
    ordered = sorted(prefixes, key=len, reverse=True)
    out: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        prefix = next((p for p in ordered if key.startswith(p + ".")), None)
        if prefix is None:
            unmapped.append(key)
            continue
        new_prefix, inner = prefixes[prefix]
        rest = key[len(prefix) + 1 :]
        if inner is not None:
            module, _, param = rest.rpartition(".")
            if module not in inner:
                unmapped.append(key)
                continue
            rest = f"{inner[module]}.{param}"
        out[f"{new_prefix}.{rest}"] = value
    if unmapped:
        raise ValueError(f"{what}: {len(unmapped)} key(s) have no LDM name: {sorted(unmapped)[:10]}")
    return out


def _block_count(state_dict: Mapping[str, Tensor], pattern: str) -> int:
    """1 + the largest index captured by `pattern` over the keys (0 if none matches)."""
    found = [int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


# --------------------------------------------------------------------------------------------- UNet


def unet_to_ldm(state_dict: Mapping[str, Tensor], layers_per_block: int, num_blocks: int) -> dict[str, Tensor]:
    """diffusers `UNet2DConditionModel` (SD1.x layout) -> LDM `openaimodel.UNetModel` keys (no prefix).

    Input block 0 is conv_in; each down level then holds `layers_per_block` (resnet, transformer) input
    blocks and, except the last level, one downsample block (`.0.op`). Each up level holds
    `layers_per_block + 1` output blocks; its upsample conv sits in the last one, at index 2 when the
    level has transformers and 1 otherwise.
    """
    lpb = layers_per_block
    prefixes: _PrefixMap = {
        "time_embedding.linear_1": ("time_embed.0", None),
        "time_embedding.linear_2": ("time_embed.2", None),
        "conv_in": ("input_blocks.0.0", None),
        "mid_block.resnets.0": ("middle_block.0", _UNET_RESNET),
        "mid_block.attentions.0": ("middle_block.1", None),
        "mid_block.resnets.1": ("middle_block.2", _UNET_RESNET),
        "conv_norm_out": ("out.0", None),
        "conv_out": ("out.2", None),
    }
    for level in range(num_blocks):
        last = level == num_blocks - 1
        for j in range(lpb):
            index = 1 + level * (lpb + 1) + j
            prefixes[f"down_blocks.{level}.resnets.{j}"] = (f"input_blocks.{index}.0", _UNET_RESNET)
            prefixes[f"down_blocks.{level}.attentions.{j}"] = (f"input_blocks.{index}.1", None)
        if not last:
            index = 1 + level * (lpb + 1) + lpb
            prefixes[f"down_blocks.{level}.downsamplers.0.conv"] = (f"input_blocks.{index}.0.op", None)
        for j in range(lpb + 1):
            index = level * (lpb + 1) + j
            prefixes[f"up_blocks.{level}.resnets.{j}"] = (f"output_blocks.{index}.0", _UNET_RESNET)
            prefixes[f"up_blocks.{level}.attentions.{j}"] = (f"output_blocks.{index}.1", None)
        if not last:
            has_attention = any(k.startswith(f"up_blocks.{level}.attentions.") for k in state_dict)
            index = level * (lpb + 1) + lpb
            slot = 2 if has_attention else 1
            prefixes[f"up_blocks.{level}.upsamplers.0.conv"] = (f"output_blocks.{index}.{slot}.conv", None)
    return _convert(state_dict, prefixes, "unet_to_ldm")


# ---------------------------------------------------------------------------------------------- VAE


def vae_to_ldm(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """diffusers `AutoencoderKL` -> LDM `AutoencoderKL` keys (no "first_stage_model." prefix).

    Decoder up levels are numbered in reverse in LDM; the mid-block attention becomes 1x1 convs.
    """
    prefixes: _PrefixMap = {"quant_conv": ("quant_conv", None), "post_quant_conv": ("post_quant_conv", None)}
    for part in ("encoder", "decoder"):
        for name in ("conv_in", "conv_out"):
            prefixes[f"{part}.{name}"] = (f"{part}.{name}", None)
        prefixes[f"{part}.conv_norm_out"] = (f"{part}.norm_out", None)
        prefixes[f"{part}.mid_block.resnets.0"] = (f"{part}.mid.block_1", _VAE_RESNET)
        prefixes[f"{part}.mid_block.resnets.1"] = (f"{part}.mid.block_2", _VAE_RESNET)
        prefixes[f"{part}.mid_block.attentions.0"] = (f"{part}.mid.attn_1", _VAE_ATTENTION)

    n_down = _block_count(state_dict, r"encoder\.down_blocks\.(\d+)\.")
    n_res = _block_count(state_dict, r"encoder\.down_blocks\.\d+\.resnets\.(\d+)\.")
    for i in range(n_down):
        for j in range(n_res):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", _VAE_RESNET)
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = (f"encoder.down.{i}.downsample.conv", None)

    n_up = _block_count(state_dict, r"decoder\.up_blocks\.(\d+)\.")
    n_res = _block_count(state_dict, r"decoder\.up_blocks\.\d+\.resnets\.(\d+)\.")
    for i in range(n_up):
        level = n_up - 1 - i
        for j in range(n_res):
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}"] = (f"decoder.up.{level}.block.{j}", _VAE_RESNET)
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = (f"decoder.up.{level}.upsample.conv", None)

    out = _convert(state_dict, prefixes, "vae_to_ldm")
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            out[key] = value[:, :, None, None]  # Linear [C, C] -> Conv2d 1x1 [C, C, 1, 1]
    return out


# --------------------------------------------------------------------------------------------- CLIP


def clip_to_ldm(state_dict: Mapping[str, Tensor], add_position_ids: bool = False) -> dict[str, Tensor]:
    """transformers `CLIPTextModel` -> "cond_stage_model.transformer.text_model...." keys.

    Accepts both the wrapped layout ("text_model.encoder...", transformers < 5.6) and the flat one
    ("encoder...", transformers >= 5.6, where CLIPTextModel lost its `text_model` attribute); the
    output always has the "text_model." level real checkpoints have. A `position_ids` buffer in the
    input is kept; `add_position_ids` adds one (int64 [1, max_positions]) as real SD1.5 files carry it.
    """
    roots = ("embeddings.", "encoder.", "final_layer_norm.")
    out: dict[str, Tensor] = {}
    bad: list[str] = []
    for key, value in state_dict.items():
        inner = key.removeprefix("text_model.")
        if not inner.startswith(roots):
            bad.append(key)
            continue
        out[f"{CLIP_PREFIX}text_model.{inner}"] = value
    if bad:
        raise ValueError(f"clip_to_ldm: not CLIPTextModel keys: {bad[:10]}")
    ids_key = CLIP_PREFIX + "text_model.embeddings.position_ids"
    if add_position_ids and ids_key not in out:
        positions = out[CLIP_PREFIX + "text_model.embeddings.position_embedding.weight"].shape[0]
        out[ids_key] = torch.arange(positions, dtype=torch.int64)[None]
    return out


# ------------------------------------------------------------------------------- single-file writer


def sd15_single_file(
    unet_sd: Mapping[str, Tensor],
    vae_sd: Mapping[str, Tensor],
    clip_sd: Mapping[str, Tensor],
    layers_per_block: int,
    num_blocks: int,
    add_position_ids: bool = False,
) -> dict[str, Tensor]:
    """One SD1.x single-file state dict from the three diffusers/transformers state dicts."""
    out = {UNET_PREFIX + k: v for k, v in unet_to_ldm(unet_sd, layers_per_block, num_blocks).items()}
    out.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(vae_sd).items()})
    out.update(clip_to_ldm(clip_sd, add_position_ids=add_position_ids))
    return out


def _owned(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous private copies, so that no two tensors share storage (safetensors refuses that)."""
    return {k: v.detach().contiguous().clone() for k, v in state_dict.items()}


def write_safetensors(path: str | Path, sd: Mapping[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `sd` as a .safetensors file; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_owned(sd), str(path), metadata=metadata)
    return path


def write_ckpt(path: str | Path, sd: Mapping[str, Tensor], wrap_state_dict: bool = True) -> Path:
    """Write a pickled torch checkpoint, as {"state_dict": sd} like real .ckpt files (or bare)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _owned(sd)
    torch.save({"state_dict": tensors} if wrap_state_dict else tensors, path)
    return path


# --------------------------------------------------------------------------------------- AnimateDiff

_MODULE = re.compile(r"^(.*?motion_modules\.\d+)\.(.+)$")
_TRANSFORMER_BLOCK = re.compile(r"^(transformer_blocks\.\d+)\.(attn1|attn2|norm1|norm2|norm3)\.(.+)$")
_BLOCK_RENAMES = {
    "attn1": "attention_blocks.0",
    "attn2": "attention_blocks.1",
    "norm1": "norms.0",
    "norm2": "norms.1",
    "norm3": "ff_norm",
}
_TO_Q = re.compile(
    r"^((.*?motion_modules\.\d+)\.temporal_transformer\.transformer_blocks\.\d+\.attention_blocks\.\d+)"
    r"\.to_q\.weight$"
)


def sinusoidal_table(length: int, channels: int) -> Tensor:
    """[1, length, channels]: pe[0, p, 2i] = sin(p / 10000^(2i/C)), pe[0, p, 2i+1] = cos(same)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    even = torch.arange(0, channels, 2, dtype=torch.float64)
    angle = position / torch.pow(10000.0, even / channels)
    pe = torch.zeros(length, channels, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : channels // 2])
    return pe[None].float()


def motion_adapter_to_animatediff(
    state_dict: Mapping[str, Tensor],
    pe_length: int,
    channels_by_prefix: Mapping[str, int] | None = None,
) -> dict[str, Tensor]:
    """diffusers `MotionAdapter` keys -> original AnimateDiff keys, with `pos_encoder.pe` tables added.

    diffusers' own `pos_embed.pe` buffers are dropped; every attention block gets a fresh
    "...attention_blocks.K.pos_encoder.pe" of shape [1, pe_length, C]. C is read from that block's
    to_q weight, unless `channels_by_prefix` gives it for the module prefix
    (e.g. "down_blocks.0.motion_modules.0").
    """
    out: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        match = _MODULE.match(key)
        if match is None:
            unmapped.append(key)
            continue
        module, rest = match.groups()
        if rest.endswith("pos_embed.pe"):
            continue
        if rest.startswith("temporal_transformer."):
            unmapped.append(key)  # already in the original layout: not the input this expects
            continue
        inner = _TRANSFORMER_BLOCK.match(rest)
        if inner is not None:
            block, name, tail = inner.groups()
            rest = f"{block}.{_BLOCK_RENAMES[name]}.{tail}"
        elif rest.startswith("transformer_blocks."):
            if not re.match(r"^transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)\.(weight|bias)$", rest):
                unmapped.append(key)
                continue
        elif not re.match(r"^(norm|proj_in|proj_out)\.(weight|bias)$", rest):
            unmapped.append(key)
            continue
        out[f"{module}.temporal_transformer.{rest}"] = value
    if unmapped:
        raise ValueError(f"motion_adapter_to_animatediff: {len(unmapped)} unexpected key(s): {sorted(unmapped)[:10]}")
    return _add_positional_tables(out, pe_length, channels_by_prefix)


def _add_positional_tables(
    sd: dict[str, Tensor], pe_length: int, channels_by_prefix: Mapping[str, int] | None
) -> dict[str, Tensor]:
    """Add (or replace) a "pos_encoder.pe" table next to every attention block's to_q weight."""
    out = {k: v for k, v in sd.items() if not k.endswith(".pos_encoder.pe")}
    for key, weight in sd.items():
        match = _TO_Q.match(key)
        if match is None:
            continue
        block, module = match.group(1), match.group(2)
        channels = (channels_by_prefix or {}).get(module, weight.shape[-1])
        table = sinusoidal_table(pe_length, channels).to(dtype=weight.dtype, device=weight.device)
        out[f"{block}.pos_encoder.pe"] = table
    return out


def animatediff_layout(
    state_dict: Mapping[str, Tensor],
    version: str,
    channels_by_prefix: Mapping[str, int] | None = None,
) -> dict[str, Tensor]:
    """An AnimateDiff file of `version` ("v1", "v2", "v3") from a diffusers or original-layout dict.

    v1 (pe length 24) and v3 (32) have no mid_block keys, so those are dropped; v2 (32) keeps its
    mid block and requires one. Input already in the original layout just gets its tables remade.
    """
    if version not in ANIMATEDIFF_PE_LENGTH:
        raise ValueError(f"unknown AnimateDiff version {version!r}; expected one of {sorted(ANIMATEDIFF_PE_LENGTH)}")
    has_mid = any(k.startswith("mid_block.") for k in state_dict)
    if version == "v2" and not has_mid:
        raise ValueError("an AnimateDiff v2 file has a mid_block motion module; the input has none")
    if version != "v2":
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("mid_block.")}
    length = ANIMATEDIFF_PE_LENGTH[version]
    if any(".temporal_transformer." in k for k in state_dict):
        return _add_positional_tables(dict(state_dict), length, channels_by_prefix)
    return motion_adapter_to_animatediff(state_dict, length, channels_by_prefix)


# ---------------------------------------------------------------------------------------- tokenizer
def write_clip_tokenizer(
    folder: str | Path,
    extra_words: Iterable[str] = ("a", "dance", "person", "dancing", "cat", "robot"),
) -> Path:
    """A small valid CLIP BPE tokenizer in `folder`, with one token for each of `extra_words`."""
    return write_word_tokenizer(folder, extra_words)


# ------------------------------------------------------------------------- other architectures (fakes)


def fake_sdxl_keys(dim: int = 8) -> dict[str, Tensor]:
    """Tiny tensors under SDXL marker keys (OpenCLIP-G second embedder, label_emb, 2048-wide context)."""
    return {
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": torch.zeros(77, dim),
        "conditioner.embedders.1.model.positional_embedding": torch.zeros(77, dim),
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3 * dim, dim),
        "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": torch.zeros(dim),
        "model.diffusion_model.label_emb.0.0.weight": torch.zeros(dim, 2816),
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(dim, 4, 3, 3),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(dim, 2048),
        "first_stage_model.decoder.conv_out.weight": torch.zeros(3, dim, 3, 3),
    }


def fake_sd2_keys(dim: int = 8) -> dict[str, Tensor]:
    """SD2 marker keys: OpenCLIP-H text encoder names and 1024-wide cross-attention (real 320 channels)."""
    return {
        "cond_stage_model.model.token_embedding.weight": torch.zeros(16, dim),
        "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3 * dim, dim),
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 1024),
        "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 1024),
        "first_stage_model.decoder.conv_out.weight": torch.zeros(3, dim, 3, 3),
    }


def write_word_tokenizer(folder: str | Path, words: Iterable[str]) -> Path:
    """`word_tokenizer_files(words)` written into `folder`, with the configs transformers' loaders read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in word_tokenizer_files(words).items():
        (folder / name).write_text(text, encoding="utf-8")
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": EOS_TOKEN}
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
              "errors": "replace", "add_prefix_space": False, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder
