"""Rebuild the real-music beat benchmark's folder from the public repositories its manifest names.

    python benchmarks/real_beats_data.py --repos ~/mir-repos --out ~/realbeats

--repos holds one git clone (plain or bare) per repository of benchmarks/real_beats_manifest.json,
named owner+name (e.g. `git clone https://github.com/TempoBeatDownbeat/gtzan_mini
~/mir-repos/TempoBeatDownbeat+gtzan_mini`); a folder with the git directory in `repo/` (as a mirror
tool leaves it) works too. Each excerpt's audio and annotation are read at the manifest's commit,
checked against its sha256 and written as <id>.<audio suffix> and <id>.beats. Nothing is downloaded
here and nothing third-party is kept in this repository: the manifest is the only record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from musedance_core.audio.beat_files import parse_beat_text

MANIFEST = Path(__file__).resolve().parent / "real_beats_manifest.json"


def git_dir(repos: Path, repository: str) -> Path:
    folder = repos / repository.replace("/", "+")
    for candidate in (folder / "repo", folder):
        if (candidate / "HEAD").is_file() or (candidate / ".git").exists():
            return candidate
    raise SystemExit(f"no clone of {repository} in {repos}: run `git clone https://github.com/{repository} {folder}`.")


def read_blob(repos: Path, source: dict) -> bytes:
    where = git_dir(repos, source["repository"])
    done = subprocess.run(["git", "-C", str(where), "show", f"{source['commit']}:{source['path']}"],
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{source['repository']} has no {source['path']} at {source['commit']} "
                         f"({done.stderr.decode().strip()}); fetch that commit into the clone.")
    data = done.stdout
    if hashlib.sha256(data).hexdigest() != source["sha256"]:
        raise SystemExit(f"{source['repository']}:{source['path']} at {source['commit']} does not match the "
                         "manifest's sha256; the clone holds other bytes (Git LFS pointer?).")
    return data


def rebuild(repos: Path, out: Path, manifest: Path = MANIFEST) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in json.loads(manifest.read_text())["excerpts"]:
        audio = read_blob(repos, entry["audio"])
        annotation = read_blob(repos, entry["annotation"])
        parse_beat_text(annotation.decode("utf-8-sig"), entry["annotation"]["path"])  # fails loudly on a bad list
        (out / f"{entry['id']}{Path(entry['audio']['path']).suffix.lower()}").write_bytes(audio)
        (out / f"{entry['id']}.beats").write_bytes(annotation)
        written.append(entry["id"])
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=Path, required=True, help="folder of clones named owner+name")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the excerpts into")
    args = parser.parse_args(argv)
    written = rebuild(args.repos, args.out)
    print(f"wrote {len(written)} excerpts to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
