"""Scenario 3: OneRoster answers 503 to everything for a while, under read and event traffic.

Worker and API talk to two simulator servers over one catalog, so their upstream requests are
counted apart. During the outage every read of a built course must still answer (an old
bundle, flagged ``X-Bundle-Stale: true`` once it is past freshness), the upstream request rate
must stay within what the retry policies allow, and after the outage every course must
converge to a fresh build with no change lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from core.events.publisher import publish_events
from tests.faults import figures
from tests.faults.harness import (
    API_TOKEN,
    Sizes,
    System,
    api_client,
    running_system,
    sizes,
    small_catalog,
)
from tests.faults.oracle import Mutator, Oracle, make_event, targets_of
from tests.faults.traffic import Answer, MutationStream, Readers, errors_of, statuses
from worker.simulator.catalog import Catalog, generate_catalog
from worker.simulator.testing import SimulatorHandle, run_simulator_in_thread

pytestmark = [
    pytest.mark.faults,
    pytest.mark.integration,
    pytest.mark.timeout(240 + sizes().outage_s * 2),
]

SCENARIO = "oneroster outage"
FRESH_S = 2  # bundles older than this are answered stale (and refreshed) during the outage
CHECK_S = 2.0  # the API's near-cache backstop: one refresh per course per process this often
MAX_ATTEMPTS = 3
RECONCILE_S = 5.0
OVERRIDES = {
    "CB_BUNDLE_FRESH_S": str(FRESH_S),
    "CB_NEAR_CACHE_CHECK_S": str(CHECK_S),
    "CB_ONEROSTER_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "CB_RECONCILE_PERIOD_S": str(RECONCILE_S),
    "CB_REBUILD_LEASE_MS": "3000",
    # Above the longest countdown the rebuild retries schedule (60 s), as docs/celery.md asks.
    "CB_BROKER_VISIBILITY_TIMEOUT_S": "90",
}


@dataclass
class OutageRun:
    answers: list[Answer]
    outage_start: float
    outage_end: float
    worker_requests: int
    api_requests: int
    events_during: int
    course_ids: list[str]
    converge_s: float
    lost: list[tuple[str, str]]
    stream: MutationStream
    worker_log_during: str


def _post(client: httpx.Client, event: dict[str, Any]) -> None:
    resp = client.post(
        "/v1/events", content=orjson.dumps(event), headers={"content-type": "application/json"}
    )
    if resp.status_code != 202:
        raise RuntimeError(f"event refused: {resp.status_code}")


def _run(
    system: System, sim: SimulatorHandle, api_sim: SimulatorHandle, catalog: Catalog, sz: Sizes
) -> OutageRun:
    course_ids = sorted(c["sourcedId"] for c in catalog.records("courses"))
    system.start_api()
    worker = system.start_worker()
    system.start_beat()
    system.wait_worker_consuming(worker)
    store = system.store()
    oracle = Oracle(system.settings, course_ids)
    client = api_client(system)
    for course_id in course_ids:
        _post(client, make_event("course.updated", course_id, course_id))
    oracle.wait_converged(store, timeout=60, on_timeout=system.log_tail)
    expected = oracle.expected()
    paths = [f"/v1/courses/{c}/bundle" for c in course_ids]
    for course_id, doc in expected.items():
        unit = doc["units"][0]
        lesson = unit["lessons"][0]["slug"]
        paths.append(f"/v1/courses/{course_id}/units/{unit['slug']}/lessons/{lesson}")
    for path in paths:  # the API holds every course before the outage
        assert client.get(path).status_code == 200

    mutator = Mutator(catalog, targets_of(expected))
    stream = MutationStream(mutator, lambda e: _post(client, e), interval_s=0.5)
    readers = Readers(system.api_url, API_TOKEN, paths, threads=3)
    worker_log = system.workdir / "worker.log"
    readers.start()
    stream.start()
    try:
        time.sleep(FRESH_S + 1.0)  # every bundle is now past its freshness
        published_before = stream.published
        log_mark = worker_log.stat().st_size
        for handle in (sim, api_sim):
            handle.set_faults(outage=True, retry_after_s=1)
            handle.reset_stats()
        outage_start = time.monotonic()
        time.sleep(sz.outage_s)
        worker_requests = sim.stats()["requests"]
        api_requests = api_sim.stats()["requests"]
        events_during = stream.published - published_before
        for handle in (sim, api_sim):
            handle.clear_faults()
        outage_end = time.monotonic()
        stream.stop()  # no change after the outage: the convergence measured is the outage's
        with worker_log.open("rb") as fh:
            fh.seek(log_mark)
            worker_log_during = fh.read().decode(errors="replace")
        oracle.wait_converged(store, timeout=150, on_timeout=system.log_tail)
        converge_s = time.monotonic() - outage_end
        time.sleep(max(0.0, outage_end + 2.0 - time.monotonic()))  # readers see the recovery
    finally:
        stream.stop()
        readers.stop()
    client.close()
    return OutageRun(
        answers=readers.snapshot(),
        outage_start=outage_start,
        outage_end=outage_end,
        worker_requests=worker_requests,
        api_requests=api_requests,
        events_during=events_during,
        course_ids=course_ids,
        converge_s=converge_s,
        lost=mutator.lost(store),
        stream=stream,
        worker_log_during=worker_log_during,
    )


@dataclass
class OutageSystem:
    system: System
    sim: SimulatorHandle
    api_sim: SimulatorHandle
    catalog: Catalog


@pytest.fixture(scope="module")
def outage_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageSystem]:
    catalog = generate_catalog(small_catalog(4, seed=31))
    workdir = Path(tmp_path_factory.mktemp("outage"))
    with (
        run_simulator_in_thread(catalog=catalog) as sim,
        run_simulator_in_thread(catalog=catalog) as api_sim,
        running_system(
            workdir, sim.base_url, overrides=OVERRIDES, api_sim_url=api_sim.base_url
        ) as system,
    ):
        yield OutageSystem(system, sim, api_sim, catalog)


@pytest.fixture(scope="module")
def outage_run(outage_system: OutageSystem) -> OutageRun:
    s = outage_system
    run = _run(s.system, s.sim, s.api_sim, s.catalog, sizes())
    _record(run)
    return run


def _policy_bound(seconds: float, clients: int, retry_after_s: float = 1.0) -> float:
    """Most requests ``clients`` sequential OneRoster callers can send in ``seconds`` while every
    answer is a 503 with Retry-After: each call tries MAX_ATTEMPTS times, waiting in between."""
    per_call_s = (MAX_ATTEMPTS - 1) * retry_after_s
    return clients * (seconds / per_call_s + 1) * MAX_ATTEMPTS


WORKER_CLIENTS = 2  # --concurrency 2: two pool processes, one task each
API_CLIENTS = 2  # worker/api/services.py REFRESH_THREADS: stale bundles refresh in the background


def _during(run: OutageRun) -> list[Answer]:
    return [a for a in run.answers if run.outage_start <= a.at <= run.outage_end]


def _record(run: OutageRun) -> None:
    during = _during(run)
    seconds = run.outage_end - run.outage_start
    log = run.worker_log_during
    figures.record(SCENARIO, "outage length", seconds, "s")
    figures.record(SCENARIO, "reads during the outage", len(during))
    figures.record(SCENARIO, "read answers by status", repr(dict(sorted(statuses(during).items()))))
    figures.record(SCENARIO, "client-visible 5xx / no answer", len(errors_of(during)))
    figures.record(SCENARIO, "answers flagged X-Bundle-Stale", sum(a.stale for a in during))
    figures.record(SCENARIO, "events posted during the outage", run.events_during)
    figures.record(SCENARIO, "worker upstream requests", run.worker_requests)
    figures.record(SCENARIO, "worker upstream rate", run.worker_requests / seconds, "req/s")
    figures.record(
        SCENARIO, "worker requests the retry policy allows", _policy_bound(seconds, WORKER_CLIENTS)
    )
    figures.record(SCENARIO, "API upstream requests", run.api_requests)
    figures.record(SCENARIO, "API upstream rate", run.api_requests / seconds, "req/s")
    figures.record(
        SCENARIO, "API requests the retry policy allows", _policy_bound(seconds, API_CLIENTS)
    )
    figures.record(SCENARIO, "rebuild retries scheduled (worker log)", log.count("rebuild_retry"))
    figures.record(
        SCENARIO, "reconcile probes failed (worker log)", log.count("reconcile_probe_failed")
    )
    figures.record(SCENARIO, "time to converge after the outage", run.converge_s, "s")
    figures.record(SCENARIO, "lost changes", len(run.lost))


def test_built_courses_answer_throughout_the_outage(outage_run: OutageRun) -> None:
    during = _during(outage_run)
    assert len(during) > 50
    assert errors_of(during) == []
    assert {a.status for a in during} == {200}


def test_answers_past_freshness_are_flagged_stale(outage_run: OutageRun) -> None:
    during = _during(outage_run)
    assert sum(a.stale for a in during) > 0


def test_upstream_requests_during_the_outage_stay_within_the_retry_policy(
    outage_run: OutageRun,
) -> None:
    seconds = outage_run.outage_end - outage_run.outage_start
    assert outage_run.worker_requests <= _policy_bound(seconds, WORKER_CLIENTS)
    assert outage_run.api_requests <= _policy_bound(seconds, API_CLIENTS)
    # Reads do not turn into upstream calls: thousands of reads, a handful of refreshes.
    assert outage_run.api_requests * 10 < len(_during(outage_run))


def test_no_change_is_lost_and_courses_converge_after_the_outage(outage_run: OutageRun) -> None:
    assert outage_run.stream.gave_up == 0
    assert outage_run.lost == []


def _chain_attempts(seconds: float) -> int:
    """Most rebuild attempts one retry chain makes in ``seconds`` (tasks/rebuild.py's policy:
    0.5 s doubling, capped at 60 s, jitter down to half, 8 retries)."""
    attempts, elapsed = 1, 0.0
    for failures in range(8):
        elapsed += min(60.0, 0.5 * 2**failures) * 0.5
        if elapsed > seconds:
            break
        attempts += 1
    return attempts


def test_rebuild_attempts_per_course_follow_one_backoff_when_oneroster_fails_fast(
    outage_system: OutageSystem, outage_run: OutageRun
) -> None:
    s = outage_system
    course_id = outage_run.course_ids[0]
    store = s.system.store()
    oracle = Oracle(s.system.settings, outage_run.course_ids)
    mutator = Mutator(
        s.catalog, [t for t in targets_of(oracle.expected()) if t.course_ids == (course_id,)]
    )
    seconds = 10.0  # long enough for retry chains to pile up, in the subset too
    # Connection refused or "Retry-After: 0": every upstream call fails at once.
    s.sim.set_faults(outage=True, retry_after_s=0)
    s.sim.reset_stats()
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            publish_events(mutator.mutate(), settings=s.system.settings)
            time.sleep(0.2)
        course_reads = sum(
            n
            for path, n in s.sim.stats()["paths"].items()
            if path.endswith(f"/courses/{course_id}")
        )
    finally:
        s.sim.clear_faults()
    oracle.wait_converged(store, timeout=120, on_timeout=s.system.log_tail)
    attempts = course_reads / MAX_ATTEMPTS  # each attempt reads the course, retried in-client
    reconciles = int(seconds / RECONCILE_S) + 1
    allowed = _chain_attempts(seconds) + 2 * reconciles  # one chain, plus a probe and a requeue
    figures.record(SCENARIO, "fast-fail outage: events for one course", mutator.count)
    figures.record(SCENARIO, "fast-fail outage: rebuild attempts on that course", attempts)
    figures.record(SCENARIO, "fast-fail outage: attempts one backoff schedule allows", allowed)
    assert attempts <= allowed
