"""What a flight's leader leaves for its followers: a value, or its error (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """What a leader left for its followers: a value, or its error's type and text."""

    epoch: int
    ok: bool
    value: Any = None
    error_type: str = ""
    error: str = ""


def encode_outcome(epoch: int, *, value: Any = None, error: BaseException | None = None) -> bytes:
    """The outcome payload; raises ``orjson.JSONEncodeError`` (a TypeError) for a bad value."""
    if error is not None:
        body = {"type": type(error).__name__, "message": str(error)}
        return orjson.dumps({"epoch": epoch, "ok": False, "error": body})
    return orjson.dumps({"epoch": epoch, "ok": True, "value": value})


def decode_outcome(raw: bytes | str | None) -> StoredOutcome | None:
    """Parse a stored or published outcome; None if absent or unreadable."""
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        if doc["ok"]:
            return StoredOutcome(epoch=int(doc["epoch"]), ok=True, value=doc.get("value"))
        err = doc.get("error") or {}
        return StoredOutcome(
            epoch=int(doc["epoch"]),
            ok=False,
            error_type=str(err.get("type", "")),
            error=str(err.get("message", "")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
