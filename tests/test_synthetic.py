"""The synthetic dance dataset (trainer/synthetic.py): determinism, layout, beats, motion, preparation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import librosa
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from musedance_core.audio.ast_encoder import save_random_ast
from musedance_core.audio.beats import analyze_beats
from musedance_core.masks.subject import refine_mask
from musedance_core.video import read_video_info
from trainer.prepare import PrepareSettings, find_clips, prepare_dataset
from trainer.synthetic import MOVE_PHRASES, STYLES, generate, main, make_clip, make_track, split_tracks


def f_measure(estimated: np.ndarray, reference: np.ndarray, tolerance: float = 0.07) -> float:
    """Beat F-measure (mir_eval's definition): each reference beat matches at most one estimate within tolerance."""
    used: set[int] = set()
    hits = 0
    for ref in reference:
        near = [i for i, est in enumerate(estimated) if abs(est - ref) <= tolerance and i not in used]
        if near:
            used.add(min(near, key=lambda i: abs(estimated[i] - ref)))
            hits += 1
    if hits == 0:
        return 0.0
    precision, recall = hits / len(estimated), hits / len(reference)
    return 2 * precision * recall / (precision + recall)


def decode_all(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames (uint8 [F, H, W, 3]) and the audio samples of a video file."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames, audio


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_the_same_arrays_and_files(tmp_path):
    for index in range(2):
        one, two = make_track(5, index), make_track(5, index)
        assert np.array_equal(one.waveform, two.waveform) and np.array_equal(one.beat_times, two.beat_times)
        a, b = make_clip(one, 1), make_clip(two, 1)
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks) and a.caption == b.caption
    assert not np.array_equal(make_track(6, 0).waveform[:1000], make_track(5, 0).waveform[:1000])
    assert not np.array_equal(make_clip(make_track(5, 0), 0).frames, make_clip(make_track(5, 0), 1).frames)
    # Track i does not depend on how many tracks are made.
    assert np.array_equal(make_track(5, 1).waveform, make_track(5, 1).waveform)
    generate(tmp_path / "a", tracks=2, clips_per_track=1, seed=3, size=32, seconds=2.0)
    generate(tmp_path / "b", tracks=2, clips_per_track=1, seed=3, size=32, seconds=2.0)
    one, two = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert one.keys() == two.keys() and len(one) == 7
    # Captions, tracks.json and the lossless masks are the same bytes. The lossy H.264 of the dance is
    # not always: libx264 here gave other bytes for the same frames now and then (even on one thread),
    # so those files are compared by what they decode to: the same audio, frames within the codec's error.
    dances = sorted(name for name in one if name.endswith(".mp4") and not name.endswith(".mask.mp4"))
    assert len(dances) == 2
    assert {k: v for k, v in one.items() if k not in dances} == {k: v for k, v in two.items() if k not in dances}
    for name in dances:
        (frames_a, audio_a), (frames_b, audio_b) = (decode_all(tmp_path / side / name) for side in "ab")
        assert frames_a.shape == frames_b.shape == (24, 32, 32, 3) and np.array_equal(audio_a, audio_b)
        drawn = make_clip(make_track(3, int(Path(name).name[1:4]), 2.0), 0, size=32).frames.astype(np.float32)
        error = np.abs(frames_a - drawn).mean()  # the codec's own error (H.264 at crf 12, 4:2:0 at 32 pixels)
        assert error < 8 and np.abs(frames_b - drawn).mean() < 8
        assert np.abs(frames_a.astype(np.float32) - frames_b).mean() < 0.5 * error  # run to run: well within it


def test_layout_captions_and_split_by_track(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["--out", str(out), "--tracks", "4", "--clips-per-track", "2", "--seed", "1", "--size", "32",
                 "--seconds", "2"]) == 0
    assert "wrote 8 clips of 4 tracks" in capsys.readouterr().out
    index = json.loads((out / "tracks.json").read_text())
    splits = {t["name"]: t["split"] for t in index["tracks"]}
    assert sorted(splits.values()) == ["test", "train", "train", "train"]  # round(4 * 0.25) tracks held out
    for split in ("train", "test"):
        clips = find_clips(out / split)
        entries = [c for c in index["clips"] if c["split"] == split]
        assert [c.name for c in clips] == sorted(e["name"] for e in entries)
        assert {e["track"] for e in entries} == {name for name, s in splits.items() if s == split}
        for clip in clips:
            entry = next(e for e in entries if e["name"] == clip.name)
            assert clip.mask is not None and clip.caption.read_text() == entry["caption"] + "\n"
            style = next(t["style"] for t in index["tracks"] if t["name"] == entry["track"])
            for part in (entry["colour"], MOVE_PHRASES[entry["move"]], STYLES[style].phrase):
                assert part in entry["caption"]
            info = read_video_info(clip.video)
            assert (info.num_frames, info.width, info.height, info.has_audio) == (24, 32, 32, True)
            assert abs(info.audio_duration - 2.0) < 0.05
            assert not read_video_info(clip.mask).has_audio
    for track in index["tracks"]:
        beats = np.array(track["beat_times"])
        assert STYLES[track["style"]].bpm[0] <= track["bpm"] <= STYLES[track["style"]].bpm[1]
        assert np.allclose(np.diff(beats), 60 / track["bpm"]) and 0 <= beats[0] and beats[-1] < 2.0
    assert len({t["style"] for t in index["tracks"]}) == 4  # styles cycle: no repeat before all six are used


def test_split_tracks():
    assert split_tracks(1, 0.25, 0) == set() and split_tracks(8, 0.0, 0) == set()
    assert len(split_tracks(8, 0.25, 0)) == 2 and len(split_tracks(2, 0.25, 0)) == 1 and len(split_tracks(3, 0.9, 0)) == 2
    assert split_tracks(8, 0.25, 0) == split_tracks(8, 0.25, 0) <= set(range(8))
    with pytest.raises(ValueError, match="test_fraction"):
        split_tracks(4, 1.0, 0)


@pytest.mark.parametrize("style", list(STYLES))
def test_beat_tracker_finds_the_ground_truth_beats(style):
    scores = []
    for seed in range(4):
        track = make_track(seed, 0, style=style)
        scores.append(f_measure(analyze_beats(track.waveform, track.sample_rate).times, track.beat_times))
    assert np.mean(scores) >= 0.9 and min(scores) >= 0.6, scores


@pytest.mark.parametrize("style", ["house", "waltz", "rock", "ambient"])
def test_accent_rests_at_its_extreme_exactly_on_each_beat(style):
    """The pose function's own ground truth: every stop of the accent (the centre of a hold, or a turn)
    is on a beat, every beat has one, and the poses there are extremes on alternating sides."""
    track = make_track(2, 0, style=style)
    beats = track.beat_times
    for index in range(2):
        motion = make_clip(track, index, size=16).motion
        assert motion.style == STYLES[style].motion
        t = np.arange(0, 4000) / 1000.0  # 1 ms grid
        step = np.sign(np.round(np.diff(motion.accent(t)), 12))
        stops, k = [], 0
        while k < step.size:
            if step[k] == 0:  # a hold, from t[k] to t[j]; one cut off by the clip's ends has no known centre
                j = k
                while j < step.size and step[j] == 0:
                    j += 1
                if k > 0 and j < step.size:
                    stops.append((t[k] + t[j]) / 2)
                k = j
            else:
                if k + 1 < step.size and step[k + 1] == -step[k]:  # a turn between two moves
                    stops.append(t[k + 1])
                k += 1
        stops = np.asarray(stops)
        assert stops.size >= beats.size - 2, (stops, beats)
        assert np.abs(stops[:, None] - beats[None, :]).min(axis=1).max() <= 0.0015, (stops, beats)
        inside = beats[(beats > 0.5 * track.beat_period) & (beats < 4.0 - 0.5 * track.beat_period)]
        assert np.abs(inside[:, None] - stops[None, :]).min(axis=1).max() <= 0.0015, (inside, stops)
        extremes = motion.accent(beats)
        assert np.all(np.abs(extremes) >= 0.75 - 1e-9) and np.all(extremes[1:] * extremes[:-1] < 0)  # alternating sides
        if motion.style == "sharp":  # held from (1 - snap) / 2 of a period before the beat to as long after
            half = (1 - motion.snap) / 2 * track.beat_period - 0.002
            assert np.allclose(motion.accent(inside - half), motion.accent(inside))
            assert np.allclose(motion.accent(inside + half), motion.accent(inside))


@pytest.mark.parametrize("motion", ["sharp", "smooth"])
def test_pixels_rest_on_the_beat_and_move_fastest_on_the_off_beat(motion):
    """In the drawn frames: the slowest frames are at the beat frame, the fastest change halfway between beats."""
    slow = fast = total = gaps = 0
    for style in (s for s in STYLES if STYLES[s].motion == motion):
        track = make_track(0, 0, style=style)
        for index in range(3):
            clip = make_clip(track, index)
            change = np.abs(np.diff(clip.frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
            change = np.concatenate([[np.inf], change, [np.inf]])  # change[k]: frame k-1 -> k
            last = clip.frames.shape[0] - 1
            accents = clip.accent_frames
            for k in accents:
                if not 2 <= k <= last - 2:
                    continue
                total += 1
                window = range(k - 2, k + 3)
                speed = [change[j] + change[j + 1] for j in window]
                slow += abs(window[int(np.argmin(speed))] - k) <= 1
            for k0, k1 in zip(accents[:-1], accents[1:]):  # change[j] is timed at j - 0.5
                gaps += 1
                fastest = k0 + 1 + int(np.argmax(change[k0 + 1 : k1 + 1])) - 0.5
                fast += abs(fastest - (k0 + k1) / 2) <= 1
    assert total >= 20 and slow / total >= 0.8, (slow, total)
    assert gaps >= 20 and fast / gaps >= 0.8, (fast, gaps)


def test_styles_sound_different():
    """Each track's nearest neighbour (spectral profile + onsets per beat) is a track of its own style."""
    def fingerprint(track) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=track.waveform, sr=track.sample_rate, n_mels=32, n_fft=1024,
                                             hop_length=256)
        profile = np.log(mel.mean(1) + 1e-8)
        profile -= profile.mean()
        envelope = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=track.sample_rate, hop_length=256)
        onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=track.sample_rate, hop_length=256)
        return np.concatenate([profile / np.linalg.norm(profile), [len(onsets) / len(track.beat_times)]])

    labels = [s for s in STYLES for _ in range(3)]
    features = np.stack([fingerprint(make_track(seed, 0, style=s)) for s in STYLES for seed in range(3)])
    distance = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    assert [labels[int(j)] for j in distance.argmin(1)] == labels


