"""Cross-process single-flight on Redis: one leader per flight name, fenced by an epoch.

The leader holds a heartbeated lease and writes its outcome only while its epoch is current;
followers subscribe before they look, then sleep on pub/sub (with a bounded re-check) and return
the leader's outcome. A lapsed lease is taken over by exactly one follower. The Redis steps
are in ``steps.py``, the outcome's encoding in ``outcome.py``.

Every waiting caller holds a pub/sub connection (kept for the next wait afterwards); put an
in-process ``SingleFlight`` in front (``ReadThrough`` does) so that a process has one waiter
per flight, not one per thread.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import redis

from core.errors import ConfigError, FlightFailed, FlightTimeout
from core.keys import Keys
from core.logging import get_logger
from core.settings import Settings
from core.singleflight.listeners import Listeners, await_subscribed, next_message
from core.singleflight.outcome import StoredOutcome, decode_outcome, encode_outcome
from core.singleflight.stats import GLOBAL_STATS, FlightStats
from core.singleflight.steps import FlightKeys, FlightScripts

J = TypeVar("J")

log = get_logger(__name__)

CONFIRM_S = 1.0  # a subscribe not confirmed by then is retried on a fresh connection


# --- the flight ----------------------------------------------------------------------------------
class FlightLease:
    """Handed to the leader's function: which flight and epoch it runs, and whether it still may."""

    def __init__(self, name: str, epoch: int, token: str, check: Callable[[], bool]) -> None:
        self.name = name
        self.epoch = epoch
        self.token = token
        self._check = check

    def still_owner(self) -> bool:
        """Whether the lease is still ours (asks Redis); False once it lapsed or was taken."""
        return self._check()


@dataclass(frozen=True, slots=True)
class FlightOutcome(Generic[J]):
    """One caller's result: the value, whether it led, the flight's epoch, how long it waited."""

    value: J
    led: bool
    epoch: int
    fell_back: bool
    waited_s: float


@dataclass(frozen=True, slots=True)
class _Takeover:
    epoch: int


@dataclass(frozen=True, slots=True)
class _Caller:
    """One run() call's identity: the flight it is in and its lease token."""

    name: str
    fk: FlightKeys
    token: str


