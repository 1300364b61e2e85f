"""A child process for the cross-process resolve test: N threads resolve one learner's attempt.

Run as ``python -m tests.integration.attempts_resolver CONFIG_JSON``. It announces itself ready
(``INCR ready_key``), waits until ``go_key`` exists, resolves from every thread at once and pushes
one JSON document per result onto ``results_key``. Its OneRoster stand-in counts its calls in
Redis (``calls_key``), answers another number on each call, and is slow enough that concurrent
callers overlap.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import redis

from core.attempts import AttemptKeys, AttemptService, FlightOnce
from core.keys import Keys
from core.logging import configure_logging
from core.singleflight.distributed import DistributedFlight


def main(config: dict[str, Any]) -> None:
    configure_logging(fmt="json", level="WARNING")
    client = redis.Redis.from_url(config["redis_url"])
    calls_key = config["calls_key"]

    def derive(user_id: str, resource_id: str) -> int:
        call = int(client.incr(calls_key))
        time.sleep(config["derive_delay_s"])
        return 2 + call  # 3 on the first call, 4 on the second, ...

    once = None
    if config["single_flight"]:
        once = FlightOnce(DistributedFlight(client, Keys(prefix=config["key_prefix"])))
    service = AttemptService(client, AttemptKeys(), derive=derive, once=once, ttl_s=600)
    go = threading.Event()

    def resolve() -> None:
        go.wait(30)
        attempt = service.resolve(config["user_id"], config["resource_id"])
        result = {"number": attempt.number, "created": attempt.created}
        client.rpush(config["results_key"], json.dumps(result))

    threads = [threading.Thread(target=resolve) for _ in range(config["threads"])]
    for thread in threads:
        thread.start()
    client.incr(config["ready_key"])
    deadline = time.monotonic() + 30
    while not client.exists(config["go_key"]) and time.monotonic() < deadline:
        time.sleep(0.002)
    go.set()
    for thread in threads:
        thread.join(30)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
