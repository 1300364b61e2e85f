"""Confirmation outcomes: a held build agrees, reverts or differs on its re-read."""

from __future__ import annotations

from core.pipeline.confirmation import NOT_FOUND, ConfirmPolicy, Held, Read, settle

POLICY = ConfirmPolicy(delay_s=30.0, max_delay_s=100.0, max_attempts=3)


def test_a_valid_read_is_published_at_once() -> None:
    assert settle(None, Read("a", valid=True), now=0, policy=POLICY).action == "publish"


def test_a_suspicious_first_read_is_held_for_the_delay() -> None:
    got = settle(None, Read("bad", valid=False), now=0, policy=POLICY)
    assert (got.action, got.attempt, got.delay_s) == ("hold", 1, 30.0)


def test_a_second_read_that_agrees_after_the_delay_confirms() -> None:
    held = Held("bad", attempts=1, due=30.0)
    assert settle(held, Read("bad", valid=False), now=30.0, policy=POLICY).action == "confirm"


def test_an_agreeing_read_before_the_delay_keeps_holding() -> None:
    held = Held("bad", attempts=1, due=30.0)
    assert settle(held, Read("bad", valid=False), now=29.0, policy=POLICY).action == "keep"


def test_a_read_that_reverts_to_the_old_bundle_drops_the_held_one() -> None:
    held = Held("bad", attempts=1, due=30.0)
    got = settle(held, Read("good", valid=True), now=5.0, policy=POLICY)
    assert (got.action, got.dropped) == ("publish", "recovered")


def test_a_read_that_differs_replaces_the_held_one_with_a_longer_delay() -> None:
    held = Held("bad", attempts=1, due=30.0)
    got = settle(held, Read("worse", valid=False), now=31.0, policy=POLICY)
    assert (got.action, got.attempt, got.delay_s, got.dropped) == ("hold", 2, 60.0, "differs")
    third = settle(Held("worse", 2, 91.0), Read("other", False), now=92.0, policy=POLICY)
    assert (third.attempt, third.delay_s) == (3, 100.0)  # capped


def test_after_the_last_attempt_a_differing_read_gives_up() -> None:
    got = settle(Held("bad", 3, 0.0), Read("other", valid=False), now=1.0, policy=POLICY)
    assert (got.action, got.dropped) == ("give_up", "gave_up")


def test_a_404_is_confirmed_only_by_another_404_after_the_delay() -> None:
    gone = Read(NOT_FOUND, valid=False)
    assert settle(None, gone, now=0, policy=POLICY).action == "hold"
    held = Held(NOT_FOUND, 1, due=30.0)
    assert settle(held, gone, now=10.0, policy=POLICY).action == "keep"
    assert settle(held, gone, now=30.0, policy=POLICY).action == "confirm"
    assert settle(held, Read("course", valid=True), now=10.0, policy=POLICY).action == "publish"
