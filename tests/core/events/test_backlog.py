"""The backlog guard: refuses past the limit, reads the depth at most once per interval."""

from __future__ import annotations

import pytest

from core.errors import BacklogFull
from core.events.backlog import BacklogGuard


class Queue:
    def __init__(self, depth: int) -> None:
        self.messages = depth
        self.reads = 0

    def depth(self) -> int:
        self.reads += 1
        return self.messages


def test_refuses_what_would_pass_the_limit_with_a_retry_after() -> None:
    guard = BacklogGuard(Queue(8), limit=10, clock=lambda: 0.0)
    guard.check(2)
    with pytest.raises(BacklogFull) as info:
        guard.check(3)
    assert info.value.retryable and info.value.retry_after_s >= 1
    assert info.value.context["depth"] == 8


def test_the_depth_is_read_once_per_interval_and_counts_what_this_process_sent() -> None:
    now = [0.0]
    queue = Queue(0)
    guard = BacklogGuard(queue, limit=10, check_s=0.5, clock=lambda: now[0])
    for _ in range(5):
        guard.check(2)
        guard.sent(2)
    assert queue.reads == 1
    with pytest.raises(BacklogFull):  # 10 sent since the reading: the limit holds in between
        guard.check(1)
    queue.messages = 0  # the workers drained it
    now[0] = 0.6
    guard.check(1)
    assert queue.reads == 2
