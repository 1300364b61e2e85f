"""Publish safety end to end: a real worker and API on the real Redis, a simulator made to drift.

An upstream blip (lists answering 200 empty, a course answering 404) never reaches readers; real
changes still publish (at once with their delete events, after the confirmation delay without);
rollback and pin through the CLI are seen by a running API within a second.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from core.bundle.holds import PublishHolds
from core.events.publisher import publish_events
from tests.conftest import TEST_REDIS_URL
from tests.integration.pipeline_harness import (
    REDIS_BROKER_URL,
    ROOT,
    Pipeline,
    make_pipeline,
    purge_broker,
)
from tests.integration.test_pipeline import event
from worker.simulator.catalog import CatalogConfig
from worker.simulator.testing import run_simulator_in_thread
from worker.supervise import free_port

pytestmark = pytest.mark.integration

TOKEN = "publish-safety-read"
CONFIRM_DELAY_S = 4.0


class Api:
    """A uvicorn API process reading the same Redis."""

    def __init__(self, env: dict[str, str]) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable, "-m", "uvicorn", "worker.api.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("the API did not start")

    def bundle(self, course_id: str) -> tuple[int, dict[str, Any]]:
        resp = httpx.get(
            f"{self.base}/v1/courses/{course_id}/bundle",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        if resp.status_code != 200:
            return resp.status_code, {}
        return 200, resp.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Any, Api]]:
    prefix = f"cbtest:pub-{uuid.uuid4().hex[:8]}:"
    with run_simulator_in_thread(CatalogConfig(courses=2, deleted_share=0.0)) as sim:
        purge_broker(REDIS_BROKER_URL)
        pipe = make_pipeline(
            sim_url=sim.base_url,
            key_prefix=prefix,
            broker_url=REDIS_BROKER_URL,
            redis_url=TEST_REDIS_URL,
            log_path=Path(tmp_path_factory.mktemp("worker")) / "worker.log",
        )
        pipe.env.update(
            {
                "CB_PUBLISH_CONFIRM_DELAY_S": str(CONFIRM_DELAY_S),
                "CB_API_TOKENS": orjson.dumps({TOKEN: ["read"]}).decode(),
                "CB_NEAR_CACHE_CHECK_S": "0.5",
            }
        )
        pipe.start_worker()
        api = Api(pipe.env)
        try:
            yield pipe, sim, api
        finally:
            api.stop()
            pipe.stop_workers()
            purge_broker(REDIS_BROKER_URL)
            for key in pipe.redis.scan_iter(match=f"{prefix}*", count=1000):
                pipe.redis.delete(key)
            pipe.redis.close()


def courses(sim: Any) -> list[str]:
    return sorted(c["sourcedId"] for c in sim.catalog.records("courses") if c["status"] == "active")


def publish(pipe: Pipeline, *events: dict[str, Any]) -> None:
    assert publish_events(list(events), settings=pipe.settings).accepted == len(events)


def built(pipe: Pipeline, course_id: str) -> int:
    """Build the course through an event and wait until it is quiet; its generation."""
    publish(pipe, event("course.updated", course_id, course_id))
    pipe.wait_for(lambda: pipe.generation(course_id) > 0)
    return pipe.wait_quiet(course_id, settle=0.5)


def holds(pipe: Pipeline) -> PublishHolds:
    return PublishHolds(pipe.redis, pipe.keys, removals_ttl_s=3600)


def cli(pipe: Pipeline, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=ROOT,
        env=pipe.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def units_of(doc: dict[str, Any]) -> int:
    return len(doc.get("units", []))


def test_empty_lists_never_reach_readers_and_the_next_event_publishes_the_real_change(
    world: tuple[Pipeline, Any, Api],
) -> None:
    pipe, sim, api = world
    course_id = courses(sim)[0]
    good = built(pipe, course_id)
    status, before = api.bundle(course_id)
    assert status == 200 and units_of(before) > 0
    sim.set_faults(drift_empty_lists=["courseComponents", "componentResources"], drift_s=2.0)
    publish(pipe, event("course.updated", course_id, course_id))
    pipe.wait_for(lambda: holds(pipe).held(course_id) is not None, timeout=10)
    seen = set()
    while sim.state.faults.list_drifting("courseComponents", now=sim.state.options.clock()):
        status, doc = api.bundle(course_id)
        assert status == 200 and units_of(doc) == units_of(before)
        seen.add(doc["generation"])
        time.sleep(0.05)
    assert seen == {good}
    held = holds(pipe).held(course_id)
    assert held is not None and held.reason in ("all_units", "lessons_lost")
    # The drift is over: a real change upstream and its event publish at once.
    lesson = next(c for c in sim.catalog.components_of(course_id) if c.get("parent"))
    sim.catalog.update("courseComponents", lesson["sourcedId"], title="Renamed after the blip")
    publish(pipe, event("courseComponent.updated", lesson["sourcedId"], course_id))
    pipe.wait_for(lambda: pipe.generation(course_id) > good, timeout=10)
    status, after = api.bundle(course_id)
    titles = {le["title"] for u in after["units"] for le in u["lessons"]}
    assert "Renamed after the blip" in titles and units_of(after) == units_of(before)
    pipe.wait_for(lambda: holds(pipe).held(course_id) is None, timeout=5)


def test_a_transient_404_deletes_nothing(world: tuple[Pipeline, Any, Api]) -> None:
    pipe, sim, api = world
    course_id = courses(sim)[1]
    good = built(pipe, course_id)
    sim.set_faults(drift_missing_courses=[course_id], drift_s=2.0)
    publish(pipe, event("course.updated", course_id, course_id))
    pipe.wait_for(lambda: holds(pipe).held(course_id) is not None, timeout=10)
    assert pipe.store.generation(course_id) == good
    status, doc = api.bundle(course_id)
    assert status == 200 and doc["generation"] == good
    # The confirmation re-read finds the course again and keeps it.
    pipe.wait_for(lambda: holds(pipe).held(course_id) is None, timeout=CONFIRM_DELAY_S + 10)
    assert pipe.store.read(course_id) is not None
    sim.clear_faults()


def test_a_real_large_removal_with_its_delete_events_publishes_at_once(
    world: tuple[Pipeline, Any, Api],
) -> None:
    pipe, sim, api = world
    course_id = courses(sim)[0]
    good = built(pipe, course_id)
    units = sorted(
        c["sourcedId"]
        for c in sim.catalog.components_of(course_id)
        if not c.get("parent") and c["status"] == "active"
    )
    removed = units[:-1]
    for unit_id in removed:
        sim.catalog.soft_delete("courseComponents", unit_id)
    try:
        started = time.monotonic()
        publish(pipe, *(event("courseComponent.deleted", u, course_id) for u in removed))
        pipe.wait_for(lambda: pipe.generation(course_id) > good, timeout=10)
        assert time.monotonic() - started < CONFIRM_DELAY_S  # not held for a confirmation
        status, doc = api.bundle(course_id)
        assert status == 200 and [u["sourcedId"] for u in doc["units"]] == units[-1:]
        assert holds(pipe).held(course_id) is None  # never held: nothing to drop
    finally:
        for unit_id in removed:
            sim.catalog.update("courseComponents", unit_id, status="active")


def test_a_held_build_that_persists_upstream_is_published_after_the_delay(
    world: tuple[Pipeline, Any, Api],
) -> None:
    pipe, sim, _api = world
    course_id = courses(sim)[1]
    good = built(pipe, course_id)
    # Every link of the course goes, with no componentResource.deleted events: suspicious.
    links = [
        link["sourcedId"]
        for link in sim.catalog.component_resources_of(course_id)
        if link["status"] == "active"
    ]
    for link_id in links:
        sim.catalog.soft_delete("componentResources", link_id)
    try:
        started = time.monotonic()
        publish(pipe, event("course.updated", course_id, course_id))
        pipe.wait_for(lambda: holds(pipe).held(course_id) is not None, timeout=10)
        assert pipe.store.generation(course_id) == good
        pipe.wait_for(lambda: pipe.generation(course_id) > good, timeout=CONFIRM_DELAY_S + 15)
        assert time.monotonic() - started >= CONFIRM_DELAY_S - 0.2
        doc = pipe.store.read_doc(course_id)
        assert doc is not None and doc["totals"]["resources"] == 0
        pipe.wait_for(lambda: holds(pipe).held(course_id) is None, timeout=5)
    finally:
        for link_id in links:
            sim.catalog.update("componentResources", link_id, status="active")


def test_rollback_and_pin_through_the_cli_reach_a_running_api_within_a_second(
    world: tuple[Pipeline, Any, Api],
) -> None:
    pipe, sim, api = world
    course_id = courses(sim)[0]
    built(pipe, course_id)
    lesson = next(
        c
        for c in sim.catalog.components_of(course_id)
        if c.get("parent") and c["status"] == "active"
    )
    sim.catalog.update("courseComponents", lesson["sourcedId"], title="A bad edit")
    publish(pipe, event("courseComponent.updated", lesson["sourcedId"], course_id))
    bad = pipe.wait_for(lambda: "A bad edit" in titles(api, course_id) and gen(api, course_id))
    cli(pipe, "rollback", course_id, "--pin")
    started = time.monotonic()
    while "A bad edit" in titles(api, course_id):
        assert time.monotonic() - started < 1.0, "the API still serves the bad edit"
        time.sleep(0.02)
    assert gen(api, course_id) > bad
    rolled = gen(api, course_id)
    # Pinned: the next event rebuilds and records, but swaps nothing.
    publish(pipe, event("courseComponent.updated", lesson["sourcedId"], course_id))
    pipe.wait_for(lambda: (h := holds(pipe).held(course_id)) is not None and h.reason == "pinned")
    assert gen(api, course_id) == rolled
    listing = orjson.loads(cli(pipe, "held", "--json"))
    assert [r["courseId"] for r in listing if r["pinned"]] == [course_id]
    shown = orjson.loads(cli(pipe, "inspect", course_id, "--json"))
    assert shown["pinned"] is not None and len(shown["keptGenerations"]) >= 2
    cli(pipe, "unpin", course_id)
    started = time.monotonic()
    pipe.wait_for(lambda: "A bad edit" in titles(api, course_id), timeout=10)
    assert holds(pipe).pinned(course_id) is None
    assert time.monotonic() - started < 10


def titles(api: Api, course_id: str) -> set[str]:
    status, doc = api.bundle(course_id)
    assert status == 200
    return {le["title"] for u in doc["units"] for le in u["lessons"]}


def gen(api: Api, course_id: str) -> int:
    status, doc = api.bundle(course_id)
    assert status == 200
    return int(doc["generation"])


def test_a_real_deletion_still_disappears_within_seconds(world: tuple[Pipeline, Any, Api]) -> None:
    pipe, sim, api = world
    course_id = courses(sim)[1]
    built(pipe, course_id)
    sim.catalog.soft_delete("courses", course_id)
    started = time.monotonic()
    publish(pipe, event("course.updated", course_id, course_id))
    pipe.wait_for(lambda: pipe.store.read(course_id) is None, timeout=10)
    assert time.monotonic() - started < CONFIRM_DELAY_S  # tobedeleted is evidence: no re-read
    deadline = time.monotonic() + 2
    while api.bundle(course_id)[0] != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sim.catalog.update("courses", course_id, status="active")  # for the other tests
