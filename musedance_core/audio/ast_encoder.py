"""Per-frame music tokens from a frozen Audio Spectrogram Transformer (AST).

The music module (paper Sec. 3.2) cross-attends each video frame to music embeddings. AST encodes
10.24 s at a time, so a song is encoded in overlapping windows and stitched onto one grid of time
columns (one per 100 ms). Video frame k, at time start_time + k / fps, then takes the columns
around that time (+-`window` columns, as Hallo takes wav2vec frames t-2..t+2) plus the two global
tokens. The nodes, the main job and the trainer's data preparation all call `MusicEncoder.encode`.

AST token layout (transformers ASTModel): last_hidden_state[:, :2] are the CLS and distillation
tokens; [:, 2:] are patch tokens flattened frequency-major, index = f * t_dim + t, over an
(f_dim, t_dim) grid (12 x 101 for the default config). Time column j covers fbank frames
[stride * j, stride * j + patch) of a 10 ms hop and 25 ms length, so its centre lies at
(stride * j + (patch - 1) / 2) * 10 ms + 12.5 ms = 0.1 j + 0.0875 s by default.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel
from transformers.utils import logging as hf_logging

from .music import as_mono

SAMPLE_RATE = 16_000  # AST's rate; resample before encoding
GLOBAL_TOKENS = 2  # CLS and distillation
FBANK_HOP = 160  # samples between fbank frames (10 ms), in both of the extractor's backends
FBANK_WINDOW = 400  # samples per fbank frame (25 ms)
FBANK_CHUNK_FRAMES = 6000  # fbank frames computed at a time (one minute)
AST_MODEL_TYPE = "audio-spectrogram-transformer"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
FOLDER_LAYOUT = "config.json, model.safetensors and preprocessor_config.json (Hugging Face layout)"
HOP_SECONDS = 5.0  # between AST windows: every column has at least 2.5 s of context on both sides
FAST_HOP_SECONDS = 10.0  # windows overlap by one column: half the windows


def patch_grid(config: ASTConfig) -> tuple[int, int]:
    """(frequency rows, time columns) of AST's patch grid, as ASTEmbeddings.get_shape computes it."""
    f_dim = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    t_dim = (config.max_length - config.patch_size) // config.time_stride + 1
    return f_dim, t_dim


def column_times(config: ASTConfig, num_columns: int | None = None) -> np.ndarray:
    """Centre time in seconds of each AST time column: the middle of the samples its fbank frames cover.

    num_columns defaults to one window's t_dim; pass more for a stitched song, whose columns
    continue the same 100 ms grid.
    """
    if num_columns is None:
        num_columns = patch_grid(config)[1]
    first_frame = config.time_stride * np.arange(num_columns)
    middle_sample = FBANK_HOP * (first_frame + (config.patch_size - 1) / 2) + FBANK_WINDOW / 2
    return middle_sample / SAMPLE_RATE


def window_starts(num_columns: int, window_columns: int, hop_columns: int) -> list[int]:
    """First column of each AST window covering a song of `num_columns` columns.

    Windows start every `hop_columns`; the last one is aligned to the end of the song, so only
    music shorter than one window is ever padded.
    """
    if num_columns <= window_columns:
        return [0]
    starts = list(range(0, num_columns - window_columns, hop_columns))
    return starts + [num_columns - window_columns]


