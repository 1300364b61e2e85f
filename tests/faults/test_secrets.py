"""Scenario 6: the whole flow with known secrets; none may show in a log line or an error body.

Secrets: the OneRoster client secret, the API's bearer tokens, the metrics token, the Redis
password (in CB_REDIS_URL and the broker URL) and every OneRoster access token the simulator
issued. The flow runs at debug log levels through the happy path and the unhappy ones: wrong
and near-miss tokens, missing scopes, invalid events, a OneRoster outage, revoked OneRoster
tokens, a rotated client secret, a Redis restart, the CLI. Then every process log, every HTTP
answer (body and headers), every dead letter, the CLI's output and this process's own output
are searched for each secret, raw and in the encodings it could leak in.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog

from core.events.dlq import DeadLetters
from tests.faults import figures
from tests.faults.harness import ROOT, System, running_system, small_catalog, wait_until
from tests.faults.oracle import Oracle, make_event
from worker.simulator.catalog import generate_catalog
from worker.simulator.testing import SimulatorHandle, run_simulator_in_thread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(300)]

SCENARIO = "secrets"
CLIENT_ID = "faults-client"


@dataclass
class Secrets:
    client_secret: str = field(default_factory=lambda: "orsecret" + secrets.token_hex(12))
    api_token: str = field(default_factory=lambda: "apitok" + secrets.token_hex(12))
    read_token: str = field(default_factory=lambda: "readtok" + secrets.token_hex(12))
    metrics_token: str = field(default_factory=lambda: "mtok" + secrets.token_hex(12))
    redis_password: str = field(default_factory=lambda: "redispw" + secrets.token_hex(12))
    issued: list[str] = field(default_factory=list)  # OneRoster access tokens handed out

    def named(self) -> dict[str, str]:
        found = {
            "OneRoster client secret": self.client_secret,
            "API token": self.api_token,
            "read-only API token": self.read_token,
            "metrics token": self.metrics_token,
            "Redis password": self.redis_password,
        }
        for n, token in enumerate(self.issued):
            found[f"OneRoster access token {n}"] = token
        return found


def _forms(secret: str) -> list[str]:
    """The secret and the encodings it could leak in (URL-encoded, base64, basic auth)."""
    raw = secret.encode()
    return [
        secret,
        urllib.parse.quote(secret),
        base64.b64encode(raw).decode(),
        base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode(),
    ]


@dataclass
class Evidence:
    """Everything a secret could leak into, by where it came from."""

    texts: dict[str, str] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + text + "\n"

    def answer(self, label: str, resp: httpx.Response) -> httpx.Response:
        self.statuses.append(resp.status_code)
        headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
        self.add(f"http {label}", f"{resp.status_code}\n{headers}\n{resp.text}")
        return resp


def _overrides(s: Secrets) -> dict[str, str]:
    return {
        "CB_ONEROSTER_CLIENT_ID": CLIENT_ID,
        "CB_ONEROSTER_CLIENT_SECRET": s.client_secret,
        "CB_API_TOKENS": orjson.dumps(
            {s.api_token: ["read", "events", "attempts"], s.read_token: ["read"]}
        ).decode(),
        "CB_API_METRICS_TOKEN": s.metrics_token,
        "CB_LOG_LEVEL": "DEBUG",
        "CB_RECONCILE_PERIOD_S": "2",
        "CB_REBUILD_LEASE_MS": "3000",
    }


def _flow(system: System, sim: SimulatorHandle, s: Secrets, ev: Evidence) -> None:
    course_ids = sorted(c["sourcedId"] for c in sim.catalog.records("courses"))
    system.start_api(log_level="debug", access_log=True)
    worker = system.start_worker(loglevel="DEBUG")
    system.start_beat(loglevel="DEBUG")
    system.wait_worker_consuming(worker)
    base = system.api_url
    auth = {"Authorization": f"Bearer {s.api_token}"}
    store = system.store()
    oracle = Oracle(system.settings, course_ids)
    with httpx.Client(base_url=base, timeout=30) as http:

        def post(label: str, body: Any, headers: dict[str, str]) -> httpx.Response:
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            return ev.answer(
                label,
                http.post(
                    "/v1/events",
                    content=content,
                    headers={**headers, "content-type": "application/json"},
                ),
            )

        # The happy path: events in, bundles built, reads, attempts, metrics.
        for course_id in course_ids:
            post("event", make_event("course.updated", course_id, course_id), auth)
        oracle.wait_converged(store, timeout=60, on_timeout=system.log_tail)
        first = course_ids[0]
        doc = ev.answer("bundle", http.get(f"/v1/courses/{first}/bundle", headers=auth)).json()
        unit = doc["units"][0]
        ev.answer(
            "lesson",
            http.get(
                f"/v1/courses/{first}/units/{unit['slug']}/lessons/{unit['lessons'][0]['slug']}",
                headers=auth,
            ),
        )
        ev.answer(
            "subject", http.get(f"/v1/subjects/{doc['course']['subject']}/courses", headers=auth)
        )
        result = sim.catalog.records("assessmentResults")[0]
        user = result["student"]["sourcedId"]
        resource = result["assessmentLineItem"]["sourcedId"].removesuffix("_ali")
        ev.answer("resolve", http.post(f"/v1/attempts/{user}/{resource}/resolve", headers=auth))
        ev.answer("attempt", http.get(f"/v1/attempts/{user}/{resource}", headers=auth))
        ev.answer(
            "metrics", http.get("/metrics", headers={"Authorization": f"Bearer {s.metrics_token}"})
        )

        # Wrong, near-miss and missing credentials; missing scopes; bad input.
        for label, token in (
            ("no token", None),
            ("wrong token", "nope"),
            ("near miss", s.api_token + "x"),
            ("prefix", s.api_token[:-1]),
            ("metrics token as API token", s.metrics_token),
        ):
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            ev.answer(label, http.get(f"/v1/courses/{first}/bundle", headers=headers))
        ev.answer(
            "basic auth", http.get(f"/v1/courses/{first}/bundle", auth=(CLIENT_ID, s.client_secret))
        )
        ev.answer(
            "metrics wrong",
            http.get("/metrics", headers={"Authorization": f"Bearer {s.api_token}"}),
        )
        post(
            "read-only token posts",
            make_event("course.updated", first, first),
            {"Authorization": f"Bearer {s.read_token}"},
        )
        post("invalid event", {"id": "bad id", "specversion": "0.3"}, auth)
        ev.answer("unknown course", http.get("/v1/courses/no-such-course/bundle", headers=auth))

        # OneRoster trouble: an outage (retries, a read that cannot be built), revoked tokens,
        # a rotated client secret.
        sim.set_faults(outage=True, retry_after_s=0)
        post("event in outage", make_event("course.updated", first, first), auth)
        ev.answer(
            "build in outage", http.get(f"/v1/courses/{course_ids[-1]}/units/x", headers=auth)
        )
        time.sleep(3.0)
        sim.clear_faults()
        sim.revoke_tokens()
        post("event after revoke", make_event("course.updated", first, first), auth)
        time.sleep(1.0)
        clients = sim.state.options.clients
        clients[CLIENT_ID] = "rotated-" + secrets.token_hex(4)
        sim.revoke_tokens()
        post("event with rotated secret", make_event("course.updated", first, first), auth)
        ev.answer(
            "resolve with rotated secret",
            http.post(f"/v1/attempts/{user}x/{resource}/resolve", headers=auth),
        )
        time.sleep(3.0)
        clients[CLIENT_ID] = s.client_secret

        # Redis goes away and comes back empty.
        system.redis_server.kill()
        ev.answer("readyz without redis", http.get("/readyz"))
        post("event without redis", make_event("course.updated", first, first), auth)
        ev.answer("read without redis", http.get("/v1/courses/no-such/bundle", headers=auth))
        time.sleep(1.0)
        system.redis_server.start()
        wait_until(
            lambda: http.get("/readyz").status_code == 200, timeout=30, what="API ready again"
        )
        ev.answer("readyz", http.get("/readyz"))
        if not worker.alive():  # see test_redis_restart.py: a supervisor would restart it
            worker = system.start_worker(loglevel="DEBUG")
            system.wait_worker_consuming(worker)
        post("event after restart", make_event("course.updated", first, first), auth)
        for course_id in course_ids:  # the wipe took every bundle: reads build them again
            ev.answer(
                "read after restart", http.get(f"/v1/courses/{course_id}/bundle", headers=auth)
            )
        oracle.wait_converged(system.store(), timeout=90, on_timeout=system.log_tail)

    _cli(system, ev, first)
    dlq = DeadLetters(system.redis(), system.keys)
    for letter in dlq.list(limit=10_000):
        ev.add("dead letters", orjson.dumps(letter.as_dict()).decode())


def _cli(system: System, ev: Evidence, course_id: str) -> None:
    env = {**system.env, "CB_LOG_LEVEL": "DEBUG"}
    for args in (
        ["inspect", course_id],
        ["dlq", "list"],
        ["build", course_id],
        ["inspect", "nope"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        ev.add(
            f"cli {' '.join(args)}",
            done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace"),
        )


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Secrets, Evidence]]:
    s = Secrets()
    ev = Evidence()
    workdir = Path(tmp_path_factory.mktemp("secrets"))
    catalog = generate_catalog(small_catalog(3, seed=61))
    with run_simulator_in_thread(catalog=catalog, clients={CLIENT_ID: s.client_secret}) as sim:
        tokens = sim.state.tokens
        issue = tokens.issue

        def recording_issue(**kwargs: Any) -> str:
            token = issue(**kwargs)
            s.issued.append(token)
            return token

        tokens.issue = recording_issue  # type: ignore[method-assign]
        with running_system(
            workdir, sim.base_url, overrides=_overrides(s), password=s.redis_password
        ) as system:
            with _own_logs(ev):
                _flow(system, sim, s, ev)
            for path in sorted(workdir.glob("*.log")):
                ev.add(f"log {path.name}", path.read_text(errors="replace"))
    figures.record(SCENARIO, "secrets checked", len(s.named()))
    figures.record(SCENARIO, "OneRoster access tokens issued (checked too)", len(s.issued))
    figures.record(SCENARIO, "HTTP answers checked", len(ev.statuses))
    figures.record(
        SCENARIO, "log, body and output bytes searched", sum(len(t) for t in ev.texts.values())
    )
    yield s, ev


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()} {record.args!r}")


@contextlib.contextmanager
def _own_logs(ev: Evidence) -> Iterator[None]:
    """This process's log lines too (publisher, clients): structlog entries and stdlib records."""
    root = logging.getLogger()
    handler, level = _Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as entries:
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        ev.add("log test process", "\n".join([*map(repr, entries), *handler.lines]))


