"""Dead letters: kept with reason and raw payload, listed oldest first, trimmed, replayable."""

from __future__ import annotations

import base64
import itertools

import fakeredis
import orjson
import pytest

from core.errors import BrokerUnavailable, InvalidEvent
from core.events.dlq import DeadLetterNotFound, DeadLetters
from core.events.publisher import Publisher
from core.events.validate import validate_event
from core.keys import Keys
from tests.core.events.support import FakeSender, envelope


class Clock:
    def __init__(self) -> None:
        self._ticks = itertools.count(1_700_000_000)

    def __call__(self) -> float:
        return float(next(self._ticks))


@pytest.fixture
def dlq(fake_redis: fakeredis.FakeRedis, keys: Keys) -> DeadLetters:
    return DeadLetters(fake_redis, keys, max_entries=5, max_payload_bytes=1024, clock=Clock())


@pytest.fixture
def publisher(fake_redis: fakeredis.FakeRedis, keys: Keys, sender: FakeSender) -> Publisher:
    return Publisher(fake_redis, keys, sender)


def test_add_then_get_returns_everything_stored(dlq: DeadLetters) -> None:
    dl_id = dlq.add(
        reason="data.courseId is required",
        payload=b'{"id": "e1"}',
        source="worker",
        context={"event_id": "e1", "task_id": "t-9"},
    )
    letter = dlq.get(dl_id)
    assert letter is not None
    assert letter.id == dl_id
    assert letter.reason == "data.courseId is required"
    assert letter.payload == '{"id": "e1"}'
    assert letter.payload_encoding == "text"
    assert letter.source == "worker"
    assert letter.context == {"event_id": "e1", "task_id": "t-9"}
    assert letter.attempts == 1
    assert letter.received_at == 1_700_000_000.0
    assert letter.truncated is False


def test_mapping_payload_is_stored_as_json(dlq: DeadLetters) -> None:
    letter = dlq.get(dlq.add(reason="r", payload=envelope(id="m"), source="task", attempts=4))
    assert letter is not None
    assert orjson.loads(letter.payload) == envelope(id="m")
    assert letter.attempts == 4


def test_undecodable_bytes_are_kept_exactly_as_base64(dlq: DeadLetters) -> None:
    raw = b'{"id": "\xff\xfe"}'
    letter = dlq.get(dlq.add(reason="not valid UTF-8", payload=raw, source="http"))
    assert letter is not None
    assert letter.payload_encoding == "base64"
    assert base64.b64decode(letter.payload) == raw
    assert letter.payload_bytes() == raw


def test_oversized_payload_is_cut_and_flagged(dlq: DeadLetters) -> None:
    letter = dlq.get(dlq.add(reason="too large", payload="é" * 5000, source="http"))
    assert letter is not None
    assert letter.truncated is True
    assert len(letter.payload_bytes()) <= 1024
    assert set(letter.payload) == {"é"}  # cut on a character boundary


def test_context_that_json_cannot_carry_is_stored_as_text(dlq: DeadLetters) -> None:
    letter = dlq.get(dlq.add(reason="r", payload="x", source="task", context={"error": {1, 2}}))
    assert letter is not None
    assert letter.context == {"error": "{1, 2}"}


def test_list_is_oldest_first_with_limit_and_offset(dlq: DeadLetters) -> None:
    ids = [dlq.add(reason=f"r{i}", payload=str(i), source="worker") for i in range(4)]
    assert [d.id for d in dlq.list()] == ids
    assert [d.id for d in dlq.list(limit=2)] == ids[:2]
    assert [d.id for d in dlq.list(limit=2, offset=3)] == ids[3:]
    assert dlq.list(limit=0) == []
    assert dlq.list(offset=10) == []


def test_oldest_entries_are_trimmed_beyond_max(dlq: DeadLetters) -> None:
    ids = [dlq.add(reason="r", payload=str(i), source="worker") for i in range(8)]
    assert dlq.count() == 5
    assert [d.id for d in dlq.list()] == ids[3:]
    assert dlq.get(ids[0]) is None


