"""The evaluation command (trainer/evaluate.py) on a tiny synthetic test split and a tiny random model.

The split: 2 tracks x 1 clip of `trainer.synthetic` (32x32, 2 s at 12 fps), prepared with a tiny AST.
Seed 10 gives two "smooth" styles (waltz, latin), whose dancers slow to rest on every beat, which is
what 2D-MM Align's kinematic beats (motion minima) look for.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from musedance_core.audio.ast_encoder import save_random_ast
from musedance_core.sampling.pipeline import MuseDancePipeline
from tiny_files import write_tiny_musedance
from trainer.data import PreparedDataset
from trainer.evaluate import Settings, bootstrap_ci, main, music_donors, run
from trainer.prepare import PrepareSettings, prepare_dataset
from trainer.synthetic import generate

SEEDS = ("0", "1")
ROWS = ("ground truth", "ground truth, other music", "tiny", "tiny, shuffled music")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Run the command once; keep its outputs and every pipeline call it made."""
    root = tmp_path_factory.mktemp("evaluate")
    index = generate(root / "synth", tracks=2, clips_per_track=1, seed=10, size=32, seconds=2.0, test_fraction=0.0)
    ast = save_random_ast(root / "tiny-ast", hidden_size=32)
    settings = PrepareSettings(fps=12.0, height=32, width=32, masks="video", min_frames=24)
    prepare_dataset(root / "synth" / "train", root / "prepared", ast, settings, progress=False)
    checkpoint = write_tiny_musedance(root / "tiny.safetensors")
    argv = ["--data", str(root / "prepared"), "--clips", str(root / "synth" / "train"),
            "--tracks", str(root / "synth" / "tracks.json"), "--model", f"tiny={checkpoint}", "--ground-truth",
            "--shuffled-music", "--steps", "1", "--guidance", "1", "--beat-guidance", "2", "--reference-start", "--seeds", *SEEDS,
            "--out", str(root / "results.md"), "--json", str(root / "results.json")]

    calls, images = [], {}
    encode, call = MuseDancePipeline.encode_reference, MuseDancePipeline.__call__

    def encode_reference(self, reference_image, mask, text_embeds):
        encoding = encode(self, reference_image, mask, text_embeds)
        images[id(encoding)] = reference_image.clone()
        return encoding

    def record(self, **kwargs):
        calls.append({"image": images[id(kwargs["reference"])], "music": kwargs["music_tokens"].clone(),
                      "beats": kwargs["beats"].clone(), "seed": kwargs["seed"],
                      "beat_guidance": kwargs["beat_guidance_scale"], "reference_start": kwargs["reference_start"]})
        return call(self, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MuseDancePipeline, "encode_reference", encode_reference)
        patch.setattr(MuseDancePipeline, "__call__", record)
        assert main(argv) == 0
    return {"root": root, "argv": argv, "index": index, "calls": calls,
            "markdown": (root / "results.md").read_text(encoding="utf-8"),
            "json": json.loads((root / "results.json").read_text(encoding="utf-8")),
            "data": PreparedDataset(root / "prepared")}


