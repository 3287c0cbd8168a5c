"""Synthetic dance dataset: numpy-synthesised music and drawn figures that dance to its beats.

    python -m trainer.synthetic --out DIR --tracks 8 --clips-per-track 4 --seed 0
                                [--size 64] [--fps 12] [--seconds 4] [--test-fraction 0.25]

writes the layout `trainer.prepare` reads, split by music track (no track in both halves):
    DIR/train/<name>.mp4        the dance, H.264, with its music as the AAC audio track
    DIR/train/<name>.txt        the caption (what moves, how, on which beat)
    DIR/train/<name>.mask.mp4   the figure's mask as a grey video (lossless, so >= 0.5 recovers it)
    DIR/test/...                the same for the held-out tracks
    DIR/tracks.json             ground truth: per track its style, BPM, beat times and seed; per clip
                                its track, figure, background, motion, caption and accent frames
Prepare it with `python -m trainer.prepare --clips DIR/train ... --masks video --min-frames 48`
(4 s at 12 fps is 48 frames, below prepare's default of 50).

Everything is a function of the seed: track i draws from `default_rng([seed, i])`, clip j of it from
`default_rng([seed, i, j])`, so adding tracks leaves the earlier ones unchanged.

Music (`make_track`): six styles (STYLES) of drums, bass and chords on a 16th-note grid, written as
step patterns, 70 to 160 BPM, at 16 kHz mono (AST's rate). Every beat has a drum attack on it, so
`beats.analyze_beats` finds the beat grid; the styles differ in rhythm (four-on-the-floor, swung
and syncopated kicks, backbeat, 3/4, clave) and in timbre (stabs, 808 bass, distorted power chords,
plucks, montuno, pads).

Dance (`make_clip`): a human-like figure (capsule limbs), a quadruped, a desk lamp or a box with a
lid, drawn with numpy on a flat, gradient, striped, checked or noise background. One pose
parameter, the accent a(t) in [-1, 1], is driven by the beats: it sits at an extreme on every beat,
alternating sides (arms up / arms down, sway left / right, ...), and moves monotonically between.
"smooth" styles ease with a half cosine (the motion slows to rest on the beat and is fastest
between beats); "sharp" styles hold the pose through the beat and snap into the next one in between,
the snap centred on the off-beat. Either way the figure is at rest on the beat (a kinematic beat,
2D-MM) and fastest on the off-beat, where every style has an onset (AV-Align). The accent also steps
the whole figure sideways (STEP), the same way on the same beat parity in every clip. A slow idle
sway, unrelated to the beat, moves another part.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musedance_core.audio.beats import beat_vector
from musedance_core.video import write_video

SAMPLE_RATE = 16_000  # AST's rate: the music needs no resampling on the way in
STEPS_PER_BEAT = 4  # patterns are written in 16th notes
VIDEO_CRF = 12
MASK_CRF = 0  # lossless: the decoded mask is exactly the drawn one
# Every figure also steps sideways with the accent, STEP * a(t) of the image width (+-5.8 pixels at 64,
# more than one latent cell of the default model's 8x8 latents): the figure's own move (an arm, a lid)
# is a few pixels, too little of the frame to teach the temporal modules the beat (BENCHMARKS.md).
# Not mirrored with the figure, so the same beat parity steps the same way in every clip.
STEP = 0.09
# A sharp move takes this fraction of the beat (drawn per clip), centred between two beats; the pose
# is held for the rest, through the beat, so the hold's centre (its kinematic beat) is the beat.
SNAP = (0.5, 0.65)


# --- music ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MusicStyle:
    """A style: tempo range, meter, step patterns (one character per 16th) and the dance it asks for.

    Pattern characters: X loud, x medium, o soft, . rest; a pattern loops over its own length.
    swing delays every odd 16th by this fraction of a 16th (the beats themselves never move).
    """

    name: str
    bpm: tuple[float, float]
    meter: int  # beats per bar
    motion: str  # "sharp" or "smooth"
    drums: dict[str, str]
    bass: str
    bass_steps: int  # length of a bass note in 16ths
    bass_sound: str  # "pluck", "808", "drive", "round"
    chords: str
    chord_steps: int
    chord_sound: str  # "stab", "keys", "power", "pluck", "pad"
    swing: float = 0.0
    phrase: str = ""  # how a caption names the music


STYLES = {
    s.name: s
    for s in (
        MusicStyle("house", (118, 130), 4, "sharp",
                   {"kick": "X...X...X...X...", "clap": "....X.......X...", "open_hat": "..x...x...x...x.",
                    "hat": "o.o.o.o.o.o.o.o."},
                   "X..oX..oX..oX..o", 2, "pluck", "X...X...X...X...", 1, "stab", phrase="a house beat"),
        MusicStyle("hiphop", (82, 98), 4, "sharp",
                   {"kick": "X......x..X.....", "snare": "....X.......X...", "hat": "x.o.x.o.x.o.x.oo"},
                   "X......x..X.....", 6, "808", "X.......X.......", 8, "keys", swing=0.35,
                   phrase="a swung hip-hop groove"),
        MusicStyle("rock", (110, 160), 4, "sharp",
                   {"kick": "X.......X.X.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
                   "X.x.X.x.X.x.X.x.", 2, "drive", "X.......X.......", 8, "power", phrase="a rock backbeat"),
        MusicStyle("waltz", (90, 126), 3, "smooth",
                   {"kick": "X...........", "tick": "x...x...x...", "conga": "..x...x...x."},
                   "X...........", 4, "round", "....X...X...", 3, "pluck", phrase="a waltz"),
        MusicStyle("latin", (96, 124), 4, "smooth",
                   {"kick": "X...X...X...X...", "clave": "x.....x.....x.......x...x.......",
                    "conga": "..o...o...o...o.", "shaker": "oooooooooooooooo", "tick": "x...x...x...x..."},
                   "X.....o.X.....o.", 4, "round", "X...........X...", 2, "pluck", phrase="a latin clave rhythm"),
        MusicStyle("ambient", (70, 88), 4, "smooth",
                   {"kick": "X...x...X...x...", "tick": "x...x...x...x...", "conga": "..X...X...X...X."},
                   "X...............", 16, "round", "X...............", 16, "pad", phrase="an ambient pulse"),
    )
}
VELOCITY = {"X": 1.0, "x": 0.6, "o": 0.3}
LEVELS = {"kick": 1.0, "snare": 0.6, "clap": 0.55, "hat": 0.12, "open_hat": 0.16, "tick": 0.22,
          "clave": 0.3, "conga": 0.35, "shaker": 0.06, "bass": 0.45, "chords": 0.22}
PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 4, 5, 3))  # scale degrees, one chord per bar
NOISE_FLOOR = 0.004  # a quiet hiss fills the spectrum, as in recorded music (log-mel flux is blind to quiet onsets then)
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)


@dataclass(frozen=True, eq=False)
class Track:
    """A piece of music and its ground truth. waveform: float32 [T] at sample_rate, peak 0.8.

    beat_times: every beat in [0, seconds), in seconds. beat_period and first_beat extend the grid
    beyond the ends (the dance needs the beats just outside the clip). bar_offset: which beat of
    the bar first_beat is.
    """

    name: str
    index: int
    seed: tuple[int, int]
    style: MusicStyle
    bpm: float
    key: str
    waveform: np.ndarray
    sample_rate: int
    beat_times: np.ndarray
    first_beat: float
    bar_offset: int
    seconds: float

    @property
    def beat_period(self) -> float:
        return 60.0 / self.bpm


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _decay(seconds: float, tau: float, attack: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Time axis [n] and an envelope with a short linear attack and exponential decay."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return t, np.minimum(t / attack, 1.0) * np.exp(-t / tau)


def _saw(freq: float, t: np.ndarray, brightness: int) -> np.ndarray:
    """A band-limited sawtooth from its first harmonics (at most `brightness`, all below 7 kHz)."""
    count = max(1, min(brightness, int(7000 // freq)))
    h = np.arange(1, count + 1)[:, None]
    return (np.sin(2 * np.pi * freq * h * t) / h).sum(0) * (2 / np.pi)


def _drum_sounds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One kit per track; sizes and pitches vary a little with the seed."""
    def noise(n: int) -> np.ndarray:
        return rng.standard_normal(n)

    sounds = {}
    pitch = rng.uniform(0.9, 1.1)
    t, env = _decay(0.35, 0.09)
    click = np.diff(noise(t.size + 1)) * np.exp(-t / 0.004)  # the beater: a broadband attack on the beat
    sounds["kick"] = np.sin(2 * np.pi * pitch * (48 * t + 110 * 0.035 * (1 - np.exp(-t / 0.035)))) * env + 0.3 * click
    t, env = _decay(0.25, 0.06)
    sounds["snare"] = (0.7 * noise(t.size) + 0.5 * np.sin(2 * np.pi * 185 * pitch * t)) * env
    t, _ = _decay(0.2, 1.0)
    bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.008) * (t >= d) for d in (0.0, 0.011, 0.022))
    sounds["clap"] = np.diff(noise(t.size + 1)) * 0.6 * (bursts + np.exp(-t / 0.05)) * (t >= 0)
    t, env = _decay(0.05, 0.012)
    sounds["hat"] = np.diff(noise(t.size + 1)) * 0.5 * env
    t, env = _decay(0.3, 0.09)
    sounds["open_hat"] = np.diff(noise(t.size + 1)) * 0.5 * env
    t, env = _decay(0.04, 0.006)
    sounds["tick"] = np.sin(2 * np.pi * 1800 * t) * env
    t, env = _decay(0.08, 0.02)
    sounds["clave"] = np.sin(2 * np.pi * 2500 * pitch * t) * env
    t, env = _decay(0.2, 0.06)
    sounds["conga"] = np.sin(2 * np.pi * (300 * pitch * t + 60 * 0.02 * (1 - np.exp(-t / 0.02)))) * env
    t, env = _decay(0.06, 0.02, attack=0.01)
    sounds["shaker"] = np.diff(noise(t.size + 1)) * env
    return sounds