class DistributedFlight:
    """Runs a named function once across processes; everyone else gets the leader's outcome."""

    def __init__(
        self,
        redis: redis.Redis,
        keys: Keys,
        *,
        lease_ms: int = 5000,
        heartbeat_ms: int = 1000,
        wait_s: float = 30.0,
        recheck_s: float = 0.5,
        outcome_ttl_ms: int = 10000,
        confirm_s: float = CONFIRM_S,
        enabled: bool = True,
        stats: FlightStats | None = None,
    ) -> None:
        if heartbeat_ms >= lease_ms:
            raise ConfigError(
                "the heartbeat must be shorter than the lease",
                heartbeat_ms=heartbeat_ms,
                lease_ms=lease_ms,
            )
        self.redis = redis
        self.keys = keys
        self.lease_ms = lease_ms
        self.heartbeat_ms = heartbeat_ms
        self.wait_s = wait_s
        self.recheck_s = recheck_s
        self.outcome_ttl_ms = outcome_ttl_ms
        self.confirm_s = confirm_s
        self.enabled = enabled
        self.stats = stats if stats is not None else GLOBAL_STATS
        self.scripts = FlightScripts(redis)
        self._listeners = Listeners(redis)

    @classmethod
    def from_settings(
        cls, client: redis.Redis, keys: Keys, settings: Settings
    ) -> DistributedFlight:
        """A flight configured by ``CB_FLIGHT_*``."""
        return cls(
            client,
            keys,
            lease_ms=settings.flight_lease_ms,
            heartbeat_ms=settings.flight_heartbeat_ms,
            wait_s=settings.flight_wait_s,
        )

    def run(
        self,
        name: str,
        fn: Callable[[FlightLease], J],
        *,
        wait_s: float | None = None,
        fallback: Callable[[], J | None] | None = None,
    ) -> FlightOutcome[J]:
        """Lead the flight ``name`` (running ``fn``) or wait for its leader's outcome.

        A waiter past ``wait_s`` returns ``fallback()`` if that gives a value, else raises
        ``FlightTimeout``; a leader's failure reaches waiters as ``FlightFailed``.
        """
        started = time.monotonic()
        token = secrets.token_hex(16)
        if not self.enabled:
            self.stats.record_led()
            value = fn(FlightLease(name, 0, token, lambda: True))
            return FlightOutcome(value, led=True, epoch=0, fell_back=False, waited_s=0.0)
        me = _Caller(name, FlightKeys.of(self.keys, name), token)
        deadline = started + (self.wait_s if wait_s is None else wait_s)
        acquired, epoch = self.scripts.acquire(me.fk, token, self.lease_ms)
        if acquired:
            return self._lead(me, epoch, fn)
        joined = self._follow(me, epoch, deadline)
        if isinstance(joined, _Takeover):
            self.stats.record_takeover()
            log.warning("flight taken over", flight=name, epoch=joined.epoch, outcome="takeover")
            return self._lead(me, joined.epoch, fn)
        if joined is not None:
            return self._settle(name, joined, started)
        return self._give_up(name, epoch, started, fallback)

    def close(self) -> None:
        """Close the pub/sub connections kept between waits."""
        self._listeners.close()

    # --- leader -----------------------------------------------------------------------------
    def _lead(self, me: _Caller, epoch: int, fn: Callable[[FlightLease], J]) -> FlightOutcome[J]:
        self.stats.record_led()
        lost = threading.Event()
        lease = FlightLease(me.name, epoch, me.token, lambda: self._owns(me, lost))
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(me, stop, lost), daemon=True)
        t0 = time.monotonic()
        beat.start()
        try:
            try:
                value = fn(lease)
            finally:
                stop.set()  # not joined: a late extend is harmless; a join costs latency
        except Exception as exc:
            self._finish(me, epoch, t0, encode_outcome(epoch, error=exc), "error")
            raise
        except BaseException:  # interrupted: no outcome; a follower takes over
            self._release_quietly(me)
            raise
        try:
            payload = encode_outcome(epoch, value=value)
        except TypeError as exc:  # not JSON-serialisable: a bug the followers must hear about too
            self._finish(me, epoch, t0, encode_outcome(epoch, error=exc), "error")
            raise
        self._finish(me, epoch, t0, payload, "ok")
        return FlightOutcome(value, led=True, epoch=epoch, fell_back=False, waited_s=0.0)

    def _finish(self, me: _Caller, epoch: int, t0: float, payload: bytes, outcome: str) -> None:
        try:
            receivers = self.scripts.finish(me.fk, epoch, payload, me.token, self.outcome_ttl_ms)
        except BaseException:
            self._release_quietly(me)
            raise
        duration_ms = round((time.monotonic() - t0) * 1000, 1)
        if receivers is None:
            self._release_quietly(me)
            log.warning(
                "flight outcome fenced off: a newer epoch owns the flight",
                flight=me.name,
                epoch=epoch,
                outcome="fenced",
                duration_ms=duration_ms,
            )
            return
        self.stats.record_flight_done(receivers)
        log.info(
            "flight led",
            flight=me.name,
            epoch=epoch,
            outcome=outcome,
            duration_ms=duration_ms,
            waiters=receivers,
        )

    def _heartbeat(self, me: _Caller, stop: threading.Event, lost: threading.Event) -> None:
        while not stop.wait(self.heartbeat_ms / 1000):
            try:
                still = self.scripts.extend(me.fk, me.token, self.lease_ms)
            except redis.RedisError as exc:
                log.warning("flight heartbeat failed", flight=me.name, error=str(exc))
                continue
            if not still:
                if stop.is_set():  # we finished and released meanwhile
                    return
                lost.set()
                log.warning("flight lease lost", flight=me.name, outcome="lease_lost")
                return

    def _owns(self, me: _Caller, lost: threading.Event) -> bool:
        if lost.is_set():
            return False
        holder = cast("bytes | str | None", self.redis.get(me.fk.lease))
        return holder is not None and _text(holder) == me.token

    def _release_quietly(self, me: _Caller) -> None:
        try:
            self.scripts.release(me.fk, me.token)
        except redis.RedisError as exc:  # the lease lapses on its own
            log.warning("flight lease release failed", flight=me.name, error=str(exc))

    # --- follower ---------------------------------------------------------------------------
    def _follow(self, me: _Caller, epoch: int, deadline: float) -> StoredOutcome | _Takeover | None:
        """Wait for an outcome of ``epoch`` or later; take over a lapsed lease; None at deadline."""
        channel = me.fk.channel
        pubsub = self._listeners.subscribe(channel)
        try:
            confirm_by = min(deadline, time.monotonic() + self.confirm_s)
            if not await_subscribed(pubsub, channel, confirm_by):
                # a kept connection something between us and Redis dropped silently: start afresh
                pubsub.close()
                pubsub = self._listeners.subscribe(channel, fresh=True)
                await_subscribed(pubsub, channel, deadline)
            found = self._watch(pubsub, me, epoch, deadline)
        except BaseException:
            pubsub.close()
            raise
        if found is None:  # out of time: keep only connections that just proved themselves
            pubsub.close()
        else:
            self._listeners.give_back(pubsub)
        return found

    def _watch(
        self, pubsub: redis.client.PubSub, me: _Caller, epoch: int, deadline: float
    ) -> StoredOutcome | _Takeover | None:
        channel = me.fk.channel
        while True:
            raw, holder = cast("list[bytes | None]", self.redis.mget([me.fk.outcome, me.fk.lease]))
            stored = decode_outcome(raw)
            if stored is not None and stored.epoch >= epoch:
                return stored
            if time.monotonic() >= deadline:
                return None
            if holder is None:
                acquired, current = self.scripts.acquire(me.fk, me.token, self.lease_ms)
                if acquired:
                    return _Takeover(current)
            until = min(time.monotonic() + self.recheck_s, deadline)
            while (data := next_message(pubsub, channel, until)) is not None:
                published = decode_outcome(data)
                if published is not None and published.epoch >= epoch:
                    return published

    def _settle(self, name: str, stored: StoredOutcome, started: float) -> FlightOutcome[J]:
        waited = time.monotonic() - started
        self.stats.record_joined(waited)
        log.debug(
            "flight joined",
            flight=name,
            epoch=stored.epoch,
            outcome="ok" if stored.ok else "error",
            duration_ms=round(waited * 1000, 1),
        )
        if not stored.ok:
            raise FlightFailed(
                "the flight's leader failed",
                flight=name,
                epoch=stored.epoch,
                error_type=stored.error_type,
                error=stored.error,
            )
        return FlightOutcome(
            stored.value, led=False, epoch=stored.epoch, fell_back=False, waited_s=waited
        )

    def _give_up(
        self, name: str, epoch: int, started: float, fallback: Callable[[], J | None] | None
    ) -> FlightOutcome[J]:
        waited = time.monotonic() - started
        value = fallback() if fallback is not None else None
        if value is not None:
            self.stats.record_fallback()
            log.warning(
                "flight wait expired; serving fallback",
                flight=name,
                epoch=epoch,
                outcome="fallback",
                duration_ms=round(waited * 1000, 1),
            )
            return FlightOutcome(value, led=False, epoch=epoch, fell_back=True, waited_s=waited)
        self.stats.record_timeout()
        log.warning(
            "flight wait expired",
            flight=name,
            epoch=epoch,
            outcome="timeout",
            duration_ms=round(waited * 1000, 1),
        )
        raise FlightTimeout(
            "the flight's leader did not finish before this waiter's deadline",
            flight=name,
            epoch=epoch,
            waited_s=round(waited, 3),
        )


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
