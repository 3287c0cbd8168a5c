"""A motion schedule: which prompt the dance follows where, written as lines of text.

    default: a person dances to the beat          (the prompt wherever no other line applies)
    A: steps side to side                         (every section labelled A by find_sections)
    section 3: spins with arms up                 (one section; "sections 2-4" for several)
    bars 17-32: jumps on every beat               (bar lines from the beat analysis, counted from 1)
    1:30-1:45: waves both arms                    (a stretch of the song, m:ss or seconds: 90-105)

A later line wins where two apply. Lines starting with # are comments. The sampler changes the prompt
at clip boundaries: each clip follows the prompt in force at its first frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_RANGE = r"(\d+)(?:\s*-\s*(\d+))?"
_TIME = r"(\d+(?::\d{1,2}(?:\.\d+)?)?(?:\.\d+)?)\s*s?"


@dataclass(frozen=True)
class ScheduleRule:
    line: int  # 1-based line of the text
    selector: str
    prompt: str
    frames: np.ndarray  # bool [F]: the span's frames it applies to


def _seconds(text: str) -> float:
    if ":" in text:
        minutes, seconds = text.split(":", 1)
        return int(minutes) * 60 + float(seconds)
    return float(text)


def parse_schedule(text: str, *, fps: float, num_frames: int, start_time: float = 0.0, sections=(),
                   bar_frames: np.ndarray | None = None) -> tuple[str | None, list[ScheduleRule]]:
    """The default prompt (None if no line gives one) and the rules of a schedule, for frames start_time + k / fps.

    sections: `structure.Section`s (times from the start of the song); bar_frames: the span's frames that
    start a bar. A line that cannot be read, or names a section or bar the music does not have, raises a
    ValueError naming the line and what to write instead.
    """
    times = start_time + np.arange(num_frames) / fps
    default, rules = None, []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        selector, colon, prompt = line.partition(":")
        # "1:30-1:45: ..." holds colons in its selector: a time range runs up to the colon after the range
        timed = re.match(rf"^\s*{_TIME}\s*-\s*{_TIME}\s*:(.*)$", line)
        if timed:
            selector, prompt = line[: line.rindex(":", 0, len(line) - len(timed.group(3)))], timed.group(3)
        prompt = prompt.strip()
        if not colon or not prompt:
            raise ValueError(f"schedule line {number} ({raw.strip()!r}) must read 'where: prompt', e.g. "
                             "'A: spins with arms up', 'bars 17-32: jumps', '1:30-1:45: waves'.")
        key = selector.strip().lower()
        if key in ("default", "*"):
            default = prompt
            continue
        if timed:
            lo, hi = _seconds(timed.group(1)), _seconds(timed.group(2))
            if not hi > lo:
                raise ValueError(f"schedule line {number}: the time range {selector.strip()} ends before it starts.")
            frames = (times >= lo) & (times < hi)
        elif re.fullmatch(r"[a-z]", key):
            letters = sorted({s.label for s in sections})
            if key.upper() not in letters:
                raise ValueError(f"schedule line {number}: there is no section {key.upper()}; the song's sections "
                                 f"are labelled {', '.join(letters) or 'nothing (connect Song Sections)'}.")
            frames = np.zeros(num_frames, dtype=bool)
            for s in sections:
                if s.label == key.upper():
                    frames |= (times >= s.start) & (times < s.end)
        elif found := re.fullmatch(rf"sections?\s+{_RANGE}", key):
            lo, hi = int(found.group(1)), int(found.group(2) or found.group(1))
            if not sections or not 1 <= lo <= hi <= len(sections):
                raise ValueError(f"schedule line {number}: the song has {len(sections)} sections (1 to "
                                 f"{len(sections)}); {selector.strip()} is not among them.")
            frames = np.zeros(num_frames, dtype=bool)
            for s in sections[lo - 1 : hi]:
                frames |= (times >= s.start) & (times < s.end)
        elif found := re.fullmatch(rf"bars?\s+{_RANGE}", key):
            lo, hi = int(found.group(1)), int(found.group(2) or found.group(1))
            starts = [] if bar_frames is None else sorted(int(f) for f in bar_frames)
            if not 1 <= lo <= hi <= len(starts):
                raise ValueError(f"schedule line {number}: the music has {len(starts)} bars here (1 to {len(starts)}); "
                                 f"{selector.strip()} is not among them.")
            ends = starts[1:] + [num_frames]
            frames = np.zeros(num_frames, dtype=bool)
            frames[starts[lo - 1] : ends[hi - 1]] = True
        else:
            raise ValueError(f"schedule line {number}: {selector.strip()!r} is not a place in the song; write "
                             "'default', a section letter (A), 'section 3', 'bars 17-32' or a time range '1:30-1:45'.")
        rules.append(ScheduleRule(number, selector.strip(), prompt, frames))
    return default, rules


def prompt_changes(default: str, rules: list[ScheduleRule], num_frames: int) -> list[tuple[int, str]]:
    """(first frame, prompt) wherever the prompt in force changes, from frame 0 (a later rule wins)."""
    chosen = [default] * num_frames
    for rule in rules:
        for frame in np.flatnonzero(rule.frames):
            chosen[frame] = rule.prompt
    return [(k, p) for k, p in enumerate(chosen) if k == 0 or p != chosen[k - 1]]