def _note(sound: str, notes: list[float], seconds: float) -> np.ndarray:
    """A bass note or a chord (MIDI notes) in one of the instrument sounds."""
    if sound == "pad":
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        env = np.minimum(t / 0.4, 1.0) * np.minimum((seconds - t) / 0.3, 1.0).clip(0)  # slow swell: no onset
        return sum(np.sin(2 * np.pi * _midi_hz(n + d) * t) for n in notes for d in (-0.08, 0.08)) * env / 2
    tau = {"stab": 0.08, "keys": 0.5, "power": 1.0, "pluck": 0.15, "808": 0.5, "drive": 0.15, "round": 0.35}[sound]
    t, env = _decay(seconds, tau, attack=0.003)
    env *= np.minimum((seconds - t) / 0.01, 1.0)  # release: no click at the note's end
    if sound in ("keys", "808", "round"):  # sine-like: mellow
        wave = sum(np.sin(2 * np.pi * _midi_hz(n) * t) + 0.2 * np.sin(4 * np.pi * _midi_hz(n) * t) for n in notes)
    elif sound in ("power", "drive"):  # saw through a soft clipper: distorted
        wave = np.tanh(2.5 * sum(_saw(_midi_hz(n), t, 12) for n in notes))
    else:  # stab, pluck: bright saw
        wave = sum(_saw(_midi_hz(n), t, 10 if sound == "stab" else 5) for n in notes)
    return wave * env


