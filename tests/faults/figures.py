"""Figures the fault scenarios measure, collected for the end-of-run summary and a JSON file.

Each scenario calls ``record``; ``conftest.py`` prints every figure after the run and, when
``CB_FAULTS_REPORT`` names a file, writes them there as JSON (docs/reliability.md quotes them).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPORT_ENV = "CB_FAULTS_REPORT"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number of one scenario."""

    scenario: str
    name: str
    value: float | int | str
    unit: str = ""


_FIGURES: list[Figure] = []


def record(scenario: str, name: str, value: float | int | str, unit: str = "") -> None:
    """Remember a measured figure (floats rounded to milliseconds' worth of precision)."""
    if isinstance(value, float):
        value = round(value, 3)
    _FIGURES.append(Figure(scenario, name, value, unit))


def figures() -> list[Figure]:
    return list(_FIGURES)


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def summary_lines() -> list[str]:
    lines: list[str] = []
    current = ""
    for fig in _FIGURES:
        if fig.scenario != current:
            current = fig.scenario
            lines.append(f"[{current}]")
        unit = f" {fig.unit}" if fig.unit else ""
        lines.append(f"  {fig.name}: {fig.value}{unit}")
    return lines


def write_report(mode: str) -> Path | None:
    """Write every figure as JSON to ``$CB_FAULTS_REPORT`` (if set); returns the path."""
    target = os.environ.get(REPORT_ENV)
    if not target or not _FIGURES:
        return None
    path = Path(target)
    doc = {"mode": mode, "machine": machine(), "figures": [asdict(f) for f in _FIGURES]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