def table(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown table as {method: {column header: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


def mean_of(cell: str) -> float:
    return float(cell.split()[0])


def test_table_has_the_rows_the_clip_count_and_the_command(evaluated):
    markdown, rows = evaluated["markdown"], table(evaluated["markdown"])
    assert "python -m trainer.evaluate " + " ".join(evaluated["argv"]) in markdown
    assert "2 clips (24 frames at 12 fps, 32×32)" in markdown and "DDIM 1 steps" in markdown and "seeds 0, 1" in markdown
    assert "guidance 1, beat guidance 2, noise share 0, start from the noised reference" in markdown
    assert evaluated["calls"] and all(c["beat_guidance"] == 2.0 and c["reference_start"] is True
                                      for c in evaluated["calls"])
    assert list(rows) == list(ROWS)
    for name, row in rows.items():
        assert row["Clips"] == "2"
        for column in ("AV-Align ↑", "2D-MM Align ↑", "2D-MM chance"):
            assert 0.0 <= mean_of(row[column]) <= 1.0, (name, column, row[column])
        for column in ("Mean beat dist. (s) ↓", "Median beat dist. (s) ↓"):
            assert 0.0 <= mean_of(row[column]) < 2.0
        assert row["LPIPS ↓"] == row["FVD ↓"] == "n/a"  # no weight files given: never a made-up number
    for name in ROWS[:2]:
        assert rows[name]["PSNR ↑"] == rows[name]["SSIM ↑"] == "n/a"
    for name in ROWS[2:]:
        assert 5.0 < mean_of(rows[name]["PSNR ↑"]) < 40.0 and -1.0 <= mean_of(rows[name]["SSIM ↑"]) < 0.9


def test_json_holds_per_clip_and_per_seed_numbers_that_make_the_table(evaluated):
    report, names = evaluated["json"], [e["name"] for e in evaluated["data"].entries]
    assert report["command"].endswith(" ".join(evaluated["argv"]))
    assert report["settings"]["num_clips"] == 2 and report["settings"]["seeds"] == [0, 1]
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == list(ROWS)
    for name, row in rows.items():
        assert [c["name"] for c in row["clips"]] == names
        for column, stat in row["summary"].items():
            values = [c["mean"][column] for c in row["clips"] if c["mean"].get(column) is not None]
            if stat["mean"] is None:
                continue
            assert stat["n"] == len(values) and stat["mean"] == pytest.approx(np.mean(values))
            assert stat["low"] <= stat["mean"] <= stat["high"]
            assert stat == bootstrap_ci(values, seed=0)  # the table is reproducible from the JSON
        if name.startswith("ground truth"):
            continue
        for clip in row["clips"]:
            assert sorted(clip["seeds"]) == list(SEEDS)
            for column, value in clip["mean"].items():
                per_seed = [clip["seeds"][s][column] for s in SEEDS if clip["seeds"][s][column] is not None]
                assert value == (pytest.approx(np.mean(per_seed)) if per_seed else None)
        assert rows[name]["checkpoint"].endswith("tiny.safetensors")


def test_ground_truth_dance_is_aligned_with_its_music(evaluated):
    """The synthetic dancers rest on every beat: 2D-MM Align far above chance, kinematic beats within 50 ms.

    A real check of the data and the metric together; a random model does not get there.
    """
    rows = {row["name"]: row for row in evaluated["json"]["rows"]}
    for clip in rows["ground truth"]["clips"]:
        scores = clip["mean"]
        assert scores["mm_align"] > max(0.8, 2 * scores["mm_align_chance"]), clip
        assert scores["beat_distance_mean"] < 0.05
    truth, model = rows["ground truth"]["summary"], rows["tiny"]["summary"]
    assert truth["mm_align"]["low"] > model["mm_align"]["high"]
    assert truth["beat_distance_mean"]["high"] < model["beat_distance_mean"]["low"]


def test_shuffled_music_comes_from_another_track_and_is_scored_against_the_own_audio(evaluated):
    data, calls = evaluated["data"], evaluated["calls"]
    clips = [data[i] for i in range(len(data))]
    track = {c["name"]: c["track"] for c in evaluated["index"]["clips"]}
    assert len(calls) == len(clips) * 2 * len(SEEDS)  # model and control, every seed
    pairs = []
    for recorded in calls:
        image = [i for i, c in enumerate(clips) if torch.equal(recorded["image"], c.frames[0].float() / 255)]
        music = [i for i, c in enumerate(clips) if torch.equal(recorded["music"], c.music)]
        assert len(image) == 1 and len(music) == 1
        assert torch.equal(recorded["beats"], clips[music[0]].beats)  # tokens and beats travel together
        pairs.append((image[0], music[0], recorded["seed"]))
    for i, clip in enumerate(clips):
        own = sorted(seed for image, music, seed in pairs if image == i and music == i)
        other = [(music, seed) for image, music, seed in pairs if image == i and music != i]
        assert own == [0, 1] and sorted(seed for _, seed in other) == [0, 1]
        assert all(track[clips[music].name] != track[clip.name] for music, _ in other)
    shuffled = next(row for row in evaluated["json"]["rows"] if row["name"] == "tiny, shuffled music")
    for clip in shuffled["clips"]:
        assert track[clip["music_from"]] != track[clip["name"]]
        # Its own music: the chance level depends only on the clip's audio, not on what drove the model.
        truth = next(row for row in evaluated["json"]["rows"] if row["name"] == "ground truth")
        own = next(c for c in truth["clips"] if c["name"] == clip["name"])
        assert clip["mean"]["mm_align_chance"] == pytest.approx(own["mean"]["mm_align_chance"])


def test_ground_truth_with_other_music_is_the_real_dance_scored_against_the_controls_music(evaluated):
    """The metrics' own control: the same frames, scored against the music the shuffled rows took."""
    rows = {row["name"]: row for row in evaluated["json"]["rows"]}
    track = {c["name"]: c["track"] for c in evaluated["index"]["clips"]}
    truth = {c["name"]: c for c in rows["ground truth"]["clips"]}
    shuffled = {c["name"]: c for c in rows["tiny, shuffled music"]["clips"]}
    for clip in rows["ground truth, other music"]["clips"]:
        assert track[clip["music_from"]] != track[clip["name"]]
        assert clip["music_from"] == shuffled[clip["name"]]["music_from"]  # the controls' donors
        # Scored against the donor's music: its chance level, and a real dance to other music is off the beat.
        assert clip["mean"]["mm_align_chance"] == pytest.approx(truth[clip["music_from"]]["mean"]["mm_align_chance"])
        assert clip["mean"]["mm_align"] < truth[clip["name"]]["mean"]["mm_align"] - 0.3, clip
    assert "Ground truth, other music" in evaluated["markdown"]


def test_bootstrap_interval_is_seeded_contains_the_mean_and_skips_undefined_values():
    values = np.random.default_rng(3).normal(0.5, 0.2, size=40)
    first, again, other = bootstrap_ci(values, seed=1), bootstrap_ci(values, seed=1), bootstrap_ci(values, seed=2)
    assert first == again and first != other
    assert first["low"] < first["mean"] < first["high"] and first["mean"] == pytest.approx(values.mean())
    # About the standard error times 1.96 either side.
    assert first["high"] - first["low"] == pytest.approx(2 * 1.96 * values.std() / math.sqrt(40), rel=0.25)
    with_nan = bootstrap_ci([*values, math.nan, math.nan], seed=1)
    assert with_nan == first  # n counts the defined values only
    assert bootstrap_ci([math.nan]) == {"mean": None, "low": None, "high": None, "n": 0}
    assert bootstrap_ci([0.25, 0.25, 0.25]) == {"mean": 0.25, "low": 0.25, "high": 0.25, "n": 3}


def test_music_donors_is_a_seeded_permutation_across_tracks():
    tracks = ["a", "a", "a", "b", "b", "c", "d", "d"]
    for seed in range(20):
        donors = music_donors(tracks, seed)
        assert sorted(donors) == list(range(len(tracks)))
        assert all(tracks[d] != tracks[i] for i, d in enumerate(donors))
        assert donors == music_donors(tracks, seed)
    assert len({tuple(music_donors(tracks, seed)) for seed in range(20)}) > 1
    assert music_donors(["a", "b"], 0) == [1, 0]
    assert music_donors(["a", "a", "a", "b"], 0) is None  # no assignment exists
    assert music_donors(["a"], 0) is None


def test_a_changed_source_file_or_nothing_to_evaluate_is_refused(evaluated, tmp_path, capsys):
    clips = tmp_path / "clips"
    shutil.copytree(evaluated["root"] / "synth" / "train", clips)
    first = sorted(clips.glob("*_c0.mp4"))[0]
    first.write_bytes(first.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="not the file that was prepared"):
        run(evaluated["root"] / "prepared", clips, [], Settings(), command="", ground_truth=True)
    first.unlink()
    with pytest.raises(ValueError, match="is not in --clips"):
        run(evaluated["root"] / "prepared", clips, [], Settings(), command="", ground_truth=True)
    with pytest.raises(SystemExit):
        main(["--data", str(evaluated["root"] / "prepared"), "--clips", str(clips)])
    assert "nothing to evaluate" in capsys.readouterr().err


def test_shuffled_control_only_for_the_models_named(evaluated):
    root = evaluated["root"]
    checkpoint = root / "tiny.safetensors"
    settings = Settings(steps=1, guidance=1.0)
    common = dict(command="test", tracks=root / "synth" / "tracks.json")
    report = run(root / "prepared", root / "synth" / "train", [("a", checkpoint), ("b", checkpoint)], settings,
                 shuffled=["b"], **common)
    assert [row["name"] for row in report["rows"]] == ["a", "b", "b, shuffled music"]
    with pytest.raises(ValueError, match=r"--shuffled-music names \['c'\], which are not --model names \(a, b\)"):
        run(root / "prepared", root / "synth" / "train", [("a", checkpoint), ("b", checkpoint)], settings,
            shuffled=["c"], **common)


def test_a_flow_model_is_evaluated_with_its_shuffled_and_beats_unknown_controls(evaluated, monkeypatch):
    """A flow-family checkpoint gets the same table; its controls: another track's music, and its own music
    with the beats withheld (unknown beat tokens, which the denoiser sees in place of the beat ids)."""
    from musedance_core.config import FlowDanceConfig
    from musedance_core.loading.flow_checkpoint import save_flow_checkpoint
    from musedance_core.sampling.flow_pipeline import FlowDancePipeline

    root = evaluated["root"]
    flow = save_flow_checkpoint(root / "flow.safetensors", FlowDancePipeline.from_config(FlowDanceConfig.tiny()))
    calls = []
    iter_clips = FlowDancePipeline.iter_clips

    def record(self, reference, music, beats, **kwargs):
        calls.append({"music": music.clone(), "beats_unknown": kwargs["beats_unknown"],
                      "reference": reference.image.clone()})
        return iter_clips(self, reference, music, beats, **kwargs)

    monkeypatch.setattr(FlowDancePipeline, "iter_clips", record)
    report = run(root / "prepared", root / "synth" / "train", [("flow", flow)], Settings(steps=1, guidance=2.0),
                 command="test", tracks=root / "synth" / "tracks.json", shuffled=["flow"], beats_unknown=["flow"])
    assert [row["name"] for row in report["rows"]] == ["flow", "flow, shuffled music", "flow, beats unknown"]
    data = evaluated["data"]
    assert len(calls) == 3 * len(data)  # per clip: the model, the shuffled control, the beats withheld
    for i in range(len(data)):
        own, shuffled, unknown = calls[3 * i : 3 * i + 3]
        clip = data[i]
        assert torch.equal(own["music"], clip.music) and torch.equal(unknown["music"], clip.music)
        assert not torch.equal(shuffled["music"][: clip.music.shape[0]], clip.music[: shuffled["music"].shape[0]])
        assert [own["beats_unknown"], shuffled["beats_unknown"], unknown["beats_unknown"]] == [False, False, True]
        assert torch.allclose((own["reference"][0].permute(1, 2, 0) + 1) / 2, clip.frames[0].float() / 255, atol=1e-6)
    for row in report["rows"]:
        assert row["summary"]["psnr"]["mean"] is not None and row["summary"]["psnr"]["n"] == len(data)
    with pytest.raises(ValueError, match="--beats-unknown names 'tiny', which is not a flow-family --model"):
        run(root / "prepared", root / "synth" / "train", [("tiny", root / "tiny.safetensors")], Settings(steps=1),
            command="test", beats_unknown=["tiny"])