def make_track(seed: int, index: int, seconds: float = 4.0, style: str | None = None) -> Track:
    """Track `index` of the dataset with this seed; its style cycles through STYLES unless given."""
    rng = np.random.default_rng([seed, index])
    names = list(STYLES)
    order = np.random.default_rng([seed]).permutation(len(names))  # every style once per len(STYLES) tracks
    spec = STYLES[style] if style is not None else STYLES[names[order[index % len(names)]]]
    bpm = float(np.round(rng.uniform(*spec.bpm), 1))
    beat = 60.0 / bpm
    step = beat / STEPS_PER_BEAT
    first_beat = float(rng.uniform(0.05, 0.05 + beat))  # the beat grid's phase against the video frames
    bar_offset = int(rng.integers(spec.meter))  # the clip may start mid-bar
    root = int(rng.integers(40, 48))  # bass root, E2..B2
    minor = bool(rng.integers(2))
    scale = MINOR if minor else MAJOR
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    key = f"{['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'A#', 'B'][root % 12]} {'minor' if minor else 'major'}"

    n = int(round(seconds * SAMPLE_RATE))
    out = np.zeros(n)
    bar_steps = spec.meter * STEPS_PER_BEAT
    # Step 0 is the downbeat of the bar before the clip, so sounds ringing into the clip are there.
    origin = first_beat - (bar_offset + spec.meter) * beat
    total = int(math.ceil((seconds - origin) / step)) + 1

    def place(time_s: float, sound: np.ndarray, gain: float) -> None:
        start = int(round(time_s * SAMPLE_RATE))
        lo, hi = max(start, 0), min(start + sound.size, n)
        if lo < hi:
            out[lo:hi] += gain * sound[lo - start : hi - start]

    def step_time(s: int) -> float:
        return origin + s * step + (spec.swing * step if s % 2 else 0.0)

    def hits(pattern: str):
        for s in range(total):
            mark = pattern[s % len(pattern)]
            if mark in VELOCITY:
                yield s, VELOCITY[mark] * rng.uniform(0.9, 1.0)

    def chord_notes(s: int) -> list[int]:
        degree = progression[(s // bar_steps) % len(progression)]
        return [root + 12 + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]

    kit = _drum_sounds(rng)
    for part, pattern in spec.drums.items():
        for s, velocity in hits(pattern):
            place(step_time(s), kit[part], LEVELS[part] * velocity)
    for s, velocity in hits(spec.bass):
        bass_root = chord_notes(s)[0] - 12
        place(step_time(s), _note(spec.bass_sound, [bass_root], spec.bass_steps * step), LEVELS["bass"] * velocity)
    for s, velocity in hits(spec.chords):
        notes = chord_notes(s)
        if spec.chord_sound == "power":
            notes = [notes[0], notes[0] + 7]
        place(step_time(s), _note(spec.chord_sound, notes, spec.chord_steps * step), LEVELS["chords"] * velocity)

    out += NOISE_FLOOR * np.random.default_rng([*rng.integers(2**32, size=2)]).standard_normal(n)  # tape hiss
    wave = (0.8 * out / max(float(np.abs(out).max()), 1e-9)).astype(np.float32)
    times = first_beat + beat * np.arange(int(math.ceil((seconds - first_beat) / beat)))
    name = f"t{index:03d}_{spec.name}"
    return Track(name, index, (seed, index), spec, bpm, key, wave, SAMPLE_RATE, times[times < seconds],
                 first_beat, bar_offset, seconds)


# --- motion --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """The beat-driven accent a(t) in [-1, 1]: an extreme on every beat, alternating in sign.

    beats: the beat grid, extended one beat beyond both ends of the clip. amplitudes: the extreme's
    size per beat (downbeats are larger). style "smooth": half-cosine ease from one extreme to the
    next, at rest on the beat. "sharp": a smoothstep over the middle `snap` of the beat period,
    each pose held for the remaining 1 - snap of a period, centred on its beat.
    """

    style: str
    snap: float
    beats: np.ndarray
    amplitudes: np.ndarray

    def accent(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        i = np.clip(np.searchsorted(self.beats, t, side="right") - 1, 0, self.beats.size - 2)
        u = np.clip((t - self.beats[i]) / (self.beats[i + 1] - self.beats[i]), 0.0, 1.0)
        if self.style == "smooth":
            ease = (1 - np.cos(np.pi * u)) / 2
        else:
            v = np.clip((u - (1 - self.snap) / 2) / self.snap, 0.0, 1.0)
            ease = v * v * (3 - 2 * v)
        key = self.amplitudes * np.where(np.arange(self.beats.size) % 2 == 0, 1.0, -1.0)
        return key[i] + (key[i + 1] - key[i]) * ease


def track_motion(track: Track, style: str, snap: float) -> Motion:
    beat = track.beat_period
    first = -int(math.ceil(track.first_beat / beat)) - 1  # beat numbers relative to first_beat
    last = int(math.ceil((track.seconds - track.first_beat) / beat)) + 1
    numbers = np.arange(first, last + 1)
    beats = track.first_beat + beat * numbers
    downbeat = (numbers + track.bar_offset) % track.style.meter == 0
    return Motion(style, snap, beats, np.where(downbeat, 1.0, 0.75))


# --- drawing -------------------------------------------------------------------------------------

COLOURS = {  # name -> RGB in [0, 1]; figure colours are named in captions
    "red": (0.85, 0.15, 0.15), "orange": (0.95, 0.55, 0.1), "yellow": (0.95, 0.85, 0.2),
    "green": (0.2, 0.7, 0.25), "teal": (0.1, 0.65, 0.65), "blue": (0.2, 0.35, 0.9),
    "purple": (0.55, 0.25, 0.75), "pink": (0.95, 0.5, 0.7), "white": (0.95, 0.95, 0.92),
    "brown": (0.5, 0.3, 0.15),
}
SKIN = ((0.95, 0.8, 0.65), (0.8, 0.6, 0.45), (0.55, 0.38, 0.25))
BACKGROUNDS = ("flat", "gradient", "stripes", "checker", "noise")
Shape = tuple[np.ndarray, tuple[float, float, float]]  # (bool mask [H, W], colour)


class Canvas:
    """Unit-square pixel coordinates (x right, y down) and the figure's placement in them."""

    def __init__(self, size: int, x0: float, ground: float, scale: float, flip: bool) -> None:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        self.xx, self.yy = (xx + 0.5) / size, (yy + 0.5) / size
        self.x0, self.ground, self.scale, self.flip = x0, ground, scale, flip
        self.shift = 0.0  # the whole figure's sideways step (unit image coordinates, not mirrored)

    def point(self, x: float, y: float) -> tuple[float, float]:
        """Figure units (x right or mirrored, y up from the ground) -> unit image coordinates."""
        return self.x0 + self.shift + self.scale * (-x if self.flip else x), self.ground - self.scale * y

    def capsule(self, p0: tuple[float, float], p1: tuple[float, float], radius: float) -> np.ndarray:
        (x0, y0), (x1, y1) = self.point(*p0), self.point(*p1)
        dx, dy = x1 - x0, y1 - y0
        u = np.clip(((self.xx - x0) * dx + (self.yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        return (self.xx - x0 - u * dx) ** 2 + (self.yy - y0 - u * dy) ** 2 <= (radius * self.scale) ** 2

    def box(self, centre: tuple[float, float], half: tuple[float, float], angle: float = 0.0) -> np.ndarray:
        """A rectangle in figure units, turned by `angle` (radians, counter-clockwise as drawn in figure units)."""
        cx, cy = self.point(*centre)
        c, s = math.cos(angle), math.sin(angle) * (-1 if self.flip else 1)
        dx, dy = self.xx - cx, cy - self.yy  # y up
        u, v = dx * c + dy * s, -dx * s + dy * c
        return (np.abs(u) <= half[0] * self.scale) & (np.abs(v) <= half[1] * self.scale)


def _polar(origin: tuple[float, float], length: float, angle: float) -> tuple[float, float]:
    """The point `length` from `origin` in direction `angle` (0 = straight down, positive = towards +x)."""
    return origin[0] + length * math.sin(angle), origin[1] - length * math.cos(angle)


def _knee(hip: tuple[float, float], foot: tuple[float, float], thigh: float, shin: float, side: float) -> tuple[float, float]:
    """Two-link inverse kinematics: the knee between hip and foot, bent towards `side` (+1 or -1 in x)."""
    dx, dy = foot[0] - hip[0], foot[1] - hip[1]
    d = min(math.hypot(dx, dy), thigh + shin - 1e-6)
    along = (thigh**2 - shin**2 + d**2) / (2 * d)
    out = math.sqrt(max(thigh**2 - along**2, 0.0))
    ux, uy = dx / d, dy / d
    nx, ny = -uy, ux
    if nx * side < 0:
        nx, ny = -nx, -ny
    return hip[0] + along * ux + out * nx, hip[1] + along * uy + out * ny


def draw_human(c: Canvas, move: str, a: float, idle: float, colours: dict) -> list[Shape]:
    """Front view: legs, torso, arms, head. a drives the move; idle leans the torso (or tilts the head)."""
    bounce = 0.05 * (a + 1) / 2 if move == "bounce" else 0.0
    sway = 0.05 * a if move == "sway" else 0.0
    lean = 0.18 * a if move == "sway" else 0.06 * idle
    hip = (sway, 0.29 - bounce)
    neck = _polar(hip, -0.2, lean)  # negative length: upwards
    shoulder_span = 0.055
    shoulders = [(neck[0] + side * shoulder_span * math.cos(lean), neck[1] - side * shoulder_span * math.sin(lean) - 0.01)
                 for side in (-1, 1)]
    if move == "arms":
        raise_, elbow = 1.45 + 1.05 * a, 0.5 - 0.3 * a
    elif move == "bounce":
        raise_, elbow = 0.6 + 0.25 * a, 1.2 + 0.3 * a
    else:
        raise_, elbow = 0.9 - 0.3 * a, 0.9
    shapes: list[Shape] = []
    for side in (-1, 1):
        foot = (side * 0.07, 0.015)
        h = (hip[0] + side * 0.035, hip[1])
        knee = _knee(h, foot, 0.15, 0.14, side)
        shapes.append((c.capsule(h, knee, 0.028) | c.capsule(knee, foot, 0.024), colours["legs"]))
    shapes.append((c.capsule(hip, neck, 0.055), colours["main"]))
    for side, shoulder in zip((-1, 1), shoulders):
        arm = side * raise_ + (sway * 2 if move == "sway" else 0.0)
        elbow_point = _polar(shoulder, 0.1, arm)
        hand = _polar(elbow_point, 0.09, arm + side * elbow)
        shapes.append((c.capsule(shoulder, elbow_point, 0.022), colours["main"]))
        shapes.append((c.capsule(elbow_point, hand, 0.019), colours["skin"]))
    tilt = 0.0 if move == "sway" else 0.1 * idle
    shapes.append((c.capsule(_polar(neck, -0.075, lean + tilt), _polar(neck, -0.075, lean + tilt), 0.05),
                   colours["skin"]))
    return shapes


def draw_quadruped(c: Canvas, move: str, a: float, idle: float, colours: dict) -> list[Shape]:
    """Side view: four legs, body, neck and head, tail. Moves: hop, wag (tail), headbob, rock (body tilt)."""
    hop = 0.06 * (a + 1) / 2 if move == "hop" else 0.0
    tilt = 0.12 * a if move == "rock" else 0.0
    bob = 0.045 * a if move == "headbob" else 0.01 * idle
    wag = 0.8 * a if move == "wag" else 0.25 * idle
    h = 0.19 + hop
    centre = (0.0, h)

    def turn(p: tuple[float, float]) -> tuple[float, float]:
        dx, dy = p[0] - centre[0], p[1] - centre[1]
        cs, sn = math.cos(tilt), math.sin(tilt)
        return centre[0] + dx * cs - dy * sn, centre[1] + dx * sn + dy * cs

    shapes: list[Shape] = []
    dark = tuple(0.7 * v for v in colours["main"])
    for near, x in ((False, -0.1), (False, 0.11), (True, -0.13), (True, 0.08)):
        top = turn((x, h))
        foot = (top[0] + (0.02 if near else -0.02), max(0.012, hop * 0.6 + 0.012))
        shapes.append((c.capsule(top, foot, 0.022), colours["main"] if near else dark))
    shapes.append((c.capsule(turn((-0.15, h + 0.02)), _polar(turn((-0.15, h + 0.02)), -0.12, -1.0 - wag), 0.015),
                   colours["accent"]))
    shapes.append((c.capsule(turn((-0.13, h + 0.02)), turn((0.13, h + 0.02)), 0.065), colours["main"]))
    head = turn((0.23, h + 0.12 + bob))
    shapes.append((c.capsule(turn((0.12, h + 0.04)), head, 0.035), colours["main"]))
    shapes.append((c.capsule(head, (head[0] + 0.06, head[1] - 0.02), 0.04), colours["main"]))
    shapes.append((c.capsule((head[0] - 0.02, head[1] + 0.03), (head[0] - 0.03, head[1] + 0.07), 0.015),
                   colours["accent"]))
    return shapes


def draw_lamp(c: Canvas, move: str, a: float, idle: float, colours: dict) -> list[Shape]:
    """A desk lamp: base, two arms, shade and bulb. Moves: nod (shade bobs), tilt (whole lamp leans)."""
    lean = 0.35 * a if move == "tilt" else 0.05 * idle
    nod = 0.45 * a if move == "nod" else 0.08 * idle
    base = (0.0, 0.025)
    elbow = _polar(base, -0.2, 0.35 + lean)
    top = _polar(elbow, -0.17, -0.5 + lean + 0.5 * nod)
    shade_angle = 2.3 + nod  # the shade's axis, pointing down-forward
    shade = _polar(top, 0.05, shade_angle)
    return [
        (c.box((0.0, 0.02), (0.1, 0.02)), colours["accent"]),
        (c.capsule(base, elbow, 0.018) | c.capsule(elbow, top, 0.016), colours["accent"]),
        (c.capsule(_polar(shade, 0.03, shade_angle), _polar(shade, 0.03, shade_angle), 0.03), (1.0, 0.97, 0.7)),
        (c.box(shade, (0.065, 0.04), shade_angle - math.pi / 2), colours["main"]),
    ]


def draw_box(c: Canvas, move: str, a: float, idle: float, colours: dict) -> list[Shape]:
    """A box with a hinged lid. Moves: lid (flaps open and shut), squash (squash and stretch)."""
    stretch = 1.0 + 0.18 * a if move == "squash" else 1.0 + 0.02 * idle
    w, h = 0.16 / math.sqrt(stretch), 0.13 * stretch
    opening = 0.2 + 0.55 * (a + 1) if move == "lid" else 0.25 + 0.1 * idle
    hinge = (-w, 2 * h)
    lid_end = (hinge[0] + 2 * w * math.cos(opening), hinge[1] + 2 * w * math.sin(opening))
    mid = ((hinge[0] + lid_end[0]) / 2, (hinge[1] + lid_end[1]) / 2)
    return [
        (c.box((0.0, h), (w, h)), colours["main"]),
        (c.box((0.0, h), (w * 0.6, 0.012)), colours["accent"]),
        (c.box(mid, (w, 0.018), opening), colours["accent"]),
    ]


FIGURES: dict[str, tuple[Callable, tuple[str, ...], str]] = {  # kind -> (drawing, moves, caption noun)
    "human": (draw_human, ("arms", "bounce", "sway"), "human-like figure"),
    "quadruped": (draw_quadruped, ("hop", "wag", "headbob", "rock"), "four-legged animal"),
    "lamp": (draw_lamp, ("nod", "tilt"), "desk lamp"),
    "box": (draw_box, ("lid", "squash"), "box"),
}
FIGURE_WEIGHTS = (0.4, 0.25, 0.175, 0.175)
MOVE_PHRASES = {
    "arms": "pumps its arms up and down", "bounce": "bounces at the knees", "sway": "sways from side to side",
    "hop": "hops up and down", "wag": "wags its tail", "headbob": "bobs its head", "rock": "rocks back and forth",
    "nod": "nods its shade up and down", "tilt": "tilts from side to side", "lid": "flaps its lid open and shut",
    "squash": "squashes and stretches",
}
MANNER = {"sharp": ("sharply, hitting every beat", "in crisp hits on the beat", "with snappy stops on each beat"),
          "smooth": ("smoothly, easing into every beat", "in a gentle flow with the beat", "softly, swaying through each beat")}


def draw_background(rng: np.random.Generator, size: int, kind: str, avoid: str) -> np.ndarray:
    """float [size, size, 3] in [0, 1]: muted colours far from the figure's main colour."""
    names = [n for n in COLOURS if n != avoid]
    first, second = (np.array(COLOURS[names[i]]) for i in rng.choice(len(names), 2, replace=False))
    first, second = 0.35 + 0.4 * first, 0.15 + 0.4 * second  # muted, so the figure stands out
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "flat":
        mix = np.zeros((size, size))
    elif kind == "gradient":
        mix = yy
    elif kind == "stripes":
        period, angle = rng.uniform(0.12, 0.3), rng.uniform(0, np.pi)
        mix = ((xx * np.cos(angle) + yy * np.sin(angle)) % period < period / 2).astype(float)
    elif kind == "checker":
        cells = int(rng.integers(3, 9))
        mix = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(float)
    else:  # noise: coarse random cells, smoothed by repetition
        cells = int(rng.integers(4, 9))
        grid = rng.uniform(0, 1, (cells, cells))
        idx = np.minimum((np.arange(size) * cells) // size, cells - 1)
        mix = grid[idx][:, idx]
    return first + (second - first) * mix[..., None]


# --- clips ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Clip:
    """One dance: frames uint8 [F, H, W, 3], masks bool [F, H, W], and what the caption says."""

    name: str
    track: Track
    figure: str
    move: str
    background: str
    motion: Motion
    caption: str
    frames: np.ndarray
    masks: np.ndarray
    fps: float
    idle_period: float
    colour: str

    @property
    def accent_frames(self) -> list[int]:
        """Frames nearest the beats (`beats.beat_vector`'s rounding): where the accent pose is reached."""
        return np.flatnonzero(beat_vector(self.track.beat_times, self.fps, self.frames.shape[0])).tolist()


def make_clip(track: Track, index: int, size: int = 64, fps: float = 12.0) -> Clip:
    """Clip `index` of `track`: a figure dancing to it for the track's length."""
    rng = np.random.default_rng([*track.seed, index])
    kind = str(rng.choice(list(FIGURES), p=FIGURE_WEIGHTS))
    draw, moves, noun = FIGURES[kind]
    move = str(rng.choice(moves))
    colour = str(rng.choice(list(COLOURS)))
    second = str(rng.choice([n for n in COLOURS if n != colour]))
    colours = {"main": COLOURS[colour], "accent": COLOURS[second], "legs": COLOURS[second],
               "skin": SKIN[int(rng.integers(len(SKIN)))]}
    background = str(rng.choice(BACKGROUNDS))
    image = draw_background(rng, size, background, colour)
    style = track.style.motion
    motion = track_motion(track, style, snap=float(rng.uniform(SNAP[0], SNAP[1])))
    idle_period, idle_phase = float(rng.uniform(2.3, 3.7)), float(rng.uniform(0, 2 * np.pi))
    canvas = Canvas(size, x0=float(rng.uniform(0.42, 0.58)), ground=float(rng.uniform(0.88, 0.95)),
                    scale=float(rng.uniform(1.05, 1.3)), flip=bool(rng.integers(2)))
    count = int(round(track.seconds * fps))
    times = np.arange(count) / fps
    accents = motion.accent(times)
    frames = np.empty((count, size, size, 3), np.uint8)
    masks = np.empty((count, size, size), bool)
    for k in range(count):
        idle = math.sin(2 * np.pi * times[k] / idle_period + idle_phase)
        picture, mask = image.copy(), np.zeros((size, size), bool)
        canvas.shift = STEP * float(accents[k])
        for shape, rgb in draw(canvas, move, float(accents[k]), idle, colours):
            picture[shape] = rgb
            mask |= shape
        frames[k] = np.rint(picture * 255).astype(np.uint8)
        masks[k] = mask
    manner = str(rng.choice(MANNER[style]))
    article = "an" if colour[0] in "aeiou" else "a"
    caption = (f"{article} {colour} {noun} {MOVE_PHRASES[move]} and steps from side to side {manner}, "
               f"dancing to {track.style.phrase}")
    return Clip(f"{track.name}_c{index}", track, kind, move, background, motion, caption, frames, masks, fps,
                idle_period, colour)


# --- dataset -------------------------------------------------------------------------------------


def split_tracks(count: int, test_fraction: float, seed: int) -> set[int]:
    """Indices of the test tracks: round(count * fraction), at least one and at most count - 1 when count >= 2."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}.")
    wanted = round(count * test_fraction)
    if test_fraction > 0 and count >= 2:
        wanted = min(max(wanted, 1), count - 1)
    elif count < 2:
        wanted = 0
    return {int(i) for i in np.random.default_rng([seed, 1_000_003]).permutation(count)[:wanted]}


def generate(out: str | Path, tracks: int, clips_per_track: int, seed: int = 0, size: int = 64, fps: float = 12.0,
             seconds: float = 4.0, test_fraction: float = 0.25) -> dict:
    """Write the dataset (see the module docstring) and return what tracks.json holds."""
    if tracks < 1 or clips_per_track < 1:
        raise ValueError(f"tracks and clips_per_track must be at least 1, got {tracks} and {clips_per_track}.")
    if size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8, at least 16 (the VAE's factor), got {size}.")
    if not (0 < fps <= 60 and 1 <= seconds <= 60):
        raise ValueError(f"fps must be in (0, 60] and seconds in [1, 60], got {fps} and {seconds}.")
    out = Path(out)
    test = split_tracks(tracks, test_fraction, seed)
    index = {"format": "musedance-synthetic", "version": 1, "seed": seed, "size": size, "fps": fps,
             "seconds": seconds, "sample_rate": SAMPLE_RATE, "tracks": [], "clips": []}
    for i in range(tracks):
        track = make_track(seed, i, seconds)
        split = "test" if i in test else "train"
        folder = out / split
        index["tracks"].append({
            "name": track.name, "split": split, "style": track.style.name, "bpm": track.bpm,
            "meter": track.style.meter, "key": track.key, "motion": track.style.motion, "seed": list(track.seed),
            "beat_times": [round(float(t), 6) for t in track.beat_times],
        })
        for j in range(clips_per_track):
            clip = make_clip(track, j, size, fps)
            write_video(folder / f"{clip.name}.mp4", clip.frames, fps, track.waveform, track.sample_rate,
                        crf=VIDEO_CRF)
            grey = np.repeat(clip.masks[..., None].astype(np.uint8) * 255, 3, axis=-1)
            write_video(folder / f"{clip.name}.mask.mp4", grey, fps, crf=MASK_CRF)
            (folder / f"{clip.name}.txt").write_text(clip.caption + "\n")
            index["clips"].append({
                "name": clip.name, "track": track.name, "split": split, "figure": clip.figure, "move": clip.move,
                "colour": clip.colour, "background": clip.background, "motion": clip.motion.style,
                "snap": round(clip.motion.snap, 4), "caption": clip.caption, "accent_frames": clip.accent_frames,
            })
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracks.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (train/, test/, tracks.json)")
    parser.add_argument("--tracks", type=int, default=8, help="music tracks (default 8)")
    parser.add_argument("--clips-per-track", type=int, default=4, help="dance clips per track (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="everything follows from it (default 0)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels, a multiple of 8 (default 64)")
    parser.add_argument("--fps", type=float, default=12.0, help="frame rate (default 12)")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip and track length (default 4)")
    parser.add_argument("--test-fraction", type=float, default=0.25,
                        help="share of tracks held out for test/ (default 0.25; split by track)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        index = generate(args.out, args.tracks, args.clips_per_track, args.seed, args.size, args.fps, args.seconds,
                         args.test_fraction)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    counts = {s: sum(c["split"] == s for c in index["clips"]) for s in ("train", "test")}
    print(f"wrote {len(index['clips'])} clips of {len(index['tracks'])} tracks to {args.out} "
          f"({counts['train']} train, {counts['test']} test) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