def test_prepare_reads_the_generated_clips(tmp_path):
    index = generate(tmp_path / "data", tracks=1, clips_per_track=2, seed=4, test_fraction=0.0)
    ast = save_random_ast(tmp_path / "tiny-ast", hidden_size=32)
    settings = PrepareSettings(fps=12.0, height=64, width=64, masks="video", min_frames=48, clips_per_shard=2)
    report = prepare_dataset(tmp_path / "data" / "train", tmp_path / "prepared", ast, settings, progress=False)
    names = [c["name"] for c in index["clips"]]
    assert report.prepared == names and report.skipped == []
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert [c["mask"] for c in manifest["clips"]] == [f"{n}.mask.mp4" for n in names]
    shard = load_file(tmp_path / "prepared" / "shards" / "shard-00000.safetensors")
    track = make_track(4, 0)
    for j, entry in enumerate(index["clips"]):
        clip = make_clip(track, j)
        masks = shard[f"{clip.name}/masks"]
        # The drawn masks, exactly, after the mask clean-up every mask source gets (it fills specks, such
        # as a pixel enclosed by an arm and the body).
        drawn = refine_mask(torch.from_numpy(clip.masks).float()) >= 0.5
        assert torch.equal(masks, drawn.to(torch.uint8) * 255)
        frames = shard[f"{clip.name}/frames"].float()
        assert (frames - torch.from_numpy(clip.frames).float()).abs().mean() < 4  # H.264 at crf 12
        found = set(torch.nonzero(shard[f"{clip.name}/beats"]).flatten().tolist())
        truth = set(entry["accent_frames"])
        assert len(found & truth) >= 0.8 * len(truth), (found, truth)


def test_every_figure_steps_sideways_with_the_beat_the_same_way_in_every_clip():
    """The whole figure steps by STEP * a(t): its mask's centre is off to one side on every beat, the
    sides alternate, and a beat of the same parity steps the same way whether or not the figure is mirrored."""
    signs = []
    for style in ("house", "waltz"):
        track = make_track(1, 0, style=style)
        for index in range(4):
            clip = make_clip(track, index)
            xs = np.arange(clip.masks.shape[2])
            centre = (clip.masks * xs).sum(axis=(1, 2)) / clip.masks.sum(axis=(1, 2))
            offset = centre[clip.accent_frames] - centre.mean()
            assert np.all(np.abs(offset) > 1.5), (clip.name, offset)  # pixels, at 64x64
            assert np.all(offset[1:] * offset[:-1] < 0), (clip.name, offset)
            expected = np.sign(clip.motion.accent(np.asarray(track.beat_times)))
            signs.append(np.array_equal(np.sign(offset), expected))
    assert all(signs), signs