def _leaks(s: Secrets, texts: dict[str, str]) -> list[str]:
    found = []
    for name, secret in s.named().items():
        for form in _forms(secret):
            for where, text in texts.items():
                if form in text:
                    line = next(li for li in text.splitlines() if form in li)
                    found.append(f"{name} in {where}: {line[:300]}")
    return found


def test_the_flow_went_through_the_unhappy_paths(evidence: tuple[Secrets, Evidence]) -> None:
    s, ev = evidence
    assert {401, 403, 404, 422, 503} <= set(ev.statuses), sorted(set(ev.statuses))
    assert s.issued, "the simulator never issued a OneRoster token"
    logs = "".join(t for w, t in ev.texts.items() if w.startswith("log "))
    assert "OneRoster" in logs or "oneroster" in logs


def test_no_secret_in_any_log_line(evidence: tuple[Secrets, Evidence]) -> None:
    s, ev = evidence
    logs = {w: t for w, t in ev.texts.items() if w.startswith(("log ", "cli "))}
    assert "log test process" in logs and "log worker.log" in logs and "log api.log" in logs
    assert _leaks(s, logs) == []


def test_no_secret_in_any_answer_or_dead_letter(evidence: tuple[Secrets, Evidence]) -> None:
    s, ev = evidence
    answers = {w: t for w, t in ev.texts.items() if w.startswith(("http ", "dead letters"))}
    assert _leaks(s, answers) == []
