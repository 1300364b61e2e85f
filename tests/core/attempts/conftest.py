"""Fixtures for attempt tests."""

from __future__ import annotations

import pytest

from core.attempts import AttemptKeys


@pytest.fixture
def attempt_keys() -> AttemptKeys:
    return AttemptKeys()
