"""Pub/sub connections for flight followers, kept between waits.

A follower that closed its connection after every wait paid a TCP close (and the next one a
connect) on the path between the leader's notice and its own answer: about 1 ms of the wake-up
on a busy 2-core host. A kept connection is unsubscribed (so it counts as no flight's waiter)
and reused for the next wait; its previous channel's leftovers are skipped. Kept connections
are dropped when the server closed them, after ``max_idle_s`` unused (a middlebox may have
forgotten them silently), and when a subscribe on one is not confirmed in time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis

KEEP_IDLE = 4
MAX_IDLE_S = 20.0


@dataclass(slots=True)
class _Kept:
    pubsub: redis.client.PubSub
    since: float


class Listeners:
    """A small pool of idle pub/sub connections on one client (one user at a time each)."""

    def __init__(
        self, client: redis.Redis, *, keep: int = KEEP_IDLE, max_idle_s: float = MAX_IDLE_S
    ) -> None:
        self._client = client
        self._keep = keep
        self._max_idle_s = max_idle_s
        self._idle: list[_Kept] = []
        self._closed = False
        self._lock = threading.Lock()

    def subscribe(self, channel: str, *, fresh: bool = False) -> redis.client.PubSub:
        """A connection subscribed to ``channel`` (a kept one unless ``fresh``).

        Confirm with ``await_subscribed``; a kept one that is not confirmed in time should be
        closed and a fresh one asked for.
        """
        while not fresh and (pubsub := self._take()) is not None:
            try:
                if not _alive(pubsub):
                    pubsub.close()
                    continue
                pubsub.subscribe(channel)  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError):  # gone while kept: drop it, try the next
                pubsub.close()
                continue
            return pubsub
        new: redis.client.PubSub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            new.subscribe(channel)  # type: ignore[no-untyped-call]
        except BaseException:
            new.close()
            raise
        return new

    def give_back(self, pubsub: redis.client.PubSub) -> None:
        """Unsubscribe ``pubsub`` and keep it for the next wait (or close it if enough are kept).

        The unsubscribe is sent, not awaited: its confirmation is skipped on the next use.
        """
        try:
            pubsub.unsubscribe()  # type: ignore[no-untyped-call]
        except redis.RedisError:
            pubsub.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < self._keep:
                self._idle.append(_Kept(pubsub, time.monotonic()))
                return
        pubsub.close()

    def idle(self) -> int:
        """How many connections are kept."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Close every kept connection; connections given back later are closed too."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for kept in idle:
            kept.pubsub.close()

    def _take(self) -> redis.client.PubSub | None:
        now = time.monotonic()
        stale: list[_Kept] = []
        found = None
        with self._lock:
            while self._idle:
                kept = self._idle.pop()
                if now - kept.since > self._max_idle_s:
                    stale.append(kept)
                    continue
                found = kept.pubsub
                break
        for kept in stale:
            kept.pubsub.close()
        return found


def _alive(pubsub: redis.client.PubSub) -> bool:
    """Read a kept connection's leftovers; False if it cannot be trusted for a new wait.

    Raises on a broken socket; the caller drops the connection either way.
    """
    while (msg := pubsub.get_message(timeout=0.0)) is not None:
        if msg["type"] == "subscribe":
            # redis-py re-subscribed the old channel on a reconnect: it would count as a waiter
            return False
    conn = pubsub.connection
    # Unsubscribed, nothing more may arrive: readable now means closed (raises) or garbage.
    return conn is not None and not conn.can_read(timeout=0)


def await_subscribed(pubsub: redis.client.PubSub, channel: str, deadline: float) -> bool:
    """Read up to ``channel``'s subscribe confirmation (after it no publish can be missed).

    False if ``deadline`` (a ``time.monotonic()`` instant) passed first.
    """
    while (left := deadline - time.monotonic()) > 0:
        msg = pubsub.get_message(timeout=min(left, 1.0))
        if msg is not None and msg["type"] == "subscribe" and _text(msg["channel"]) == channel:
            return True
    return False


def next_message(pubsub: redis.client.PubSub, channel: str, until: float) -> bytes | str | None:
    """The data of the next message published on ``channel``, or None at ``until``."""
    while (left := until - time.monotonic()) > 0:
        msg = pubsub.get_message(timeout=left)
        if msg is not None and msg["type"] == "message" and _text(msg["channel"]) == channel:
            data: bytes | str = msg["data"]
            return data
    return None


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
