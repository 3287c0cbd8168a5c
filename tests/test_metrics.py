"""Metrics on cases with known answers: synthetic pans, click tracks and hand-computed scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musedance_core.evaluation import metrics
from musedance_core.evaluation.flow import farneback_flow, flow_magnitudes, to_gray

FPS = 12
SR = 16000
SIZE = 48

_rng = np.random.default_rng(0)
_FREQ = _rng.uniform(2 * np.pi / 24, 2 * np.pi / 8, 12)
_ANGLE = _rng.uniform(0, 2 * np.pi, 12)
_PHASE = _rng.uniform(0, 2 * np.pi, 12)


def pan(offsets) -> np.ndarray:
    """[F, SIZE, SIZE, 3] frames of a smooth texture translated by offsets [F, 2] (x, y pixels, exact sub-pixel)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    frames = []
    for ox, oy in offsets:
        phase = _FREQ * (np.cos(_ANGLE) * (x[..., None] - ox) + np.sin(_ANGLE) * (y[..., None] - oy)) + _PHASE
        value = 0.5 + 0.4 * np.sin(phase).sum(-1) / np.sqrt(24)
        frames.append(np.repeat(value[..., None], 3, -1))
    return np.stack(frames).astype(np.float32)


def clicks(times, seconds: float) -> np.ndarray:
    wave = np.zeros(int(seconds * SR), np.float32)
    for t in times:
        start = int(round(t * SR))
        wave[start : start + 80] += np.sin(np.arange(80) * 0.6) * np.hanning(80)
    return wave


# --- optical flow -------------------------------------------------------------------------------


def test_flow_measures_known_translations():
    steps = np.array([[0.3, 0.0], [1.0, 0.0], [2.0, 1.0], [0.0, 4.0], [-0.5, 0.5]])
    frames = pan(np.concatenate([[[0.0, 0.0]], np.cumsum(steps, axis=0)]))
    magnitudes = flow_magnitudes(frames)
    np.testing.assert_allclose(magnitudes, np.hypot(*steps.T), rtol=0.1)
    gray = to_gray(frames)
    inner = farneback_flow(gray[:-1], gray[1:])[:, :, 8:-8, 8:-8].mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(inner, steps, atol=0.05)  # direction too: x then y, first -> second


def test_flow_of_a_static_video_is_zero():
    assert flow_magnitudes(pan(np.zeros((3, 2)))).max() < 1e-3


# --- AV-Align -----------------------------------------------------------------------------------


def test_video_peaks_follow_the_reference_rules():
    #        pair: 0  1  2  3  4  5  6     7  8  9  10
    pairs = np.array([3, 0, 0, 2, 0, 0, 0.05, 0, 1, 1, 0])
    # Reference curve m = [pairs[0], pairs...]: frame 1 (m[0] == m[1]) is no peak, pair 3 (frames
    # 3 -> 4) peaks at frame 4, 0.05 px is under the 0.1 px floor, the plateau at 8-9 is not strict.
    np.testing.assert_allclose(metrics.video_peaks(pairs, FPS), [4 / FPS])


def test_av_align_iou_counts_each_video_peak_once_within_an_open_one_frame_window():
    assert metrics.av_align_iou([0.5, 0.52], [0.5], FPS) == pytest.approx(1 / 2)
    assert metrics.av_align_iou([0.5 + 1 / FPS], [0.5], FPS) == 0.0
    assert metrics.av_align_iou([0.5 + 0.9 / FPS, 1.0], [0.5, 1.0, 2.0], FPS) == pytest.approx(2 / 3)
    assert metrics.av_align_iou([], [], FPS) == 0.0


def test_av_align_matches_is_the_intersection_the_iou_is_built_from():
    assert metrics.av_align_matches([0.5, 0.52], [0.5], FPS) == 1  # one video peak serves one onset
    assert metrics.av_align_matches([0.5 + 0.9 / FPS, 1.0], [0.5, 1.0, 2.0], FPS) == 2
    assert metrics.av_align_matches([0.5 + 1 / FPS], [0.5], FPS) == 0


def test_onset_coverage_is_the_hit_rate_of_peaks_on_random_frames():
    # Frames 1..10 can hold a peak (12 frames). Onsets at frames 4.2 and 6.5 cover frames 4, 5 and
    # 6, 7 (within one frame, open window): 4 of 10; one at frame 0.5 covers frame 1 only (frame 0
    # is never a peak).
    assert metrics.onset_coverage(np.array([4.2, 6.5]) / FPS, 12, FPS) == pytest.approx(4 / 10)
    assert metrics.onset_coverage(np.array([0.5]) / FPS, 12, FPS) == pytest.approx(1 / 10)
    # Onsets every 1.5 frames cover every frame; none cover nothing.
    assert metrics.onset_coverage(np.arange(0, 12, 1.5) / FPS, 12, FPS) == 1.0
    assert metrics.onset_coverage([], 12, FPS) == 0.0
    # A peak at every covered frame matches with that rate: the chance level is what random peaks get.
    onsets = np.array([2.0, 5.5, 9.2]) / FPS
    frames = np.arange(1, 47) / FPS
    hits = [metrics.av_align_matches(onsets, [t], FPS) for t in frames]
    assert metrics.onset_coverage(onsets, 48, FPS) == pytest.approx(np.mean(hits))
    with pytest.raises(ValueError, match="at least 3 frames"):
        metrics.onset_coverage(onsets, 2, FPS)


