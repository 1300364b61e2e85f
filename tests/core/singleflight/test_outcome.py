"""A leader's outcome as followers read it: value or error text, and unreadable input."""

from __future__ import annotations

from core.singleflight.outcome import decode_outcome, encode_outcome


def test_outcome_round_trips_value_and_error_text() -> None:
    ok = decode_outcome(encode_outcome(3, value={"generation": 7}))
    assert ok is not None and ok.ok and ok.value == {"generation": 7} and ok.epoch == 3
    err = decode_outcome(encode_outcome(4, error=KeyError("unit u1")))
    assert err is not None and not err.ok
    assert (err.error_type, err.error) == ("KeyError", "'unit u1'")
    assert decode_outcome(b"not json") is None
    assert decode_outcome(None) is None
