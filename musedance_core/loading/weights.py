"""Reading weight files safely and loading them into models without a second copy in memory.

- `open_weights(path)` gives a read-only mapping of a `.safetensors` file (tensors read one at a time,
  when asked for) or of a `.ckpt`/`.pt`/`.pth`/`.bin` file (through `torch.load(weights_only=True)`,
  which refuses any pickle that would run code). Every failure is a `WeightsFileError` that names the
  file, what is wrong with it and what to do.
- `empty_parameters()` builds models with their parameters on the meta device (no memory, no random
  init) and their buffers real, the way diffusers and transformers build models before loading.
- `assign_weights(module, state_dict)` puts each file tensor into the module as its parameter (no
  copy), after checking names and shapes; `initialise_missing(module)` gives the parameters that no
  file provided the module's own initial values.

Why not `safetensors.torch.load_file` or `safe_open(...).get_tensor`: both map the whole file, and on
Linux every page a cast touches stays resident until the file is closed, so loading an fp32 file as
fp16 would peak at the file plus the fp16 copy. `SafetensorsFile.read` reads each tensor's bytes
itself (into the tensor's own memory, or into one reused staging buffer when it must be cast or
moved), so the peak is the loaded weights plus about one tensor (benchmarks/bench_loading.py). The
safetensors library still validates every file first.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .formats import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, SafetensorsFileError, safetensors_header

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


class WeightsFileError(ValueError):
    """A weight file that cannot be used: missing, truncated, unsafe, or of another model."""


class SafetensorsFile:
    """A validated `.safetensors` file: names, shapes, dtypes and metadata from its header; tensors on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            safetensors_header(self.path)  # says "not a safetensors file" or "truncated", which safe_open does not
            # The safetensors library checks the header and that the offsets cover the file exactly.
            with safe_open(str(self.path), framework="pt") as handle:
                self.metadata: dict[str, str] = dict(handle.metadata() or {})
        except SafetensorsFileError as err:
            raise WeightsFileError(str(err)) from err
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsFileError(
                f"{self.path.name} is not a readable .safetensors file ({err}); copy or download it again."
            ) from err
        with open(self.path, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_size))
        self._start = 8 + header_size
        self._staging: torch.Tensor | None = None
        header.pop("__metadata__", None)
        self._entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for name, entry in header.items():
            if entry["dtype"] not in _ST_DTYPES:
                raise WeightsFileError(f"{self.path.name}: tensor {name!r} has dtype {entry['dtype']}, which is not supported.")
            begin, end = entry["data_offsets"]
            self._entries[name] = (_ST_DTYPES[entry["dtype"]], tuple(entry["shape"]), begin, end)

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def dtype(self, name: str) -> torch.dtype:
        return self._entries[name][0]

    def read(self, name: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        """One tensor, read from disk, cast to `dtype` (floating tensors only) and placed on `device`.

        A tensor that stays as it is on the CPU is read straight into its own memory. One that is cast
        or moved is read into a staging buffer reused for every such tensor: allocating and freeing a
        transient buffer per tensor would leave the freed memory resident in the C allocator.
        """
        file_dtype, shape, begin, end = self._entries[name]
        size = end - begin
        cast = dtype is not None and file_dtype.is_floating_point and file_dtype != dtype
        staged = cast or torch.device(device).type != "cpu"
        if staged:
            if self._staging is None or self._staging.numel() < size:
                self._staging = torch.empty(size, dtype=torch.uint8)
            buffer = self._staging[:size]
        else:
            buffer = torch.empty(size, dtype=torch.uint8)
        with open(self.path, "rb") as f:
            f.seek(self._start + begin)
            got = f.readinto(memoryview(buffer.numpy()))
        if got != size:
            raise WeightsFileError(f"{self.path.name} ended early while reading {name!r}; copy the file again.")
        tensor = buffer.view(file_dtype).reshape(shape)
        # A staged tensor is cast or moved, either of which makes a new tensor: nothing returned
        # refers to the staging buffer.
        return _to_target(tensor, device, dtype) if staged else tensor

    def release(self) -> None:
        """Free the staging buffer (reading again allocates a new one)."""
        self._staging = None


def _to_target(tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None) -> torch.Tensor:
    """Cast floating tensors to `dtype` and move to `device` (moved first to an accelerator, which casts faster)."""
    cast = dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype
    if torch.device(device).type != "cpu":
        tensor = tensor.to(device)
    return tensor.to(dtype) if cast else tensor


class WeightsMapping(Mapping):
    """Read-only name -> tensor view of a weight file; each lookup reads (and casts) one tensor.

    diffusers' conversion functions only call `keys()`, `get()` and `[]`, so they run on this mapping
    and never hold more than the tensors they have asked for.
    """

    def __init__(self, source: SafetensorsFile | dict[str, torch.Tensor], path: Path,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> None:
        self.source = source
        self.path = path
        self.device = device
        self.dtype = dtype

    @property
    def metadata(self) -> dict[str, str]:
        return self.source.metadata if isinstance(self.source, SafetensorsFile) else {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if isinstance(self.source, SafetensorsFile):
            if name not in self.source:
                raise KeyError(name)
            return self.source.read(name, self.device, self.dtype)
        return _to_target(self.source[name], self.device, self.dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self.source.keys())

    def __len__(self) -> int:
        return len(self.source.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.source

    def shape(self, name: str) -> tuple[int, ...]:
        if isinstance(self.source, SafetensorsFile):
            return self.source.shape(name)
        return tuple(self.source[name].shape)

    def release(self) -> None:
        """Free the reader's staging buffer, if any."""
        if isinstance(self.source, SafetensorsFile):
            self.source.release()


def open_weights(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> WeightsMapping:
    """Open a weight file for reading; tensors come out on `device`, floating ones cast to `dtype`.

    `.safetensors` is read lazily. Pickle-based files (`.ckpt`, `.pt`, `.pth`, `.bin`) are loaded with
    `torch.load(weights_only=True)`: plain tensors and containers only, never code. A checkpoint that
    wraps its weights in a "state_dict" entry (as Lightning and the original SD code save them) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weight file {path} does not exist (or is not a file).")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return WeightsMapping(SafetensorsFile(path), path, device, dtype)
    if suffix not in PICKLE_SUFFIXES:
        raise WeightsFileError(
            f"{path.name}: unknown weight file type {suffix!r}; use .safetensors (preferred) or .ckpt/.pt/.pth/.bin."
        )
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsFileError(
            f"{path.name} contains pickled objects other than tensors, and loading it would run code from the "
            "file; refusing. If you trust its source, convert it to .safetensors elsewhere and use that file."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise WeightsFileError(
            f"{path.name} could not be read as a PyTorch checkpoint ({err}); it is probably truncated or not "
            "a checkpoint: copy or download it again."
        ) from err
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)} if isinstance(data, dict) else {}
        if not tensors:
            raise WeightsFileError(f"{path.name} holds no tensors under names; it is not a model checkpoint.")
        data = tensors  # training checkpoints also hold step counters and the like
    return WeightsMapping(data, path, device, dtype)


# -- building models without memory, and filling them -------------------------------------------------

@contextlib.contextmanager
def empty_parameters() -> Iterator[None]:
    """Within this block, every parameter a module registers lives on the meta device (buffers stay real)."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def missing_parameters(module: nn.Module) -> list[str]:
    """Names of parameters that are still on the meta device (no file has provided them)."""
    return [name for name, p in module.named_parameters() if p.is_meta]


def assign_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, source: Path) -> list[str]:
    """Make the file's tensors the module's parameters (no copy); return the module names it loaded.

    Every name in `state_dict` must exist in the module with the same shape; a mismatch is a
    `WeightsFileError` naming the file, the first few parameters and the shapes.
    """
    own = dict(module.named_parameters())
    own.update(dict(module.named_buffers()))
    unknown = [k for k in state_dict if k not in own]
    if unknown:
        raise WeightsFileError(
            f"{source.name}: {len(unknown)} {what} weights have no place in the model, e.g. {unknown[:3]}; "
            "the file is of another architecture or configuration."
        )
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        shown = ", ".join(f"{k} (file {a}, model {b})" for k, a, b in wrong[:3])
        raise WeightsFileError(
            f"{source.name}: {len(wrong)} {what} weights have other shapes than the model expects: {shown}; "
            "the file belongs to a model of another size or configuration."
        )
    module.load_state_dict(dict(state_dict), strict=False, assign=True)
    return list(state_dict)


@torch.no_grad()
def initialise_missing(module: nn.Module, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> list[str]:
    """Give every parameter still on the meta device its module's own initial value; return their names.

    Each layer holding such parameters gets its `reset_parameters()` (in the target dtype, so no float32
    copy is made and freed), then every
    module that defines `init_weights()` (the temporal modules and F_m, whose output layers start at
    zero) applies it, so the result starts exactly as the constructor would have built it: the temporal
    stack and F_m are identities. A module that a file provided only in part is an error.
    """
    names = missing_parameters(module)
    if not names:
        return []
    fresh: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            meta = [(n, p) for n, p in sub.named_parameters(recurse=False) if p.is_meta]
            if not meta:
                continue
            if not hasattr(sub, "reset_parameters"):
                raise WeightsFileError(
                    f"no file provides the weights of a {type(sub).__name__} and it has no initialiser; "
                    "give a checkpoint that contains them."
                )
            for n, p in meta:
                sub.register_parameter(
                    n, nn.Parameter(torch.empty(p.shape, device=device, dtype=dtype), requires_grad=p.requires_grad)
                )
            sub.reset_parameters()
            fresh.update(id(getattr(sub, n)) for n, _ in meta)
    for owner in module.modules():
        if hasattr(owner, "init_weights"):
            mine = [id(p) in fresh for p in owner.parameters()]
            if all(mine):
                owner.init_weights()
            elif any(mine):
                raise WeightsFileError(
                    f"the weight files provide a {type(owner).__name__} only in part; give a checkpoint with all of it."
                )
    return names


def tensor_bytes(module: nn.Module) -> int:
    """Bytes held by the module's parameters and buffers (what "one copy of the weights" means)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(math.prod(t.shape) * t.element_size() for t in tensors if not t.is_meta)