def test_beat_phase_places_times_in_their_beat_interval():
    beats = np.array([0.5, 1.0, 2.0])  # intervals of 0.5 s and 1 s
    phase = metrics.beat_phase([0.5, 0.75, 1.25, 1.9, 0.2, 2.5], beats)
    np.testing.assert_allclose(phase[:4], [0.0, 0.5, 0.25, 0.9])
    assert np.isnan(phase[4:]).all()  # before the first and after the last beat
    assert np.isnan(metrics.beat_phase([0.3], [0.5])).all()  # one beat makes no interval


MOVES = [6, 15, 24, 30]  # frames the pan arrives at; it is still otherwise


def moving_at(frames_with_motion, count: int = 36) -> np.ndarray:
    steps = np.zeros((count, 2))
    steps[frames_with_motion, 0] = 3.0
    return pan(np.cumsum(steps, axis=0))


def test_av_align_is_one_when_motion_and_onsets_coincide_and_known_when_half_are_shifted():
    video = moving_at(MOVES)
    same = metrics.evaluate_video(video, FPS, clicks(np.array(MOVES) / FPS, 3.2), SR)
    np.testing.assert_allclose(same.video_peaks, np.array(MOVES) / FPS)
    assert same.audio_peaks.size == 4 and same.av_align == 1.0
    shifted = np.array([6, 15, 27, 33]) / FPS  # two clicks 3 frames (250 ms) off their motion
    stereo = torch.from_numpy(clicks(shifted, 3.2)).expand(1, 2, -1)  # ComfyUI AUDIO waveform [1, C, T]
    result = metrics.evaluate_video(video, FPS, stereo, SR)
    assert result.av_align == pytest.approx(2 / (4 + 4 - 2))


# --- 2D-MM Align and beat distances -------------------------------------------------------------


def test_beat_alignment_known_values():
    result = metrics.beat_alignment([1.0, 2.0, 3.2], [3.0, 1.1, 2.0], sigma=0.05)
    assert result.score == pytest.approx((math.exp(-2) + 1 + math.exp(-8)) / 3)
    assert result.mean_distance == pytest.approx(0.1) and result.median_distance == pytest.approx(0.1)
    # Uniform "kinematic beats" against beats every 0.5 s: sigma sqrt(2 pi) / 0.5 of the time.
    chance = metrics.beat_alignment([1.0], np.arange(0, 10.01, 0.5), sigma=0.05, duration=10.0).chance
    assert chance == pytest.approx(0.05 * math.sqrt(2 * math.pi) / 0.5, rel=0.01)
    assert math.isnan(metrics.beat_alignment([], [1.0]).score)


def test_kinematic_beats_pauses_count_once_at_their_centre_and_noise_makes_none():
    curve = np.array([2, 2, 1, 0, 0, 0, 1, 2, 2, 2, 2, 2.0])
    np.testing.assert_allclose(metrics.kinematic_beats(curve, FPS, smooth_frames=0), [(4 + 0.5) / FPS])
    noise = np.random.default_rng(1).uniform(0, 0.01, 40)
    assert metrics.kinematic_beats(noise, FPS).size == 0


def oscillation(beat_seconds: float, count: int = 30) -> np.ndarray:
    """A pan back and forth, 3 px amplitude, turning (speed 0) every `beat_seconds`."""
    t = np.arange(count) / FPS
    return pan(np.stack([3.0 * np.cos(np.pi * t / beat_seconds), np.zeros(count)], axis=1))


@pytest.mark.parametrize("beat", [0.5, 0.55])  # turning points on frames, and between them
def test_motion_that_turns_on_the_beat_scores_near_one_and_shifted_beats_score_as_the_formula_says(beat):
    video = oscillation(beat)
    music = np.arange(1, 2.5 / beat) * beat
    kinematic = metrics.kinematic_beats(flow_magnitudes(video), FPS)
    np.testing.assert_allclose(kinematic, music, atol=0.006)  # measured: within 5 ms

    result = metrics.evaluate_video(video, FPS, music_beats=music)
    assert result.mm_align > 0.99 and result.beat_distance_mean < 0.006
    assert result.mm_align_chance < 0.3 and result.av_align is None and "av_align" in result.unavailable
    shifted = metrics.evaluate_video(video, FPS, music_beats=music + 0.05)
    assert shifted.mm_align == pytest.approx(math.exp(-0.5), abs=0.03)
    assert shifted.beat_distance_mean == pytest.approx(0.05, abs=0.006)
    assert shifted.beat_distance_median == pytest.approx(0.05, abs=0.006)


# --- PSNR and SSIM ------------------------------------------------------------------------------


