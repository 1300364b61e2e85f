"""Confirmation instead of a human in the loop: what a new read does to a course's held build.

Pure. A build that fails validation (or a ``404`` for a built course) is held, not published, and
read again after a delay. The second read settles it:

    no held build   valid read: publish; suspicious read: hold (attempt 1)
    valid read      publish; any held build is dropped (``recovered``: the blip passed)
    agrees          the same suspicious answer again, at least the delay after the hold: the change
                    is real, publish it (or delete the course); earlier (an event's rebuild right
                    after the hold): keep holding, the scheduled re-read still decides
    differs         another suspicious answer: the held one is dropped and this one is held in its
                    place, re-read after a doubled delay; after ``max_attempts`` nothing is held
                    and the course keeps its last good bundle until the next event
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NOT_FOUND = "not_found"  # the reason (and digest) of a held deletion

Action = Literal["publish", "confirm", "hold", "keep", "give_up"]


@dataclass(frozen=True, slots=True)
class ConfirmPolicy:
    """Delays of the re-reads: ``delay_s`` doubling per attempt up to ``max_delay_s``."""

    delay_s: float = 30.0
    max_delay_s: float = 480.0
    max_attempts: int = 5

    def delay_for(self, attempt: int) -> float:
        """The delay before re-reading a build held for the ``attempt``-th time (1-based)."""
        return float(min(self.max_delay_s, self.delay_s * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True, slots=True)
class Held:
    """What a held build is compared by: its digest, attempt and when it may be confirmed."""

    digest: str
    attempts: int
    due: float


@dataclass(frozen=True, slots=True)
class Read:
    """One new read: its digest (``NOT_FOUND`` for a 404) and whether validation passed."""

    digest: str
    valid: bool


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do: ``action``, and for ``hold`` the attempt and the delay of its re-read."""

    action: Action
    attempt: int = 0
    delay_s: float = 0.0
    dropped: str = ""  # why a held build was dropped (recovered, differs, gave_up), if one was


def settle(held: Held | None, read: Read, *, now: float, policy: ConfirmPolicy) -> Settlement:
    """Decide what ``read`` does, given the course's held build (None: nothing held)."""
    if read.valid:
        return Settlement("publish", dropped="recovered" if held is not None else "")
    if held is None:
        return Settlement("hold", attempt=1, delay_s=policy.delay_for(1))
    if read.digest == held.digest:
        if now >= held.due:
            return Settlement("confirm")
        return Settlement("keep", attempt=held.attempts)
    if held.attempts >= policy.max_attempts:
        return Settlement("give_up", dropped="gave_up")
    attempt = held.attempts + 1
    return Settlement("hold", attempt=attempt, delay_s=policy.delay_for(attempt), dropped="differs")
