"""Streamed rendering: a song of any length takes the memory of one clip, and its video is whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from musedance_core.video import read_video_info

HERE = Path(__file__).resolve().parent
SIZE = 128


def _peak(seconds: float, out: Path) -> int:
    done = subprocess.run([sys.executable, str(HERE / "render_peak.py"), str(seconds), str(SIZE), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=HERE.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])


def test_a_long_song_renders_in_the_memory_of_a_short_one_and_its_video_is_whole(tmp_path):
    """4 s and 40 s of music at 128x128, each in a fresh process: the 40 s render's peak memory is within 10% of
    the 4 s one's and grows by far less than its frames would take if they were held (480 float frames,
    94 MB); the video has duration x fps frames and music as long within one frame."""
    short = _peak(4.0, tmp_path / "short.mp4")
    long = _peak(40.0, tmp_path / "long.mp4")
    held = 480 * SIZE * SIZE * 3 * 4
    assert long - short < min(0.10 * short, held / 3), (short, long, held)
    for name, seconds in (("short.mp4", 4.0), ("long.mp4", 40.0)):
        info = read_video_info(tmp_path / name)
        assert info.num_frames == int(seconds * 12) and (info.width, info.height) == (SIZE, SIZE)
        assert abs(info.audio_duration - seconds) < 1 / 12, info
