"""Song sections and the motion schedule: boundaries and letters on music of known structure, and the
schedule's text read into prompt changes, with errors that name the line."""

from __future__ import annotations

import numpy as np
import pytest

from musedance_core.audio.structure import Section, find_sections
from musedance_core.sampling.schedule import parse_schedule, prompt_changes, settings_changes

SR = 16_000


def _part(kind: str, seconds: float, seed: int) -> np.ndarray:
    """Two kinds of music at 120 BPM: A, square-wave C major stabs over a low thump; B, a sine F# minor pad with hats."""
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-(t % 0.5) * 8)
    if kind == "A":
        tone = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in (261.6, 329.6, 392.0)) / 3 * 0.3
        return (tone * env + 0.3 * env * np.sin(2 * np.pi * 60 * t)).astype(np.float32)
    tone = sum(np.sin(2 * np.pi * f * t) for f in (370.0, 440.0, 554.4)) / 3 * 0.3
    hats = np.random.default_rng(seed).normal(0, 0.08, t.size) * np.exp(-((t + 0.25) % 0.5) * 30)
    return (tone + hats).astype(np.float32)


def test_sections_of_a_verse_chorus_song_fall_on_its_bars_with_repeats_lettered_alike():
    song = np.concatenate([_part("A", 16, 0), _part("B", 14, 1), _part("A", 18, 2), _part("B", 16, 3)])
    bars = np.arange(0, 64, 2.0)  # 4/4 at 120 BPM
    sections = find_sections(song, SR, bar_times=bars)
    assert [(s.start, s.end, s.label) for s in sections] == [
        (0.0, 16.0, "A"), (16.0, 30.0, "B"), (30.0, 48.0, "A"), (48.0, 64.0, "B")]
    assert sections[2].describe() == "section 3 (A) 0:30.0-0:48.0"
    unsnapped = find_sections(song, SR)
    assert [round(s.start) for s in unsnapped] == [0, 16, 30, 48]
    assert find_sections(song[: 10 * SR], SR) == [Section(1, 0.0, 10.0, "A")]  # too short to split


SECTIONS = [Section(1, 0.0, 8.0, "A"), Section(2, 8.0, 16.0, "B"), Section(3, 16.0, 24.0, "A")]


def test_a_schedule_reads_into_the_prompt_of_every_frame_later_lines_winning():
    text = """# the song's plan
    default: dances
    B: spins
    bars 3-4: jumps
    section 3: waves
    0:20-22.5: bows
    """
    bar_frames = np.arange(0, 48, 8)  # a bar every 2 s at 4 fps
    default, rules = parse_schedule(text, fps=4, num_frames=96, sections=SECTIONS, bar_frames=bar_frames)
    assert default == "dances" and [r.line for r in rules] == [3, 4, 5, 6]
    changes = prompt_changes(default, rules, 96)
    assert changes == [(0, "dances"), (16, "jumps"), (32, "spins"), (64, "waves"), (80, "bows"), (90, "waves")]
    # a span that starts later in the song: times and sections still count from the song's start
    _, rules = parse_schedule("A: steps", fps=4, num_frames=32, start_time=12.0, sections=SECTIONS)
    assert prompt_changes("x", rules, 32) == [(0, "x"), (16, "steps")]
    _, rules = parse_schedule("C: steps", fps=4, num_frames=32, sections=SECTIONS)  # a letter this song lacks
    assert not rules[0].frames.any()
    with pytest.raises(ValueError, match="connect Song Sections"):
        parse_schedule("A: steps", fps=4, num_frames=32)


def test_a_schedule_gives_sampler_settings_where_its_lines_say_each_setting_from_the_latest_line():
    text = """default: dances [guidance 3]
    B: spins [guidance 5, beat guidance 7]
    bars 3-4: jumps [beat guidance 0]
    section 3: waves
    """
    default, rules = parse_schedule(text, fps=4, num_frames=96, sections=SECTIONS, bar_frames=np.arange(0, 48, 8))
    assert default == "dances"
    assert prompt_changes(default, rules, 96) == [(0, "dances"), (16, "jumps"), (32, "spins"), (64, "waves")]
    assert settings_changes(rules, 96) == [
        (0, {"guidance_scale": 3.0}), (16, {"guidance_scale": 3.0, "beat_guidance_scale": None}),  # 0: off
        (32, {"guidance_scale": 5.0, "beat_guidance_scale": 7.0}),
        (64, {"guidance_scale": 3.0}),  # section 3 (A) gives no settings: the default line's
    ]
    _, rules = parse_schedule("B: spins", fps=4, num_frames=96, sections=SECTIONS)
    assert settings_changes(rules, 96) == [(0, {})]  # none given anywhere: the sampler's own


@pytest.mark.parametrize("text, words", [
    ("spins", "line 1 ('spins') must read 'where: prompt'"),
    ("A: spins [guidance 0.5]", "guidance 0.5 must be from 1 to 30"),
    ("A: spins [beat guidance 31]", "beat guidance 31 must be from 0 to 30"),
    ("A: spins [speed 2]", "'speed 2' is not one"),
    ("A: [guidance 3]", "must read 'where: prompt'"),
    ("section 0: spins", "must count up from 1"),
    ("section 4: spins", "has 3 sections (1 to 3)"),
    ("bars 9-12: jumps", "has 6 bars here (1 to 6)"),
    ("the chorus: spins", "'the chorus' is not a place in the song"),
    ("0:30-0:20: bows", "ends before it starts"),
    ("A:", "must read 'where: prompt'"),
])
def test_a_schedule_line_that_cannot_be_read_is_named_with_the_fix(text, words):
    with pytest.raises(ValueError, match=None) as error:
        parse_schedule(text, fps=4, num_frames=96, sections=SECTIONS, bar_frames=np.arange(0, 48, 8))
    assert words in str(error.value), str(error.value)