@dataclass(frozen=True)
class MusicEncoding:
    """A whole song encoded by AST, stitched onto one grid of time columns (100 ms apart by default).

    columns: [G, f_dim, d] patch tokens per column; global_tokens: [G, 2, d], the CLS and
    distillation tokens of the window each column was taken from; times: [G] column centres in s,
    column_seconds apart; duration: length of the music in s. Both tensors are on the model's
    device, in its dtype. Each column comes from the window in which it lies most centrally (most
    context on both sides).
    """

    columns: torch.Tensor
    global_tokens: torch.Tensor
    times: np.ndarray
    column_seconds: float
    duration: float

    def frame_columns(self, fps: float, num_frames: int, start_time: float = 0.0, first: int = 0) -> np.ndarray:
        """Index [num_frames] of the column nearest to each frame time start_time + k / fps, for frames
        k = first .. first + num_frames - 1.

        Frames before the first column centre or after the last one take that end column: the
        last column is the last one made only of real music, never padding.
        """
        _check_frames(fps, first + num_frames, start_time, self.duration)
        frame_times = start_time + (first + np.arange(num_frames)) / fps
        nearest = np.floor((frame_times - self.times[0]) / self.column_seconds + 0.5).astype(np.int64)
        return np.clip(nearest, 0, len(self.times) - 1)

    def frame_tokens(self, fps: float, num_frames: int, *, start_time: float = 0.0, window: int = 2,
                     first: int = 0) -> torch.Tensor:
        """Music tokens per video frame: [num_frames, L, d] with L = 2 + f_dim * (2 * window + 1), for
        frames first .. first + num_frames - 1 (the same tokens as those rows of the whole span's).

        For frame k: the global tokens, then all frequency rows of columns c - window .. c + window
        (column-major), where c = frame_columns()[k]; columns past either end are clamped
        (repeated), so every frame has the same L. Raises if a frame lies after the end of the music.
        """
        if not isinstance(window, (int, np.integer)) or window < 0:
            raise ValueError(f"window must be a non-negative integer number of columns, got {window!r}.")
        centre = self.frame_columns(fps, num_frames, start_time, first)
        index = np.clip(centre[:, None] + np.arange(-window, window + 1), 0, len(self.times) - 1)
        device = self.columns.device
        picked = self.columns[torch.as_tensor(index, device=device)]  # [F, 2w+1, f_dim, d]
        global_tokens = self.global_tokens[torch.as_tensor(centre, device=device)]  # [F, 2, d]
        return torch.cat([global_tokens, picked.flatten(1, 2)], dim=1)


class FrameTokens:
    """The music tokens of a span of video frames, made from a `MusicEncoding` a stretch at a time.

    Holding the song's columns instead of every frame's tokens keeps a long song small (a frame's tokens
    repeat 2 * window + 1 columns, and many frames share a column); the sampler asks for each clip's
    frames as it needs them. `frames(first, count)` gives the tokens [count, L, d] of those frames,
    equal to the same rows of the whole span's; slicing with [a:b] gives a shorter span, still lazy.
    """

    def __init__(self, encoding: MusicEncoding, fps: float, num_frames: int, start_time: float = 0.0,
                 window: int = 2, first: int = 0) -> None:
        _check_frames(fps, first + num_frames, start_time, encoding.duration)
        self.encoding, self.fps, self.start_time, self.window = encoding, float(fps), float(start_time), window
        self.first, self.num_frames = first, num_frames
        d = encoding.columns.shape[-1]
        self.shape = torch.Size((num_frames, GLOBAL_TOKENS + encoding.columns.shape[1] * (2 * window + 1), d))
        self.ndim = 3
        self.dtype = encoding.columns.dtype

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: slice) -> FrameTokens:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("FrameTokens take a slice of frames [a:b]; use frames(first, count) for the tokens.")
        a, b, _ = index.indices(self.num_frames)
        return FrameTokens(self.encoding, self.fps, max(b - a, 0), self.start_time, self.window, self.first + a)

    def frames(self, first: int, count: int) -> torch.Tensor:
        """The tokens [count, L, d] of frames first .. first + count - 1 of this span."""
        if not 0 <= first <= first + count <= self.num_frames:
            raise IndexError(f"frames {first}..{first + count - 1} of a span of {self.num_frames}.")
        return self.encoding.frame_tokens(self.fps, count, start_time=self.start_time, window=self.window,
                                          first=self.first + first)

    def tensor(self) -> torch.Tensor:
        """Every frame's tokens at once, [F, L, d] (a long song's take much memory: prefer `frames`)."""
        return self.frames(0, self.num_frames)


