"""What a benchmark ran on: CPU, cores, load, Python, platform, date and the versions of the packages it names."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(*packages: str) -> dict:
    """A record of the machine and of the versions of `packages` (import names), for a results file."""
    info: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    for name in packages:
        info[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    info["platform"] = platform.platform()
    info["load_average_1_5_15_min"] = [round(x, 2) for x in os.getloadavg()]  # other work on a shared machine
    info["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return info
