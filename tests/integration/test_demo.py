"""`bundles demo` as a new user runs it: warms, applies real mutations, stops every child."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import orjson
import pytest
import redis

from core.settings import Settings
from tests.conftest import TEST_REDIS_PORT, TEST_REDIS_URL
from worker.api.app import create_app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO_BROKER = f"redis://127.0.0.1:{TEST_REDIS_PORT}/13"


def test_demo_warms_mutates_and_stops_every_child() -> None:
    prefix = f"cbtest:demo-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "CB_REDIS_URL": TEST_REDIS_URL,
        "CB_BROKER_URL": DEMO_BROKER,
        "CB_KEY_PREFIX": prefix,
    }
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "demo",
                "--duration",
                "1",
                "--courses",
                "4",
                "--mutations",
                "2",
                "--no-flower",
                "--json",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        summary = orjson.loads(done.stdout)
        assert summary["redis_source"] == "configured"
        # The simulator deletes its last course on purpose: 3 of 4 are active.
        assert summary["courses"] == 3
        assert summary["warmed"] == 3
        assert summary["warm_failures"] == 0
        assert len(summary["mutations"]) == 2
        for mutation in summary["mutations"]:
            assert mutation["status"] == 202
            assert mutation["latencyMs"] is not None, mutation
            assert mutation["generation"] >= 2
        assert summary["left_running"] == []
        # Every API address the demo advertises is a route the API serves (/docs is not one).
        served = {route.path for route in create_app(Settings(_env_file=None)).routes}
        for name in ("openapi", "metrics"):
            assert urlparse(summary["urls"][name]).path in served, summary["urls"]
        assert set(summary["children"]) == {"oneroster", "worker", "beat", "web"}
        for child in summary["children"].values():
            with pytest.raises(ProcessLookupError):
                os.kill(child["pid"], 0)
    finally:
        client = redis.Redis.from_url(TEST_REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        broker = redis.Redis.from_url(DEMO_BROKER)
        broker.flushdb()
