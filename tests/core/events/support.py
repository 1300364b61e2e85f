"""Test support for events: a valid envelope factory and a sender that records or fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.errors import BrokerUnavailable


def envelope(**overrides: Any) -> dict[str, Any]:
    """A valid ``courseComponent.updated`` envelope; keyword overrides replace fields."""
    env: dict[str, Any] = {
        "specversion": "1.0",
        "id": "9b2f6c1e-3f0a-4c55-9a53-0d3c1d2b7e10",
        "source": "course-builder",
        "type": "oneroster.courseComponent.updated",
        "time": "2026-11-22T10:15:03.120Z",
        "subject": "comp-unit-7",
        "datacontenttype": "application/json",
        "data": {"courseId": "course-42"},
    }
    env.update(overrides)
    return env


class FakeSender:
    """Records every batch it is given; raises ``BrokerUnavailable`` while ``down``."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.down = False

    def send(self, envelopes: Sequence[dict[str, Any]]) -> None:
        if self.down:
            raise BrokerUnavailable("broker down (fake)")
        self.batches.append([dict(e) for e in envelopes])

    @property
    def sent_ids(self) -> list[str]:
        return [e["id"] for batch in self.batches for e in batch]
