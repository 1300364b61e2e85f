"""Cross-process single-flight on the real Redis with real processes (one stampede, one kill).

Each test runs with coalescing on and off; the off run shows what the flight prevents.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from core.keys import Keys
from core.singleflight.distributed import DistributedFlight, FlightLease
from core.singleflight.outcome import decode_outcome, encode_outcome
from core.singleflight.stats import FlightStats
from core.singleflight.steps import FlightKeys, FlightScripts
from tests.conftest import TEST_REDIS_URL
from tests.integration.singleflight_worker import (
    FLIGHT,
    executions_key,
    go_key,
    led_key,
    ready_key,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Procs:
    """Starts worker processes and guarantees none outlives the test."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.running: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "tests.integration.singleflight_worker"]
        proc = subprocess.Popen(
            [*cmd, "--url", TEST_REDIS_URL, "--prefix", self.prefix, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.running.append(proc)
        return proc

    def ready(self, client: redis.Redis, count: int = 1) -> None:
        """Wait until ``count`` more started processes have set up their callers."""
        for _ in range(count):
            assert client.blpop([ready_key(self.prefix)], timeout=15) is not None, "never ready"

    @staticmethod
    def results(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]

    def kill_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def procs(key_prefix: str) -> Iterator[Procs]:
    p = Procs(key_prefix)
    yield p
    p.kill_all()


def executions(client: redis.Redis, prefix: str) -> int:
    return int(client.get(executions_key(prefix)) or 0)


def subscribed(client: redis.Redis, keys: Keys) -> int:
    return int(client.pubsub_numsub(FlightKeys.of(keys, FLIGHT).channel)[0][1])


def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def hung_leader(
    procs: Procs, client: redis.Redis, *flags: str
) -> tuple[subprocess.Popen[str], int]:
    """A process that leads the flight and never finishes (heartbeating); returns its epoch."""
    leader = procs.start("--threads", "1", "--work", "hang", *flags)
    procs.ready(client)
    popped = client.blpop([led_key(procs.prefix)], timeout=10)
    assert popped is not None, "the leader never started"
    return leader, int(popped[1])


@pytest.mark.parametrize("enabled", [True, False])
def test_four_processes_of_sixteen_callers_build_a_cold_key_once(
    real_redis: redis.Redis, procs: Procs, enabled: bool
) -> None:
    workers = [
        procs.start(
            "--threads",
            "16",
            "--total",
            "64",
            "--work",
            "count",
            "--go",
            "--enabled",
            str(int(enabled)),
        )
        for _ in range(4)
    ]
    procs.ready(real_redis, len(workers))
    real_redis.rpush(go_key(procs.prefix), *["go"] * len(workers))

    lines = [line for w in workers for line in procs.results(w)]

    assert len(lines) == 64
    assert not [line for line in lines if "error" in line]
    runs = executions(real_redis, procs.prefix)
    assert runs == (1 if enabled else 64)
    assert sum(line["led"] for line in lines) == runs
    if enabled:  # everyone holds the one leader's value
        assert len({(line["value"]["pid"], line["value"]["epoch"]) for line in lines}) == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_killed_leader_is_taken_over_once_and_its_late_write_is_fenced(
    real_redis: redis.Redis, keys: Keys, procs: Procs, enabled: bool
) -> None:
    flags = ["--enabled", str(int(enabled)), "--lease-ms", "600", "--heartbeat-ms", "150"]
    flags += ["--recheck-s", "0.1", "--wait-s", "8"]
    leader, dead_epoch = hung_leader(procs, real_redis, *flags)
    followers = [procs.start("--threads", "4", "--work", "quick", *flags) for _ in range(2)]
    procs.ready(real_redis, len(followers))
    if enabled:  # all eight are waiting on the hung flight before its leader dies
        until(lambda: subscribed(real_redis, keys) == 8)
    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=10)

    lines = [line for f in followers for line in procs.results(f)]

    assert len(lines) == 8
    assert not [line for line in lines if "error" in line or line["fell_back"]]
    if not enabled:
        assert executions(real_redis, procs.prefix) == 1 + 8
        return
    assert executions(real_redis, procs.prefix) == 2  # the dead leader's and one successor's
    successor = dead_epoch + 1
    assert [line["epoch"] for line in lines if line["led"]] == [successor]
    assert {line["value"]["epoch"] for line in lines} == {successor}

    fk = FlightKeys.of(keys, FLIGHT)
    late = encode_outcome(dead_epoch, value={"epoch": dead_epoch, "pid": leader.pid})
    assert FlightScripts(real_redis).finish(fk, dead_epoch, late, "dead", 10_000) is None
    stored = decode_outcome(real_redis.get(fk.outcome))
    assert stored is not None and stored.epoch == successor


@pytest.mark.parametrize("enabled", [True, False])
def test_waiters_of_a_stuck_leader_fall_back_by_their_deadline(
    real_redis: redis.Redis, procs: Procs, enabled: bool
) -> None:
    flags = ["--enabled", str(int(enabled)), "--lease-ms", "400", "--heartbeat-ms", "100"]
    flags += ["--recheck-s", "0.1"]
    hung_leader(procs, real_redis, *flags)
    waiters = procs.start(
        "--threads", "4", "--work", "quick", "--wait-s", "1.0", "--fallback", "mixed", *flags
    )
    procs.ready(real_redis)

    lines = procs.results(waiters)

    assert len(lines) == 4
    if enabled:  # heartbeats kept the stuck lease: nobody took over, everyone hit the deadline
        assert sorted(line.get("value") == {"stale": True} for line in lines) == [0, 0, 1, 1]
        assert [line["error"] for line in lines if "error" in line] == ["FlightTimeout"] * 2
        assert all(line["fell_back"] for line in lines if "value" in line)
        assert executions(real_redis, procs.prefix) == 1
    else:
        assert not [line for line in lines if "error" in line or line["fell_back"]]
        assert executions(real_redis, procs.prefix) == 1 + 4


def test_a_follower_connection_killed_while_kept_is_replaced_transparently(
    real_redis: redis.Redis, keys: Keys, key_prefix: str
) -> None:
    name = f"cbtest-{key_prefix.strip(':').replace(':', '-')}"
    client = redis.Redis.from_url(TEST_REDIS_URL, client_name=name)
    follower = DistributedFlight(client, keys, stats=FlightStats(), recheck_s=0.05)
    leader = DistributedFlight(real_redis, keys, stats=FlightStats(), recheck_s=0.05)
    fk = FlightKeys.of(keys, FLIGHT)

    def follow_once() -> int:
        def build(lease: FlightLease) -> int:
            until(lambda: subscribed(real_redis, keys) >= 1)
            return lease.epoch

        with ThreadPoolExecutor(1) as pool:
            led = pool.submit(leader.run, FLIGHT, build)
            until(lambda: real_redis.get(fk.lease) is not None)
            value = int(follower.run(FLIGHT, lambda lease: -1).value)
            assert led.result().led
        return value

    try:
        first = follow_once()
        ours = [c["id"] for c in real_redis.client_list() if c.get("name") == name]
        assert ours, "the follower's connections are not visible"
        for client_id in ours:  # what a Redis restart or an idle timeout does to them
            real_redis.client_kill_filter(_id=client_id)

        assert follow_once() == first + 1
    finally:
        follower.close()
        client.close()
