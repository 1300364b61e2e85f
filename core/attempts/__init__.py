"""Attempt pointers: one stable attempt number per learner and resource until it is reset.

Layout and algorithm: docs/attempts.md.
"""

from core.attempts.keys import AttemptKeys, InvalidAttemptId
from core.attempts.pointers import AttemptPointers
from core.attempts.service import Attempt, AttemptService, FlightOnce, OnceRunner, Source
from core.attempts.state import (
    delete_state,
    has_state,
    latest_cached_attempt,
    load_state,
    save_state,
)

__all__ = [
    "Attempt",
    "AttemptKeys",
    "AttemptPointers",
    "AttemptService",
    "FlightOnce",
    "InvalidAttemptId",
    "OnceRunner",
    "Source",
    "delete_state",
    "has_state",
    "latest_cached_attempt",
    "load_state",
    "save_state",
]
