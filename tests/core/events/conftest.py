from __future__ import annotations

import pytest

from tests.core.events.support import FakeSender


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()
