"""Record benchmark figures with the machine, date and commit they were measured on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent
        )
        # Figures written earlier in the same run do not make the code dirty: results/ is left out.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ":(top)", ":(exclude,top)benchmarks/results"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent,
        )
    except OSError:
        return "unknown"
    commit = done.stdout.strip() or "unknown"
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,
    }


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Write benchmarks/results/<name>.json with the figures and their provenance."""
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": machine(),
        **figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def measured() -> dict[str, str]:
    """When and at which commit figures are being taken now (for a record that keeps older sections)."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": _commit()}
