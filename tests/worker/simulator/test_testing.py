"""The simulator over real HTTP in a background thread, as other parts' integration tests use it."""

from __future__ import annotations

import socket

import httpx
import pytest

from worker.simulator.catalog import generate_catalog
from worker.simulator.testing import run_simulator_in_thread

from .conftest import RESOURCES, ROSTERING, SMALL


def test_serves_real_http_and_exposes_live_state() -> None:
    with run_simulator_in_thread(SMALL, total_mode="link", max_limit=25) as sim:
        assert sim.client_id == "demo-client" and sim.client_secret == "demo-secret"
        with httpx.Client(base_url=sim.base_url, timeout=5) as http:
            token = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(sim.client_id, sim.client_secret),
            ).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"

            page = http.get(f"{RESOURCES}/resources", params={"limit": 100})
            assert len(page.json()["resources"]) == 25
            assert 'rel="next"' in page.headers["Link"]

            sim.catalog.update("courses", "course-001", title="Edited in the test")
            course = http.get(f"{ROSTERING}/courses/course-001").json()["course"]
            assert course["title"] == "Edited in the test"

            sim.set_faults(fail_next=1)
            assert http.get(f"{ROSTERING}/courses").status_code == 503
            assert http.get(f"{ROSTERING}/courses").status_code == 200
            sim.set_faults(outage=True)
            assert http.get(f"{ROSTERING}/courses").status_code == 503
            sim.clear_faults()

            sim.set_options(total_mode="header")
            assert "X-Total-Count" in http.get(f"{ROSTERING}/courses").headers
            sim.revoke_tokens()
            assert http.get(f"{ROSTERING}/courses").status_code == 401

        stats = sim.stats()
        assert stats["kinds"]["token"] == 1
        assert stats["kinds"]["faults"] == 2
        sim.reset_stats()
        assert sim.stats()["requests"] == 0
        port = int(sim.base_url.rsplit(":", 1)[1])

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # shut down: nothing listens any more


def test_accepts_a_prebuilt_catalog() -> None:
    catalog = generate_catalog(SMALL)
    with run_simulator_in_thread(catalog=catalog) as sim:
        assert sim.catalog is catalog
        summary = httpx.get(f"{sim.base_url}/_sim/catalog/summary", timeout=5).json()
        assert summary["counts"]["courses"]["total"] == 5
