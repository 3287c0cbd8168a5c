"""Beat lists from files: the formats users bring, and every way a list can be wrong."""

from __future__ import annotations

import numpy as np
import pytest

from musedance_core.audio.beat_files import MAX_BEAT_FILE_BYTES, parse_beat_text, read_beat_file


@pytest.mark.parametrize(
    "name, text, times, numbers",
    [
        ("plain.txt", "0.5\n1.0\n\n1.5\n", [0.5, 1.0, 1.5], None),
        ("madmom.beats", "# manually annotated beats\n0.0900\t1\n0.4500\t2\n0.7900\t3\n", [0.09, 0.45, 0.79], [1, 2, 3]),
        ("ballroom.beats", "1.8600000000 1\n2.5700000000 2\n3.2800000000 3\n", [1.86, 2.57, 3.28], [1, 2, 3]),
        ("brid.txt", "2.09 1\r\n2.55 2\r\n", [2.09, 2.55], [1, 2]),
        ("bar-beat.txt", "0.5 1.1\n1.0 1.2\n", [0.5, 1.0], None),  # "bar.beat" labels are not beat numbers
        ("audacity.txt", "0.500000\t0.500000\t1\n1.000000\t1.000000\t2\n", [0.5, 1.0], [1, 2]),
        ("audacity-words.txt", "0.5\t0.5\tBeat\n1.0\t1.0\tBeat\n", [0.5, 1.0], None),
        ("header.csv", "Time (s),Beat\n0.5,1\n1.0,2\n", [0.5, 1.0], [1, 2]),
        ("sonic.csv", "label,position,beat number\nx,0.25,3\ny,0.75,4\n", [0.25, 0.75], [3, 4]),
        ("semicolon.csv", "\ufeffZeit;Schlag\n0,5;1\n1,25;2\n", [0.5, 1.25], [1, 2]),  # decimal commas
        ("bare.csv", "0.5,1\n1.0,2\n", [0.5, 1.0], [1, 2]),
        ("tabs.csv", "time\tbeat\n0.5\t1\n1.0\t2\n", [0.5, 1.0], [1, 2]),
    ],
)
def test_formats(tmp_path, name, text, times, numbers):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    if times is None:
        with pytest.raises(ValueError):
            read_beat_file(path)
        return
    beats = read_beat_file(path)
    np.testing.assert_allclose(beats.times, times)
    assert beats.times.dtype == np.float64
    if numbers is None:
        assert beats.numbers is None
    else:
        np.testing.assert_array_equal(beats.numbers, numbers)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "has no beats"),
        ("# only a comment\n", "has no beats"),
        ("0.5\nabc\n", "line 2: 'abc' is not a time in seconds"),
        ("1.0\n0.5\n", "line 2: time 0.5 s is not after the previous beat (1 s, line 1)"),
        ("1.0\n1.0\n", "listed once each"),
        ("-0.25\n1.0\n", "line 1: time -0.25 s is before the start of the music"),
        ("0.5\nnan\n", "line 2: nan is not a finite time"),
        ("0.5\ninf\n", "line 2: inf is not a finite time"),
        ("0.5 0\n1.0 1\n", "line 1: beat numbers count from 1"),
    ],
)
def test_bad_lists_name_the_line_and_the_fix(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_beat_text(text, "taps.txt")


def test_files_that_are_not_beat_lists(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.beats, \.txt, \.csv"):
        read_beat_file(tmp_path / "song.mp3")
    with pytest.raises(FileNotFoundError, match="beat file not found"):
        read_beat_file(tmp_path / "missing.beats")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        read_beat_file(binary)
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:  # sparse: the size is checked before anything is read
        handle.truncate(MAX_BEAT_FILE_BYTES + 1)
    with pytest.raises(ValueError, match="choose the beat file, not the music"):
        read_beat_file(huge)
