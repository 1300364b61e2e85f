"""Warm as background work of the upstream budget: its progress bar says when it waits on the
budget, a throttled course is tried again rather than reported failed, and ``bundles budget``
prints the fleet's state."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from core.budget.bucket import BudgetState
from core.budget.classes import current_class
from core.budget.gate import GLOBAL_BUDGET_STATS, Gate
from core.budget.policy import BudgetPolicy
from core.budget.store import LocalBudget
from core.errors import OneRosterThrottled
from core.pipeline.rebuild import RebuildOutcome
from worker import cli
from worker.warm import warm


def outcome(course_id: str) -> RebuildOutcome:
    return RebuildOutcome(course_id, 1, "stored", 1.0)


class GatedRebuilder:
    """Each rebuild takes one admission from ``gate`` (as the real OneRoster client does)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.classes: list[str] = []

    def rebuild(self, course_id: str) -> RebuildOutcome:
        cls = current_class("event")
        self.classes.append(cls)
        lease = self.gate.enter(cls)
        self.gate.leave(lease, cls, "ok", None)
        return outcome(course_id)


def test_warm_progress_says_when_it_waits_on_the_budget() -> None:
    budget = LocalBudget(BudgetPolicy(max_rps=100.0, burst=10.0))
    budget.release("elsewhere", "throttled", 0.8)  # another process got a 429: the fleet pauses
    rebuilder = GatedRebuilder(Gate(budget, max_wait_s=10.0))
    texts: list[str] = []
    report = warm(
        rebuilder,  # type: ignore[arg-type]
        ["c1", "c2"],
        workers=2,
        on_tick=lambda: texts.append(cli._budget_wait_text()),
    )
    assert sorted(o.course_id for o in report.outcomes) == ["c1", "c2"]
    assert any("waiting on the upstream budget (2)" in t for t in texts), texts
    assert texts[-1] == ""  # and says nothing once admitted
    assert set(rebuilder.classes) == {"background"}  # warm is background work
    assert GLOBAL_BUDGET_STATS.waiting == 0


class ThrottledOnce:
    def __init__(self) -> None:
        self.calls = 0

    def rebuild(self, course_id: str) -> RebuildOutcome:
        self.calls += 1
        if self.calls == 1:
            raise OneRosterThrottled("budget wait exceeded", retry_after_s=0.5)
        return outcome(course_id)


def test_a_throttled_course_is_tried_again_not_reported_failed() -> None:
    rebuilder, slept = ThrottledOnce(), []
    report = warm(rebuilder, ["c1"], workers=1, sleep=slept.append)  # type: ignore[arg-type]
    assert not report.failures
    assert [o.course_id for o in report.outcomes] == ["c1"]
    assert slept == [0.5]


def test_bundles_budget_prints_rate_inflight_pause_and_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_000_000]
    budget = LocalBudget(BudgetPolicy(max_rps=40.0, burst=1.0), clock_ms=lambda: clock[0])
    budget.state = BudgetState()
    assert budget.admit("event", "in-flight").admitted
    budget.admit("interactive", "reader")  # denied: waits
    budget.release("other", "throttled", 2.0)

    class Rt:
        budget_gate = Gate(budget)
        settings = cli.get_settings()

    monkeypatch.setattr(cli, "_runtime", Rt)
    result = CliRunner().invoke(cli.app, ["budget", "--json"])
    assert result.exit_code == 0, result.output
    state: dict[str, Any] = orjson.loads(result.stdout)
    assert state["inflight"] == 1
    assert state["rate"] == 30.0  # cut by the throttle: 40 x 0.75
    assert state["pausedForS"] == 2.0
    assert state["waiting"] == {"interactive": 1, "event": 0, "background": 0}
    text = CliRunner().invoke(cli.app, ["budget"]).stdout
    assert "paused for 2.0 s" in text and "in flight 1/32" in text
