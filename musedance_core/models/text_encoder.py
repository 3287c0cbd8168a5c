"""The motion prompt's text encoder: SD1.5's CLIP text tower and its BPE tokenizer, from local files only.

The weights come with the SD1.5 checkpoint (or a self-contained MuseDance checkpoint); the
configuration is `TextEncoderConfig`. The tokenizer's two files (`vocab.json`, `merges.txt`) are not
part of SD1.5 checkpoints: they come from a diffusers-layout model folder, from ComfyUI's own copy
(`comfy/sd1_tokenizer`, found by the node pack), or from inside a MuseDance checkpoint.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..config import TextEncoderConfig
from ..loading.formats import TOKENIZER_FILES

TOKENIZER_HELP = (
    "MuseDance needs the CLIP tokenizer files vocab.json and merges.txt of Stable Diffusion 1.5: copy the "
    "tokenizer/ folder of a diffusers SD1.5 model into models/musedance/tokenizer/ (inside ComfyUI, its own "
    "comfy/sd1_tokenizer/ folder is used automatically), or use a MuseDance checkpoint that carries them."
)


class TokenizerNotFound(FileNotFoundError):
    """No usable CLIP tokenizer files; the message says where to put them."""


def build_text_encoder(config: TextEncoderConfig) -> CLIPTextModel:
    """A CLIP text encoder of `config`'s size (weights as constructed; loaders fill them)."""
    return CLIPTextModel(CLIPTextConfig(**config.transformers_kwargs()))


def match_text_encoder_names(weights: dict[str, torch.Tensor], module: CLIPTextModel | None = None) -> dict[str, torch.Tensor]:
    """Rename CLIP text-encoder weights to `module`'s own names (or, with no module, to the canonical ones).

    Files name them `text_model.encoder...` (the canonical Hugging Face names), while transformers >= 5.6
    dropped the `text_model.` level from `CLIPTextModel`; both directions are handled here.
    """
    wants_prefix = module is None or any(k.startswith("text_model.") for k in module.state_dict())
    out = {}
    for name, tensor in weights.items():
        bare = name[len("text_model."):] if name.startswith("text_model.") else name
        out["text_model." + bare if wants_prefix else bare] = tensor
    return out


def tokenizer_folder(folder: str | Path) -> Path:
    """The folder holding vocab.json and merges.txt: `folder` itself or its `tokenizer/` (diffusers layout)."""
    folder = Path(folder)
    for candidate in (folder, folder / "tokenizer"):
        if all((candidate / name).is_file() for name in TOKENIZER_FILES):
            return candidate
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    raise TokenizerNotFound(f"{folder} has no CLIP tokenizer ({', '.join(missing)} missing). {TOKENIZER_HELP}")


def read_tokenizer_files(folder: str | Path) -> dict[str, str]:
    """The tokenizer's files as text, keyed by file name (what a self-contained checkpoint stores)."""
    found = tokenizer_folder(folder)
    return {name: (found / name).read_text(encoding="utf-8") for name in TOKENIZER_FILES}


def load_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """CLIP's BPE tokenizer from a local folder (77 tokens, padded with <|endoftext|> like SD1.5)."""
    return tokenizer_from_files(read_tokenizer_files(folder))


def tokenizer_from_files(files: dict[str, str]) -> CLIPTokenizer:
    """CLIP's BPE tokenizer from the text of its vocab.json and merges.txt, without touching the disk."""
    missing = [name for name in TOKENIZER_FILES if name not in files]
    if missing:
        raise TokenizerNotFound(f"the tokenizer files {missing} are missing. {TOKENIZER_HELP}")
    try:
        vocab = json.loads(files["vocab.json"])
    except json.JSONDecodeError as err:
        raise TokenizerNotFound(f"vocab.json is not valid JSON ({err}). {TOKENIZER_HELP}") from err
    merges = [tuple(line.split()) for line in files["merges.txt"].splitlines() if line and not line.startswith("#version")]
    if "vocab" in inspect.signature(CLIPTokenizer.__init__).parameters:  # transformers >= 5
        tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    else:  # transformers 4.x reads the two files by path
        with tempfile.TemporaryDirectory() as tmp:
            for name in TOKENIZER_FILES:
                Path(tmp, name).write_text(files[name], encoding="utf-8")
            tokenizer = CLIPTokenizer(Path(tmp, "vocab.json"), Path(tmp, "merges.txt"), model_max_length=77)
    return tokenizer


@torch.no_grad()
def encode_prompt(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: str | list[str], length: int = 77
) -> torch.Tensor:
    """CLIP hidden states [B, length, D] of the prompts, on the text encoder's device and dtype (SD1.5's last layer)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a string or a non-empty list of strings.")
    ids = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    vocab = text_encoder.config.vocab_size
    if int(ids.max()) >= vocab:
        raise ValueError(
            f"the tokenizer produced token id {int(ids.max())} but the text encoder has only {vocab} tokens; "
            "the tokenizer files do not belong to this text encoder."
        )
    device = next(text_encoder.parameters()).device
    return text_encoder(ids.to(device)).last_hidden_state


def cut_words(tokenizer: CLIPTokenizer, prompt: str, length: int = 77) -> str:
    """The end of `prompt` that CLIP never reads (its tokens past `length`, with the start and end tokens), or ""."""
    ids = tokenizer(prompt, truncation=False).input_ids
    if len(ids) <= length:
        return ""
    return tokenizer.decode(ids[length - 1 : -1]).strip()


# --- a tokenizer of one's own ---------------------------------------------------------------------

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE (and CLIP).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes take the characters 256, 257, ...
    in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


def word_tokenizer_files(words: Iterable[str]) -> dict[str, str]:
    """vocab.json and merges.txt of a small CLIP BPE tokenizer in which each of `words` is one token.

    For a model trained from scratch (the default model's text encoder): the vocabulary is, in CLIP's
    order, the 256 byte characters, the same with "</w>", the tokens the merges build (left to right,
    so each word ends as one "word</w>" token), then <|startoftext|> and <|endoftext|>. Any other text
    still tokenizes, byte by byte. `len(json.loads(files["vocab.json"]))` is the text encoder's vocab_size.
    """
    encoder = bytes_to_unicode()
    byte_chars = list(encoder.values())
    vocab: dict[str, int] = {}
    for token in [*byte_chars, *(c + "</w>" for c in byte_chars)]:
        vocab[token] = len(vocab)
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in words:
        symbols = [encoder[b] for b in word.lower().encode("utf-8")]
        if not symbols:
            continue
        symbols[-1] += "</w>"
        current = symbols[0]
        for symbol in symbols[1:]:  # "d a", "da n", "dan c", ... "danc e</w>"
            pair = (current, symbol)
            current = current + symbol
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            vocab.setdefault(current, len(vocab))
    for token in (BOS_TOKEN, EOS_TOKEN):
        vocab[token] = len(vocab)
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    return {"vocab.json": json.dumps(vocab, ensure_ascii=False), "merges.txt": "\n".join(lines) + "\n"}
