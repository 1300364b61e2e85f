"""Helpers for single-flight tests: bounded waits for conditions other threads bring about."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for ``predicate``; fail the test if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.001)