class MusicEncoder:
    """A frozen AST and its feature extractor: waveform at 16 kHz in, per-frame music tokens out.

    Build it with `from_folder` for real weights, or from an ASTModel and ASTFeatureExtractor you
    already hold (the model is put in eval mode with gradients off). Runs on the model's device in
    its dtype. The fbank features come from the extractor on the CPU: its numpy path when torchaudio
    is absent (as in this pack), its torchaudio path otherwise; they differ slightly, so cache
    features made with one backend only.
    """

    def __init__(self, model: ASTModel, feature_extractor: ASTFeatureExtractor) -> None:
        config = model.config
        if feature_extractor.max_length != config.max_length:
            raise ValueError(
                f"feature extractor max_length {feature_extractor.max_length} does not match the AST "
                f"model's max_length {config.max_length}; load both from the same AST folder."
            )
        if feature_extractor.num_mel_bins != config.num_mel_bins:
            raise ValueError(
                f"feature extractor has {feature_extractor.num_mel_bins} mel bins, the AST model expects "
                f"{config.num_mel_bins}; load both from the same AST folder."
            )
        if feature_extractor.sampling_rate != SAMPLE_RATE:
            raise ValueError(
                f"feature extractor expects {feature_extractor.sampling_rate} Hz audio, but AST's fbank "
                f"frames are defined at {SAMPLE_RATE} Hz; use an AST feature extractor for {SAMPLE_RATE} Hz."
            )
        self.model = model.eval().requires_grad_(False)
        self.feature_extractor = feature_extractor
        self._quantized: MusicEncoder | None = None

    @classmethod
    def from_folder(
        cls, folder: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> MusicEncoder:
        """Load an AST from a local folder in Hugging Face layout, never from a hub.

        The folder holds config.json (model_type "audio-spectrogram-transformer"), model.safetensors
        (or a sharded index, or pytorch_model.bin, which transformers reads with weights_only=True)
        and preprocessor_config.json. An ASTForAudioClassification checkpoint (such as the AudioSet
        one) loads too: its classifier head is ignored. device defaults to the CPU, dtype to float32.
        """
        folder = _check_ast_folder(folder)
        with _quiet_transformers():
            extractor = ASTFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
            try:
                model, info = ASTModel.from_pretrained(
                    str(folder),
                    local_files_only=True,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,  # reported below, with the folder's name
                )
            except Exception as err:  # noqa: BLE001 - re-raised with the folder's name, cause chained
                raise ValueError(f"could not load the AST weights in {folder}: {err}") from err
        problems = [f"{key} (missing)" for key in sorted(info["missing_keys"])]
        problems += [f"{key} (file {tuple(a)}, model {tuple(b)})" for key, a, b in sorted(info["mismatched_keys"])]
        if problems:
            raise ValueError(
                f"the weights in {folder} do not fit the AST described by its config.json: "
                f"{len(problems)} parameters differ, e.g. {', '.join(problems[:3])}; "
                "the folder needs the weights saved with that config."
            )
        return cls(model.to(device=device or "cpu", dtype=dtype or torch.float32), extractor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def fbank(self, waveform_16k: np.ndarray | torch.Tensor,
              callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Normalised log-mel fbank of the whole song: float32 [frames, num_mel_bins] on the CPU.

        The extractor's own features, computed once for the song: every fbank frame depends only
        on its own 25 ms of samples, so slicing this at multiples of the 10 ms hop gives exactly
        what the extractor returns for each window's samples (tests/test_ast_encoder.py checks it).
        """
        wave = as_mono(waveform_16k, SAMPLE_RATE, downmix=False)
        if wave.size < FBANK_WINDOW:
            raise ValueError(f"the music has {wave.size} samples, fewer than one fbank frame ({FBANK_WINDOW}).")
        total = 1 + (wave.size - FBANK_WINDOW) // FBANK_HOP
        features = torch.empty((total, self.feature_extractor.num_mel_bins))
        # A stretch at a time: the extractor's working arrays for a whole hour would take gigabytes.
        for first in range(0, total, FBANK_CHUNK_FRAMES):
            count = min(FBANK_CHUNK_FRAMES, total - first)
            stretch = copy.copy(self.feature_extractor)
            stretch.max_length = count  # no padding, no cut
            samples = wave[first * FBANK_HOP : (first + count - 1) * FBANK_HOP + FBANK_WINDOW]
            chunk = stretch(samples, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_values"][0]
            features[first : first + count] = torch.from_numpy(np.asarray(chunk, dtype=np.float32))
            if callback is not None:  # (stretches done, stretches); it may raise to stop
                callback(first // FBANK_CHUNK_FRAMES + 1, -(-total // FBANK_CHUNK_FRAMES))
        return features

    @torch.no_grad()
    def encode_fbank(
        self, features: torch.Tensor, duration: float, *, hop_seconds: float = HOP_SECONDS, batch_size: int = 4,
        callback: Callable[[int, int], None] | None = None,
    ) -> MusicEncoding:
        """Run AST over overlapping windows of `fbank` features and stitch them (see MusicEncoding).

        Windows of max_length fbank frames start every hop_seconds (rounded to whole columns) and
        run batch_size at a time; the last window ends at the music's end. A smaller hop gives each
        column more context on both sides and costs more windows.
        """
        config = self.model.config
        f_dim, t_dim = patch_grid(config)
        if features.ndim != 2 or features.shape[1] != config.num_mel_bins:
            raise ValueError(
                f"features must be fbank frames [frames, {config.num_mel_bins}] from MusicEncoder.fbank, "
                f"got shape {tuple(features.shape)}."
            )
        num_columns = (features.shape[0] - config.patch_size) // config.time_stride + 1
        if num_columns < 1:
            raise ValueError(
                f"the music gives {features.shape[0]} fbank frames, fewer than one AST patch "
                f"({config.patch_size} frames, {column_times(config)[0] * 2:.3f} s); pass longer music."
            )
        column_s = config.time_stride * FBANK_HOP / SAMPLE_RATE
        hop_columns = round(hop_seconds / column_s) if np.isfinite(hop_seconds) else 0
        if not 1 <= hop_columns <= t_dim:
            raise ValueError(
                f"hop_seconds must lie between {column_s:g} and {t_dim * column_s:g} s (one column to "
                f"one AST window), got {hop_seconds!r}."
            )
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")

        starts = window_starts(num_columns, t_dim, hop_columns)
        # Each column is taken from the window whose centre is nearest, ties to the earlier one:
        # window i owns columns owned[i]:owned[i + 1], cut just after the midpoints between centres.
        centres = np.asarray(starts) + (t_dim - 1) / 2
        owned = [0, *(np.floor((centres[:-1] + centres[1:]) / 2).astype(int) + 1).tolist(), num_columns]
        length = max(features.shape[0], config.time_stride * starts[-1] + config.max_length)
        padded = torch.full((length, features.shape[1]), self._padding_value(), dtype=torch.float32)
        padded[: features.shape[0]] = features

        empty = {"device": self.device, "dtype": self.dtype}
        columns = torch.empty(num_columns, f_dim, config.hidden_size, **empty)
        global_tokens = torch.empty(num_columns, GLOBAL_TOKENS, config.hidden_size, **empty)
        for first in range(0, len(starts), batch_size):
            batch_starts = starts[first : first + batch_size]
            inputs = torch.stack([padded[config.time_stride * s :][: config.max_length] for s in batch_starts])
            hidden = self.model(inputs.to(self.device, self.dtype)).last_hidden_state
            grid = hidden[:, GLOBAL_TOKENS:].unflatten(1, (f_dim, t_dim)).transpose(1, 2)  # [B, t, f, d]
            for i, start in enumerate(batch_starts):
                lo, hi = owned[first + i], owned[first + i + 1]
                columns[lo:hi] = grid[i, lo - start : hi - start]
                global_tokens[lo:hi] = hidden[i, :GLOBAL_TOKENS]
            if callback is not None:  # (windows done, windows); it may raise to stop
                callback(min(first + batch_size, len(starts)), len(starts))
        times = column_times(config, num_columns)
        return MusicEncoding(columns, global_tokens, times, column_s, float(duration))

    def encode_music(
        self, waveform_16k: np.ndarray | torch.Tensor, *, hop_seconds: float = HOP_SECONDS, batch_size: int = 4,
        callback: Callable[[float], None] | None = None,
    ) -> MusicEncoding:
        """Encode a whole song once; call `frame_tokens` on the result for any fps, clip or window.

        callback(fraction done) after every minute of fbank (the first tenth) and every batch of windows;
        it may raise to stop (a Cancel).
        """
        wave = as_mono(waveform_16k, SAMPLE_RATE, downmix=False)
        duration = wave.size / SAMPLE_RATE
        report = callback or (lambda fraction: None)
        features = self.fbank(wave, callback=lambda done, total: report(0.1 * done / total))
        return self.encode_fbank(features, duration, hop_seconds=hop_seconds, batch_size=batch_size,
                                 callback=lambda done, total: report(0.1 + 0.9 * done / total))

    def encode(
        self,
        waveform_16k: np.ndarray | torch.Tensor,
        fps: float,
        num_frames: int,
        *,
        start_time: float = 0.0,
        window: int = 2,
        hop_seconds: float = HOP_SECONDS,
        batch_size: int = 4,
    ) -> torch.Tensor:
        """Music tokens [num_frames, L, d] for frames at start_time + k / fps (see MusicEncoding.frame_tokens).

        waveform_16k: mono float audio at 16 kHz, any length. Raises before running AST if a frame
        lies after the end of the music.
        """
        wave = as_mono(waveform_16k, SAMPLE_RATE, downmix=False)
        _check_frames(fps, num_frames, start_time, wave.size / SAMPLE_RATE)
        encoding = self.encode_music(wave, hop_seconds=hop_seconds, batch_size=batch_size)
        return encoding.frame_tokens(fps, num_frames, start_time=start_time, window=window)

    def quantized(self) -> MusicEncoder:
        """A copy whose Linear layers compute in 8-bit integers (dynamic int8, weights per output channel).

        For the CPU, where it runs the AST about 1.4 times as fast with tokens close to the float ones
        (BENCHMARKS.md, "AST music encoding"). Made on the first call and kept (a quarter of the float
        model's memory); this encoder is left as it is.
        """
        if self._quantized is None:
            self._quantized = self._make_quantized()
        return self._quantized

    def _make_quantized(self) -> MusicEncoder:
        if self.device.type != "cpu":
            raise ValueError(f"int8 AST layers run on the CPU only; this AST is on {self.device}. "
                             "Use a float AST on a GPU (it is fast there).")
        if not int8_available():
            raise RuntimeError("this torch build has no int8 CPU kernels (torch.ops.quantized.linear_dynamic); "
                               "encode with the float AST instead.")
        model = copy.deepcopy(self.model).float()
        for parent in list(model.modules()):
            for name, child in parent.named_children():
                if type(child) is torch.nn.Linear:
                    setattr(parent, name, Int8Linear(child))
        return MusicEncoder(model, self.feature_extractor)

    def _padding_value(self) -> float:
        """What the extractor's padding becomes: it pads log-mel frames with 0, then normalises."""
        extractor = self.feature_extractor
        return float(extractor.normalize(np.zeros(1))[0]) if extractor.do_normalize else 0.0


class Int8Linear(torch.nn.Module):
    """A frozen Linear layer run by torch's dynamic int8 CPU kernel.

    Weights are quantised once, symmetrically per output channel; each call quantises its input per
    tensor at run time (the kernel's "dynamic" mode, with the 7-bit input range that x86 kernels need
    to avoid overflow) and returns float32.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny).double()
        zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors exist only to be packed here
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float()
        with _packing_engine():
            self.packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.float(), self.packed, True)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


PACKING_ENGINES = ("onednn", "fbgemm", "x86", "qnnpack")  # fastest first (onednn measured on x86: BENCHMARKS.md)


@contextlib.contextmanager
def _packing_engine() -> Iterator[None]:
    """Pack weights for the first of PACKING_ENGINES this torch has; the packed weights keep their engine,
    so torch's global setting goes back to what it was."""
    chosen = next((e for e in PACKING_ENGINES if e in torch.backends.quantized.supported_engines), None)
    before = torch.backends.quantized.engine
    if chosen is not None:
        torch.backends.quantized.engine = chosen
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


@functools.cache
def int8_available() -> bool:
    """Whether torch's dynamic int8 Linear kernel runs here (x86 CPUs with fbgemm, or ARM with qnnpack)."""
    try:
        linear = torch.nn.Linear(4, 2)
        return Int8Linear(linear)(torch.ones(1, 4)).shape == (1, 2)
    except (RuntimeError, AttributeError):
        return False


def random_ast(hidden_size: int, seed: int = 0, num_hidden_layers: int = 2) -> tuple[ASTModel, ASTFeatureExtractor]:
    """A small randomly initialised AST (2 heads) and the default feature extractor.

    Built locally from a config, nothing read from disk or a hub: the default model's frozen music
    encoder (its music modules learn to read these features) and the tests' music encoders. The patch
    grid is the default one.
    num_hidden_layers=0 leaves patch plus position embeddings, so each token sees only its patch.
    """
    if hidden_size <= 0 or hidden_size % 2:
        raise ValueError(f"hidden_size must be a positive even number (2 heads), got {hidden_size}.")
    config = ASTConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        num_mel_bins=128,
        max_length=1024,
    )
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = ASTModel(config).eval().requires_grad_(False)
        with torch.no_grad():  # ASTModel starts these at zero; random values make every position distinct
            model.embeddings.position_embeddings.normal_(0.0, 0.02)
            model.embeddings.cls_token.normal_(0.0, 0.02)
            model.embeddings.distillation_token.normal_(0.0, 0.02)
    with _quiet_transformers():
        extractor = ASTFeatureExtractor()
    return model, extractor


def save_random_ast(folder: str | Path, hidden_size: int = 16, seed: int = 0, num_hidden_layers: int = 2) -> Path:
    """Write a `random_ast` in the layout `MusicEncoder.from_folder` reads, as real AST folders are (the
    default model's music encoder is one)."""
    folder = Path(folder)
    model, extractor = random_ast(hidden_size, seed=seed, num_hidden_layers=num_hidden_layers)
    with _quiet_transformers():
        model.save_pretrained(folder)  # model.safetensors
        extractor.save_pretrained(folder)
    return folder


def _check_ast_folder(folder: str | Path) -> Path:
    """The folder as an absolute path, after checking it holds an AST in Hugging Face layout."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"AST folder {str(folder)!r} is not a local directory. Expected a folder with {FOLDER_LAYOUT}; "
            "models are never downloaded, so download the AST once and pass its folder."
        )
    path = path.resolve()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{path} is not an AST model folder: config.json is missing (expected {FOLDER_LAYOUT})."
        )
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{config_file} is not a valid JSON config ({err}); expected an AST config.json.") from err
    if model_type != AST_MODEL_TYPE:
        raise ValueError(
            f"{config_file} describes a {model_type!r} model, not an AST (model_type {AST_MODEL_TYPE!r}); "
            "pass the folder of an Audio Spectrogram Transformer."
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(
            f"{path} has no AST weights: expected one of {', '.join(WEIGHT_FILES)} beside config.json."
        )
    if not (path / "preprocessor_config.json").is_file():
        raise FileNotFoundError(
            f"{path} has no preprocessor_config.json (the AST feature extractor's settings); "
            "copy it from the same AST release as the weights."
        )
    return path


def _check_frames(fps: float, num_frames: int, start_time: float, duration: float) -> None:
    """Raise unless frames start_time + k / fps, k < num_frames, all lie within the music."""
    if not isinstance(fps, (int, float, np.number)) or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    if not isinstance(num_frames, (int, np.integer)) or num_frames <= 0:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
    if not isinstance(start_time, (int, float, np.number)) or not np.isfinite(start_time) or start_time < 0:
        raise ValueError(f"start_time must be a non-negative number of seconds, got {start_time!r}.")
    last = start_time + (num_frames - 1) / fps
    if last > duration + 1e-9:
        raise ValueError(
            f"frame {num_frames - 1} at {fps:g} fps from {start_time:g} s falls at {last:.3f} s, after the end "
            f"of the {duration:.3f} s of music; pass fewer frames, an earlier start_time or longer music."
        )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports, progress bars and its warning about empty mel filters.

    from_folder raises its own errors for what matters (missing or mismatched weights); the
    classifier head of an AudioSet checkpoint is expected to go unused. Without torchaudio the
    extractor's 128-filter Kaldi mel bank has empty filters at 257 FFT bins, harmlessly.
    """
    verbosity, progress = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()
