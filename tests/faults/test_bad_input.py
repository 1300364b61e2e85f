"""Scenario 4: producers and clients send garbage; nothing crashes and nothing valid is lost.

Hypothesis draws malformed events (wrong types, missing fields, bad values, too large, too
deep, not UTF-8, not JSON, not an object, wrong content type) and sends each one through one of
the ways in: HTTP (``POST /v1/events``), the Python publisher, or straight onto the broker (as a
buggy producer or a corrupted message would, bypassing validation). Valid events are mixed in.
Every bad one must be refused with a reason (HTTP problem, ``InvalidEvent``) or dead-lettered by
the worker; every valid one must be applied; the API and the worker must keep running. Then
malformed API requests (paths, query strings, headers, broken HTTP) and schemathesis over the
whole OpenAPI document against the real processes.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import celery
import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.errors import InvalidEvent
from core.events.broker import EVENTS_QUEUE, TASK_HANDLE_EVENT, build_publisher_app
from core.events.dlq import DeadLetters
from core.events.publisher import publish_events
from tests.faults import figures
from tests.faults.badinput import BadEvent, BadRequest, bad_events, bad_requests, valid_event
from tests.faults.harness import (
    API_TOKEN,
    Proc,
    System,
    children_of,
    running_system,
    sizes,
    small_catalog,
    wait_until,
)
from worker.simulator.catalog import generate_catalog
from worker.simulator.testing import SimulatorHandle, run_simulator_in_thread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(900)]

SCENARIO = "bad input"
PROBLEM = "application/problem+json"
COURSE_LIST = "/ims/oneroster/rostering/v1p2/courses"
REFUSED = {400, 413, 415, 422}
PARSER_REFUSAL = b"Invalid HTTP request received."
CRASH_MARKERS = ("WorkerLostError", "Unrecoverable error", "exited with 'signal", "CRITICAL")


@dataclass
class BadSystem:
    system: System
    sim: SimulatorHandle
    worker: Proc
    api: Proc
    broker_app: celery.Celery
    course_ids: list[str]
    pool_pids: set[int]
    tallies: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def bad_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadSystem]:
    catalog = generate_catalog(small_catalog(3, seed=41))
    course_ids = sorted(c["sourcedId"] for c in catalog.records("courses"))
    workdir = Path(tmp_path_factory.mktemp("bad-input"))
    with (
        run_simulator_in_thread(catalog=catalog) as sim,
        running_system(workdir, sim.base_url) as system,
    ):
        api = system.start_api()
        worker = system.start_worker()
        system.wait_worker_consuming(worker)
        app = build_publisher_app(system.redis_server.url(1), visibility_timeout_s=90)
        yield BadSystem(system, sim, worker, api, app, course_ids, set(children_of(worker.pid)))
        app.close()


def _reason(resp: httpx.Response) -> str:
    doc = resp.json()
    reasons = [r for e in doc.get("errors") or [] for r in e.get("reasons") or [e.get("reason")]]
    return "; ".join(str(r) for r in reasons if r) or str(doc.get("detail") or "")


def _done(system: System, event_ids: list[str]) -> list[str]:
    client = system.redis()
    try:
        pipe = client.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.exists(system.keys.event_done(event_id))
        return [e for e, hit in zip(event_ids, pipe.execute(), strict=True) if not hit]
    finally:
        client.close()


def _alive(bad: BadSystem) -> None:
    assert bad.api.alive(), bad.api.log()[-3000:]
    assert httpx.get(bad.system.api_url + "/healthz", timeout=5).status_code == 200
    assert bad.worker.alive(), bad.worker.log()[-3000:]
    log = bad.worker.log()
    assert not [m for m in CRASH_MARKERS if m in log], log[-3000:]
    # The same pool processes: none died and was replaced behind the main process's back.
    assert set(children_of(bad.worker.pid)) == bad.pool_pids


def test_malformed_events_are_refused_or_dead_lettered_and_valid_ones_applied(
    bad_system: BadSystem,
) -> None:
    bad = bad_system
    system = bad.system
    settings_ = system.settings
    dlq = DeadLetters(system.redis(), system.keys)
    dlq_before = dlq.count()
    valid_ids: list[str] = []
    tally = bad.tallies
    http = httpx.Client(
        base_url=system.api_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
    )

    def send_valid(how: str, course_id: str) -> None:
        event = valid_event(course_id)
        if how == "http":
            resp = http.post(
                "/v1/events",
                content=orjson.dumps(event),
                headers={"content-type": "application/json"},
            )
            assert resp.status_code == 202, resp.text
        else:
            assert publish_events(event, settings=settings_).accepted == 1
        valid_ids.append(event["id"])
        tally[f"valid via {how}"] += 1

    @settings(
        max_examples=sizes().bad_events,
        deadline=None,
        database=None,
        derandomize=not sizes().full,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        event=bad_events(bad.course_ids),
        channel=st.sampled_from(["http", "http", "publisher", "broker"]),
        valid=st.sampled_from([None, None, "http", "publisher"]),
        course=st.sampled_from(bad.course_ids),
    )
    def one(event: BadEvent, channel: str, valid: str | None, course: str) -> None:
        if channel == "broker" and not event.brokerable:
            channel = "http"
        if channel == "publisher" and event.kind == "content-type":
            channel = "http"  # only its content type was wrong: as a mapping it is valid
        if channel == "http":
            resp = http.post(
                "/v1/events", content=event.body, headers={"content-type": event.content_type}
            )
            assert resp.status_code in REFUSED, (event.kind, resp.status_code, resp.text[:300])
            assert resp.headers["content-type"].startswith(PROBLEM)
            assert _reason(resp), resp.text[:300]
            tally[f"http {resp.status_code}"] += 1
        elif channel == "publisher":
            payload = event.value if event.has_value and event.kind != "huge" else event.body
            with pytest.raises(InvalidEvent) as refused:
                publish_events(payload, settings=settings_)
            assert refused.value.reasons
            tally["publisher refused"] += 1
        else:
            bad.broker_app.send_task(TASK_HANDLE_EVENT, args=[event.value], queue=EVENTS_QUEUE)
            tally["broker (to dead-letter)"] += 1
        tally[f"kind {event.kind}"] += 1
        if valid is not None:
            send_valid(valid, course)

    started = time.monotonic()
    one()
    sent_s = time.monotonic() - started
    http.close()
    expected_dead = tally["broker (to dead-letter)"]
    wait_until(lambda: not _done(system, valid_ids), timeout=180, what="every valid event applied")
    wait_until(
        lambda: dlq.count() - dlq_before >= expected_dead,
        timeout=180,
        what=f"{expected_dead} dead letters",
    )
    time.sleep(1.0)  # nothing more arrives in the dead-letter store than was sent there
    letters = dlq.list(limit=expected_dead + 1000)
    _alive(bad)

    total = sum(v for k, v in tally.items() if k.startswith("kind "))
    figures.record(SCENARIO, "malformed events sent", total)
    figures.record(SCENARIO, "valid events mixed in", len(valid_ids))
    figures.record(SCENARIO, "sending took", sent_s, "s")
    for key in sorted(tally):
        figures.record(SCENARIO, key, tally[key])
    figures.record(SCENARIO, "dead letters written", dlq.count() - dlq_before)
    figures.record(SCENARIO, "valid events not applied", len(_done(system, valid_ids)))
    assert dlq.count() - dlq_before == expected_dead
    assert all(letter.reason.strip() for letter in letters)
    assert {letter.source for letter in letters} <= {"worker"}


def test_an_oversized_event_on_the_broker_is_dead_lettered(bad_system: BadSystem) -> None:
    system = bad_system.system
    event = valid_event(bad_system.course_ids[0])
    event["data"]["padding"] = "x" * (70 * 1024)
    bad_system.broker_app.send_task(TASK_HANDLE_EVENT, args=[event], queue=EVENTS_QUEUE)
    client = system.redis()
    dlq = DeadLetters(client, system.keys)

    def dead_lettered() -> bool:
        return any(event["id"] in d.payload for d in dlq.list(limit=100_000))

    try:
        wait_until(
            lambda: client.exists(system.keys.event_done(event["id"])) or dead_lettered(),
            timeout=60,
            what="the oversized event handled",
        )
        assert dead_lettered(), "the worker applied an event larger than 64 KiB"
    finally:
        client.close()


# --- malformed requests ---------------------------------------------------------------------------
def _dot_course_id(req: BadRequest) -> bool:
    """A course id of "." or "..": refused since the fix pinned by the test below."""
    path = urllib.parse.unquote_to_bytes(req.raw_path.partition(b"?")[0])
    return path.startswith((b"/v1/courses/./", b"/v1/courses/../"))


@pytest.mark.parametrize("course_id", [".", "%2e"])
def test_dot_segment_course_ids_answer_not_found(bad_system: BadSystem, course_id: str) -> None:
    port = int(bad_system.system.api_url.rsplit(":", 1)[1])
    auth = [(b"authorization", f"Bearer {API_TOKEN}".encode())]
    path = f"/v1/courses/{course_id}/bundle".encode()
    lists_before = bad_system.sim.stats()["paths"].get(COURSE_LIST, 0)
    answer = _send(port, BadRequest("GET", path, auth))
    lists_after = bad_system.sim.stats()["paths"].get(COURSE_LIST, 0)
    assert (answer.status, lists_after - lists_before) in ((404, 0), (422, 0)), answer


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def _send(port: int, req: BadRequest) -> RawAnswer:
    """Send the request byte for byte (no client library tidies it up); read the answer."""
    lines = [req.method.encode() + b" " + req.raw_path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in req.headers]
    lines += [b"Content-Length: " + str(len(req.body)).encode(), b"Connection: close"]
    reply = _raw(port, b"\r\n".join(lines) + b"\r\n\r\n" + req.body, half_close=False)
    assert reply, f"no answer at all to {req}"
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), headers, body)


def test_malformed_requests_get_client_errors_never_server_errors(bad_system: BadSystem) -> None:
    port = int(bad_system.system.api_url.rsplit(":", 1)[1])
    seen: Counter[int | str] = Counter()

    @settings(
        max_examples=sizes().bad_requests,
        deadline=None,
        database=None,
        derandomize=not sizes().full,
        suppress_health_check=list(HealthCheck),
    )
    @given(req=bad_requests(API_TOKEN))
    def one(req: BadRequest) -> None:
        answer = _send(port, req)
        if answer.status == 502 and _dot_course_id(req):
            seen["502 (dot-segment course id, xfail below)"] += 1
            return
        assert answer.status < 500, (req, answer)
        if answer.status == 400 and answer.body == PARSER_REFUSAL:
            seen["400 (HTTP parser)"] += 1  # uvicorn's parser: never reached the application
            return
        seen[answer.status] += 1
        if answer.status >= 400 and req.method != "HEAD":
            assert answer.headers.get("content-type", "").startswith(PROBLEM), (req, answer)

    one()
    _alive(bad_system)
    figures.record(SCENARIO, "malformed API requests by status", repr(dict(seen.most_common())))


RAW_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /v1/courses/course-001/bundle HTTP/1.1\r\nHost: x\r\nNo-Colon-Header\r\n\r\n",
    b"GET /v1/courses/course-001/bundle HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * 200_000
    + b"\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n0\r\n\r\n",
    b'POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"half": ',
    b"GET http://evil.example/v1/courses/course-001/bundle HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/courses/\x00/bundle HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/courses/course-001/bundle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe"
    b"\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
]


def _raw(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it.

    ``half_close`` ends our side after sending, so a server waiting for more bytes (a body cut
    short) answers or closes instead of waiting; complete requests keep it open, since a server
    may drop a request whose client hung up before the answer.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def test_broken_http_is_refused_and_the_api_keeps_serving(bad_system: BadSystem) -> None:
    port = int(bad_system.system.api_url.rsplit(":", 1)[1])
    answers: Counter[str] = Counter()
    for data in RAW_REQUESTS:
        reply = _raw(port, data)
        status = reply.split(b"\r\n", 1)[0].decode(errors="replace") if reply else "(closed)"
        answers[status[:24]] += 1
        assert not status.startswith(("HTTP/1.1 5", "HTTP/1.0 5")), (data[:80], reply[:300])
    _alive(bad_system)
    figures.record(SCENARIO, "broken HTTP requests: answers", repr(dict(sorted(answers.items()))))


# --- schemathesis over the whole API --------------------------------------------------------------
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], calls: Counter[str]
) -> None:
    checks: list[Any] = CHECKS if mode is GenerationMode.POSITIVE else [not_a_server_error]

    @settings(
        max_examples=sizes().schemathesis_examples,
        deadline=None,
        database=None,
        derandomize=not sizes().full,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=checks)
        calls[mode.value] += 1

    try:
        run()
    except Unsatisfiable:
        # Nothing to break (no parameters, no body): there is no malformed form of it.
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_every_operation_conforms_against_the_live_processes(bad_system: BadSystem) -> None:
    # Operation by operation (schemathesis' lazy pytest fixture needs pytest < 9): well-formed
    # requests must conform to the document; malformed ones must never get a server error.
    schema = schemathesis.openapi.from_url(bad_system.system.api_url + "/openapi.json")
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    calls: Counter[str] = Counter()
    for found in schema.get_all_operations():
        operation = cast(Any, found).ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, headers, calls)
    _alive(bad_system)
    figures.record(
        SCENARIO,
        "schemathesis calls (positive / negative)",
        f"{calls['positive']} / {calls['negative']}",
    )
    assert calls["positive"] and calls["negative"]
