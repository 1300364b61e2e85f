"""The durable schedule on the real Redis: concurrent claimers never share an entry."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from core.keys import Keys
from core.pipeline.schedule import Schedule

pytestmark = pytest.mark.integration


def test_four_concurrent_claimers_get_every_entry_exactly_once(
    real_redis: redis.Redis, keys: Keys
) -> None:
    entries = 600
    schedule = Schedule(real_redis, keys, shards=4)
    due = time.time() - 1
    for i in range(entries):
        schedule.put(f"e{i}", "task.x", due=due, args=[i], queue="q")
    got: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def claimer(out: list[str]) -> None:
        mine = Schedule(redis.Redis(connection_pool=real_redis.connection_pool), keys, shards=4)
        start.wait()
        while True:
            claimed = mine.claim(limit=7)
            if not claimed:
                return
            for entry in claimed:
                out.append(entry.entry_id)
                mine.ack(entry)

    threads = [threading.Thread(target=claimer, args=(out,)) for out in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claimed = [entry_id for out in got for entry_id in out]
    assert len(claimed) == entries
    assert len(set(claimed)) == entries
    assert sum(1 for out in got if out) >= 2  # they really raced
    assert schedule.size() == 0
