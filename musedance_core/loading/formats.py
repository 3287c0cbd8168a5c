"""The file types MuseDance reads weights from; torch-free, so that listing model folders loads no torch."""

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
TOKENIZER_FILES = ("vocab.json", "merges.txt")  # CLIP's BPE tokenizer (musedance_core.models.text_encoder)
