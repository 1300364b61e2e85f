"""Dead-letter reasons and context never keep a secret, whatever the failing code quoted."""

from __future__ import annotations

import random

import fakeredis
import httpx
import orjson

from core.events.dlq import DeadLetters
from core.keys import Keys
from core.oneroster.client import OneRosterClient
from tests.core.oneroster.fakes import make_settings

CLIENT_SECRET = "dlq-secret-5e6f7a8b"


def test_a_reason_quoting_secrets_is_stored_masked(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    transport = httpx.MockTransport(lambda _r: httpx.Response(500))
    OneRosterClient(
        make_settings(oneroster_client_secret=CLIENT_SECRET),
        http=httpx.Client(transport=transport),
        rng=random.Random(1),
    ).close()  # a client configured with this secret exists in the process
    dlq = DeadLetters(fake_redis, keys)
    dl_id = dlq.add(
        reason=f"rebuild failed: upstream echoed {CLIENT_SECRET} and Authorization: Bearer t-123",
        payload={"courseId": "c1"},
        source="task",
        context={"error": {"url": f"https://c:{CLIENT_SECRET}@or.test/x", "token": "Bearer t-9"}},
    )
    stored = orjson.dumps(dlq.get(dl_id).as_dict()).decode()  # type: ignore[union-attr]
    assert "rebuild failed: upstream echoed [redacted]" in stored
    for secret in (CLIENT_SECRET, "t-123", "t-9"):
        assert secret not in stored
    assert '"courseId":"c1"' in stored.replace(" ", "").replace('\\"', '"')
