"""Fixtures of the fault suite; the ``faults`` marker; the figures printed after the run.

The CI subset runs by default. ``CB_FAULTS_FULL=1`` switches every scenario to its long
variant (20 kills, a 60 s outage, 10,000 malformed events, ...): see docs/reliability.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults import figures
from tests.faults.harness import Sizes, sizes

FAULTS_MARKER = (
    "faults: fault-tolerance scenarios with real processes (CB_FAULTS_FULL=1: long variants)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", FAULTS_MARKER)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = figures.summary_lines()
    if not lines:
        return
    terminalreporter.section(f"fault suite figures ({sizes().mode})")
    for line in lines:
        terminalreporter.write_line(line)
    path = figures.write_report(sizes().mode)
    if path is not None:
        terminalreporter.write_line(f"written to {path}")


@pytest.fixture(scope="session")
def fault_sizes() -> Sizes:
    return sizes()
