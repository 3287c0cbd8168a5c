"""Evaluation metrics of MuseDance (Sec. 4.3) and DabFusion (Sec. 4.2), computed offline.

Music-motion alignment, from the mean optical-flow magnitude of each frame pair (`flow.py`):
- AV-Align (Yariv et al., TempoTokens `av_align.py` at bf0b1e3): audio onsets against local maxima
  of the flow curve (`audio_onsets`, `video_peaks`), matched within one frame, scored by
  intersection over union (`av_align_iou`); `onset_coverage` is what a peak on a random frame would
  hit, and `beat_phase` places peaks and onsets in the beat interval (the benchmark's diagnosis).
- 2D-MM Align (DabFusion eq. in Sec. 4.2, after the Beat Alignment Score of AIST++/FACT): mean over
  kinematic beats (local minima of the flow curve) of exp(-d^2 / 2 sigma^2), d the distance in
  seconds to the nearest music beat; with the mean and median of d, MuseDance's "distance errors",
  and the score random kinematic beats would get (`beat_alignment`).
Image quality against ground-truth frames: PSNR and SSIM (`psnr`, `ssim`); LPIPS and FVD only with
backbone weight files the user supplies (`lpips`, `fvd`), otherwise `Unavailable`: a random backbone
gives numbers that mean nothing, so none is ever built here.

Videos are float [F, H, W, 3] RGB in [0, 1] (numpy or torch), as ComfyUI IMAGE batches are.
All alignment scores depend on fps and resolution (one-frame windows, thresholds in pixels):
compare runs only at the same fps and size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import librosa
import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.signal
import torch
import torch.nn.functional as F

from ..audio.beats import analyze_beats
from ..audio.music import as_mono
from .flow import flow_magnitudes

AV_ALIGN_SAMPLE_RATE = 22050  # librosa.load's default, which the reference uses
AV_ALIGN_MIN_PEAK = 0.1  # pixels: the reference ignores flow maxima below this (static scenes)
# FACT's sigma of 3 frames at 60 fps. DabFusion calls sigma "a normalized parameter" and gives no
# value; in seconds it does not change with fps (3 frames at 12 fps would be 0.25 s, so wide that random
# kinematic beats score about 0.8 against 120 BPM music).
MM_ALIGN_SIGMA = 0.05


@dataclass(frozen=True)
class Unavailable:
    """A metric that was not computed, and why (e.g. a weight file that was not supplied)."""

    reason: str

    def __str__(self) -> str:
        return f"unavailable: {self.reason}"


# ---------------------------------------------------------------------------------------------
# Inputs


def _video(frames, name: str = "frames") -> torch.Tensor:
    video = torch.as_tensor(np.asarray(frames), dtype=torch.float64)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{name} must be [F, H, W, 3] RGB in [0, 1], got shape {tuple(video.shape)}.")
    if not torch.isfinite(video).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    return video


def _pair(video, reference) -> tuple[torch.Tensor, torch.Tensor]:
    video, reference = _video(video), _video(reference, "reference_frames")
    if video.shape != reference.shape:
        raise ValueError(
            f"video {tuple(video.shape)} and reference_frames {tuple(reference.shape)} must have the same "
            "shape [F, H, W, 3]; resize or trim the ground truth to the generated video first."
        )
    return video, reference


# ---------------------------------------------------------------------------------------------
# AV-Align


def audio_onsets(waveform, sample_rate: int) -> np.ndarray:
    """AV-Align's audio peaks: librosa onset times in seconds, as the reference finds them.

    The reference loads the audio with librosa.load (mono, resampled to 22.05 kHz), then runs
    onset_strength and onset_detect with their defaults (hop 512) and converts frames to times.
    """
    wave = as_mono(waveform, sample_rate)
    if sample_rate != AV_ALIGN_SAMPLE_RATE:
        wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=AV_ALIGN_SAMPLE_RATE)
    envelope = librosa.onset.onset_strength(y=wave, sr=AV_ALIGN_SAMPLE_RATE)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=AV_ALIGN_SAMPLE_RATE)
    return librosa.frames_to_time(onsets, sr=AV_ALIGN_SAMPLE_RATE).astype(np.float64)


def video_peaks(magnitudes: np.ndarray, fps: float, min_peak: float = AV_ALIGN_MIN_PEAK) -> np.ndarray:
    """AV-Align's video peaks (seconds) from the pair magnitudes of `flow_magnitudes` ([F - 1]).

    As the reference: its curve has one value per frame, m[i] = flow from frame i - 1 to frame i and
    m[0] = m[1]; a peak is a strict local maximum m[i - 1] < m[i] > m[i + 1] with m[i] >= min_peak
    (pixels), at time i / fps. Frame 1 can therefore never be a peak, as in the reference.
    """
    pairs = np.asarray(magnitudes, dtype=np.float64)
    curve = np.concatenate([pairs[:1], pairs])
    i = np.arange(1, curve.size - 1)
    peak = (curve[i - 1] < curve[i]) & (curve[i] > curve[i + 1]) & (curve[i] >= min_peak)
    return i[peak] / float(fps)


def av_align_matches(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float) -> int:
    """AV-Align's intersection: each audio peak, in order, takes the first unused video peak v with
    v - 1/fps < a < v + 1/fps (open window: one frame either side, DabFusion's "three-frame window")."""
    window = 1.0 / float(fps)
    used = np.zeros(len(video_peaks), dtype=bool)
    matches = 0
    for a in audio_peaks:
        for j, v in enumerate(video_peaks):
            if not used[j] and v - window < a < v + window:
                used[j] = True
                matches += 1
                break
    return matches


def av_align_iou(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float) -> float:
    """Intersection over union of audio and video peaks, the reference's `calc_intersection_over_union`:
    matches / (|A| + |V| - matches) with `av_align_matches`. 0.0 when both are empty (the reference
    divides by zero there)."""
    matches = av_align_matches(audio_peaks, video_peaks, fps)
    union = len(audio_peaks) + len(video_peaks) - matches
    return matches / union if union else 0.0


def onset_coverage(audio_peaks: np.ndarray, num_frames: int, fps: float) -> float:
    """Share of the frames that can hold a video peak (1 .. F-2, `video_peaks`) lying within AV-Align's
    window of some onset: how often a video peak on a random frame would match, the chance level of
    a video peak's hit rate (matches / |V|). Dense onsets make it high: at 12 fps, 4 onsets a second
    already cover about two frames in three, so there AV-Align mostly counts video peaks."""
    if num_frames < 3:
        raise ValueError(f"onset_coverage needs at least 3 frames (a peak needs two neighbours), got {num_frames}.")
    times = np.arange(1, num_frames - 1) / float(fps)
    onsets = np.asarray(audio_peaks, dtype=np.float64).ravel()
    if onsets.size == 0:
        return 0.0
    window = 1.0 / float(fps)  # the comparison of `av_align_matches`, so that boundaries round alike
    near = ((times[:, None] - window < onsets[None, :]) & (onsets[None, :] < times[:, None] + window)).any(axis=1)
    return float(near.mean())


def beat_phase(times: np.ndarray, music_beats: np.ndarray) -> np.ndarray:
    """Where each time (seconds) falls in its beat interval: 0 on a beat, 0.5 on the off-beat, in [0, 1).

    NaN for times before the first or after the last beat (no interval to place them in). With it a
    video's flow peaks, its kinematic beats and the music's onsets can be put side by side.
    """
    times = np.asarray(times, dtype=np.float64).ravel()
    beats = np.sort(np.asarray(music_beats, dtype=np.float64).ravel())
    phase = np.full(times.shape, np.nan)
    if beats.size < 2:
        return phase
    j = np.searchsorted(beats, times, side="right") - 1
    inside = (j >= 0) & (j < beats.size - 1)
    k = j[inside]
    phase[inside] = (times[inside] - beats[k]) / (beats[k + 1] - beats[k])
    return phase


# ---------------------------------------------------------------------------------------------
# 2D-MM Align (beat alignment score) and beat distances


def kinematic_beats(
    magnitudes: np.ndarray,
    fps: float,
    *,
    smooth_frames: float = 1.0,
    min_gap_seconds: float = 1 / 6,
    min_prominence: float = AV_ALIGN_MIN_PEAK,
) -> np.ndarray:
    """Kinematic beats in seconds: where the motion slows to a local minimum.

    magnitudes: the pair magnitudes of `flow_magnitudes`; pair i (frame i to i + 1) is timed at its
    midpoint (i + 0.5) / fps. The curve is smoothed with a Gaussian of `smooth_frames`; minima
    closer than `min_gap_seconds` keep the deepest (FACT's argrelextrema order of 10 frames at 60
    fps), and a minimum must be at least `min_prominence` pixels below the motion on both sides,
    so that flow noise in still stretches makes no beats. A flat minimum (a pause) counts once, at
    its centre; an isolated minimum is refined to a fraction of a frame by a parabola through it
    and its neighbours: FACT works on the frame grid at 60 fps, where a frame is 17 ms, but at 12
    fps a frame (83 ms) is larger than sigma.
    """
    curve = np.asarray(magnitudes, dtype=np.float64)
    if smooth_frames > 0 and curve.size:
        curve = scipy.ndimage.gaussian_filter1d(curve, smooth_frames, mode="nearest")
    distance = max(1, int(round(min_gap_seconds * fps)))
    peaks, props = scipy.signal.find_peaks(-curve, distance=distance, prominence=min_prominence, plateau_size=1)
    positions = []
    for p, left, right in zip(peaks, props["left_edges"], props["right_edges"]):
        position = (left + right) / 2.0
        if left == right:
            below, here, above = curve[p - 1], curve[p], curve[p + 1]
            bend = below - 2 * here + above
            position = p + (float(np.clip(0.5 * (below - above) / bend, -0.5, 0.5)) if bend > 0 else 0.0)
        positions.append(position)
    return (np.asarray(positions, dtype=np.float64) + 0.5) / float(fps)


@dataclass(frozen=True)
class BeatAlignment:
    """2D-MM Align and the kinematic-to-music beat distances (seconds); NaN where undefined.

    score: DabFusion's 2D-MM Align, mean over kinematic beats of exp(-d^2 / 2 sigma^2).
    mean_distance, median_distance: of d, MuseDance's mean and median distance errors.
    chance: the score of kinematic beats spread uniformly over the clip, for comparison.
    """

    score: float
    mean_distance: float
    median_distance: float
    chance: float
    sigma: float
    num_kinematic_beats: int
    num_music_beats: int


def beat_alignment(
    kinematic: np.ndarray, music: np.ndarray, *, sigma: float = MM_ALIGN_SIGMA, duration: float | None = None
) -> BeatAlignment:
    """2D-MM Align (DabFusion Sec. 4.2) and beat distances, all times in seconds.

    d_i = min_j |kinematic_i - music_j|; score = mean_i exp(-d_i^2 / (2 sigma^2)), averaged over
    kinematic beats as in FACT (Bailando averages over music beats instead). `chance` averages the
    same kernel over every instant of [0, duration] (1 ms steps): what motion unrelated to the music
    would score; NaN without a duration. Everything but chance is NaN when either set is empty.
    """
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of seconds, got {sigma!r}.")
    kinematic = np.asarray(kinematic, dtype=np.float64).ravel()
    music = np.sort(np.asarray(music, dtype=np.float64).ravel())

    def nearest(times: np.ndarray) -> np.ndarray:
        return np.abs(times[:, None] - music[None, :]).min(axis=1)

    def kernel(distances: np.ndarray) -> float:
        return float(np.exp(-(distances**2) / (2 * sigma**2)).mean())

    chance = math.nan
    if duration is not None and duration > 0 and music.size:
        chance = kernel(nearest(np.arange(0.0, duration, 1e-3)))
    if kinematic.size == 0 or music.size == 0:
        return BeatAlignment(math.nan, math.nan, math.nan, chance, sigma, kinematic.size, music.size)
    d = nearest(kinematic)
    return BeatAlignment(kernel(d), float(d.mean()), float(np.median(d)), chance, sigma, kinematic.size, music.size)


# ---------------------------------------------------------------------------------------------
# Image quality against ground truth


def psnr(video, reference) -> float:
    """PSNR in dB, data range 1: the mean over frames of 10 log10(1 / MSE_frame); inf if identical."""
    video, reference = _pair(video, reference)
    mse = ((video - reference) ** 2).mean(dim=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return float(np.mean(10 * np.log10(1.0 / mse.numpy())))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    taps = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    return taps / taps.sum()


def ssim(video, reference, *, window: int = 11, sigma: float = 1.5) -> float:
    """SSIM (Wang et al. 2004) with data range 1: the mean over frames, channels and valid windows.

    Gaussian window of 11 taps and sigma 1.5, K1 = 0.01, K2 = 0.03, population (co)variances: the
    settings of the original code and of skimage's `structural_similarity(gaussian_weights=True,
    use_sample_covariance=False, data_range=1, channel_axis=-1)`; windows that would cross the
    border are left out (skimage crops them too).
    """
    video, reference = _pair(video, reference)
    if min(video.shape[1:3]) < window:
        raise ValueError(f"frames of {tuple(video.shape[1:3])} are smaller than the {window}-pixel SSIM window.")
    c1, c2 = 0.01**2, 0.03**2
    x = video.permute(0, 3, 1, 2).reshape(-1, 1, *video.shape[1:3])
    y = reference.permute(0, 3, 1, 2).reshape(-1, 1, *reference.shape[1:3])
    taps = _gaussian_window(window, sigma)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(image, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


# ---------------------------------------------------------------------------------------------
# LPIPS (user-supplied weights only)

# Torchvision feature layers (index: conv or pool) and the ReLU outputs LPIPS compares.
_LPIPS_NETS = {
    "alex": dict(
        layers=[(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1), (10, 256, 256, 3, 1, 1)],
        pools_before=(3, 6),  # maxpool(3, 2) at indices 2 and 5, before these convs
        pool=(3, 2),
        backbone_file="alexnet-owt-7be5be79.pth (torchvision AlexNet)",
        linear_file="alex.pth (lpips v0.1 linear layers)",
    ),
    "vgg": dict(
        layers=[
            (0, 3, 64, 3, 1, 1), (2, 64, 64, 3, 1, 1), (5, 64, 128, 3, 1, 1), (7, 128, 128, 3, 1, 1),
            (10, 128, 256, 3, 1, 1), (12, 256, 256, 3, 1, 1), (14, 256, 256, 3, 1, 1),
            (17, 256, 512, 3, 1, 1), (19, 512, 512, 3, 1, 1), (21, 512, 512, 3, 1, 1),
            (24, 512, 512, 3, 1, 1), (26, 512, 512, 3, 1, 1), (28, 512, 512, 3, 1, 1),
        ],
        pools_before=(5, 10, 17, 24),
        pool=(2, 2),
        taps=(2, 7, 14, 21, 28),  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (conv index)
        backbone_file="vgg16-397923af.pth (torchvision VGG16)",
        linear_file="vgg.pth (lpips v0.1 linear layers)",
    ),
}
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(torch.nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018) as the `lpips` package computes it, from weight files on disk.

    backbone_path: torchvision's AlexNet or VGG16 state dict (keys `features.<i>.weight/bias`);
    linear_path: lpips' linear heads (keys `lin<k>.model.1.weight`). Inputs [N, 3, H, W] in [0, 1].
    Written from the lpips v0.1 code (scaling layer, unit-normalised ReLU features, 1x1 heads,
    spatial mean, sum over layers); not yet compared with the package's numbers on real weights.
    """

    def __init__(self, backbone_path: str | PathLike, linear_path: str | PathLike, net: str = "alex") -> None:
        super().__init__()
        if net not in _LPIPS_NETS:
            raise ValueError(f"net must be one of {sorted(_LPIPS_NETS)}, got {net!r}.")
        spec = _LPIPS_NETS[net]
        self.spec = spec
        backbone = _load_state(backbone_path)
        linear = _load_state(linear_path)
        self.convs = torch.nn.ModuleDict()
        for index, c_in, c_out, k, stride, pad in spec["layers"]:
            conv = torch.nn.Conv2d(c_in, c_out, k, stride, pad)
            conv.weight = _take(backbone, f"features.{index}.weight", conv.weight, backbone_path)
            conv.bias = _take(backbone, f"features.{index}.bias", conv.bias, backbone_path)
            self.convs[str(index)] = conv
        self.taps = spec.get("taps", tuple(layer[0] for layer in spec["layers"]))
        channels = {layer[0]: layer[2] for layer in spec["layers"]}
        self.heads = torch.nn.ParameterList(
            _take(linear, f"lin{k}.model.1.weight", torch.empty(1, channels[t], 1, 1), linear_path)
            for k, t in enumerate(self.taps)
        )
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((2 * x - 1) - self.shift) / self.scale
        out = []
        for index, *_ in self.spec["layers"]:
            if index in self.spec["pools_before"]:
                x = F.max_pool2d(x, *self.spec["pool"])
            x = F.relu(self.convs[str(index)](x))
            if index in self.taps:
                out.append(x)
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[N] distances between images x and y [N, 3, H, W] in [0, 1]."""
        total = 0.0
        for head, fx, fy in zip(self.heads, self.features(x), self.features(y)):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + F.conv2d((fx - fy) ** 2, head).mean(dim=(2, 3))
        return total.view(-1)


def _load_state(path: str | PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist; pass the path of a file you downloaded.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _take(state: dict, key: str, like: torch.Tensor, path) -> torch.nn.Parameter:
    if key not in state or tuple(state[key].shape) != tuple(like.shape):
        found = tuple(state[key].shape) if key in state else "missing"
        raise ValueError(f"{path}: expected {key} of shape {tuple(like.shape)}, found {found}. Is it the right file?")
    return torch.nn.Parameter(state[key].float(), requires_grad=False)


def lpips(
    video, reference, *, backbone_path: str | PathLike | None = None, linear_path: str | PathLike | None = None,
    net: str = "alex", model: LPIPS | None = None,
) -> float | Unavailable:
    """Mean LPIPS over frames, or `Unavailable` naming the files needed when they are not given."""
    if model is None:
        if net not in _LPIPS_NETS:
            raise ValueError(f"net must be one of {sorted(_LPIPS_NETS)}, got {net!r}.")
        if backbone_path is None or linear_path is None:
            spec = _LPIPS_NETS[net]
            return Unavailable(f"LPIPS needs {spec['backbone_file']} and {spec['linear_file']}")
        model = LPIPS(backbone_path, linear_path, net)
    video, reference = _pair(video, reference)
    x, y = video.permute(0, 3, 1, 2).float(), reference.permute(0, 3, 1, 2).float()
    return float(torch.cat([model(x[i : i + 8], y[i : i + 8]) for i in range(0, x.shape[0], 8)]).mean())


# ---------------------------------------------------------------------------------------------
# FVD (user-supplied I3D only)

FVD_I3D_FILE = "i3d_torchscript.pt (StyleGAN-V's TorchScript export of the Kinetics-400 I3D)"


def i3d_features(videos, i3d_path: str | PathLike, *, batch: int = 4) -> np.ndarray:
    """float64 [N, 400] I3D logits of videos [N, F, H, W, 3] in [0, 1] (F >= 10 recommended, 16 typical).

    Preprocessing as the StyleGAN-V / fvd-comparison code: shorter side resized to 224 (bilinear),
    centre crop, scaled to [-1, 1], fed as [N, 3, F, 224, 224] with rescale=False, resize=False,
    return_features=True.
    """
    path = Path(i3d_path)
    if not path.is_file():
        raise FileNotFoundError(f"I3D file {path} does not exist; pass the path of {FVD_I3D_FILE}.")
    detector = torch.jit.load(str(path), map_location="cpu").eval()
    clips = torch.as_tensor(np.asarray(videos), dtype=torch.float32)
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"videos must be [N, F, H, W, 3] in [0, 1], got shape {tuple(clips.shape)}.")
    out = []
    with torch.no_grad():
        for start in range(0, clips.shape[0], batch):
            x = clips[start : start + batch]  # [B, F, H, W, 3]
            b, f, h, w, _ = x.shape
            x = x.permute(0, 1, 4, 2, 3).reshape(b * f, 3, h, w)
            scale = 224 / min(h, w)
            size = (max(224, math.ceil(h * scale)), max(224, math.ceil(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            top, left = (size[0] - 224) // 2, (size[1] - 224) // 2
            x = x[:, :, top : top + 224, left : left + 224]
            x = (x * 2 - 1).reshape(b, f, 3, 224, 224).permute(0, 2, 1, 3, 4).contiguous()
            out.append(detector(x, rescale=False, resize=False, return_features=True).double().numpy())
    return np.concatenate(out)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] (N >= 2 each)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two [N, D] feature sets with N >= 2 and the same D, got {a.shape} and {b.shape}.")
    mu = a.mean(0) - b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(np.real(mu @ mu + np.trace(cov_a + cov_b - 2 * root)))


def fvd(real_videos, generated_videos, *, i3d_path: str | PathLike | None = None) -> float | Unavailable:
    """FVD between two sets of videos [N, F, H, W, 3] in [0, 1], or `Unavailable` without the I3D file.

    FVD compares distributions: it needs many clips per set (papers use hundreds); it is not a
    per-video score, so `evaluate_video` does not compute it.
    """
    if i3d_path is None:
        return Unavailable(f"FVD needs {FVD_I3D_FILE}")
    return frechet_distance(i3d_features(real_videos, i3d_path), i3d_features(generated_videos, i3d_path))


# ---------------------------------------------------------------------------------------------
# Everything for one video


@dataclass
class VideoMetrics:
    """All metrics of one generated video; `unavailable` says why any is None."""

    av_align: float | None = None
    mm_align: float | None = None
    mm_align_chance: float | None = None
    beat_distance_mean: float | None = None
    beat_distance_median: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    # What the scores were computed from, for plots and debugging (seconds; pixels per frame pair).
    motion: np.ndarray | None = field(default=None, repr=False)
    audio_peaks: np.ndarray | None = field(default=None, repr=False)
    video_peaks: np.ndarray | None = field(default=None, repr=False)
    kinematic_beats: np.ndarray | None = field(default=None, repr=False)
    music_beats: np.ndarray | None = field(default=None, repr=False)

    def scores(self) -> dict[str, float | None]:
        """The numbers only, by name (None where unavailable)."""
        names = ("av_align", "mm_align", "mm_align_chance", "beat_distance_mean", "beat_distance_median",
                 "psnr", "ssim", "lpips")
        return {name: getattr(self, name) for name in names}


def evaluate_video(
    frames,
    fps: float,
    audio=None,
    sample_rate: int | None = None,
    reference_frames=None,
    *,
    music_beats: np.ndarray | None = None,
    sigma: float = MM_ALIGN_SIGMA,
    lpips_backbone: str | PathLike | None = None,
    lpips_linear: str | PathLike | None = None,
    lpips_net: str = "alex",
) -> VideoMetrics:
    """Every metric that the inputs allow, for one video [F, H, W, 3] in [0, 1] at `fps`.

    audio (with sample_rate): AV-Align, and music beats from `beats.analyze_beats` unless
    `music_beats` (seconds) are given; these give 2D-MM Align and the beat distances. Frame 0 shows
    time 0 of the audio. reference_frames (ground truth, same shape): PSNR, SSIM and, with both
    LPIPS files, LPIPS. FVD is a set-level metric: see `fvd`.
    """
    if not (isinstance(fps, (int, float, np.integer, np.floating)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    video = _video(frames)
    result = VideoMetrics()
    if audio is None and music_beats is None:
        result.unavailable["alignment"] = "no audio or music beats given"
    else:
        result.motion = flow_magnitudes(video.float())
        if audio is not None:
            if sample_rate is None:
                raise ValueError("audio was given without sample_rate; pass the sample rate in Hz.")
            result.audio_peaks = audio_onsets(audio, sample_rate)
            result.video_peaks = video_peaks(result.motion, fps)
            result.av_align = av_align_iou(result.audio_peaks, result.video_peaks, fps)
            if music_beats is None:
                music_beats = analyze_beats(as_mono(audio, sample_rate), sample_rate).times
        else:
            result.unavailable["av_align"] = "needs the audio (onsets), not only beat times"
        result.music_beats = np.asarray(music_beats, dtype=np.float64)
        result.kinematic_beats = kinematic_beats(result.motion, fps)
        alignment = beat_alignment(result.kinematic_beats, result.music_beats, sigma=sigma, duration=video.shape[0] / fps)
        result.mm_align, result.mm_align_chance = alignment.score, alignment.chance
        result.beat_distance_mean, result.beat_distance_median = alignment.mean_distance, alignment.median_distance
    if reference_frames is None:
        result.unavailable["psnr/ssim/lpips"] = "no reference (ground-truth) frames given"
    else:
        result.psnr, result.ssim = psnr(video, reference_frames), ssim(video, reference_frames)
        score = lpips(video, reference_frames, backbone_path=lpips_backbone, linear_path=lpips_linear, net=lpips_net)
        if isinstance(score, Unavailable):
            result.unavailable["lpips"] = score.reason
        else:
            result.lpips = score
    return result
