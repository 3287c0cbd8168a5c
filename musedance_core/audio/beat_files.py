"""Beat lists from text files: the `.beats` format of beat-tracking data sets, plain lists and CSV exports.

Accepted layouts, one beat per line, blank lines and lines starting with '#' skipped:
- `time` or `time number` (whitespace or a comma between them): seconds, and optionally the beat's
  place in its bar (1 = downbeat), as in the `.beats` annotations of MIR data sets (madmom, GTZAN,
  Ballroom) and the lists beat-tapping tools write;
- `start end label` with tabs: an Audacity label track; a label that is a whole number is the beat number;
- CSV (DAW and spreadsheet exports; fields split by commas, tabs, or semicolons with decimal
  commas), optionally under a header row (a first row that does not start with a number): the
  time column is the first whose name contains "time", "sec" or "position" (else the first), the
  beat-number column one named "beat", "beat number", "beat_number" or "number" (else the second,
  where the time is the first); a column whose cells are not all whole numbers gives no numbers.
Times must be finite, non-negative and strictly increasing; an error names the line and the fix.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BEAT_FILE_SUFFIXES = (".beats", ".txt", ".csv")
MAX_BEAT_FILE_BYTES = 10 * 1024 * 1024  # a beat list of 10 hours at 300 BPM is under 3 MB
_TIME_HEADERS = ("time", "sec", "position")
_NUMBER_HEADERS = ("beat", "beat number", "beat_number", "beat no", "number")


@dataclass(frozen=True, eq=False)
class BeatList:
    """Beat times in seconds (float64 [B], strictly increasing) and, where the file gives them, each
    beat's place in its bar (int64 [B], 1 = downbeat), else None."""

    times: np.ndarray
    numbers: np.ndarray | None = None


def read_beat_file(path: str | os.PathLike) -> BeatList:
    """Read a beat list from a `.beats`, `.txt` or `.csv` file (see the module docstring)."""
    path = Path(path)
    if path.suffix.lower() not in BEAT_FILE_SUFFIXES:
        raise ValueError(f"{path.name}: a beat file must end in {', '.join(BEAT_FILE_SUFFIXES)}; "
                         "save the beat list as text with one time in seconds per line.")
    if not path.is_file():
        raise FileNotFoundError(f"beat file not found: {path}.")
    size = path.stat().st_size
    if size > MAX_BEAT_FILE_BYTES:
        raise ValueError(f"{path.name} is {size / 2**20:.1f} MB, more than a beat list can be "
                         f"({MAX_BEAT_FILE_BYTES // 2**20} MB); choose the beat file, not the music.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text; a beat file is a text list of times in seconds.") from None
    return parse_beat_text(text, path.name, csv_file=path.suffix.lower() == ".csv")


def parse_beat_text(text: str, name: str = "beat list", *, csv_file: bool = False) -> BeatList:
    """Parse the text of a beat file; `name` is used in error messages."""
    rows = _csv_rows(text) if csv_file else _text_rows(text)
    if csv_file and rows and not _is_number(rows[0][1][0]):
        header, rows = [cell.strip().lower() for cell in rows[0][1]], rows[1:]
        time_column = next((k for k, cell in enumerate(header) if any(h in cell for h in _TIME_HEADERS)), 0)
        number_column = next((k for k, cell in enumerate(header) if cell in _NUMBER_HEADERS),
                             1 if time_column == 0 and len(header) >= 2 else None)
    else:
        time_column, number_column = 0, None
        if rows and len(rows[0][1]) == 3 and all(_is_number(cell) for cell in rows[0][1][:2]):
            number_column = 2  # Audacity labels: start, end, label
        elif rows and len(rows[0][1]) >= 2:
            number_column = 1
    if not rows:
        raise ValueError(f"{name} has no beats; write one time in seconds per line.")

    times, numbers = [], []
    for line, cells in rows:
        if time_column >= len(cells) or not _is_number(cells[time_column]):
            shown = cells[time_column] if time_column < len(cells) else ""
            raise ValueError(f"{name}, line {line}: {shown!r} is not a time in seconds; each line must "
                             "start with the beat's time, e.g. '1.25' or '1.25 1'.")
        times.append(float(cells[time_column]))
        label = cells[number_column].strip() if number_column is not None and number_column < len(cells) else ""
        numbers.append(_beat_number(label))
    times_array = np.array(times, dtype=np.float64)
    _check_times(times_array, [line for line, _ in rows], name)
    given = [n for n in numbers if n is not None]
    number_array = None
    if given and len(given) == len(numbers):
        number_array = np.array(numbers, dtype=np.int64)
        if number_array.min() < 1:
            line = rows[int(np.argmin(number_array))][0]
            raise ValueError(f"{name}, line {line}: beat numbers count from 1 (the downbeat), got "
                             f"{int(number_array.min())}.")
    return BeatList(times_array, number_array)


def _text_rows(text: str) -> list[tuple[int, list[str]]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "\t" in stripped:
            cells = [cell.strip() for cell in stripped.split("\t")]
        else:
            cells = stripped.replace(",", " ").split()
        rows.append((line, cells))
    return rows


def _csv_rows(text: str) -> list[tuple[int, list[str]]]:
    """Rows of a CSV export. Semicolons separate fields where a locale writes decimal commas ("0,5;1")."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if ";" in first else "\t" if "\t" in first else ","
    rows = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for cells in reader:
        cells = [cell.strip() for cell in cells]
        if delimiter == ";":
            cells = [cell.replace(",", ".") for cell in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        rows.append((reader.line_num, cells))
    return rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _beat_number(label: str) -> int | None:
    """A whole-number label (a beat's place in its bar); None for anything else (text labels, "1.2")."""
    try:
        value = float(label)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


def _check_times(times: np.ndarray, lines: list[int], name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise ValueError(f"{name}, line {lines[bad[0]]}: {times[bad[0]]} is not a finite time in seconds.")
    negative = np.flatnonzero(times < 0)
    if negative.size:
        raise ValueError(f"{name}, line {lines[negative[0]]}: time {times[negative[0]]:g} s is before the start "
                         "of the music; beat times count from 0 s (shift them, or use the offset setting).")
    backwards = np.flatnonzero(np.diff(times) <= 0)
    if backwards.size:
        k = int(backwards[0])
        raise ValueError(f"{name}, line {lines[k + 1]}: time {times[k + 1]:g} s is not after the previous beat "
                         f"({times[k]:g} s, line {lines[k]}); beats must be listed once each, in time order.")
