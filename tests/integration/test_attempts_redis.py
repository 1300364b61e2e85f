"""Attempt pointers on the real Redis: the seed's production failure against the simulator's
flapping results, and one number for 20 concurrent resolves in two processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.attempts import Attempt, AttemptKeys, AttemptService, load_state, save_state
from core.errors import AttemptConflict
from core.oneroster.attempts import derive_next_attempt
from core.oneroster.client import OneRosterClient
from core.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.integration.attempts_sim import record_result
from worker.simulator.catalog import CatalogConfig
from worker.simulator.testing import SimulatorHandle, run_simulator_in_thread

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TTL_S = 600
RESOURCE = "quiz-fractions-1"


@pytest.fixture
def learner(key_prefix: str, real_redis: redis.Redis) -> Iterator[str]:
    """A learner id unique to the test (attempt ids hold no ``:``); its keys are removed after."""
    learner_id = key_prefix.rstrip(":").replace(":", "-") + "-learner"
    yield learner_id
    for key in real_redis.scan_iter(match=f"assess:*{learner_id}*", count=1000):
        real_redis.delete(key)


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with run_simulator_in_thread(CatalogConfig(courses=1, students=1)) as handle:
        yield handle


@pytest.fixture
def oneroster(sim: SimulatorHandle) -> Iterator[OneRosterClient]:
    settings = Settings(
        oneroster_base_url=sim.base_url,
        oneroster_client_id=sim.client_id,
        oneroster_client_secret=sim.client_secret,
    )
    with OneRosterClient(settings) as client:
        yield client


def results_requests(sim: SimulatorHandle) -> int:
    return int(sim.stats()["kinds"]["assessmentResults"])


def test_seed_failure_pointer_keeps_the_attempt_while_oneroster_flaps(
    real_redis: redis.Redis, sim: SimulatorHandle, oneroster: OneRosterClient, learner: str
) -> None:
    keys = AttemptKeys()
    service = AttemptService(
        real_redis,
        keys,
        derive=lambda u, r: derive_next_attempt(oneroster, u, r),
        ttl_s=TTL_S,
    )
    for attempt in (1, 2):
        record_result(sim, learner, RESOURCE, attempt)

    # Start attempt 3 the way the web tier does: resolve, then create its state.
    started = service.resolve(learner, RESOURCE)
    assert started == Attempt(number=3, source="derived", created=True)
    save_state(real_redis, keys, learner, RESOURCE, 3, b'{"question": 4}', ttl_s=TTL_S)

    # The production blip: OneRoster answers "no results", so re-deriving says attempt 1, whose
    # state does not exist (the old code's ErrAssessmentStateNotFound).
    sim.set_faults(flap_results_s=60)
    assert derive_next_attempt(oneroster, learner, RESOURCE) == 1
    assert load_state(real_redis, keys, learner, RESOURCE, 1) is None
    sim.reset_stats()

    # With the pointer: every path keeps 3 and none asks OneRoster.
    for _ in range(3):
        assert service.active(learner, RESOURCE) == Attempt(number=3, source="pointer")
        assert service.resolve(learner, RESOURCE) == Attempt(number=3, source="pointer")
    with pytest.raises(AttemptConflict):
        service.reset(learner, RESOURCE, 1)
    # Pointer lost, state still cached: recovered, same number, still no OneRoster call.
    real_redis.delete(keys.pointer(learner, RESOURCE))
    assert service.resolve(learner, RESOURCE) == Attempt(number=3, source="recovered")
    assert load_state(real_redis, keys, learner, RESOURCE, 3) == b'{"question": 4}'
    assert results_requests(sim) == 0

    # Reset while results still flap (OneRoster says 1): the next attempt is above 3.
    assert service.reset(learner, RESOURCE, 3) == 3
    assert service.resolve(learner, RESOURCE) == Attempt(number=4, source="derived", created=True)
    assert results_requests(sim) == 1

    # Redis flushed (every key of this learner gone) and OneRoster healthy: derived, as today.
    sim.clear_faults()
    for key in real_redis.scan_iter(match=f"assess:*{learner}*"):
        real_redis.delete(key)
    assert service.resolve(learner, RESOURCE) == Attempt(number=3, source="derived", created=True)
    assert results_requests(sim) == 2


def run_two_resolver_processes(
    real_redis: redis.Redis, key_prefix: str, learner: str, *, single_flight: bool
) -> tuple[list[dict[str, int]], int]:
    """20 resolves at once: 10 threads in each of two processes. Answers results and derivations."""
    config = {
        "redis_url": TEST_REDIS_URL,
        "key_prefix": key_prefix,
        "user_id": learner,
        "resource_id": RESOURCE,
        "threads": 10,
        "derive_delay_s": 0.3,
        "single_flight": single_flight,
        "calls_key": f"{key_prefix}derive-calls",
        "ready_key": f"{key_prefix}ready",
        "go_key": f"{key_prefix}go",
        "results_key": f"{key_prefix}results",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integration.attempts_resolver", json.dumps(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 30
        while int(real_redis.get(config["ready_key"]) or 0) < 2:
            assert time.monotonic() < deadline, "resolver processes did not start"
            assert all(p.poll() is None for p in procs), [p.communicate()[1] for p in procs]
            time.sleep(0.01)
        real_redis.set(config["go_key"], "1")
        errors = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), errors
    results = [json.loads(raw) for raw in real_redis.lrange(config["results_key"], 0, -1)]
    return results, int(real_redis.get(config["calls_key"]) or 0)


def test_twenty_resolves_in_two_processes_ask_oneroster_once_and_agree(
    real_redis: redis.Redis, key_prefix: str, learner: str
) -> None:
    results, derivations = run_two_resolver_processes(
        real_redis, key_prefix, learner, single_flight=True
    )
    assert len(results) == 20
    assert {r["number"] for r in results} == {3}
    assert sum(r["created"] for r in results) == 1
    assert derivations == 1


def test_twenty_resolves_agree_without_single_flight_through_the_pointer_script(
    real_redis: redis.Redis, key_prefix: str, learner: str
) -> None:
    results, derivations = run_two_resolver_processes(
        real_redis, key_prefix, learner, single_flight=False
    )
    assert len(results) == 20
    assert derivations > 1  # each derivation answered another number...
    assert len({r["number"] for r in results}) == 1  # ...yet every caller got the same one
    assert sum(r["created"] for r in results) == 1


def test_hash_tagged_templates_on_real_redis(real_redis: redis.Redis, learner: str) -> None:
    keys = AttemptKeys(
        pointer_template="assess:active:{u:{userId}:{resourceId}}",
        state_template="assess:state:{u:{userId}:{resourceId}}:{attemptNumber}",
        index_template="assess:attempts:{u:{userId}:{resourceId}}",
        hwm_template="assess:hwm:{u:{userId}:{resourceId}}",
    )
    service = AttemptService(real_redis, keys, derive=lambda u, r: 1, ttl_s=TTL_S)
    assert service.resolve(learner, RESOURCE).number == 1
    save_state(real_redis, keys, learner, RESOURCE, 1, "{}", ttl_s=TTL_S)
    real_redis.delete(keys.pointer(learner, RESOURCE))
    assert service.active(learner, RESOURCE) == Attempt(number=1, source="recovered")
    assert service.reset(learner, RESOURCE, 1) == 1
    assert service.resolve(learner, RESOURCE).number == 2
    assert 0 < int(real_redis.ttl(keys.hwm(learner, RESOURCE))) <= TTL_S