def test_psnr_of_known_errors():
    reference = np.zeros((2, 16, 16, 3), np.float32)
    assert metrics.psnr(reference + 0.1, reference) == pytest.approx(20.0)
    mixed = reference.copy()
    mixed[0] += 0.1
    mixed[1] += 0.01
    assert metrics.psnr(mixed, reference) == pytest.approx((20 + 40) / 2)  # mean of per-frame PSNR
    assert metrics.psnr(reference, reference) == math.inf


def naive_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two grey images by the textbook formula, one 11x11 Gaussian window at a time."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb, cab = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum(), (w * (a - ma) * (b - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cab + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_textbook_formula_is_one_for_identical_and_falls_with_noise():
    rng = np.random.default_rng(2)
    clean = pan([[0, 0]])[:, :16, :16]
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    expected = np.mean([naive_ssim(clean[0, ..., c], noisy[0, ..., c]) for c in range(3)])
    assert metrics.ssim(noisy, clean) == pytest.approx(expected, rel=1e-9)
    assert metrics.ssim(clean, clean) == pytest.approx(1.0)
    scores = [metrics.ssim(np.clip(clean + rng.normal(0, s, clean.shape), 0, 1), clean) for s in (0.02, 0.1, 0.3)]
    assert scores[0] > scores[1] > scores[2]


# --- LPIPS and FVD: only with the user's weight files --------------------------------------------


def test_lpips_and_fvd_are_unavailable_without_weight_files():
    video = pan(np.zeros((2, 2)))
    result = metrics.evaluate_video(video, FPS, reference_frames=video)
    assert result.lpips is None and "alexnet" in result.unavailable["lpips"]
    assert result.psnr == math.inf and result.ssim == pytest.approx(1.0)
    none = metrics.fvd(video[None], video[None])
    assert isinstance(none, metrics.Unavailable) and "i3d" in str(none)


def write_lpips_files(tmp_path, zero_heads_after_first: bool):
    gen = torch.Generator().manual_seed(0)
    backbone = {}
    for index, c_in, c_out, k, *_ in metrics._LPIPS_NETS["alex"]["layers"]:
        backbone[f"features.{index}.weight"] = torch.randn(c_out, c_in, k, k, generator=gen) * 0.05
        backbone[f"features.{index}.bias"] = torch.randn(c_out, generator=gen) * 0.05
    heads = {}
    for k, (_, _, c_out, *_) in enumerate(metrics._LPIPS_NETS["alex"]["layers"]):
        heads[f"lin{k}.model.1.weight"] = torch.ones(1, c_out, 1, 1) * (k == 0 or not zero_heads_after_first)
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex.pth")
    return backbone, tmp_path / "alexnet.pth", tmp_path / "alex.pth"


def test_lpips_with_supplied_files_follows_the_lpips_formula(tmp_path):
    # Not real weights (none may be downloaded here): a file in the torchvision/lpips layout, with
    # only the first head non-zero, so the score is the first layer's term, computed by hand.
    backbone, backbone_path, linear_path = write_lpips_files(tmp_path, zero_heads_after_first=True)
    x, y = pan([[0, 0]]), pan([[2, 1]])
    shift = torch.tensor(metrics._LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(metrics._LPIPS_SCALE).view(1, 3, 1, 1)

    def first_layer(image):
        image = (torch.from_numpy(image).permute(0, 3, 1, 2) * 2 - 1 - shift) / scale
        feature = torch.relu(torch.nn.functional.conv2d(image, backbone["features.0.weight"], backbone["features.0.bias"], 4, 2))
        return feature / (feature.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    expected = float(((first_layer(x) - first_layer(y)) ** 2).sum(1).mean())
    score = metrics.lpips(x, y, backbone_path=backbone_path, linear_path=linear_path)
    assert score == pytest.approx(expected, rel=1e-4) and score > 0
    assert metrics.lpips(x, x, backbone_path=backbone_path, linear_path=linear_path) == 0.0
    with pytest.raises(ValueError, match="features.0.weight"):
        metrics.LPIPS(linear_path, linear_path)  # heads file given as the backbone


def test_frechet_distance_of_shifted_features_is_the_squared_shift():
    features = np.random.default_rng(3).normal(size=(50, 4))
    shift = np.array([1.0, -2.0, 0.0, 0.5])
    assert metrics.frechet_distance(features + shift, features) == pytest.approx(shift @ shift, abs=1e-6)


def test_fvd_runs_a_supplied_torchscript_detector(tmp_path):
    class MeanColour(torch.nn.Module):  # stands in for I3D: features = mean of each channel
        def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
            return x.mean(dim=(2, 3, 4))

    path = tmp_path / "detector.pt"
    torch.jit.script(MeanColour()).save(str(path))
    real = np.random.default_rng(4).uniform(0.2, 0.6, (4, 2, 8, 8, 3)).astype(np.float32)
    # Brighter by 0.1 in [0, 1] is 0.2 in the detector's [-1, 1]: 3 channels * 0.2^2.
    assert metrics.fvd(real, real + 0.1, i3d_path=path) == pytest.approx(3 * 0.2**2, rel=1e-4)
