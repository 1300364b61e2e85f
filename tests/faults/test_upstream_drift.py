"""Scenario: OneRoster drifts (lists answer 200 empty, a built course answers 404) under traffic.

While the drift lasts, events keep arriving and every one of them rebuilds its course from the
drifting upstream. No read may see the drift: every answer is the course's last good bundle
(the generation it had before the drift), nothing is deleted, and held builds are counted. Once
the drift ends, real changes and their events publish, and every course converges to a fresh
build with no change lost. The confirmation delay is longer than the drift, so no held build is
confirmed (a drift that outlasts the delay is, by design, taken as real: docs/bundle.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.faults import figures
from tests.faults.harness import (
    API_TOKEN,
    System,
    api_client,
    running_system,
    sizes,
    small_catalog,
)
from tests.faults.oracle import Mutator, Oracle, make_event, targets_of
from tests.faults.traffic import Answer, Readers, errors_of, statuses
from worker.simulator.catalog import Catalog, generate_catalog
from worker.simulator.testing import SimulatorHandle, run_simulator_in_thread

DRIFT_S = 30.0 if sizes().full else 6.0
CONFIRM_DELAY_S = DRIFT_S + 20.0
pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(180 + DRIFT_S * 2)]

SCENARIO = "upstream drift"
OVERRIDES = {"CB_PUBLISH_CONFIRM_DELAY_S": str(CONFIRM_DELAY_S), "CB_LOG_LEVEL": "INFO"}


@dataclass
class DriftRun:
    answers: list[Answer]
    drift_start: float
    drift_end: float
    good: dict[str, int]  # course -> generation before the drift
    missing_course: str
    events_during: int
    held_logged: int
    still_held_logged: int
    deleted_during: list[str]
    converge_s: float
    lost: list[tuple[str, str]]
    dropped_after: int


def _post(client: httpx.Client, body: object) -> None:
    resp = client.post(
        "/v1/events", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    if resp.status_code != 202:
        raise RuntimeError(f"events refused: {resp.status_code} {resp.text[:200]}")


def _run(system: System, sim: SimulatorHandle, catalog: Catalog) -> DriftRun:
    course_ids = sorted(c["sourcedId"] for c in catalog.records("courses"))
    system.start_api()
    worker = system.start_worker()
    system.start_beat()
    system.wait_worker_consuming(worker)
    store = system.store()
    oracle = Oracle(system.settings, course_ids)
    client = api_client(system)
    _post(client, [make_event("course.updated", c, c) for c in course_ids])
    oracle.wait_converged(store, timeout=60, on_timeout=system.log_tail)
    good = {c: store.generation(c) or 0 for c in course_ids}
    paths = [f"/v1/courses/{c}/bundle" for c in course_ids]
    readers = Readers(system.api_url, API_TOKEN, paths, threads=3)
    worker_log = system.workdir / "worker.log"
    missing = course_ids[-1]
    readers.start()
    try:
        time.sleep(0.5)
        mark = worker_log.stat().st_size
        sim.set_faults(
            drift_empty_lists=["courseComponents", "componentResources"],
            drift_missing_courses=[missing],
            drift_s=DRIFT_S,
        )
        drift_start = time.monotonic()
        events = 0
        while time.monotonic() - drift_start < DRIFT_S - 0.3:
            _post(client, [make_event("course.updated", c, c) for c in course_ids])
            events += len(course_ids)
            time.sleep(0.5)
        while sim.state.faults.list_drifting("courseComponents", now=sim.state.options.clock()):
            time.sleep(0.02)
        drift_end = time.monotonic()
        deleted = [c for c in course_ids if store.read(c) is None]
        with worker_log.open("rb") as fh:
            fh.seek(mark)
            during = fh.read().decode(errors="replace")
        # The drift is over: real changes, announced by their events, publish as usual.
        mutator = Mutator(catalog, targets_of(oracle.expected()))
        after_start = time.monotonic()
        for _ in range(2 * len(course_ids)):
            _post(client, mutator.mutate())
        _post(client, [make_event("course.updated", c, c) for c in course_ids])
        oracle.wait_converged(store, timeout=60, on_timeout=system.log_tail)
        converge_s = time.monotonic() - after_start
        time.sleep(0.5)
    finally:
        readers.stop()
    with worker_log.open("rb") as fh:
        fh.seek(mark)
        after_mark = fh.read().decode(errors="replace")
    client.close()
    return DriftRun(
        answers=readers.snapshot(),
        drift_start=drift_start,
        drift_end=drift_end,
        good=good,
        missing_course=missing,
        events_during=events,
        held_logged=during.count('"publish_held"'),
        still_held_logged=during.count('"publish_still_held"'),
        deleted_during=deleted,
        converge_s=converge_s,
        lost=mutator.lost(store),
        dropped_after=after_mark.count('"publish_dropped"'),
    )


@pytest.fixture(scope="module")
def drift_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftRun]:
    catalog = generate_catalog(small_catalog(4, seed=41))
    workdir = Path(tmp_path_factory.mktemp("drift"))
    with (
        run_simulator_in_thread(catalog=catalog) as sim,
        running_system(workdir, sim.base_url, overrides=OVERRIDES) as system,
    ):
        run = _run(system, sim, catalog)
        _record(run)
        yield run


def _during(run: DriftRun) -> list[Answer]:
    return [a for a in run.answers if run.drift_start <= a.at <= run.drift_end]


def _course_of(answer: Answer) -> str:
    return answer.path.split("/")[3]


def _not_last_good(run: DriftRun) -> list[Answer]:
    return [a for a in _during(run) if a.status != 200 or a.generation != run.good[_course_of(a)]]


def _record(run: DriftRun) -> None:
    during = _during(run)
    figures.record(SCENARIO, "drift length", run.drift_end - run.drift_start, "s")
    figures.record(SCENARIO, "events during the drift", run.events_during)
    figures.record(SCENARIO, "reads during the drift", len(during))
    figures.record(SCENARIO, "read answers by status", repr(dict(sorted(statuses(during).items()))))
    figures.record(SCENARIO, "reads not answering the last good bundle", len(_not_last_good(run)))
    figures.record(SCENARIO, "builds held (publish_held)", run.held_logged)
    figures.record(SCENARIO, "rebuilds of a still held course", run.still_held_logged)
    figures.record(SCENARIO, "courses deleted during the drift", len(run.deleted_during))
    figures.record(SCENARIO, "held builds dropped after the drift", run.dropped_after)
    figures.record(SCENARIO, "real changes posted to every course fresh", run.converge_s, "s")
    figures.record(SCENARIO, "lost changes", len(run.lost))


def test_every_read_during_the_drift_answers_the_last_good_bundle(drift_run: DriftRun) -> None:
    during = _during(drift_run)
    assert len(during) > 50
    assert errors_of(during) == []
    assert _not_last_good(drift_run) == []


def test_the_drift_is_held_not_published_and_nothing_is_deleted(drift_run: DriftRun) -> None:
    assert drift_run.held_logged >= len(drift_run.good)  # every course held at least once
    assert drift_run.deleted_during == []


def test_after_the_drift_every_change_publishes_and_courses_converge(drift_run: DriftRun) -> None:
    assert drift_run.lost == []
    assert drift_run.dropped_after >= len(drift_run.good)  # each held build dropped (recovered)
