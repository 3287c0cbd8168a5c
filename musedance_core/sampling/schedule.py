"""A motion schedule: which prompt the dance follows where, written as lines of text.

    default: a person dances to the beat          (the prompt wherever no other line applies)
    A: steps side to side                         (every section labelled A by find_sections)
    section 3: spins with arms up                 (one section; "sections 2-4" for several)
    bars 17-32: jumps on every beat               (bar lines from the beat analysis, counted from 1)
    1:30-1:45: waves both arms                    (a stretch of the song, m:ss or seconds: 90-105)

A line may end with the sampler settings of its stretch in square brackets:

    B: spins with both arms up [guidance 4, beat guidance 7]

(`guidance` 1 to 30, `beat guidance` 0 to 30, 0 being off). A later line wins where two apply: its
prompt, and each setting it gives (one it does not give stays as an earlier line, or the sampler, set
it). Lines starting with # are comments.
The sampler ends a clip where the prompt or the settings change, so each takes over at its own first frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_RANGE = r"(\d+)(?:\s*-\s*(\d+))?"
_TIME = r"(\d+(?::\d{1,2}(?:\.\d+)?)?(?:\.\d+)?)\s*s?"


SETTINGS = {"guidance": ("guidance_scale", 1.0), "beat guidance": ("beat_guidance_scale", 0.0)}  # name: (key, least)
MAX_SCALE = 30.0  # musedance_core.config.MAX_GUIDANCE


@dataclass(frozen=True)
class ScheduleRule:
    line: int  # 1-based line of the text
    selector: str
    prompt: str
    frames: np.ndarray  # bool [F]: the span's frames it applies to
    settings: tuple = ()  # (key, value) pairs of sampler settings: guidance_scale, beat_guidance_scale (None: off)


def _settings(text: str, number: int) -> tuple:
    """`guidance 4, beat guidance 7` -> (("guidance_scale", 4.0), ("beat_guidance_scale", 7.0)); 0 beat guidance is off."""
    found = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"([a-z ]+?)\s*[= ]\s*(-?\d+(?:\.\d+)?)", item.lower())
        if not match or match.group(1).strip() not in SETTINGS:
            raise ValueError(f"schedule line {number}: [{text}] must hold settings such as 'guidance 4' or "
                             f"'beat guidance 7', separated by commas; {item!r} is not one.")
        key, least = SETTINGS[match.group(1).strip()]
        value = float(match.group(2))
        if not least <= value <= MAX_SCALE:
            raise ValueError(f"schedule line {number}: {match.group(1).strip()} {value:g} must be from {least:g} "
                             f"to {MAX_SCALE:g}.")
        found[key] = None if key == "beat_guidance_scale" and value == 0 else value
    return tuple(sorted(found.items()))


def _seconds(text: str) -> float:
    if ":" in text:
        minutes, seconds = text.split(":", 1)
        return int(minutes) * 60 + float(seconds)
    return float(text)


@dataclass(frozen=True)
class ScheduleLine:
    """One line of a schedule as written: where ("default", "time", "letter", "sections", "bars") and its prompt."""

    line: int
    selector: str
    kind: str
    low: float | str
    high: float | str
    prompt: str
    settings: tuple = ()  # as ScheduleRule.settings


def read_schedule(text: str) -> list[ScheduleLine]:
    """The lines of a schedule, their form checked (not yet what they name); ValueError naming a bad line."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        selector, colon, prompt = line.partition(":")
        # "1:30-1:45: ..." holds colons in its selector: a time range runs up to the colon after the range
        timed = re.match(rf"^\s*{_TIME}\s*-\s*{_TIME}\s*:(.*)$", line)
        if timed:
            selector, prompt = line[: line.rindex(":", 0, len(line) - len(timed.group(3)))], timed.group(3)
        prompt, key = prompt.strip(), selector.strip().lower()
        settings = ()
        if bracketed := re.fullmatch(r"(.*?)\s*\[([^\]]*)\]", prompt):
            prompt, settings = bracketed.group(1).strip(), _settings(bracketed.group(2), number)
        if not colon or not prompt:
            raise ValueError(f"schedule line {number} ({line!r}) must read 'where: prompt', e.g. "
                             "'A: spins with arms up', 'bars 17-32: jumps', '1:30-1:45: waves'.")
        if key in ("default", "*"):
            lines.append(ScheduleLine(number, selector.strip(), "default", 0, 0, prompt, settings))
        elif timed:
            lo, hi = _seconds(timed.group(1)), _seconds(timed.group(2))
            if not hi > lo:
                raise ValueError(f"schedule line {number}: the time range {selector.strip()} ends before it starts.")
            lines.append(ScheduleLine(number, selector.strip(), "time", lo, hi, prompt, settings))
        elif re.fullmatch(r"[a-z]", key):
            lines.append(ScheduleLine(number, selector.strip(), "letter", key.upper(), key.upper(), prompt, settings))
        elif found := re.fullmatch(rf"(sections?|bars?)\s+{_RANGE}", key):
            lo, hi = int(found.group(2)), int(found.group(3) or found.group(2))
            if not 1 <= lo <= hi:
                raise ValueError(f"schedule line {number}: {selector.strip()} must count up from 1.")
            kind = "sections" if found.group(1).startswith("section") else "bars"
            lines.append(ScheduleLine(number, selector.strip(), kind, lo, hi, prompt, settings))
        else:
            raise ValueError(f"schedule line {number}: {selector.strip()!r} is not a place in the song; write "
                             "'default', a section letter (A), 'section 3', 'bars 17-32' or a time range '1:30-1:45'.")
    return lines