def test_remove_and_purge(dlq: DeadLetters) -> None:
    first, second, _ = (dlq.add(reason="r", payload="p", source="http") for _ in range(3))
    assert dlq.remove(first) is True
    assert dlq.remove(first) is False
    assert dlq.get(first) is None
    assert dlq.count() == 2
    assert second in {d.id for d in dlq.list()}
    assert dlq.purge() == 2
    assert dlq.count() == 0
    assert dlq.list() == []
    assert dlq.purge() == 0


def test_get_unknown_is_none(dlq: DeadLetters) -> None:
    assert dlq.get("nope") is None


def test_replay_of_a_valid_payload_publishes_and_removes(
    dlq: DeadLetters, publisher: Publisher, sender: FakeSender
) -> None:
    dl_id = dlq.add(reason="broker was down", payload=envelope(id="r1"), source="publisher")
    result = dlq.replay(dl_id, publisher)
    assert result.accepted_ids == ["r1"]
    assert sender.sent_ids == ["r1"]
    assert dlq.get(dl_id) is None


def test_replay_of_a_batch_payload_publishes_every_event(
    dlq: DeadLetters, publisher: Publisher, sender: FakeSender
) -> None:
    body = orjson.dumps([envelope(id="b1"), envelope(id="b2")])
    result = dlq.replay(dlq.add(reason="r", payload=body, source="http"), publisher)
    assert result.accepted == 2
    assert sender.sent_ids == ["b1", "b2"]


def test_replay_of_an_already_seen_id_is_a_duplicate_and_removes_the_entry(
    dlq: DeadLetters, publisher: Publisher, sender: FakeSender
) -> None:
    publisher.publish([validate_event(envelope(id="seen"))])
    dl_id = dlq.add(reason="handler failed", payload=envelope(id="seen"), source="task")
    result = dlq.replay(dl_id, publisher)
    assert (result.accepted, result.duplicates) == (0, 1)
    assert sender.sent_ids == ["seen"]  # only the original publish
    assert dlq.get(dl_id) is None


def test_replay_of_a_still_invalid_payload_keeps_the_entry(
    dlq: DeadLetters, publisher: Publisher, sender: FakeSender
) -> None:
    dl_id = dlq.add(reason="bad", payload=envelope(id="bad id"), source="worker")
    with pytest.raises(InvalidEvent):
        dlq.replay(dl_id, publisher)
    assert dlq.get(dl_id) is not None
    assert sender.batches == []


def test_replay_of_a_truncated_payload_is_refused(dlq: DeadLetters, publisher: Publisher) -> None:
    dl_id = dlq.add(reason="big", payload=orjson.dumps(envelope(pad="x" * 2000)), source="http")
    with pytest.raises(InvalidEvent, match="cannot be replayed"):
        dlq.replay(dl_id, publisher)
    assert dlq.get(dl_id) is not None


def test_replay_while_the_broker_is_down_keeps_the_entry(
    dlq: DeadLetters, publisher: Publisher, sender: FakeSender
) -> None:
    dl_id = dlq.add(reason="r", payload=envelope(id="later"), source="publisher")
    sender.down = True
    with pytest.raises(BrokerUnavailable):
        dlq.replay(dl_id, publisher)
    assert dlq.get(dl_id) is not None
    sender.down = False
    assert dlq.replay(dl_id, publisher).accepted_ids == ["later"]


def test_replay_of_an_unknown_id_raises(dlq: DeadLetters, publisher: Publisher) -> None:
    with pytest.raises(DeadLetterNotFound):
        dlq.replay("missing", publisher)


def test_entries_survive_a_new_store_object(
    dlq: DeadLetters, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    dl_id = dlq.add(reason="r", payload="p", source="http")
    assert DeadLetters(fake_redis, keys).get(dl_id) == dlq.get(dl_id)


def test_decode_responses_clients_work_too(keys: Keys) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    store = DeadLetters(client, keys, max_entries=1, clock=Clock())
    store.add(reason="r", payload="1", source="http")
    newest = store.add(reason="r", payload="2", source="http")
    assert [d.id for d in store.list()] == [newest]
