"""Scenario 5: duplicated and reordered events racing concurrent rebuilds (property-based).

Hypothesis draws a schedule for one course: upstream changes in order, their events delivered
in any order after the change (some twice through the publisher, which dedupes, some again
straight onto the broker, as a redelivery would), extra rebuild messages, and rebuilds run
in-line from the test process at the same time (as the API's read-through does). A thread
watches the stored generation all along. Properties: the stored generation never goes down,
and once quiet the bundle equals a fresh build. No beat runs here, so reconcile cannot mend
what the event path got wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events.broker import default_sender
from core.events.publisher import publish_events
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import fetch_course_records
from core.pipeline.rebuild import Rebuilder
from tests.faults import figures
from tests.faults.harness import System, running_system, sizes, small_catalog, wait_until
from tests.faults.oracle import Mutator, Oracle, Target, make_event, normalize, targets_of
from worker.celery_app import REBUILDS_QUEUE, TASK_REBUILD
from worker.simulator.catalog import Catalog, generate_catalog
from worker.simulator.testing import run_simulator_in_thread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(1200)]

SCENARIO = "duplicates and disorder"

Step = tuple[str, Any]


@dataclass
class DisorderSystem:
    system: System
    catalog: Catalog
    course_ids: list[str]
    targets: dict[str, list[Target]]
    stats: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def disorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DisorderSystem]:
    catalog = generate_catalog(small_catalog(3, seed=51))
    course_ids = sorted(c["sourcedId"] for c in catalog.records("courses"))
    workdir = Path(tmp_path_factory.mktemp("disorder"))
    with (
        run_simulator_in_thread(catalog=catalog) as sim,
        running_system(workdir, sim.base_url) as system,
    ):
        worker = system.start_worker()
        system.wait_worker_consuming(worker)
        oracle = Oracle(system.settings, course_ids)
        for course_id in course_ids:
            publish_events(
                make_event("course.updated", course_id, course_id), settings=system.settings
            )
        oracle.wait_converged(system.store(), timeout=60, on_timeout=system.log_tail)
        targets = targets_of(oracle.expected())
        own = {c: [t for t in targets if t.course_ids == (c,)] for c in course_ids}
        yield DisorderSystem(system, catalog, course_ids, own)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, list[Step]]:
    """(course index, steps): changes in order, each delivered after it, in any order, often
    more than once, with extra rebuild messages, in-line rebuilds and pauses in between."""
    course = draw(st.integers(0, 2))
    changes = draw(st.integers(1, 4))
    steps: list[Step] = []
    made = 0
    for _ in range(draw(st.integers(changes, 14))):
        options = ["rebuild-message", "rebuild-inline", "pause"]
        if made < changes:
            options.append("change")
        if made:
            options += ["deliver", "deliver", "redeliver"]
        op = draw(st.sampled_from(options))
        if op == "change":
            steps.append(("change", made))
            made += 1
        elif op in ("deliver", "redeliver"):
            steps.append((op, draw(st.integers(0, made - 1))))
        elif op == "pause":
            steps.append(("pause", draw(st.sampled_from([0.0, 0.02, 0.1, 0.3]))))
        else:
            steps.append((op, None))
    while made < changes:
        steps.append(("change", made))
        made += 1
    # Every change is announced at least once, somewhere after it happened.
    for j in range(changes):
        if ("deliver", j) not in steps and ("redeliver", j) not in steps:
            after = steps.index(("change", j)) + 1
            steps.insert(draw(st.integers(after, len(steps))), ("deliver", j))
    return course, steps


class GenerationWatch:
    """Polls the stored generation of one course; remembers every value seen, in order."""

    def __init__(self, system: System, course_id: str) -> None:
        self._store = system.store()
        self._course_id = course_id
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="generation-watch", daemon=True)

    def __enter__(self) -> GenerationWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            gen = self._store.generation(self._course_id) or 0
            if not self.seen or self.seen[-1] != gen:
                self.seen.append(gen)
            self._stop.wait(0.002)

    def drops(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in zip(self.seen, self.seen[1:], strict=False) if b < a]


def _quiet_and_equal(system: System, course_id: str, want: Any) -> bool:
    client = system.redis()
    try:
        busy = client.exists(system.keys.dirty(course_id), system.keys.rebuild_lease(course_id))
        store = system.store(client)
        return not busy and normalize(store.read_doc(course_id)) == want
    finally:
        client.close()


def test_generations_never_go_down_and_bundles_match_a_fresh_build(
    disorder: DisorderSystem,
) -> None:
    system = disorder.system
    settings_ = system.settings
    sender = default_sender(settings_)
    oracle = Oracle(settings_, disorder.course_ids)
    totals = {"examples": 0, "steps": 0, "deliveries": 0, "duplicates": 0, "inline": 0}
    converge: list[float] = []

    @settings(
        max_examples=sizes().disorder_examples,
        deadline=None,
        database=None,
        derandomize=not sizes().full,
        suppress_health_check=list(HealthCheck),
    )
    @given(schedule=schedules())
    def one(schedule: tuple[int, list[Step]]) -> None:
        index, steps = schedule
        course_id = disorder.course_ids[index]
        mutator = Mutator(disorder.catalog, disorder.targets[course_id])
        events: list[dict[str, Any]] = []
        inline: list[threading.Thread] = []
        delivered: set[int] = set()
        with GenerationWatch(system, course_id) as watch:
            for op, arg in steps:
                if op == "change":
                    events.append(mutator.mutate())
                elif op == "deliver":
                    result = publish_events(events[arg], settings=settings_)
                    totals["duplicates"] += result.duplicates
                    totals["deliveries"] += 1
                    delivered.add(arg)
                elif op == "redeliver":
                    sender.send([events[arg]])  # the broker hands the same message out again
                    totals["duplicates"] += arg in delivered
                    totals["deliveries"] += 1
                    delivered.add(arg)
                elif op == "rebuild-message":
                    sender._app.send_task(  # a duplicated rebuild message
                        TASK_REBUILD, args=[course_id], queue=REBUILDS_QUEUE
                    )
                elif op == "rebuild-inline":
                    thread = threading.Thread(target=_rebuild_inline, args=(system, course_id))
                    thread.start()
                    inline.append(thread)
                    totals["inline"] += 1
                else:
                    time.sleep(arg)
            for thread in inline:
                thread.join(timeout=30)
            want = oracle.fresh(course_id)
            started = time.monotonic()
            wait_until(
                lambda: _quiet_and_equal(system, course_id, want),
                timeout=60,
                what=f"{course_id} quiet and equal to a fresh build after {steps}",
            )
            converge.append(time.monotonic() - started)
            time.sleep(0.3)  # late stragglers (deferred messages) must not move it back
        assert watch.drops() == [], f"generation went down: {watch.seen} after {steps}"
        assert normalize(system.store().read_doc(course_id)) == want
        totals["examples"] += 1
        totals["steps"] += len(steps)

    one()
    for name, value in totals.items():
        figures.record(SCENARIO, name, value)
    figures.record(SCENARIO, "slowest quiet-and-equal after the last step", max(converge), "s")


def _rebuild_inline(system: System, course_id: str) -> None:
    """A rebuild outside the worker, as the API's read-through runs one (fenced the same way)."""
    client = system.redis()
    try:
        with OneRosterClient(system.settings) as oneroster:
            rebuilder = Rebuilder(
                system.store(client), lambda c: fetch_course_records(oneroster, c)
            )
            rebuilder.rebuild(course_id)
    finally:
        client.close()