def parse_schedule(text: str, *, fps: float, num_frames: int, start_time: float = 0.0, sections=(),
                   bar_frames: np.ndarray | None = None) -> tuple[str | None, list[ScheduleRule]]:
    """The default prompt (None if no line gives one) and the rules of a schedule, for frames start_time + k / fps.

    sections: `structure.Section`s (times from the start of the song); bar_frames: the span's frames that
    start a bar. A line that cannot be read, or names a section or bar the music does not have, raises a
    ValueError naming the line and what to write instead.
    """
    times = start_time + np.arange(num_frames) / fps
    default, rules = None, []
    for line in read_schedule(text):
        frames = np.zeros(num_frames, dtype=bool)
        if line.kind == "default":
            default = line.prompt
            if line.settings:  # everywhere, under the later lines
                rules.insert(0, ScheduleRule(line.line, line.selector, line.prompt, ~frames, line.settings))
            continue
        if line.kind == "time":
            frames = (times >= line.low) & (times < line.high)
        elif line.kind == "letter":  # a letter this song lacks applies nowhere (a schedule may serve several songs)
            if not sections:
                raise ValueError(f"schedule line {line.line} names section {line.low}, but no sections are given: "
                                 "connect Song Sections to Motion Schedule.")
            for s in sections:
                if s.label == line.low:
                    frames |= (times >= s.start) & (times < s.end)
        elif line.kind == "sections":
            if not line.high <= len(sections):
                raise ValueError(f"schedule line {line.line}: the song has {len(sections)} sections (1 to "
                                 f"{len(sections)}); {line.selector} is not among them.")
            for s in sections[line.low - 1 : line.high]:
                frames |= (times >= s.start) & (times < s.end)
        else:
            starts = [] if bar_frames is None else sorted(int(f) for f in bar_frames)
            if not line.high <= len(starts):
                raise ValueError(f"schedule line {line.line}: the music has {len(starts)} bars here (1 to "
                                 f"{len(starts)}); {line.selector} is not among them.")
            ends = starts[1:] + [num_frames]
            frames[starts[line.low - 1] : ends[line.high - 1]] = True
        rules.append(ScheduleRule(line.line, line.selector, line.prompt, frames, line.settings))
    return default, rules


def prompt_changes(default: str, rules: list[ScheduleRule], num_frames: int) -> list[tuple[int, str]]:
    """(first frame, prompt) wherever the prompt in force changes, from frame 0 (a later rule wins)."""
    chosen = [default] * num_frames
    for rule in rules:
        for frame in np.flatnonzero(rule.frames):
            chosen[frame] = rule.prompt
    return [(k, p) for k, p in enumerate(chosen) if k == 0 or p != chosen[k - 1]]


def settings_changes(rules: list[ScheduleRule], num_frames: int) -> list[tuple[int, dict]]:
    """(first frame, sampler settings) wherever the settings in force change, from frame 0. Each setting is the
    one of the latest line that gives it and applies to the frame (the default line first); {} or a missing key:
    the sampler's own."""
    chosen: list[dict] = [{} for _ in range(num_frames)]
    for rule in rules:
        if rule.settings:
            for frame in np.flatnonzero(rule.frames):
                chosen[frame].update(rule.settings)
    return [(k, c) for k, c in enumerate(chosen) if k == 0 or c != chosen[k - 1]]
