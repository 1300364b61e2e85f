"""Issue 19: the whole fleet is one polite OneRoster client.

Two worker nodes, the API (readers building on a miss) and ``bundles warm --all`` run together
against the simulator limited to R requests a second (a token bucket answering 429). The
upstream must see at most 1.1 x R requests in any one-second window after the first, and only
a handful of 429s; one 429 with ``Retry-After: 3`` must leave every process silent for those
3 s, after which every rebuild lands; a worker node killed with SIGKILL in the middle of a
request must leave no slot taken once its lease has expired.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.budget.policy import BudgetPolicy
from core.budget.store import RedisBudget
from tests.faults.harness import (
    ROOT,
    System,
    api_client,
    running_system,
    small_catalog,
    wait_until,
)
from tests.faults.oracle import make_event
from worker.simulator.catalog import Catalog, generate_catalog
from worker.simulator.testing import SimulatorHandle, run_simulator_in_thread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(180)]

R = 20  # the upstream's limit, requests a second; the fleet's budget is set to it
COURSES = 24
LEASE_S = 3.0
OVERRIDES = {
    "CB_ONEROSTER_MAX_RPS": str(R),
    "CB_ONEROSTER_BURST": "2",
    "CB_ONEROSTER_MAX_INFLIGHT": "8",
    "CB_ONEROSTER_BUDGET_LEASE_S": str(LEASE_S),
    "CB_ONEROSTER_MAX_ATTEMPTS": "5",
    "CB_ONEROSTER_DEADLINE_S": "20",
    "CB_COLD_BUILDS_PER_TOKEN": "0",
    "CB_RECONCILE_PERIOD_S": "3600",
}


def windows(timeline: list[list[int]], column: int) -> list[int]:
    """Counts of every one-second window (ten consecutive tenths) after the first second."""
    if not timeline:
        return []
    first = timeline[0][0]
    counts = {row[0]: row[column] for row in timeline}
    last = timeline[-1][0]
    return [
        sum(counts.get(s, 0) for s in range(start, start + 10))
        for start in range(first + 10, max(first + 11, last - 8))
    ]


def budget_of(system: System) -> RedisBudget:
    s = system.settings
    return RedisBudget(
        system.redis(),
        system.keys.budget(s.oneroster_base_url),
        BudgetPolicy.from_settings(s),
    )


def post(system: System, course_id: str) -> None:
    with api_client(system) as client:
        resp = client.post(
            "/v1/events",
            content=orjson.dumps(make_event("course.updated", course_id, course_id)),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 202, resp.text


def generations(system: System, course_ids: list[str]) -> dict[str, int]:
    store = system.store()
    found = {}
    for course_id in course_ids:
        meta = store.meta(course_id)
        if meta is not None:
            found[course_id] = meta.generation
    return found


class ReadLoad:
    """A few API readers reading random courses (cold ones are built by the API: interactive)."""

    def __init__(self, system: System, course_ids: list[str], threads: int = 3) -> None:
        self.system, self.course_ids = system, course_ids
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(i,)) for i in range(threads)]

    def _read(self, seed: int) -> None:
        rng = random.Random(seed)
        with api_client(self.system, timeout=30) as client:
            while not self._stop.is_set():
                course_id = rng.choice(self.course_ids)
                self.statuses.append(client.get(f"/v1/courses/{course_id}/bundle").status_code)
                time.sleep(0.05)

    def __enter__(self) -> ReadLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)


@dataclass
class Fleet:
    system: System
    sim: SimulatorHandle
    catalog: Catalog
    course_ids: list[str]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    catalog = generate_catalog(small_catalog(COURSES, seed=19))
    course_ids = sorted(c["sourcedId"] for c in catalog.records("courses"))
    workdir = Path(tmp_path_factory.mktemp("budget"))
    with (
        run_simulator_in_thread(catalog=catalog) as sim,
        running_system(workdir, sim.base_url, overrides=OVERRIDES) as system,
    ):
        workers = [system.start_worker(concurrency=2), system.start_worker(concurrency=2)]
        system.start_api()
        for worker in workers:
            system.wait_worker_consuming(worker)
        yield Fleet(system, sim, catalog, course_ids)


def warm_all(system: System) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "warm", "--all", "--json", "--workers", "6"],
        cwd=ROOT,
        env=system.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def test_the_fleet_stays_within_the_limit_and_a_429_pauses_everyone(fleet: Fleet) -> None:
    system, sim, course_ids = fleet.system, fleet.sim, fleet.course_ids
    sim.set_faults(rate_limit_rps=R, rate_limit_burst=3)
    sim.reset_stats()
    with ReadLoad(system, course_ids):
        warm = warm_all(system)
        for course_id in course_ids[::3]:  # events for a third of the courses, during the warm
            post(system, course_id)
        out, _ = warm.communicate(timeout=120)
    assert warm.returncode == 0, out[-2000:]
    report = orjson.loads(out)
    assert not report["failures"]
    stats = sim.stats()
    served = windows(stats["timeline"], 1)
    throttled = sum(row[2] for row in stats["timeline"])
    assert served, "no traffic seen"
    assert max(served) <= 1.1 * R, served
    assert throttled <= 5, stats["faultReasons"]
    assert stats["requests"] >= 5 * R  # the run really leaned on the limit for seconds

    # One 429 with Retry-After: 3 in the middle of event traffic: everyone is silent for 3 s.
    before = generations(system, course_ids)
    sim.set_faults(rate_limit_rps=R, rate_limit_burst=3, throttle_next=1, retry_after_s=3)
    sim.reset_stats()
    for course_id in course_ids:
        post(system, course_id)
    wait_until(
        lambda: all(
            generations(system, course_ids).get(c, 0) > before.get(c, 0) for c in course_ids
        ),
        timeout=60,
        what="every rebuild after the pause",
    )
    timeline = sim.stats()["timeline"]
    throttle_slots = [row[0] for row in timeline if row[2]]
    assert len(throttle_slots) == 1, timeline
    slot = throttle_slots[0]
    during = [row for row in timeline if slot + 3 <= row[0] < slot + 29]  # 0.3 s .. 2.9 s after
    assert sum(row[1] for row in during) == 0, during
    assert any(row[0] >= slot + 30 for row in timeline)  # traffic resumed after the pause


def test_bundles_budget_prints_the_state(fleet: Fleet) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "budget", "--json"],
        cwd=ROOT,
        env=fleet.system.env,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    state = orjson.loads(out)
    assert state["maxRps"] == R
    assert state["source"] == "redis"
    assert set(state["waiting"]) == {"interactive", "event", "background"}
    assert state["rate"] > 0


def test_a_killed_worker_frees_its_slot_once_its_lease_expires(fleet: Fleet) -> None:
    system, sim = fleet.system, fleet.sim
    budget = budget_of(system)
    wait_until(lambda: budget.snapshot().inflight == 0, timeout=30, what="an idle fleet")
    sim.set_faults(latency_ms=20_000)  # every request now hangs in flight
    post(system, fleet.course_ids[0])
    wait_until(lambda: budget.snapshot().inflight >= 1, timeout=20, what="a request in flight")
    for worker in system.workers():
        system.kill_worker_node(worker)
    killed_at = time.monotonic()
    sim.clear_faults()
    assert budget.snapshot().inflight >= 1  # the dead process's slot is still taken...
    wait_until(lambda: budget.snapshot().inflight == 0, timeout=LEASE_S + 5, what="lease expiry")
    assert time.monotonic() - killed_at <= LEASE_S + 5  # ...until its lease expires
