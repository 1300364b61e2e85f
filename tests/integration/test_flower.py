"""Flower against the broker shows our tasks: a real worker rebuilds a course after an event, and
the tasks page, loaded in headless Chromium, lists the rebuild task.

Needs Debian's chromium (``apt-get install -y chromium``). Without it the test skips on a
developer machine and fails in CI (``CI`` set), where .ci/run installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.events.publisher import publish_events
from tests.conftest import TEST_REDIS_PORT, TEST_REDIS_URL
from tests.integration.pipeline_harness import ROOT, Pipeline, make_pipeline, purge_broker
from worker.celery_app import TASK_REBUILD
from worker.simulator.catalog import CatalogConfig
from worker.simulator.testing import SimulatorHandle, free_socket, run_simulator_in_thread

pytestmark = pytest.mark.integration

FLOWER_BROKER_URL = f"redis://127.0.0.1:{TEST_REDIS_PORT}/12"
APT_HINT = "apt-get install -y chromium"


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; asked first, so a skip starts no process."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = f"headless Chromium is not installed (Debian: `{APT_HINT}`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    with run_simulator_in_thread(CatalogConfig(courses=2)) as sim:
        yield sim


@pytest.fixture
def course_id(simulator: SimulatorHandle) -> str:
    courses = simulator.catalog.records("courses")
    return sorted(c["sourcedId"] for c in courses if c["status"] == "active")[0]


@pytest.fixture
def pipeline(simulator: SimulatorHandle, tmp_path: Path) -> Iterator[Pipeline]:
    purge_broker(FLOWER_BROKER_URL)
    prefix = f"cbtest:flower-{uuid.uuid4().hex[:8]}:"
    pipe = make_pipeline(
        sim_url=simulator.base_url,
        key_prefix=prefix,
        broker_url=FLOWER_BROKER_URL,
        redis_url=TEST_REDIS_URL,
        log_path=tmp_path / "worker.log",
    )
    try:
        yield pipe
    finally:
        pipe.stop_workers()
        purge_broker(FLOWER_BROKER_URL)
        for key in pipe.redis.scan_iter(match=f"{prefix}*", count=1000):
            pipe.redis.delete(key)
        pipe.redis.close()


@pytest.fixture
def flower(pipeline: Pipeline, tmp_path: Path) -> Iterator[str]:
    """Flower on a free loopback port, watching the test broker; yields its base URL."""
    with free_socket() as sock:
        port = sock.getsockname()[1]
    log = (tmp_path / "flower.log").open("ab")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app:app",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
        f"--broker={FLOWER_BROKER_URL}",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=pipeline.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(f"{url}/healthcheck") == "OK", tmp_path / "flower.log")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


def get(url: str, **params: Any) -> Any:
    try:
        response = httpx.get(url, params=params, timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


def wait_until(predicate: Any, log_path: Path, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise AssertionError(f"condition not met within {timeout}s; log tail:\n{tail}")


def flower_tasks(url: str, search: str) -> list[dict[str, Any]]:
    """The rows Flower's tasks page asks its datatable endpoint for."""
    doc = get(
        f"{url}/tasks/datatable",
        draw=1,
        start=0,
        length=100,
        **{"search[value]": search, "order[0][column]": 0, "columns[0][data]": "name"},
    )
    return list(doc["data"]) if isinstance(doc, dict) else []


def event(course_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{uuid.uuid4().hex}",
        "source": "tests",
        "type": "oneroster.course.updated",
        "subject": course_id,
        "data": {"courseId": course_id},
    }


def test_flower_tasks_page_lists_the_rebuild_after_an_event(
    chromium: str, pipeline: Pipeline, flower: str, course_id: str, tmp_path: Path
) -> None:
    pipeline.start_worker(concurrency=1)
    # Flower only sees events sent after it subscribed: wait until it has heard the worker.
    wait_until(lambda: (get(f"{flower}/workers", json=1) or {}).get("data"), pipeline.log_path)

    result = publish_events(event(course_id), settings=pipeline.settings)
    assert result.accepted == 1
    pipeline.wait_for(lambda: pipeline.generation(course_id) > 0)

    def rebuild_done() -> list[dict[str, Any]]:
        rows = flower_tasks(flower, course_id)
        return [r for r in rows if r["name"] == TASK_REBUILD and r["state"] == "SUCCESS"]

    rows = wait_until(rebuild_done, tmp_path / "flower.log", timeout=15)
    uuid_ = rows[0]["uuid"]
    assert course_id in rows[0]["args"]
    # The task's own page (server-rendered) names the course it rebuilt.
    assert course_id in get(f"{flower}/task/{uuid_}")

    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            f"{flower}/tasks",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HOME": str(tmp_path)},
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert 'id="tasks-table"' in page, page[:2000]
    # The rows are filled in by the page's script (from /tasks/datatable): find the rebuild's.
    row = re.search(rf'<tr id="{re.escape(uuid_)}"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert row is not None, f"no row for task {uuid_} on the tasks page:\n{page[-3000:]}"
    assert f">{TASK_REBUILD}</a>" in row.group(1)
    assert "SUCCESS" in row.group(1)


# --- Flower as the Procfile starts it: a login, or loopback only -----------------------------
def flower_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env.update(CB_BROKER_URL=FLOWER_BROKER_URL, CB_REDIS_URL=TEST_REDIS_URL, **extra)
    return env


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN on ``port`` (from /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                if width == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
                else:
                    found.add("::" if set(address) == {"0"} else address)
    return found


def test_flower_listens_beyond_loopback_only_behind_a_login(tmp_path: Path) -> None:
    from tests.integration.procfile_process import running

    with running("flower", flower_env(), tmp_path / "open.log", "/healthcheck") as flower:
        assert listening_addresses(flower.port) == {"127.0.0.1"}, flower.log()
        assert "listening on 127.0.0.1 only" in flower.log()

    login = f"ops:{uuid.uuid4().hex}"
    env = flower_env(FLOWER_BASIC_AUTH=login)
    with running("flower", env, tmp_path / "login.log", "/healthcheck") as flower:
        assert listening_addresses(flower.port) & {"0.0.0.0", "::"}, flower.log()
        assert httpx.get(f"{flower.url}/tasks", timeout=5).status_code == 401
        user, _, password = login.partition(":")
        assert httpx.get(f"{flower.url}/tasks", auth=(user, password), timeout=5).status_code == 200
        assert httpx.get(f"{flower.url}/tasks", auth=(user, "wrong"), timeout=5).status_code == 401


def test_flower_refuses_every_interface_without_a_login(tmp_path: Path) -> None:
    from tests.integration.procfile_process import spawn, stop

    log_path = tmp_path / "refused.log"
    proc, port = spawn("flower", flower_env(), log_path, extra=" --address=0.0.0.0")
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Flower started on 0.0.0.0 without a login:\n{log_path.read_text()[-2000:]}")
    finally:
        stop(proc)
    assert code != 0
    assert "without a login" in log_path.read_text()
    assert not listening_addresses(port)
