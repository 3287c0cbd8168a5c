"""Song Sections and Motion Schedule: the dance follows the song's structure, a prompt per section or bar range.

Song Sections finds where the music changes and which parts repeat (musedance_core.audio.structure) in
the stretch Beat Extract describes, with bar lines from its downbeats; Motion Schedule reads a few lines
of text ("A: spins", "bars 17-32: jumps", see musedance_core.sampling.schedule) into the prompt of each
clip, encoded by the model's CLIP, for MuseDance Sampler or Render Dance Video.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from . import comfy
from .music import FrameBeats, FrameSpan

log = logging.getLogger(__name__)

CATEGORY = "MuseDance/music"


@dataclass(frozen=True)
class SongSections:
    """What flows along a MUSEDANCE_SECTIONS link: the sections (times in the song) and the frames they describe."""

    span: FrameSpan
    sections: tuple  # musedance_core.audio.structure.Section
    bar_frames: np.ndarray  # the span's frames that start a bar


@dataclass(frozen=True, eq=False)
class MotionSchedule:
    """What flows along a MUSEDANCE_SCHEDULE link: (first frame, CLIP text [1, 77, D] on the CPU) per change."""

    span: FrameSpan
    changes: tuple  # ((first frame, prompt text, embeds), ...), from frame 0
    model: object  # the MuseDanceModel whose CLIP encoded them
    settings: tuple = ((0, {}),)  # ((first frame, {guidance_scale, beat_guidance_scale} given there), ...)


def _bar_frames(beats: FrameBeats) -> np.ndarray:
    return np.array([], dtype=int) if beats.downbeats is None else np.flatnonzero(beats.downbeats.numpy() > 0)


class SongSectionsNode:
    """AUDIO + beats -> the song's sections in the beats' stretch, a plot, and their list."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MUSEDANCE_SECTIONS", "IMAGE", "STRING")
    RETURN_NAMES = ("sections", "plot", "list")
    OUTPUT_TOOLTIPS = ("The sections, for Motion Schedule.", "The music coloured by section letter, bar lines on top.",
                       "One line per section: number, letter, start and end.")
    DESCRIPTION = ("Finds where the music changes (intro, verse, chorus, drop...) and which parts come again: "
                   "sections that sound alike get the same letter. Boundaries fall on bar lines.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "audio": ("AUDIO",),
                "beats": ("MUSEDANCE_BEATS", {"tooltip": "Beat Extract's beats: the stretch of the song and its bar lines."}),
                "min_seconds": ("FLOAT", {"default": 8.0, "min": 2.0, "max": 120.0, "step": 1.0,
                                          "tooltip": "The shortest section, in seconds."}),
                "sensitivity": ("FLOAT", {"default": 0.75, "min": 0.0, "max": 1.0, "step": 0.05,
                                          "tooltip": "Higher finds more (and weaker) changes."}),
            }
        }

    def run(self, audio: dict, beats: FrameBeats, min_seconds: float, sensitivity: float):
        from ..musedance_core.audio.music import load_music
        from ..musedance_core.audio.structure import Section, find_sections
        from ..musedance_core.plots import section_plot

        span = beats.span
        music = load_music(audio)
        first, last = int(span.start * music.sample_rate), int((span.start + span.duration) * music.sample_rate)
        bar_frames = _bar_frames(beats)
        bar_times = span.start + bar_frames / span.fps
        comfy.throw_if_interrupted()
        found = find_sections(music.waveform[first:last], music.sample_rate, bar_times=bar_times - span.start,
                              min_seconds=float(min_seconds), threshold=1.0 - float(sensitivity))
        sections = tuple(Section(s.number, s.start + span.start, s.end + span.start, s.label) for s in found)
        plot = section_plot(music.waveform, music.sample_rate, sections, span.start, span.duration, bar_times=bar_times)
        listing = "\n".join(s.describe() for s in sections)
        result = (SongSections(span, sections, bar_frames), torch.from_numpy(plot)[None], listing)
        return {"ui": {"images": [comfy.preview_image(plot, "MuseDance_sections")], "text": [listing]}, "result": result}


