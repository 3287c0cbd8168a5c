"""The GPU check runs end to end at the tiny size on the CPU, so it cannot rot between the tasks lent a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_section_at_the_tiny_size(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--size", "tiny", "--device",
                           "cpu", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = ("step", "sampler", "peaks", "song", "training")
    assert not [name for name in sections if "error" in report[name]], {n: report[n].get("error") for n in sections}
    assert report["step"]["seconds"]["musedance"] > 0 and report["step"]["seconds"]["animatediff"] > 0
    assert report["sampler"]["frames"] == 8
    song = [clip["seconds"] for clip in report["song"]["clips"]]
    assert len(song) == 3 and song == sorted(song)
    for stage in ("stage1", "stage2"):
        assert report["training"][stage]["loss"] > 0 and report["training"][stage]["trainable_parameters"] > 0
