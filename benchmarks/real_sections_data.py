"""Rebuild the real-music section benchmark's folder from the public repositories its manifest names.

    python benchmarks/real_sections_data.py --repos ~/mir-repos --out ~/realsections

--repos holds one git clone (plain or bare) per repository of benchmarks/real_sections_manifest.json,
named owner+name (e.g. `git clone https://github.com/sungbohsun/music_segmentation
~/mir-repos/sungbohsun+music_segmentation`); a folder with the git directory in `repo/` works too. Each
song's audio and annotation are read at the manifest's commit, checked against its sha256 and written as
<id>.<audio suffix> and <id>.sections (one "start end label" line per segment, seconds). Nothing is
downloaded here and nothing third-party is kept in this repository: the manifest is the only record.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from real_beats_data import read_blob  # benchmarks/ is on sys.path when a script here runs

MANIFEST = Path(__file__).resolve().parent / "real_sections_manifest.json"


def segments(text: str, path: str) -> list[tuple[float, float, str]]:
    """(start, end, label) of an annotation: 'start end label' lines, or the FMP notebooks' ';' CSV."""
    rows: list[tuple[float, float, str]] = []
    if path.endswith(".csv"):
        for row in csv.DictReader(io.StringIO(text), delimiter=";"):
            rows.append((float(row["start"]), float(row["end"]), row.get("label") or row.get("labels") or ""))
    else:
        for line in text.splitlines():
            if line.strip():
                start, end, *label = line.split()
                rows.append((float(start), float(end), " ".join(label)))
    if not rows or any(end < start for start, end, _ in rows):
        raise SystemExit(f"{path}: no segments, or one that ends before it starts.")
    return rows


def rebuild(repos: Path, out: Path, manifest: Path = MANIFEST) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in json.loads(manifest.read_text())["excerpts"]:
        audio = read_blob(repos, entry["audio"])
        rows = segments(read_blob(repos, entry["annotation"]).decode("utf-8-sig"), entry["annotation"]["path"])
        (out / f"{entry['id']}{Path(entry['audio']['path']).suffix.lower()}").write_bytes(audio)
        (out / f"{entry['id']}.sections").write_text("".join(f"{s:.3f} {e:.3f} {label or 'silence'}\n"
                                                             for s, e, label in rows))
        written.append(entry["id"])
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=Path, required=True, help="folder of clones named owner+name")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the songs into")
    args = parser.parse_args(argv)
    written = rebuild(args.repos, args.out)
    print(f"wrote {len(written)} songs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
