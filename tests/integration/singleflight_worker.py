"""A process of flight callers for the real-Redis single-flight tests.

Says it is ready (RPUSH), waits for the test's go signal (BLPOP) if asked, runs
``--threads`` concurrent ``DistributedFlight.run`` calls on one flight and prints one JSON
line per call. What the leader's function does is ``--work``: ``count`` (count the execution,
hold until every caller has joined or run), ``hang`` (count, announce the epoch, never
return) or ``quick``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

import orjson
import redis

from core.errors import BundlesError
from core.keys import Keys
from core.logging import configure_logging
from core.singleflight.distributed import DistributedFlight, FlightLease
from core.singleflight.stats import FlightStats
from core.singleflight.steps import FlightKeys

FLIGHT = "{course:stampede}:build"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--total", type=int, default=1, help="callers across all processes")
    p.add_argument("--work", choices=["count", "hang", "quick"], default="count")
    p.add_argument("--enabled", type=int, default=1)
    p.add_argument("--lease-ms", type=int, default=5000)
    p.add_argument("--heartbeat-ms", type=int, default=1000)
    p.add_argument("--recheck-s", type=float, default=0.5)
    p.add_argument("--wait-s", type=float, default=10.0)
    p.add_argument("--fallback", choices=["none", "stale", "mixed"], default="none")
    p.add_argument("--go", action="store_true", help="wait for the go signal before calling")
    return p.parse_args()


def executions_key(prefix: str) -> str:
    return f"{prefix}test:executions"


def led_key(prefix: str) -> str:
    return f"{prefix}test:led"


def go_key(prefix: str) -> str:
    return f"{prefix}test:go"


def ready_key(prefix: str) -> str:
    return f"{prefix}test:ready"


def main() -> None:
    args = parse()
    configure_logging(fmt="json", level="WARNING")
    client = redis.Redis.from_url(args.url)
    keys = Keys(prefix=args.prefix)
    channel = FlightKeys.of(keys, FLIGHT).channel
    flight = DistributedFlight(
        client,
        keys,
        lease_ms=args.lease_ms,
        heartbeat_ms=args.heartbeat_ms,
        recheck_s=args.recheck_s,
        wait_s=args.wait_s,
        enabled=bool(args.enabled),
        stats=FlightStats(),
    )

    def work(lease: FlightLease) -> dict[str, Any]:
        client.incr(executions_key(args.prefix))
        if args.work == "hang":
            client.rpush(led_key(args.prefix), lease.epoch)
            time.sleep(60)
        if args.work == "count":  # hold the flight open until every caller is in it
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                runs = int(client.get(executions_key(args.prefix)) or 0)
                subscribed = client.pubsub_numsub(channel)[0][1]
                if runs + subscribed >= args.total:
                    break
                time.sleep(0.002)
        return {"epoch": lease.epoch, "pid": os.getpid()}

    def call(i: int) -> None:
        fallback = None
        if args.fallback == "stale" or (args.fallback == "mixed" and i % 2 == 0):
            fallback = lambda: {"stale": True}  # noqa: E731
        barrier.wait()
        try:
            out = flight.run(FLIGHT, work, fallback=fallback)
            line: dict[str, Any] = {
                "value": out.value,
                "led": out.led,
                "epoch": out.epoch,
                "fell_back": out.fell_back,
                "waited_s": out.waited_s,
            }
        except BundlesError as exc:
            line = {"error": type(exc).__name__, "message": str(exc)}
        with out_lock:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()

    barrier = threading.Barrier(args.threads)
    out_lock = threading.Lock()
    client.rpush(ready_key(args.prefix), os.getpid())
    if args.go:
        client.blpop([go_key(args.prefix)], timeout=20)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
