"""Simulator helpers for the attempt tests: record results through the gradebook's PUT."""

from __future__ import annotations

import httpx

from core.oneroster.protocol import GRADEBOOK
from worker.simulator.testing import SimulatorHandle


def record_result(sim: SimulatorHandle, user_id: str, resource_id: str, attempt: int) -> None:
    """PUT a graded assessment result of ``attempt`` for the learner on the resource."""
    with httpx.Client(base_url=sim.base_url, timeout=10) as http:
        token = http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
            },
        ).raise_for_status()
        result_id = f"ar-{resource_id}-{user_id}-{attempt}".replace(":", "-")
        record = {
            "sourcedId": result_id,
            "status": "active",
            "assessmentLineItem": {"sourcedId": f"{resource_id}_ali"},
            "student": {"sourcedId": user_id},
            "score": 80.0,
            "scoreDate": "2026-03-01",
            "scoreStatus": "fully graded",
            "metadata": {"attempt": attempt},
        }
        http.put(
            f"{GRADEBOOK}/assessmentResults/{result_id}",
            json={"assessmentResult": record},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        ).raise_for_status()
