"""``bundles demo``: the whole system on one machine, end to end, then a clean stop."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.logging import configure_logging
from core.settings import Settings
from worker.runtime import Runtime
from worker.supervise import Supervisor, free_port
from worker.warm import active_course_ids, warm

ROSTERING = "/ims/oneroster/rostering/v1p2"
RESOURCES = "/ims/oneroster/resources/v1p2"


@dataclass
class DemoSummary:
    """What the demo did, printed as JSON with ``--json`` (the demo test reads it)."""

    redis: str = ""
    redis_source: str = ""
    courses: int = 0
    warmed: int = 0
    warm_failures: int = 0
    mutations: list[dict[str, Any]] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    left_running: list[str] = field(default_factory=list)


@contextlib.contextmanager
def redis_for_demo(url: str, console: Console) -> Iterator[tuple[str, str]]:
    """The configured Redis if it answers; else an embedded redis-server, else fakeredis."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
        console.print(f"[green]redis[/green]: using {url} (it answered)")
        yield url, "configured"
        return
    except redis.RedisError:
        pass
    binary = shutil.which("redis-server")
    if binary:
        port = free_port()
        proc = subprocess.Popen(  # noqa: S603
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        embedded = f"redis://127.0.0.1:{port}/0"
        _wait_ping(embedded)
        console.print(
            f"[yellow]redis[/yellow]: {url} did not answer; started redis-server on {port}"
        )
        try:
            yield embedded, "embedded redis-server"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        return
    import fakeredis  # noqa: PLC0415 - only when no real Redis exists

    port = free_port()
    server = fakeredis.TcpFakeServer(("127.0.0.1", port))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    console.print(f"[yellow]redis[/yellow]: no Redis available; started fakeredis on {port}")
    try:
        yield f"redis://127.0.0.1:{port}/0", "fakeredis"
    finally:
        server.shutdown()


def _wait_ping(url: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def run_demo(
    settings: Settings,
    *,
    duration_s: float | None,
    courses: int,
    mutations: int,
    flower: bool,
    console: Console,
) -> DemoSummary:
    """Start everything, warm, mutate, report; stop every child however the demo ends."""
    summary = DemoSummary()
    # The demo talks to people: its own logs would drown the tables (children log to files).
    configure_logging("console", "ERROR", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log_dir = Path(tempfile.mkdtemp(prefix="bundles-demo-"))
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with redis_for_demo(settings.redis_url, console) as (redis_url, source):
        summary.redis, summary.redis_source = redis_url, source
        sim_port, api_port, flower_port = free_port(8765), free_port(8000), free_port(5555)
        sim_url = f"http://127.0.0.1:{sim_port}"
        api_token = secrets.token_urlsafe(18)
        prefix = settings.key_prefix
        env = {
            **os.environ,
            "CB_REDIS_URL": redis_url,
            "CB_BROKER_URL": settings.broker_url or redis_url,
            "CB_ONEROSTER_BASE_URL": sim_url,
            "CB_ONEROSTER_TOKEN_URL": "",
            "CB_API_TOKENS": orjson.dumps({api_token: ["read", "events", "attempts"]}).decode(),
            "CB_KEY_PREFIX": prefix,
            "CB_LOG_FORMAT": "json",
        }
        sup = Supervisor(log_dir, env)
        py = sys.executable
        try:
            with console.status("starting the OneRoster simulator, worker, beat and API..."):
                sup.start(
                    "oneroster",
                    [
                        py,
                        "-m",
                        "worker.simulator",
                        "--port",
                        str(sim_port),
                        "--courses",
                        str(courses),
                    ],
                    ready=lambda: _http_ok(f"{sim_url}/_sim/health"),
                    url=sim_url,
                )
                sup.start(
                    "worker",
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "worker.celery_app:app",
                        "worker",
                        "-Q",
                        "events,rebuilds",
                        "--concurrency",
                        "2",
                        "-E",
                        "--loglevel",
                        "WARNING",
                        "-n",
                        f"demo-{uuid.uuid4().hex[:6]}@%h",
                    ],
                )
                sup.start(
                    "beat",
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "worker.celery_app:app",
                        "beat",
                        "--loglevel",
                        "WARNING",
                        "--schedule",
                        str(log_dir / "beat-schedule"),
                    ],
                )
                api_url = f"http://127.0.0.1:{api_port}"
                sup.start(
                    "web",
                    [py, "-m", "worker.serve", "--host", "127.0.0.1", "--port", str(api_port)],
                    ready=lambda: _http_ok(f"{api_url}/healthz"),
                    url=api_url,
                )
                if flower:
                    flower_url = f"http://127.0.0.1:{flower_port}"
                    sup.start(
                        "flower",
                        [
                            py,
                            "-m",
                            "worker.flower_launcher",
                            f"--port={flower_port}",
                            "--address=127.0.0.1",
                        ],
                        ready=lambda: _http_ok(flower_url),
                        url=flower_url,
                        timeout_s=45,
                    )
                    summary.urls["flower"] = flower_url
            summary.urls.update(
                simulator=sim_url,
                api=api_url,
                openapi=f"{api_url}/openapi.json",
                metrics=f"{api_url}/metrics",
                logs=str(log_dir),
            )
            console.print(f"started: {', '.join(sup.alive())} (logs in {log_dir})")
            child_settings = settings.model_copy(
                update={
                    "redis_url": redis_url,
                    "oneroster_base_url": sim_url,
                    "oneroster_token_url": "",
                    "key_prefix": prefix,
                }
            )
            rt = Runtime(child_settings)
            _warm_all(rt, summary, console)
            _mutate(
                rt,
                api_url=api_url,
                api_token=api_token,
                count=mutations,
                summary=summary,
                console=console,
            )
            _print_where(summary, api_token, console)
            deadline = None if duration_s is None else time.monotonic() + duration_s
            if deadline is None:
                console.print("running; press Ctrl-C to stop everything")
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                dead = [c.name for c in sup.children if c.proc.poll() is not None]
                if dead:
                    console.print(f"[red]stopped unexpectedly:[/red] {', '.join(dead)}")
                    break
                stop.wait(0.5)
        except KeyboardInterrupt:
            console.print("stopping...")
        finally:
            codes = sup.stop_all()
            signal.signal(signal.SIGTERM, previous)
            summary.children = {
                c.name: {"pid": c.proc.pid, "exitCode": codes.get(c.name)} for c in sup.children
            }
            summary.left_running = sup.alive()
            console.print(
                "stopped every child"
                if not summary.left_running
                else f"[red]still running:[/red] {summary.left_running}"
            )
    return summary


def _warm_all(rt: Runtime, summary: DemoSummary, console: Console) -> None:
    course_ids = active_course_ids(rt.oneroster)
    summary.courses = len(course_ids)
    with Progress(
        TextColumn("warming courses"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("warm", total=len(course_ids))
        report = warm(rt.rebuilder, course_ids, on_done=lambda *_: progress.advance(task))
    summary.warmed = len(report.outcomes)
    summary.warm_failures = len(report.failures)
    console.print(
        f"warmed {summary.warmed} courses in {report.seconds:.1f} s "
        f"({sum(o.resources for o in report.outcomes)} resources; "
        f"failures: {summary.warm_failures})"
    )


def _mutate(
    rt: Runtime,
    *,
    api_url: str,
    api_token: str,
    count: int,
    summary: DemoSummary,
    console: Console,
) -> None:
    """Change data as the course builder would, emit the event over HTTP, and time it."""
    client, keys, store, settings = rt.redis, rt.keys, rt.store, rt.settings
    sim = settings.oneroster_base_url
    token = rt.oneroster.run(rt.oneroster.protocol.token())
    auth = {"Authorization": f"Bearer {token}"}
    course_ids = store.all_course_ids()
    table = Table(title="mutations: event -> fresh bundle")
    for col in ("course", "change", "event", "generation", "latency"):
        table.add_column(col)
    for i in range(count):
        course_id = course_ids[i % len(course_ids)]
        doc = store.read_doc(course_id)
        if doc is None or not doc["units"]:
            continue
        unit = doc["units"][i % len(doc["units"])]
        lesson = unit["lessons"][0]
        resource = lesson["resources"][0] if lesson["resources"] else None
        if i % 2 == 1 and resource is not None:
            kind, subject, data = "resource.updated", resource["resourceId"], {}
            url = f"{sim}{RESOURCES}/resources/{subject}"
            body: dict[str, Any] = {"resource": {"title": f"{resource['title']} (edited {i})"}}
            change = f"renamed resource {subject}"
        else:
            kind, subject, data = (
                "courseComponent.updated",
                lesson["sourcedId"],
                {"courseId": course_id},
            )
            url = f"{sim}{ROSTERING}/courses/components/{subject}"
            body = {"courseComponent": {"title": f"{lesson['title']} (edited {i})"}}
            change = f"renamed lesson {subject}"
        before = store.generation(course_id) or 0
        httpx.put(url, json=body, headers=auth, timeout=5).raise_for_status()
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(keys.swaps_channel())
        event = {
            "specversion": "1.0",
            "id": f"demo-{uuid.uuid4().hex}",
            "source": "bundles-demo",
            "type": f"oneroster.{kind}",
            "subject": subject,
            "data": data,
        }
        t0 = time.perf_counter()
        answer = httpx.post(
            f"{api_url}/v1/events",
            json=event,
            headers={"Authorization": f"Bearer {api_token}"},
            timeout=10,
        )
        latency_ms: float | None = None
        generation = before
        deadline = time.monotonic() + 15
        while answer.status_code == 202 and time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=1.0)
            if msg is None:
                continue
            notice = orjson.loads(msg["data"])
            if notice.get("courseId") == course_id and notice.get("generation", 0) > before:
                latency_ms = (time.perf_counter() - t0) * 1000
                generation = notice["generation"]
                break
        pubsub.close()
        summary.mutations.append(
            {
                "courseId": course_id,
                "type": kind,
                "status": answer.status_code,
                "generation": generation,
                "latencyMs": None if latency_ms is None else round(latency_ms, 1),
            }
        )
        table.add_row(
            course_id,
            change,
            f"{kind} -> {answer.status_code}",
            f"{before} -> {generation}",
            "timed out" if latency_ms is None else f"{latency_ms:.0f} ms",
        )
        time.sleep(settings.debounce_s + 0.05)
    console.print(table)


def _print_where(summary: DemoSummary, api_token: str, console: Console) -> None:
    table = Table(title="where things are", show_header=False)
    for name, url in summary.urls.items():
        table.add_row(name, url)
    table.add_row("demo API token", api_token)
    console.print(table)
    console.print(
        f"try: curl -H 'Authorization: Bearer {api_token}' "
        f"{summary.urls['api']}/v1/subjects/math/courses"
    )
