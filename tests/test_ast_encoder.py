"""MusicEncoder: folder loading, window stitching, exact frame alignment, limits and bad input.

Every AST here is tiny and random: the token layout and the timing are what is tested, not the
weights. Loading tests save models in Hugging Face layout first, as real AST folders are.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from musedance_core.audio.ast_encoder import (
    FAST_HOP_SECONDS,
    FrameTokens,
    Int8Linear,
    MusicEncoder,
    int8_available,
    patch_grid,
    random_ast,
    save_random_ast,
    window_starts,
)

SR = 16_000
D = 16
F_DIM = 12  # frequency rows of the default patch grid
WINDOW_SAMPLES = 1023 * 160 + 400  # the samples behind one AST window's 1024 fbank frames
COLUMN_SAMPLES = 1600  # one time column: 10 fbank frames of 160 samples


@pytest.fixture(scope="module")
def ast():
    return random_ast(D, seed=0)


@pytest.fixture(scope="module")
def encoder(ast):
    return MusicEncoder(*ast)


@pytest.fixture(scope="module")
def flat_encoder(tmp_path_factory):
    """A zero-layer AST, loaded from disk: each patch token depends on its own patch only."""
    folder = save_random_ast(tmp_path_factory.mktemp("flat_ast"), D, seed=1, num_hidden_layers=0)
    return MusicEncoder.from_folder(folder)


@pytest.fixture(scope="module")
def ast_folder(tmp_path_factory):
    return save_random_ast(tmp_path_factory.mktemp("ast"), D, seed=3)


def noise(seconds: float, seed: int = 0, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(round(seconds * SR)))).astype(np.float32)


def ast_window(encoder: MusicEncoder, wave: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Global tokens [2, d] and the patch grid [f_dim, t_dim, d] of one window, straight from ASTModel."""
    features = encoder.feature_extractor(wave, sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.no_grad():
        hidden = encoder.model(features.to(encoder.dtype)).last_hidden_state[0]
    f_dim, t_dim = patch_grid(encoder.model.config)
    return hidden[:2], hidden[2:].reshape(f_dim, t_dim, -1)


def column_block(tokens: torch.Tensor, frame: int, offset: int) -> torch.Tensor:
    """The F_DIM tokens of window position `offset` (0 .. 2w) of one frame."""
    return tokens[frame, 2 + offset * F_DIM : 2 + (offset + 1) * F_DIM]


# --- one window (music up to 10.24 s) ---------------------------------------------------------


@pytest.mark.parametrize("window", [0, 2])
def test_shape(encoder, window):
    tokens = encoder.encode(noise(4.0), fps=12, num_frames=48, window=window)
    assert patch_grid(encoder.model.config) == (F_DIM, 101)
    assert tokens.shape == (48, 2 + F_DIM * (2 * window + 1), D)
    assert tokens.dtype == torch.float32 and torch.isfinite(tokens).all()


def test_frames_take_the_columns_at_their_time(ast):
    """Frame 24 at 12 fps is t = 2 s; column j is centred at 0.1 j + 0.0875 s, so j = 19."""
    wave = noise(4.0)
    tokens = MusicEncoder(*ast).encode(wave, fps=12, num_frames=48, window=2)
    global_tokens, grid = ast_window(MusicEncoder(*ast), wave)
    for offset in range(5):
        torch.testing.assert_close(column_block(tokens, 24, offset), grid[:, 19 + offset - 2])
    torch.testing.assert_close(tokens[:, :2], global_tokens.expand(48, -1, -1))
    assert not torch.allclose(tokens[6, 2:], tokens[30, 2:])  # different times, different music tokens


def test_windows_are_clamped_at_both_ends(encoder):
    wave = noise(10.2)  # fills the AST window: the last frames reach past the last column
    n = 122  # frame 121 is at 10.08 s, nearest column 100 of 0..100
    tokens = encoder.encode(wave, fps=12, num_frames=n, window=2)
    _, grid = ast_window(encoder, wave)
    for offset, column in enumerate([0, 0, 0, 1, 2]):
        torch.testing.assert_close(column_block(tokens, 0, offset), grid[:, column])
    for offset, column in enumerate([98, 99, 100, 100, 100]):
        torch.testing.assert_close(column_block(tokens, n - 1, offset), grid[:, column])


def test_short_music_never_takes_padding_columns(encoder):
    """4 s of music fill 39 columns of the 101; the last frame takes column 38, not padding."""
    wave = noise(4.0)
    encoding = encoder.encode_music(wave)
    assert encoding.columns.shape[0] == 39  # (398 fbank frames - 16) // 10 + 1
    tokens = encoding.frame_tokens(12, 49, window=2)  # frame 48 is at exactly 4.0 s
    _, grid = ast_window(encoder, wave)
    for offset, column in enumerate([36, 37, 38, 38, 38]):
        torch.testing.assert_close(column_block(tokens, 48, offset), grid[:, column])


# --- long music: windows and stitching --------------------------------------------------------


def test_window_starts_cover_the_song_and_end_at_its_end():
    assert window_starts(60, 101, 50) == [0]
    assert window_starts(101, 101, 50) == [0]
    assert window_starts(249, 101, 50) == [0, 50, 100, 148]  # the last window ends at column 248
    starts = window_starts(1798, 101, 50)
    assert starts[-1] + 101 == 1798 and all(b - a <= 50 for a, b in zip(starts, starts[1:]))


def test_fbank_once_equals_the_extractor_on_each_window(encoder):
    """Slicing the whole song's fbank at a column boundary gives the extractor's window features."""
    wave = noise(23.0, seed=4)
    whole = encoder.fbank(wave)
    assert whole.shape == (1 + (wave.size - 400) // 160, 128)
    for start_column in (0, 50, 120):
        start = start_column * COLUMN_SAMPLES
        window = encoder.feature_extractor(wave[start : start + WINDOW_SAMPLES], sampling_rate=SR)["input_values"][0]
        real = min(1024, whole.shape[0] - 10 * start_column)
        np.testing.assert_array_equal(whole[10 * start_column :][:real].numpy(), window[:real])
        assert real == 1024 or start_column == 120  # only the last window reaches the end of the song


def test_long_music_takes_each_column_from_its_most_central_window(encoder):
    """25 s: 249 columns, windows at columns 0, 50, 100, 148 (5, 10 and 14.8 s).

    A frame at 10 s (column 99) lies in the middle of the window starting at 5 s, at its edge in
    the first window; the last frame comes from the last window. Tokens must equal that window's
    own AST output, run separately on its samples.
    """
    wave = noise(25.0, seed=2)
    tokens = encoder.encode(wave, fps=12, num_frames=300, window=2)  # frames 0 .. 24.92 s

    global_1, grid_1 = ast_window(encoder, wave[50 * COLUMN_SAMPLES :][:WINDOW_SAMPLES])
    for offset in range(5):
        torch.testing.assert_close(column_block(tokens, 120, offset), grid_1[:, 99 - 50 + offset - 2])
    torch.testing.assert_close(tokens[120, :2], global_1)
    _, grid_0 = ast_window(encoder, wave[:WINDOW_SAMPLES])
    assert not torch.allclose(column_block(tokens, 120, 2), grid_0[:, 99], atol=1e-3)

    global_3, grid_3 = ast_window(encoder, wave[148 * COLUMN_SAMPLES :])
    for offset, column in enumerate([246, 247, 248, 248, 248]):  # frame 299 at 24.92 s: column 248
        torch.testing.assert_close(column_block(tokens, 299, offset), grid_3[:, column - 148])
    torch.testing.assert_close(tokens[299, :2], global_3)


@pytest.mark.parametrize("fps", [12, 24, 30])
def test_click_lands_in_the_frames_at_its_time(flat_encoder, fps):
    """A one-sample click changes exactly the frames whose column window covers its time.

    With no transformer layers a token sees only its own 16 x 16 patch, so the click changes
    the columns whose fbank frames hold its sample. Clicks fall in the first, second, third and
    last (end-aligned) stitched windows of a 25 s song.
    """
    window = 2
    duration = 25.0
    base = noise(duration, seed=5, level=0.01)
    num_frames = int(duration * fps)
    before = flat_encoder.encode(base, fps, num_frames, window=window)
    num_columns = (1 + (base.size - 400) // 160 - 16) // 10 + 1
    # Frame k's own column, from the column centres 0.1 j + 0.0875 s (no ties at these rates).
    centre = np.clip(np.round((np.arange(num_frames) / fps - 0.0875) / 0.1), 0, num_columns - 1).astype(int)
    frame_windows = [set(range(c - window, c + window + 1)) for c in centre]
    for click_time in (3.31, 9.96, 15.47, 23.05):
        sample = int(round(click_time * SR))
        clicked = base.copy()
        clicked[sample] += 0.9
        after = flat_encoder.encode(clicked, fps, num_frames, window=window)

        changed = (after != before).flatten(1).any(dim=1).numpy()
        # fbank frame i holds samples [160 i, 160 i + 400); column j holds fbank frames [10 j, 10 j + 16).
        fbank_hit = [i for i in range(sample // 160 - 3, sample // 160 + 1) if 160 * i <= sample < 160 * i + 400]
        columns_hit = {j for j in range(num_columns) if 10 * j <= fbank_hit[-1] and 10 * j + 16 > fbank_hit[0]}
        frames_hit = {k for k, columns in enumerate(frame_windows) if columns & columns_hit}
        assert set(np.flatnonzero(changed)) == frames_hit
        assert round(click_time * fps) in frames_hit
        assert all(abs(k / fps - click_time) < (window + 2) * 0.1 + 1 / fps for k in frames_hit)
        assert torch.equal(after[:, :2], before[:, :2])  # global tokens do not see the patches


@pytest.mark.parametrize("fps", [12, 24, 30])
def test_column_centres_lie_within_half_a_column_of_frame_times(flat_encoder, fps):
    encoding = flat_encoder.encode_music(noise(21.0, seed=6))
    num_columns = encoding.columns.shape[0]
    j = np.arange(num_columns)
    # Column j spans the samples from fbank frame 10 j's first to fbank frame 10 j + 15's last.
    np.testing.assert_allclose(encoding.times, (1600 * j + (1600 * j + 15 * 160 + 400)) / 2 / SR)
    frame_times = np.arange(int(21.0 * fps)) / fps
    columns = encoding.frame_columns(fps, frame_times.size)
    error = frame_times - encoding.times[columns]
    inside = (frame_times >= encoding.times[0]) & (frame_times <= encoding.times[-1])
    assert np.all(np.abs(error[inside]) <= 0.05 + 1e-9)
    assert np.all(columns[frame_times < encoding.times[0]] == 0)
    assert np.all(columns[frame_times > encoding.times[-1]] == num_columns - 1)


def test_start_time_gives_the_frames_of_a_later_clip(encoder):
    wave = noise(14.0, seed=7)
    whole = encoder.encode(wave, fps=12, num_frames=120)
    clip = encoder.encode(wave, fps=12, num_frames=24, start_time=5.0)
    torch.testing.assert_close(clip, whole[60:84])


def test_fbank_made_a_minute_at_a_time_equals_the_whole_songs(encoder, monkeypatch):
    """The fbank is computed in stretches (a long song's working arrays would take gigabytes at once); the
    stretches join into exactly the extractor's features of the whole song."""
    from musedance_core.audio import ast_encoder

    wave = noise(7.3, seed=5)
    whole = encoder.fbank(wave)  # 7.3 s: one stretch
    monkeypatch.setattr(ast_encoder, "FBANK_CHUNK_FRAMES", 97)
    assert torch.equal(encoder.fbank(wave), whole) and whole.shape[0] > 97 * 7


def test_frame_tokens_made_a_stretch_at_a_time_equal_the_whole_spans(encoder):
    """FrameTokens hold the song's columns and make any frames' tokens on request: every stretch, and every
    slice of a slice, equals those rows of the whole span's tokens exactly (frame times from the span's start)."""
    wave = noise(14.0, seed=3)
    whole = encoder.encode(wave, fps=24, num_frames=200, start_time=1.3)
    lazy = FrameTokens(encoder.encode_music(wave), fps=24, num_frames=200, start_time=1.3)
    assert lazy.shape == whole.shape and len(lazy) == 200
    for first, count in ((0, 16), (16, 16), (37, 50), (199, 1)):
        assert torch.equal(lazy.frames(first, count), whole[first : first + count])
    assert torch.equal(lazy[40:120].frames(10, 30), whole[50:80]) and lazy[40:120].shape[0] == 80
    assert torch.equal(lazy.tensor(), whole)
    with pytest.raises(IndexError):
        lazy.frames(190, 20)


def test_batch_size_and_hop_keep_the_alignment(encoder):
    wave = noise(16.0, seed=8)
    one = encoder.encode(wave, fps=12, num_frames=150, batch_size=1)
    three = encoder.encode(wave, fps=12, num_frames=150, batch_size=3)
    torch.testing.assert_close(one, three, rtol=1e-5, atol=1e-5)
    # Another hop changes which window (context) a column comes from, not which column a frame takes.
    flat_a = encoder.encode_music(wave, hop_seconds=2.0).frame_columns(12, 150)
    flat_b = encoder.encode_music(wave, hop_seconds=10.0).frame_columns(12, 150)
    np.testing.assert_array_equal(flat_a, flat_b)


def test_bfloat16_runs_in_the_model_dtype_and_stays_close(ast_folder):
    wave = noise(12.0, seed=9)
    fp32 = MusicEncoder.from_folder(ast_folder).encode(wave, fps=12, num_frames=120)
    bf16 = MusicEncoder.from_folder(ast_folder, device="cpu", dtype=torch.bfloat16).encode(wave, fps=12, num_frames=120)
    assert bf16.dtype == torch.bfloat16 and fp32.dtype == torch.float32
    assert (bf16.float() - fp32).abs().mean() < 0.05 * fp32.abs().mean()


needs_int8 = pytest.mark.skipif(not int8_available(), reason="this torch build has no int8 CPU Linear kernel")


@needs_int8
def test_int8_linear_matches_the_float_layer_within_its_quantisation_step():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(50, 7, 64)
    exact = linear(x).detach()
    int8 = Int8Linear(linear)(x)
    assert int8.shape == exact.shape and int8.dtype == torch.float32
    # Weight steps (per output channel) and 7-bit input steps bound the error; a wrong scale or a
    # transposed weight would be off by the size of the outputs themselves.
    assert (int8 - exact).abs().max() < 0.05 * exact.abs().max()
    assert torch.nn.functional.cosine_similarity(int8.flatten(), exact.flatten(), dim=0) > 0.999


@needs_int8
def test_quantized_encoder_keeps_the_float_one_and_gives_close_tokens():
    float_encoder = MusicEncoder(*random_ast(64, seed=4))
    quantized = float_encoder.quantized()
    assert quantized is float_encoder.quantized()  # made once, kept
    assert all(type(m) is not Int8Linear for m in float_encoder.model.modules())
    assert sum(type(m) is Int8Linear for m in quantized.model.modules()) == 2 * 6  # q, k, v, out, two MLP per layer
    wave = noise(12.0, seed=10)
    exact = float_encoder.encode(wave, fps=12, num_frames=120)
    close = quantized.encode(wave, fps=12, num_frames=120)
    cosine = torch.nn.functional.cosine_similarity(close, exact, dim=-1)
    assert cosine.min() > 0.99, cosine.min()


def test_quantized_is_refused_off_the_cpu():
    model, extractor = random_ast(D, seed=0)
    with pytest.raises(ValueError, match="CPU only.*on meta"):
        MusicEncoder(model.to("meta"), extractor).quantized()


def test_the_fast_hop_takes_half_the_windows(encoder):
    wave = noise(60.0, seed=11, level=0.05)
    windows = {}
    for hop in (5.0, FAST_HOP_SECONDS):
        seen = []
        encoding = encoder.encode_fbank(encoder.fbank(wave), 60.0, hop_seconds=hop,
                                        callback=lambda done, total: seen.append(total))
        windows[hop] = seen[-1]
        assert encoding.columns.shape[0] == 599  # the same columns, from other windows
    assert windows == {5.0: 11, FAST_HOP_SECONDS: 6}


# --- loading from a folder ----------------------------------------------------------------------


def test_from_folder_loads_the_saved_model(ast_folder):
    model, _ = random_ast(D, seed=3)
    loaded = MusicEncoder.from_folder(ast_folder)
    expected = model.state_dict()
    assert loaded.model.state_dict().keys() == expected.keys()
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    wave = noise(3.0)
    torch.testing.assert_close(loaded.encode(wave, 12, 36), MusicEncoder(*random_ast(D, seed=3)).encode(wave, 12, 36))


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_from_folder_reads_an_audio_classification_checkpoint(tmp_path):
    """AudioSet AST releases are ASTForAudioClassification checkpoints with older parameter names."""
    config = ASTConfig(hidden_size=D, num_hidden_layers=1, num_attention_heads=2, intermediate_size=2 * D)
    torch.manual_seed(0)
    classifier = ASTForAudioClassification(config).eval()
    classifier.save_pretrained(tmp_path)
    ASTFeatureExtractor().save_pretrained(tmp_path)
    assert any(".encoder.layer.0." in key for key in load_file(tmp_path / "model.safetensors"))
    loaded = MusicEncoder.from_folder(tmp_path)
    inner = classifier.audio_spectrogram_transformer.state_dict()
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, inner[name]), name


def test_from_folder_reads_pytorch_model_bin(tmp_path):
    """Older releases ship only pytorch_model.bin; transformers reads it with weights_only=True."""
    folder = save_random_ast(tmp_path, D, seed=3)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    expected = random_ast(D, seed=3)[0].state_dict()
    for name, value in MusicEncoder.from_folder(folder).model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def _no_config(folder):
    (folder / "config.json").unlink()


def _other_model(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "wav2vec2"}))


def _no_weights(folder):
    (folder / "model.safetensors").unlink()


def _no_preprocessor(folder):
    (folder / "preprocessor_config.json").unlink()


def _missing_layer(folder):
    weights = load_file(folder / "model.safetensors")
    kept = {k: v for k, v in weights.items() if ".layer.1." not in k}
    save_file(kept, folder / "model.safetensors", metadata={"format": "pt"})  # as transformers writes it


def _wrong_width(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 2 * D, "intermediate_size": 4 * D}))


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (_no_config, FileNotFoundError, "config.json is missing"),
        (_other_model, ValueError, "'wav2vec2' model, not an AST"),
        (_no_weights, FileNotFoundError, "has no AST weights: expected one of model.safetensors"),
        (_no_preprocessor, FileNotFoundError, "has no preprocessor_config.json"),
        (_missing_layer, ValueError, r"do not fit .* layers\.1\..* \(missing\)"),
        (_wrong_width, ValueError, r"do not fit .* embeddings\.cls_token \(file \(1, 1, 16\), model \(1, 1, 32\)\)"),
    ],
)
def test_a_folder_that_is_not_an_ast_is_refused_by_name(tmp_path, damage, error, message):
    folder = save_random_ast(tmp_path / "my_ast", D)
    damage(folder)
    with pytest.raises(error, match=message) as caught:
        MusicEncoder.from_folder(folder)
    assert str(folder) in str(caught.value)


