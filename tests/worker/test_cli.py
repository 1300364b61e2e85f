"""The bundles CLI on a fakeredis-backed runtime: build, show, inspect, warm, events, DLQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest
from typer.testing import CliRunner

from core.errors import CourseNotFound
from core.keys import Keys
from core.settings import Settings
from tests.core.bundle.records import synthetic
from worker import cli
from worker.runtime import Runtime

runner = CliRunner()


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch, key_prefix: str) -> Iterator[Runtime]:
    runtime = Runtime(Settings(_env_file=None, key_prefix=key_prefix))
    runtime.__dict__["redis"] = fakeredis.FakeRedis()

    def fetch(course_id: str) -> Any:
        if course_id != "course-1":
            raise CourseNotFound("no such course", course_id=course_id)
        records = synthetic(units=2, lessons=2, per_lesson=3)
        records.upstream_requests = 4
        return records

    monkeypatch.setattr(runtime, "fetch", fetch)
    monkeypatch.setattr(cli, "_runtime", lambda: runtime)
    yield runtime


def invoke(*args: str, input_: str | None = None) -> Any:
    return runner.invoke(cli.app, list(args), input=input_)


def test_build_stores_and_reports_a_summary(rt: Runtime) -> None:
    result = invoke("build", "course-1", "--json")
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert summary["outcome"] == "stored"
    assert summary["units"] == 2 and summary["resources"] >= 12
    assert summary["upstreamRequests"] == 4
    assert 0 < summary["zstdBytes"] < summary["rawBytes"]
    assert rt.store.generation("course-1") == summary["generation"]


def test_build_of_a_missing_course_exits_2(rt: Runtime) -> None:
    assert invoke("build", "nope", "--json").exit_code == 2


def test_show_prints_the_stored_bundle(rt: Runtime) -> None:
    invoke("build", "course-1")
    result = invoke("show", "course-1")
    assert result.exit_code == 0
    assert orjson.loads(result.stdout)["courseId"] == "course-1"
    assert invoke("show", "other").exit_code == 2


def test_inspect_shows_generation_indexes_and_dirty_flag(rt: Runtime) -> None:
    invoke("build", "course-1")
    rt.debouncer.note_dirty("course-1")
    info = orjson.loads(invoke("inspect", "course-1", "--json").stdout)
    assert info["generation"] == rt.store.generation("course-1")
    assert info["dirty"] is True
    assert info["slugIndex"] == "course-1"
    assert info["inSubjectIndex"] is True
    assert info["leaseHolder"] is None


def test_warm_reports_each_course_and_fails_on_a_missing_one(rt: Runtime) -> None:
    result = invoke("warm", "course-1", "ghost", "--json")
    assert result.exit_code == 1
    body = orjson.loads(result.stdout)
    assert [c["courseId"] for c in body["courses"]] == ["course-1"]
    assert body["courses"][0]["outcome"] == "stored"


def test_events_publish_refuses_an_invalid_file_with_reasons(tmp_path: Path, rt: Runtime) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"specversion": "0.9", "id": "x"}]')
    result = invoke("events", "publish", str(bad), "--json")
    assert result.exit_code == 3
    body = orjson.loads(result.stdout)
    assert body["problems"][0]["index"] == 0
    assert any("specversion" in r for r in body["problems"][0]["reasons"])


def test_dlq_list_replay_and_purge(monkeypatch: pytest.MonkeyPatch, rt: Runtime) -> None:
    invalid = rt.dlq.add(reason="bad", payload=b'{"id": "x"}', source="worker")
    failed = rt.dlq.add(
        reason="rebuild kept failing",
        payload={"courseId": "course-1"},
        source="task",
        context={"task": "course_bundles.rebuild", "course_id": "course-1"},
    )
    listed = orjson.loads(invoke("dlq", "list", "--json").stdout)
    assert listed["total"] == 2
    assert {e["id"] for e in listed["entries"]} == {invalid, failed}

    queued: list[str] = []
    import tasks.rebuild

    monkeypatch.setattr(tasks.rebuild, "enqueue_rebuild", lambda cid, **_: queued.append(cid))
    replayed = invoke("dlq", "replay", failed)
    assert replayed.exit_code == 0, replayed.output
    assert queued == ["course-1"]
    assert rt.debouncer.is_dirty("course-1")
    assert rt.dlq.get(failed) is None

    still_bad = invoke("dlq", "replay", invalid)
    assert still_bad.exit_code == 3
    assert rt.dlq.get(invalid) is not None

    assert invoke("dlq", "purge", "--yes").exit_code == 0
    assert rt.dlq.count() == 0


def test_every_command_has_help() -> None:
    for args in (
        [],
        ["build"],
        ["show"],
        ["inspect"],
        ["warm"],
        ["demo"],
        ["simulator"],
        ["api"],
        ["reconcile"],
        ["events", "publish"],
        ["dlq", "list"],
        ["dlq", "replay"],
        ["dlq", "purge"],
        ["rollback"],
        ["pin"],
        ["unpin"],
        ["held"],
        ["held", "approve"],
        ["held", "reject"],
    ):
        result = invoke(*args, "--help")
        assert result.exit_code == 0, args
        assert "Usage" in result.output


def test_keys_are_under_the_configured_prefix(rt: Runtime, key_prefix: str) -> None:
    invoke("build", "course-1")
    stored = [k.decode() for k in rt.redis.keys("*")]
    assert stored and all(k.startswith(key_prefix) for k in stored)
    assert Keys(prefix=key_prefix).bundle("course-1") in stored


# --- publish safety (issue 14) ------------------------------------------------------------------
def _held_course(monkeypatch: pytest.MonkeyPatch, rt: Runtime) -> int:
    """course-1 built, then read once more while OneRoster answered empty lists: held."""
    assert invoke("build", "course-1").exit_code == 0
    good = rt.store.generation("course-1")
    assert good is not None
    empty = synthetic(units=0, lessons=0, per_lesson=0)
    monkeypatch.setattr(rt, "fetch", lambda _cid: empty)
    rt.__dict__.pop("rebuilder", None)
    assert invoke("build", "course-1", "--json").exit_code == 0
    assert rt.store.generation("course-1") == good
    return good


def test_held_lists_and_reject_drops_keeping_the_live_bundle(
    monkeypatch: pytest.MonkeyPatch, rt: Runtime
) -> None:
    good = _held_course(monkeypatch, rt)
    listed = orjson.loads(invoke("held", "--json").stdout)
    assert [(r["courseId"], r["reason"]) for r in listed] == [("course-1", "all_units")]
    assert listed[0]["live"]["generation"] == good
    assert invoke("held", "reject", "course-1").exit_code == 0
    assert rt.holds.held("course-1") is None and rt.store.generation("course-1") == good
    assert invoke("held", "reject", "course-1").exit_code == 2


def test_held_approve_publishes_the_held_build_under_a_higher_generation(
    monkeypatch: pytest.MonkeyPatch, rt: Runtime
) -> None:
    good = _held_course(monkeypatch, rt)
    assert invoke("held", "approve", "course-1").exit_code == 0
    doc = rt.store.read_doc("course-1")
    assert doc is not None and doc["units"] == [] and doc["generation"] > good
    assert rt.holds.held("course-1") is None


def test_rollback_pin_and_unpin(monkeypatch: pytest.MonkeyPatch, rt: Runtime) -> None:
    assert invoke("rollback", "course-1").exit_code == 2  # nothing kept yet
    assert invoke("build", "course-1").exit_code == 0
    first = rt.store.read_doc("course-1")
    grown = synthetic(units=2, lessons=2, per_lesson=4)
    monkeypatch.setattr(rt, "fetch", lambda _cid: grown)
    rt.__dict__.pop("rebuilder", None)
    assert invoke("build", "course-1").exit_code == 0
    live = rt.store.generation("course-1")
    assert live is not None
    kept = rt.store.kept("course-1")
    assert invoke("rollback", "course-1", "--to", "1").exit_code == 2  # not a kept generation
    result = invoke("rollback", "course-1", "--to", str(kept[0].generation), "--pin", "--json")
    assert result.exit_code == 0, result.output
    back = rt.store.read_doc("course-1")
    assert back is not None and first is not None
    assert back["generation"] > live and back["totals"] == first["totals"]
    assert rt.holds.pinned("course-1") is not None
    shown = orjson.loads(invoke("inspect", "course-1", "--json").stdout)
    assert shown["pinned"]["note"].startswith("pinned by rollback")
    assert shown["keptGenerations"][0]["generation"] == live
    assert invoke("build", "course-1", "--json").exit_code == 0  # pinned: recorded, not swapped
    assert rt.store.generation("course-1") == back["generation"]
    queued: list[str] = []
    monkeypatch.setattr("tasks.rebuild.enqueue_rebuild", lambda cid, **_kw: queued.append(cid))
    assert invoke("unpin", "course-1").exit_code == 0
    assert queued == ["course-1"] and rt.holds.pinned("course-1") is None
    assert rt.holds.held("course-1") is None
    assert invoke("unpin", "course-1").exit_code == 2
    assert invoke("pin", "nope").exit_code == 2
