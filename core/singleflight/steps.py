"""A cross-process flight's Redis keys and atomic steps (the named scripts of ``flight.lua``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import redis

from core.keys import Keys

# The epoch outlives the lease (the heartbeat extends both); after a flight it expires soon, and
# a restarted epoch starts at the server clock, above every earlier one (flight.lua).
EPOCH_LEASES = 2


def epoch_ttl_ms(lease_ms: int) -> int:
    """How long a flight's epoch key lives past the last acquire or heartbeat."""
    return EPOCH_LEASES * lease_ms


SCRIPTS_FILE = Path(__file__).with_name("flight.lua")


@cache
def flight_scripts() -> dict[str, str]:
    """The named scripts of ``flight.lua``, read once."""
    return load_scripts(SCRIPTS_FILE.read_text())


def load_scripts(text: str) -> dict[str, str]:
    """Split a Lua file into its ``-- @script NAME`` sections."""
    parts = re.split(r"^-- @script (\w+)\n", text, flags=re.MULTILINE)
    return {name: body.strip() + "\n" for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@dataclass(frozen=True, slots=True)
class FlightKeys:
    """The Redis keys and channel of one named flight (they share the name's hash tag)."""

    lease: str
    epoch: str
    outcome: str
    channel: str

    @classmethod
    def of(cls, keys: Keys, name: str) -> FlightKeys:
        stem = keys.flight(name)
        return cls(f"{stem}:lease", f"{stem}:epoch", f"{stem}:outcome", f"{stem}:done")


class FlightScripts:
    """The flight's atomic Redis steps, registered once per client."""

    def __init__(self, client: redis.Redis) -> None:
        lua = flight_scripts()
        self._acquire = client.register_script(lua["acquire"])
        self._extend = client.register_script(lua["extend"])
        self._release = client.register_script(lua["release"])
        self._finish = client.register_script(lua["finish"])

    def acquire(self, fk: FlightKeys, token: str, lease_ms: int) -> tuple[bool, int]:
        """Take the lease if free: (True, new epoch); else (False, the holder's epoch)."""
        got, epoch = self._acquire(
            keys=[fk.lease, fk.epoch], args=[token, lease_ms, epoch_ttl_ms(lease_ms)]
        )
        return bool(got), int(epoch)

    def extend(self, fk: FlightKeys, token: str, lease_ms: int) -> bool:
        """Push the lease's (and the epoch's) expiry out if we still hold the lease."""
        return bool(
            self._extend(keys=[fk.lease, fk.epoch], args=[token, lease_ms, epoch_ttl_ms(lease_ms)])
        )

    def release(self, fk: FlightKeys, token: str) -> bool:
        """Drop the lease if we still hold it."""
        return bool(self._release(keys=[fk.lease], args=[token]))

    def finish(
        self, fk: FlightKeys, epoch: int, payload: bytes, token: str, outcome_ttl_ms: int
    ) -> int | None:
        """Store + publish the outcome and release: subscribers reached, or None when fenced."""
        receivers = int(
            self._finish(
                keys=[fk.epoch, fk.outcome, fk.lease],
                args=[epoch, payload, outcome_ttl_ms, fk.channel, token],
            )
        )
        return None if receivers < 0 else receivers