@pytest.mark.parametrize("name", ["MIT/ast-finetuned-audioset-10-10-0.4593", "/no/such/folder"])
def test_a_hub_id_or_missing_folder_is_refused_without_download(name):
    with pytest.raises(FileNotFoundError, match="not a local directory.*never downloaded") as caught:
        MusicEncoder.from_folder(name)
    assert name in str(caught.value)


# --- limits and bad input -----------------------------------------------------------------------


def test_frames_past_the_end_of_the_music_raise(encoder):
    with pytest.raises(ValueError, match=r"frame 47 .* 3\.917 s, after the end of the 2\.000 s of music"):
        encoder.encode(noise(2.0), fps=12, num_frames=48)
    with pytest.raises(ValueError, match="after the end"):
        encoder.encode(noise(12.0), fps=12, num_frames=24, start_time=11.0)
    assert encoder.encode(noise(2.0), fps=12, num_frames=25).shape[0] == 25  # the last frame at exactly 2 s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"waveform_16k": noise(0.1)}, "fewer than one AST patch"),
        ({"waveform_16k": np.stack([noise(2.0)] * 2)}, "mono audio"),
        ({"hop_seconds": 0.0}, "hop_seconds must lie between"),
        ({"hop_seconds": 11.0}, "hop_seconds must lie between"),
        ({"window": -1}, "window must be"),
        ({"start_time": -1.0}, "start_time must be"),
        ({"fps": 0}, "fps must be"),
    ],
)
def test_bad_arguments_raise(encoder, kwargs, message):
    arguments = {"waveform_16k": noise(2.0), "fps": 12, "num_frames": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        encoder.encode(**arguments)


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_mismatched_feature_extractor_raises(ast):
    with pytest.raises(ValueError, match="max_length"):
        MusicEncoder(ast[0], ASTFeatureExtractor(max_length=512)).encode(noise(2.0), fps=12, num_frames=12)


def test_encoder_is_frozen():
    model, extractor = random_ast(D, seed=0)
    model.requires_grad_(True).train()
    encoder = MusicEncoder(model, extractor)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.requires_grad_(True)  # even if someone unfreezes it, encoding builds no graph
    assert not encoder.encode(noise(1.0), fps=12, num_frames=12).requires_grad


def test_random_ast_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, _ = random_ast(8, seed=1)
    assert torch.equal(torch.rand(3), expected)
    b, _ = random_ast(8, seed=1)
    c, _ = random_ast(8, seed=2)
    for weight in ("embeddings.patch_embeddings.projection.weight", "embeddings.position_embeddings"):
        assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
        assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


def test_an_ast_folder_in_models_audio_encoders_is_found_and_loaded(tmp_path):
    """The way the node pack finds an AST: by name inside models/audio_encoders, then from_folder."""
    from helpers import pack_module

    ModelFolders = pack_module("nodes.model_paths").ModelFolders

    saved = save_random_ast(tmp_path / "models" / "audio_encoders" / "MIT" / "ast-tiny", hidden_size=16)
    folders = ModelFolders.from_models_dir(tmp_path / "models")
    assert folders.list("audio_encoders") == ["MIT/ast-tiny"]
    encoder = MusicEncoder.from_folder(folders.resolve("audio_encoders", "MIT/ast-tiny"))
    reference, _ = random_ast(16)
    loaded = encoder.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
    assert saved.resolve() == folders.resolve("audio_encoders", "MIT/ast-tiny")