class MotionScheduleNode:
    """MODEL + text (+ sections, beats) -> the prompt of every clip, for the sampler."""

    CATEGORY = "MuseDance"
    FUNCTION = "run"
    RETURN_TYPES = ("MUSEDANCE_SCHEDULE",)
    RETURN_NAMES = ("schedule",)
    OUTPUT_TOOLTIPS = ("Connect to the schedule input of MuseDance Sampler or Render Dance Video.",)
    DESCRIPTION = ("A prompt per section, bar range or time: one line each, 'where: prompt'. Lines: 'default: ...' "
                   "(everywhere else; without it, ReferenceNet Encode's prompt), a section letter 'A: ...', "
                   "'section 3: ...', 'bars 17-32: ...', '1:30-1:45: ...'. A line may end with the sampler's settings for "
                   "its stretch: 'B: spins [guidance 4, beat guidance 7]'. A later line wins. The sampler starts a "
                   "new clip where the prompt or the settings change, so each takes over at its own first frame.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MUSEDANCE_MODEL",),
                "beats": ("MUSEDANCE_BEATS", {"tooltip": "Beat Extract's beats: the frames and their bar lines."}),
                "schedule": ("STRING", {"multiline": True, "default": "A: steps side to side on the beat\n"
                                                                   "B: spins with both arms up",
                                        "tooltip": "One line per place: 'where: prompt' (see the node's description)."}),
            },
            "optional": {"sections": ("MUSEDANCE_SECTIONS", {"tooltip": "Song Sections' sections, for lines "
                                                                        "that name a section."})},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, schedule: str | None = None):
        """The form of every line; what a line names (a section, a bar) is checked against the song when it runs."""
        from ..musedance_core.sampling.schedule import read_schedule

        if schedule is not None:
            try:
                read_schedule(schedule)
            except ValueError as error:
                return str(error)
        return True

    def run(self, model, beats: FrameBeats, schedule: str, sections: SongSections | None = None):
        from ..musedance_core.sampling.schedule import parse_schedule, prompt_changes, settings_changes

        span = beats.span
        if sections is not None and sections.span != span:
            raise ValueError(f"the sections describe {sections.span} and the beats {span}; give Song Sections the "
                             "same Beat Extract.")
        default, rules = parse_schedule(schedule, fps=span.fps, num_frames=span.num_frames, start_time=span.start,
                                        sections=() if sections is None else sections.sections,
                                        bar_frames=_bar_frames(beats))
        changes = prompt_changes(default, rules, span.num_frames)  # default None: the reference's own prompt
        settings = tuple(settings_changes(rules, span.num_frames))
        pipe = model.pipeline
        model.load_encoders()
        try:
            with torch.no_grad():
                encoded = tuple((first, text, None if text is None else pipe.encode_prompt(text).float().cpu())
                                for first, text in changes)
        finally:
            model.done()
        notes = [f"{first / span.fps + span.start:7.2f} s (frame {first}): {text or '(the reference prompt)'}"
                 for first, text, _ in encoded]
        if len(settings) > 1 or settings[0][1]:
            notes += [f"{first / span.fps + span.start:7.2f} s (frame {first}): {describe_settings(chosen)}"
                      for first, chosen in settings]
        for rule in rules:
            if not rule.frames.any():
                notes.append(f"line {rule.line} ({rule.selector}) applies to no frame of this stretch of the song.")
        return {"ui": {"text": notes}, "result": (MotionSchedule(span, encoded, model, settings),)}


def describe_settings(chosen: dict) -> str:
    """`guidance 4, beat guidance 7` for a schedule's settings; the sampler's own where it gives none."""
    parts = []
    if "guidance_scale" in chosen:
        parts.append(f"guidance {chosen['guidance_scale']:g}")
    if "beat_guidance_scale" in chosen:
        beat = chosen["beat_guidance_scale"]
        parts.append("beat guidance off" if beat is None else f"beat guidance {beat:g}")
    return ", ".join(parts) or "the sampler's guidance"


def text_schedule(schedule: MotionSchedule | None, model, span: FrameSpan, reference_text: torch.Tensor) -> list:
    """The (first frame, text_embeds) pairs the sampler takes (`reference_text` where a change has no prompt)."""
    if schedule is None:
        return []
    if schedule.model is not model:
        raise ValueError("the schedule was encoded by another MuseDance model; connect the same Load MuseDance "
                         "Model node to Motion Schedule and to the sampler.")
    if schedule.span != span:
        raise ValueError(f"the schedule describes {schedule.span}, the music {span}; give Motion Schedule the same "
                         "Beat Extract as the sampler.")
    return [(first, reference_text if embeds is None else embeds) for first, _, embeds in schedule.changes]


def guidance_schedule(schedule: MotionSchedule | None) -> list[tuple[int, dict]]:
    """The (first frame, settings) pairs the sampler takes, where the schedule gives settings; [] without them."""
    if schedule is None or (len(schedule.settings) == 1 and not schedule.settings[0][1]):
        return []
    return [(first, dict(chosen)) for first, chosen in schedule.settings]


NODE_CLASS_MAPPINGS = {"MuseDanceSections": SongSectionsNode, "MuseDanceSchedule": MotionScheduleNode}
NODE_DISPLAY_NAME_MAPPINGS = {"MuseDanceSections": "Song Sections (MuseDance)",
                              "MuseDanceSchedule": "Motion Schedule (MuseDance)"}
