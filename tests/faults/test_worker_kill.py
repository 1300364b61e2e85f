"""Scenario 1: workers SIGKILLed in the middle of rebuilds while changes keep coming.

A stream of upstream changes (each followed by its event) runs throughout. Each round waits
until some course's rebuild lease exists (a rebuild is running), then SIGKILLs either the whole
worker node (main process and pool; a new node is started, as a supervisor would) or only its
pool processes (the main process survives and requeues the task). Afterwards the dirty marks,
the durable schedule and reconcile (beat) must bring every course to exactly what a fresh build
from OneRoster gives, with no change lost. The Redis broker's visibility timeout is an hour, far
longer than the run: nothing may depend on the redelivery of a dead node's messages.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path
from typing import Any, cast

import pytest

from core.bundle.store import BundleStore
from core.events.publisher import publish_events
from tests.faults import figures
from tests.faults.harness import (
    Proc,
    Sizes,
    System,
    running_system,
    sizes,
    small_catalog,
    wait_until,
)
from tests.faults.oracle import Mutator, Oracle, Target, make_event, targets_of, titles_in
from tests.faults.traffic import MutationStream
from worker.simulator.catalog import generate_catalog
from worker.simulator.testing import run_simulator_in_thread

pytestmark = [pytest.mark.faults, pytest.mark.integration]

SCENARIO = "worker kill"
OVERRIDES = {
    # Far longer than the run: a dead node's messages never come back within it.
    "CB_BROKER_VISIBILITY_TIMEOUT_S": "3600",
    "CB_REBUILD_LEASE_MS": "3000",
    "CB_RECONCILE_PERIOD_S": "2",
}


def _leased(system: System, course_ids: list[str]) -> list[str]:
    client = system.redis()
    try:
        pipe = client.pipeline(transaction=False)
        for course_id in course_ids:
            pipe.exists(system.keys.rebuild_lease(course_id))
        return [c for c, held in zip(course_ids, pipe.execute(), strict=True) if held]
    finally:
        client.close()


def _unacked(system: System) -> int:
    client = system.redis(1)
    try:
        return int(cast(Any, client.hlen("unacked")))
    finally:
        client.close()


def _quiet(system: System, course_ids: list[str]) -> bool:
    """No queued messages and no dirty course: the next change starts from a settled system."""
    broker, data = system.redis(1), system.redis()
    try:
        if broker.llen("events") or broker.llen("rebuilds"):
            return False
        return not any(data.exists(system.keys.dirty(c)) for c in course_ids)
    finally:
        broker.close()
        data.close()


def _all_handled(system: System, event_ids: list[str]) -> bool:
    client = system.redis()
    try:
        return bool(
            client.exists(*(system.keys.event_done(e) for e in event_ids)) == len(event_ids)
        )
    finally:
        client.close()


def _kill_round(
    system: System, worker: Proc, mode: str, course_ids: list[str], *, wait_s: float = 30.0
) -> tuple[Proc, bool]:
    """Wait for a rebuild of one of ``course_ids``, kill; the next worker, whether one was hit."""
    system.wait_worker_consuming(worker)
    with contextlib.suppress(AssertionError):  # nothing leased in time: kill anyway
        wait_until(
            lambda: _leased(system, course_ids), timeout=wait_s, interval=0.005, what="a rebuild"
        )
    if mode == "node":
        system.kill_worker_node(worker)
        held = bool(_leased(system, course_ids))
        worker = system.start_worker()
    else:
        killed = system.kill_worker_children(worker)
        assert killed > 0, "the worker had no pool processes to kill"
        held = bool(_leased(system, course_ids))
    return worker, held


def _behind(store: BundleStore, mutator: Mutator, final: dict[str, Target]) -> list[str]:
    """Courses whose stored bundle does not show their last change yet."""
    out = []
    for course_id, target in final.items():
        key = (target.kind, target.record_id)
        if titles_in(store.read_doc(course_id)).get(key) != mutator.last_title[key]:
            out.append(course_id)
    return out


def _one_target_per_course(mutator: Mutator, course_ids: list[str]) -> list[Target]:
    own = [t for t in mutator.targets if len(t.course_ids) == 1 and t.kind != "resource"]
    return [next(t for t in own if t.course_ids[0] == c) for c in course_ids]


def _timeout(sizes: Sizes) -> float:
    return 240 + sizes.kills * 15 + (300 if sizes.full else 0)


@pytest.mark.timeout(_timeout(sizes()))
def test_sigkilled_workers_lose_no_change(tmp_path: Path, fault_sizes: Sizes) -> None:
    catalog = generate_catalog(small_catalog(5))
    course_ids = sorted(c["sourcedId"] for c in catalog.records("courses"))
    rng = random.Random(3)
    with (
        run_simulator_in_thread(catalog=catalog) as sim,
        running_system(tmp_path, sim.base_url, overrides=OVERRIDES) as system,
    ):
        settings = system.settings
        worker = system.start_worker()
        system.start_beat()
        store = system.store()
        oracle = Oracle(settings, course_ids)

        def publish(event: dict[str, Any]) -> None:
            publish_events(event, settings=settings)

        for course_id in course_ids:
            publish(make_event("course.updated", course_id, course_id))
        oracle.wait_converged(store, timeout=60, on_timeout=system.log_tail)

        mutator = Mutator(catalog, targets_of(oracle.expected()))
        # Each upstream request takes 80-160 ms, so a rebuild lasts long enough to be killed in.
        sim.set_faults(latency_ms=80, jitter_ms=80)
        stream = MutationStream(mutator, publish, interval_s=0.12)
        stream.start()
        held_at_kill = 0
        modes: list[str] = []
        try:
            for round_no in range(fault_sizes.kills - 1):
                mode = "node" if round_no % 2 == 0 else "children"
                worker, held = _kill_round(system, worker, mode, course_ids)
                modes.append(mode)
                held_at_kill += held
                time.sleep(rng.uniform(0.3, 1.2))
        finally:
            stream.stop()
        # The last round: one change per course, then the node dies inside their rebuilds, so
        # only redelivery and reconcile can bring these changes in.
        wait_until(lambda: _quiet(system, course_ids), timeout=90, what="the backlog drained")
        final = dict(zip(course_ids, _one_target_per_course(mutator, course_ids), strict=True))
        events = [mutator.mutate(t) for t in final.values()]
        for event in events:
            publish(event)
        by_course = dict(zip(course_ids, events, strict=True))

        def pending_and_running() -> list[str]:
            """Courses whose last change is handled but not yet stored, with a rebuild running."""
            handled = [
                c
                for c in _behind(store, mutator, final)
                if _all_handled(system, [by_course[c]["id"]])
            ]
            return _leased(system, handled)

        system.wait_worker_consuming(worker)
        with contextlib.suppress(AssertionError):
            wait_until(pending_and_running, timeout=20, interval=0.005, what="a pending rebuild")
        hit = pending_and_running()
        system.kill_worker_node(worker)
        held = bool(hit) and bool(_leased(system, hit))
        worker = system.start_worker()
        modes.append("node")
        held_at_kill += held
        final_hit = held
        traffic_end = time.monotonic()
        sim.clear_faults()

        oracle.wait_converged(store, timeout=150, on_timeout=system.log_tail)
        since_last_change = time.monotonic() - traffic_end
        lost = mutator.lost(store)
        unacked_left = _unacked(system)

    figures.record(
        SCENARIO,
        "kills (node / pool children)",
        f"{modes.count('node')} / {modes.count('children')}",
    )
    figures.record(SCENARIO, "kills with a rebuild lease held at the kill", held_at_kill)
    figures.record(
        SCENARIO,
        "changes published (each after its upstream change)",
        stream.published + len(course_ids),
    )
    figures.record(SCENARIO, "lost changes", len(lost))
    figures.record(SCENARIO, "courses differing from a fresh build at the end", 0)
    figures.record(SCENARIO, "time to converge after the last kill", since_last_change, "s")
    figures.record(
        SCENARIO, "messages still unacked (awaiting redelivery) at convergence", unacked_left
    )
    figures.record(SCENARIO, "last kill hit a rebuild carrying a last change", str(final_hit))
    assert held_at_kill >= 1, "no kill landed inside a rebuild"
    assert stream.gave_up == 0
    assert lost == [], f"changes lost: {lost}"
