"""Publisher: dedupe by id in Redis, send only new events, nothing half-accepted on failure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import fakeredis
import orjson
import pytest

from core.errors import BrokerUnavailable, InvalidEvent
from core.events import publisher as publisher_module
from core.events.model import CourseEvent
from core.events.publisher import Publisher, publish_events
from core.events.validate import InvalidBatch, validate_envelope, validate_event
from core.keys import Keys
from core.settings import Settings
from tests.core.events.support import FakeSender, envelope


def events(*ids: str) -> list[CourseEvent]:
    return [validate_event(envelope(id=i)) for i in ids]


@pytest.fixture
def publisher(fake_redis: fakeredis.FakeRedis, keys: Keys, sender: FakeSender) -> Publisher:
    return Publisher(fake_redis, keys, sender, dedupe_ttl_s=600)


def test_new_events_are_sent_in_one_call_with_their_envelopes(
    publisher: Publisher, sender: FakeSender
) -> None:
    result = publisher.publish(events("a", "b", "c"))
    assert (result.accepted, result.duplicates) == (3, 0)
    assert result.accepted_ids == ["a", "b", "c"]
    assert len(sender.batches) == 1
    trimmed = [{k: v for k, v in envelope(id=i).items() if k != "datacontenttype"} for i in "abc"]
    assert sender.batches[0] == trimmed  # the fields processing reads (datacontenttype is not)


def test_only_the_fields_processing_reads_are_sent_and_they_stay_valid(
    publisher: Publisher, sender: FakeSender
) -> None:
    raw = envelope(id="r", type="oneroster.resource.updated", subject="res-1", data=None, x=[1])
    del raw["time"]
    publisher.publish([validate_event(raw)])
    [queued] = sender.batches[0]
    assert queued == {
        "specversion": "1.0",
        "id": "r",
        "source": "course-builder",
        "type": "oneroster.resource.updated",
        "subject": "res-1",
    }
    assert validate_envelope(queued).subject == "res-1"  # the worker accepts it


def test_ids_seen_before_are_duplicates_and_not_sent(
    publisher: Publisher, sender: FakeSender
) -> None:
    publisher.publish(events("a", "b"))
    result = publisher.publish(events("b", "c", "a"))
    assert (result.accepted, result.duplicates) == (1, 2)
    assert result.accepted_ids == ["c"]
    assert sorted(result.duplicate_ids) == ["a", "b"]
    assert sender.sent_ids == ["a", "b", "c"]


def test_repeats_inside_one_batch_are_duplicates(publisher: Publisher, sender: FakeSender) -> None:
    result = publisher.publish(events("a", "a", "b", "a"))
    assert (result.accepted, result.duplicates) == (2, 2)
    assert result.duplicate_ids == ["a", "a"]
    assert sender.sent_ids == ["a", "b"]


def test_all_duplicates_send_nothing(publisher: Publisher, sender: FakeSender) -> None:
    publisher.publish(events("a"))
    result = publisher.publish(events("a"))
    assert (result.accepted, result.duplicates) == (0, 1)
    assert len(sender.batches) == 1


def test_empty_publish_does_nothing(publisher: Publisher, sender: FakeSender) -> None:
    result = publisher.publish([])
    assert (result.accepted, result.duplicates) == (0, 0)
    assert sender.batches == []


def test_seen_mark_expires_after_the_dedupe_window(
    publisher: Publisher, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    publisher.publish(events("a"))
    ttl = fake_redis.ttl(keys.event_seen("a"))
    assert 590 <= ttl <= 600


def test_default_window_is_24_hours(
    fake_redis: fakeredis.FakeRedis, keys: Keys, sender: FakeSender
) -> None:
    Publisher(fake_redis, keys, sender).publish(events("a"))
    assert fake_redis.ttl(keys.event_seen("a")) > 86_000


def test_broker_failure_unmarks_so_the_retry_is_accepted(
    publisher: Publisher, sender: FakeSender, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    publisher.publish(events("old"))
    sender.down = True
    with pytest.raises(BrokerUnavailable):
        publisher.publish(events("old", "new-1", "new-2"))
    assert fake_redis.exists(keys.event_seen("new-1")) == 0
    assert fake_redis.exists(keys.event_seen("old")) == 1  # marked by an earlier call: kept

    sender.down = False
    result = publisher.publish(events("old", "new-1", "new-2"))
    assert result.accepted_ids == ["new-1", "new-2"]
    assert result.duplicate_ids == ["old"]
    assert sender.sent_ids == ["old", "new-1", "new-2"]


def test_unexpected_sender_errors_also_unmark_and_propagate(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    class Broken:
        def send(self, envelopes: Sequence[dict[str, Any]]) -> None:
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        Publisher(fake_redis, keys, Broken()).publish(events("a"))
    assert fake_redis.exists(keys.event_seen("a")) == 0


def test_redis_down_is_broker_unavailable_and_nothing_is_sent(keys: Keys) -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    sender = FakeSender()
    with pytest.raises(BrokerUnavailable, match="idempotency store"):
        Publisher(fakeredis.FakeRedis(server=server), keys, sender).publish(events("a"))
    assert sender.batches == []


def test_failed_unmark_still_reports_the_broker_failure(keys: Keys) -> None:
    server = fakeredis.FakeServer()

    class DownWithRedis:
        def send(self, envelopes: Sequence[dict[str, Any]]) -> None:
            server.connected = False
            raise BrokerUnavailable("broker down (fake)")

    with pytest.raises(BrokerUnavailable, match="broker down"):
        Publisher(fakeredis.FakeRedis(server=server), keys, DownWithRedis()).publish(events("a"))


# --- publish_events: what a Python producer calls ---------------------------------------------
@pytest.fixture
def wired(
    monkeypatch: pytest.MonkeyPatch, fake_redis: fakeredis.FakeRedis, sender: FakeSender
) -> Settings:
    monkeypatch.setattr(publisher_module, "_redis_for", lambda url: fake_redis)
    monkeypatch.setattr(publisher_module, "default_sender", lambda settings: sender)
    return Settings(key_prefix="cbtest:pub:", event_max_batch=3, event_dedupe_ttl_s=60)


def test_publish_events_takes_a_mapping(
    wired: Settings, sender: FakeSender, fake_redis: fakeredis.FakeRedis
) -> None:
    result = publish_events(envelope(id="m1"), settings=wired)
    assert result.accepted_ids == ["m1"]
    assert sender.sent_ids == ["m1"]
    assert 0 < fake_redis.ttl(Keys(prefix="cbtest:pub:").event_seen("m1")) <= 60


def test_publish_events_takes_json_bytes_and_text(wired: Settings, sender: FakeSender) -> None:
    publish_events(orjson.dumps(envelope(id="b1")), settings=wired)
    publish_events(orjson.dumps([envelope(id="b2"), envelope(id="b3")]).decode(), settings=wired)
    assert sender.sent_ids == ["b1", "b2", "b3"]


def test_publish_events_serialises_python_values(wired: Settings, sender: FakeSender) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = publish_events([envelope(id="p1", time=when)], settings=wired)
    assert result.accepted == 1
    assert sender.batches[0][0]["time"] == "2026-01-02T03:04:05+00:00"


def test_publish_events_refuses_invalid_and_sends_nothing(
    wired: Settings, sender: FakeSender
) -> None:
    with pytest.raises(InvalidEvent):
        publish_events(envelope(id="bad id"), settings=wired)
    with pytest.raises(InvalidBatch) as info:
        publish_events([envelope(id="ok"), envelope(time="2026-01-01T00:00:00")], settings=wired)
    assert [p.index for p in info.value.problems] == [1]
    with pytest.raises(InvalidEvent, match="batch too large"):
        publish_events([envelope(id=f"e{i}") for i in range(4)], settings=wired)
    assert sender.batches == []


def test_publish_events_names_values_json_cannot_carry(wired: Settings) -> None:
    with pytest.raises(InvalidEvent) as single:
        publish_events(envelope(extension={1, 2}), settings=wired)
    assert "not JSON-serialisable" in single.value.reasons[0]
    with pytest.raises(InvalidBatch) as many:
        publish_events([envelope(), envelope(extension=object())], settings=wired)
    assert [p.index for p in many.value.problems] == [1]


def test_publish_events_refuses_other_payload_types(wired: Settings) -> None:
    with pytest.raises(InvalidEvent, match="invalid event"):
        publish_events(42, settings=wired)  # type: ignore[arg-type]
