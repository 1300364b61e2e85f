"""The ``bundles`` command line: build, show, inspect, simulator, events, dead letters."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from core.errors import BacklogFull, BundlesError, InvalidEvent
from core.logging import configure_logging
from core.settings import get_settings

app = typer.Typer(
    help="course-bundles: prebuilt OneRoster course bundles for the web tier.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
events_app = typer.Typer(help="Publish course mutation events.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect, replay and purge dead letters.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
WARM_MAX_WAIT_S = 60.0  # longest admission wait of one warm request (background, not a worker)


def _runtime() -> Any:
    from worker.runtime import get_runtime  # noqa: PLC0415 - keep --help fast

    return get_runtime()


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.callback()
def _setup() -> None:
    s = get_settings()
    configure_logging(s.log_format, s.log_level)


@app.command()
def build(course_id: str, as_json: JsonOpt = False) -> None:
    """Build one course's bundle from OneRoster now and store it (fenced like any rebuild)."""
    rt = _runtime()
    try:
        out = rt.rebuilder.rebuild(course_id)
    except BundlesError as exc:
        raise _fail(str(exc)) from exc
    summary = {
        "courseId": out.course_id,
        "generation": out.generation,
        "outcome": out.outcome,
        "units": out.units,
        "lessons": out.lessons,
        "resources": out.resources,
        "skipped": out.skipped,
        "rawBytes": out.raw_size,
        "gzipBytes": out.gzip_size,
        "zstdBytes": out.zstd_size,
        "upstreamRequests": out.upstream_requests,
        "buildCpuMs": round(out.build_ms, 2),
        "durationMs": round(out.duration_ms, 1),
    }
    if as_json:
        _print_json(summary)
    else:
        table = Table(title=f"bundle {course_id}", show_header=False)
        for key, value in summary.items():
            table.add_row(key, str(value))
        console.print(table)
    if out.outcome == "not_found":
        raise typer.Exit(2)


@app.command()
def show(
    course_id: str,
    encoding: Annotated[str, typer.Option(help="identity, gzip or zstd (sizes only)")] = "identity",
) -> None:
    """Print the stored bundle of a course (JSON)."""
    rt = _runtime()
    try:
        found = rt.store.read(course_id, "identity")
        if found is None:
            raise _fail(f"no bundle stored for course {course_id!r}", 2)
        _meta, data = found
        compressed = rt.store.read(course_id, encoding) if encoding != "identity" else None
    except BundlesError as exc:  # e.g. BundleCorrupt: say what is damaged, not a traceback
        raise _fail(str(exc), 1) from exc
    if encoding != "identity":
        size = len(compressed[1]) if compressed else 0
        console.print(f"{encoding}: {size} bytes (raw {len(data)})")
        return
    sys.stdout.write(orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def inspect(course_id: str, as_json: JsonOpt = False) -> None:
    """Generation, age, sizes, indexes, dirty flag and lease holder of one course."""
    rt = _runtime()
    meta = rt.store.meta(course_id)
    info: dict[str, Any] = {
        "courseId": course_id,
        "stored": meta is not None,
        "dirty": rt.debouncer.is_dirty(course_id),
        "leaseHolder": rt.debouncer.lease_holder(course_id),
    }
    if meta is not None:
        info.update(
            generation=meta.generation,
            builtAt=meta.built_at,
            ageSeconds=round(time.time() - meta.stored_at, 1),
            slug=meta.slug,
            subject=meta.subject,
            rawBytes=meta.raw_size,
            gzipBytes=meta.gzip_size,
            zstdBytes=meta.zstd_size,
            etag=meta.etag,
            skipped=meta.skipped,
            upstreamRequests=meta.upstream_requests,
            totals=meta.totals,
            slugIndex=rt.store.course_id_for_slug(meta.slug),
            inSubjectIndex=course_id in rt.store.course_ids_for_subject(meta.subject),
        )
    info.update(_publish_state(rt, course_id))
    if as_json:
        _print_json(info)
        return
    table = Table(title=f"course {course_id}", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def simulator(
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8765,
    seed: int = 42,
    courses: int = 20,
) -> None:
    """Run the local OneRoster simulator (seeded synthetic catalog)."""
    from worker.simulator.server import run  # noqa: PLC0415

    console.print(f"OneRoster simulator on http://{host}:{port} (seed {seed}, {courses} courses)")
    run(host=host, port=port, seed=seed, courses=courses)


@app.command()
def warm(
    course_ids: Annotated[list[str] | None, typer.Argument(help="Courses to build")] = None,
    all_courses: Annotated[bool, typer.Option("--all", help="Every active course")] = False,
    workers: Annotated[int, typer.Option(help="Builds in parallel")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Build bundles now for the named courses, or --all active courses, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: PLC0415

    from worker.warm import active_course_ids  # noqa: PLC0415
    from worker.warm import warm as warm_courses  # noqa: PLC0415

    rt = _runtime()
    if rt.budget_gate is not None:
        rt.budget_gate.max_wait_s = WARM_MAX_WAIT_S  # not a worker: warm may wait its turn
    if all_courses:
        ids = active_course_ids(rt.oneroster)
    elif course_ids:
        ids = list(course_ids)
    else:
        raise _fail("name some courses or pass --all", 2)
    with Progress(
        TextColumn("warming"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[budget]}"),
        console=err,
        disable=as_json,
    ) as progress:
        task = progress.add_task("warm", total=len(ids), budget="")
        report = warm_courses(
            rt.rebuilder,
            ids,
            workers=workers,
            on_done=lambda *_: progress.advance(task),
            on_tick=lambda: progress.update(task, budget=_budget_wait_text()),
        )
    rows: list[dict[str, Any]] = [
        {
            "courseId": o.course_id,
            "outcome": o.outcome,
            "generation": o.generation,
            "resources": o.resources,
            "skipped": o.skipped,
            "rawBytes": o.raw_size,
            "zstdBytes": o.zstd_size,
            "upstreamRequests": o.upstream_requests,
            "durationMs": round(o.duration_ms, 1),
        }
        for o in report.outcomes
    ]
    if as_json:
        _print_json(
            {"courses": rows, "failures": report.failures, "seconds": round(report.seconds, 2)}
        )
    else:
        table = Table(title=f"warmed {len(rows)} courses in {report.seconds:.1f} s")
        for col in ("course", "outcome", "gen", "resources", "skipped", "zstd", "requests", "ms"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["courseId"],
                r["outcome"],
                str(r["generation"]),
                str(r["resources"]),
                str(r["skipped"]),
                str(r["zstdBytes"]),
                str(r["upstreamRequests"]),
                str(r["durationMs"]),
            )
        for course_id, reason in report.failures.items():
            table.add_row(course_id, "[red]failed[/red]", "-", "-", "-", "-", "-", reason[:60])
        console.print(table)
    if report.failures:
        raise typer.Exit(1)


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C)")
    ] = None,
    courses: Annotated[int, typer.Option(help="Courses in the simulated catalog")] = 20,
    mutations: Annotated[int, typer.Option(help="Real mutations to publish and time")] = 4,
    flower: Annotated[bool, typer.Option(help="Start Flower too")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole system on this machine: simulator, worker, beat, API, Flower; warm; mutate."""
    from dataclasses import asdict  # noqa: PLC0415

    from worker.demo import run_demo  # noqa: PLC0415

    out = Console(stderr=True) if as_json else console
    summary = run_demo(
        get_settings(),
        duration_s=duration,
        courses=courses,
        mutations=mutations,
        flower=flower,
        console=out,
    )
    if as_json:
        _print_json(asdict(summary))
    if summary.left_running or summary.warm_failures:
        raise typer.Exit(1)


@app.command()
def api(
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
    workers: int = 1,
) -> None:
    """Run the read API with its request limits (the same server as the Procfile's web line)."""
    from worker.server import run, server_config  # noqa: PLC0415

    config = server_config(get_settings(), host=host, port=port, workers=workers)
    if not run(config):
        raise typer.Exit(3)


@app.command()
def reconcile(
    enqueue: Annotated[bool, typer.Option(help="Queue the rebuilds it finds")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Run one reconcile pass now: courses left dirty, and courses changed upstream unseen."""
    from tasks.rebuild import reconcile_pass  # noqa: PLC0415

    rt = _runtime()
    report = reconcile_pass(rt, drift_batch=len(rt.store.all_course_ids()), enqueue=enqueue)
    result = {"stuck": report.stuck, "drifted": report.drifted, "errors": report.errors}
    if as_json:
        _print_json(result)
    else:
        console.print(
            f"stuck {len(report.stuck)}, drifted {len(report.drifted)}, errors "
            f"{len(report.errors)}" + (" (rebuilds queued)" if enqueue and report.requeue else "")
        )


def _budget_wait_text() -> str:
    """What warm's progress bar says about the upstream budget (empty while not waiting)."""
    from core.budget.gate import GLOBAL_BUDGET_STATS  # noqa: PLC0415

    waiting = GLOBAL_BUDGET_STATS.waiting
    return f"[yellow]waiting on the upstream budget ({waiting})[/yellow]" if waiting else ""


@app.command()
def budget(as_json: JsonOpt = False) -> None:
    """Print the fleet's OneRoster budget: rate, in flight, paused until, waiting by class."""
    rt = _runtime()
    gate = rt.budget_gate
    if gate is None:
        raise _fail("the upstream budget is off (CB_ONEROSTER_BUDGET_ENABLED=false)", 2)
    snap = gate.budget.snapshot()
    result = {
        "upstream": rt.settings.oneroster_base_url,
        "source": snap.source,
        "rate": round(snap.rate, 2),
        "maxRps": snap.max_rps,
        "tokens": round(snap.tokens, 2),
        "inflight": snap.inflight,
        "maxInflight": snap.max_inflight,
        "pausedForS": round(snap.paused_ms / 1000, 3),
        "waiting": snap.waiting,
    }
    if as_json:
        _print_json(result)
        return
    paused = f"paused for {result['pausedForS']} s" if snap.paused_ms else "not paused"
    waiting = ", ".join(f"{cls} {n}" for cls, n in snap.waiting.items())
    console.print(
        f"{result['upstream']} ({snap.source}): rate {result['rate']}/{snap.max_rps} req/s, "
        f"tokens {result['tokens']}, in flight {snap.inflight}/{snap.max_inflight}, {paused}; "
        f"waiting: {waiting}"
    )


@events_app.command("publish")
def events_publish(
    source: Annotated[str, typer.Argument(help="A JSON file with one event or an array, or -")],
    as_json: JsonOpt = False,
) -> None:
    """Validate and publish events to the broker (same rules as POST /v1/events)."""
    from core.events.publisher import publish_events  # noqa: PLC0415

    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    try:
        result = publish_events(raw)
    except InvalidEvent as exc:
        problems = getattr(exc, "problems", None)
        if as_json:
            _print_json(
                {
                    "error": exc.message,
                    "reasons": exc.reasons,
                    "problems": [{"index": p.index, "reasons": p.reasons} for p in problems or []],
                }
            )
        else:
            err.print(f"[red]invalid:[/red] {exc.message}")
            for reason in exc.reasons:
                err.print(f"  - {reason}")
            for p in problems or []:
                err.print(f"  event {p.index}: {'; '.join(p.reasons)}")
        raise typer.Exit(3) from exc
    except BacklogFull as exc:
        # The HTTP 503 with Retry-After: nothing was queued; the same file can be sent again.
        if as_json:
            _print_json({"error": exc.message, "retryAfter": exc.retry_after_s})
            raise typer.Exit(4) from exc
        raise _fail(f"{exc.message} (retry after {exc.retry_after_s} s)", 4) from exc
    except BundlesError as exc:
        raise _fail(str(exc), 4) from exc
    if as_json:
        _print_json({"accepted": result.accepted, "duplicates": result.duplicates})
    else:
        console.print(f"accepted {result.accepted}, duplicates {result.duplicates}")


@dlq_app.command("list")
def dlq_list(limit: int = 50, offset: int = 0, as_json: JsonOpt = False) -> None:
    """List dead letters, oldest first."""
    rt = _runtime()
    entries = rt.dlq.list(limit=limit, offset=offset)
    if as_json:
        _print_json(
            {
                "total": rt.dlq.count(),
                "entries": [
                    {
                        "id": e.id,
                        "reason": e.reason,
                        "source": e.source,
                        "receivedAt": e.received_at,
                        "payload": e.payload,
                        "context": e.context,
                    }
                    for e in entries
                ],
            }
        )
        return
    table = Table(title=f"dead letters ({rt.dlq.count()} total)")
    for col in ("id", "received", "source", "reason", "payload"):
        table.add_column(col, overflow="fold")
    for e in entries:
        received = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.received_at))
        table.add_row(e.id, received, e.source, e.reason[:120], e.payload[:80])
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(dl_id: str) -> None:
    """Retry a dead letter; it is removed once the broker has it.

    An invalid event is re-validated and published like any event. A task that kept failing was
    valid and already counted as seen, so it goes straight back to its queue: the event to
    handle_event, a rebuild to the rebuild queue.
    """
    from core.events.broker import default_sender  # noqa: PLC0415
    from core.events.publisher import Publisher  # noqa: PLC0415
    from worker.celery_app import TASK_REBUILD  # noqa: PLC0415

    rt = _runtime()
    entry = rt.dlq.get(dl_id)
    if entry is None:
        raise _fail(f"no dead letter {dl_id!r}", 2)
    if entry.source == "task":
        payload = orjson.loads(entry.payload_bytes())
        if entry.context.get("task") == TASK_REBUILD:
            from tasks.rebuild import enqueue_rebuild  # noqa: PLC0415

            rt.debouncer.note_dirty(payload["courseId"])
            enqueue_rebuild(payload["courseId"], trailing=False)
        else:
            default_sender(rt.settings).send([payload])
        rt.dlq.remove(dl_id)
        console.print(f"replayed {dl_id}: requeued ({entry.context.get('task', 'task')})")
        return
    publisher = Publisher(
        rt.redis,
        rt.keys,
        default_sender(rt.settings),
        dedupe_ttl_s=rt.settings.event_dedupe_ttl_s,
    )
    try:
        result = rt.dlq.replay(dl_id, publisher)
    except InvalidEvent as exc:
        raise _fail(f"still invalid, kept: {exc}", 3) from exc
    except BundlesError as exc:
        raise _fail(str(exc), 4) from exc
    console.print(f"replayed {dl_id}: accepted {result.accepted}, duplicates {result.duplicates}")


@dlq_app.command("remove")
def dlq_remove(dl_id: str) -> None:
    """Delete one dead letter (after fixing its cause by hand)."""
    if not _runtime().dlq.remove(dl_id):
        raise _fail(f"no dead letter {dl_id!r}", 2)
    console.print(f"removed {dl_id}")


@dlq_app.command("purge")
def dlq_purge(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every dead letter."""
    rt = _runtime()
    if not yes and not typer.confirm(f"Delete {rt.dlq.count()} dead letters?"):
        raise typer.Exit(1)
    console.print(f"purged {rt.dlq.purge()} dead letters")


# --- publish safety (issue 14): rollback, pin, unpin, held ------------------------------------
held_app = typer.Typer(
    help="Held builds: list them, or settle one by hand (approve publishes, reject drops).",
    invoke_without_command=True,
)
app.add_typer(held_app, name="held")


def _publish_state(rt: Any, course_id: str) -> dict[str, Any]:
    """What ``inspect`` shows of publish safety: pin, held build, kept generations."""
    pin = rt.holds.pinned(course_id)
    held = rt.holds.held(course_id)
    kept = rt.store.kept(course_id)
    try:
        kept_bytes = rt.store.kept_bytes(course_id)
    except Exception:  # noqa: BLE001 - MEMORY USAGE may be disabled; the count still helps
        kept_bytes = None
    return {
        "pinned": None if pin is None else {"since": pin.pinned_at, "note": pin.note},
        "held": None if held is None else held.as_dict(),
        "keptGenerations": [
            {
                "generation": k.generation,
                "builtAt": k.built_at,
                "totals": k.totals,
                "zstdBytes": k.zstd_size,
            }
            for k in kept
        ],
        "keptBytes": kept_bytes,
    }


def _cancel_confirmation(rt: Any, course_id: str) -> None:
    from tasks.rebuild import confirm_entry_id  # noqa: PLC0415

    rt.schedule.cancel(confirm_entry_id(course_id))


@app.command()
def rollback(
    course_id: str,
    to: Annotated[
        int | None, typer.Option("--to", help="A kept generation (default: the newest kept)")
    ] = None,
    pin_it: Annotated[bool, typer.Option("--pin", help="Pin the course afterwards")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Swap an earlier kept generation back in, under a new, higher generation (readers follow)."""
    rt = _runtime()
    kept = rt.store.kept(course_id)
    if not kept:
        raise _fail(f"no kept generations for course {course_id!r}", 2)
    target = kept[0] if to is None else next((k for k in kept if k.generation == to), None)
    if target is None:
        known = ", ".join(str(k.generation) for k in kept)
        raise _fail(f"generation {to} is not kept for {course_id!r} (kept: {known})", 2)
    try:
        doc = rt.store.kept_doc(course_id, target.generation)
        if doc is None:
            raise _fail(f"generation {target.generation} is no longer kept", 2)
        out = rt.rebuilder.republish(course_id, doc, reason=f"rollback to {target.generation}")
    except BundlesError as exc:
        raise _fail(str(exc)) from exc
    if out.outcome != "stored":
        raise _fail(f"rollback not stored ({out.outcome})", 3)
    if pin_it:
        rt.holds.pin(course_id, f"pinned by rollback to {target.generation}")
    result = {
        "courseId": course_id,
        "from": target.generation,
        "generation": out.generation,
        "totals": target.totals,
        "pinned": pin_it,
    }
    if as_json:
        _print_json(result)
    else:
        console.print(
            f"rolled {course_id} back to generation {target.generation}'s bundle, now live as "
            f"generation {out.generation}" + (" (pinned)" if pin_it else "")
        )


@app.command()
def pin(
    course_id: str,
    note: Annotated[str, typer.Option(help="Why (shown by inspect and held)")] = "",
) -> None:
    """Freeze a course: rebuilds still run and are recorded, but never swap its bundle."""
    rt = _runtime()
    if rt.store.generation(course_id) is None:
        raise _fail(f"no bundle stored for course {course_id!r}", 2)
    rt.holds.pin(course_id, note)
    console.print(f"pinned {course_id} at generation {rt.store.generation(course_id)}")


@app.command()
def unpin(
    course_id: str,
    rebuild: Annotated[
        bool, typer.Option(help="Queue a rebuild now (validated like any other)")
    ] = True,
) -> None:
    """Release a pin; the next rebuild (queued now unless --no-rebuild) publishes as usual."""
    rt = _runtime()
    if not rt.holds.unpin(course_id):
        raise _fail(f"course {course_id!r} is not pinned", 2)
    held = rt.holds.held(course_id)
    if held is not None and held.reason == "pinned":
        rt.holds.drop(course_id)  # what a rebuild found while pinned: read again instead
    if rebuild:
        from tasks.rebuild import enqueue_rebuild  # noqa: PLC0415

        rt.debouncer.note_dirty(course_id)
        enqueue_rebuild(course_id, trailing=False)
    console.print(f"unpinned {course_id}" + (" (rebuild queued)" if rebuild else ""))


@held_app.callback()
def held_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List held builds (and what pinned courses recorded) with their reason."""
    if ctx.invoked_subcommand is not None:
        return
    rt = _runtime()
    ids = [c for c, _due in rt.holds.held_courses()]
    ids += [c for c in rt.holds.pinned_courses() if c not in ids]
    rows = []
    for course_id in ids:
        held = rt.holds.held(course_id)
        pinned = rt.holds.pinned(course_id) is not None
        row: dict[str, Any] = {"courseId": course_id, "pinned": pinned}
        if held is not None:
            row |= held.as_dict()
        meta = rt.store.meta(course_id)
        live = None if meta is None else {"generation": meta.generation, "totals": meta.totals}
        row["live"] = live
        rows.append(row)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} held or pinned")
    for column in ("course", "reason", "attempt", "re-read in", "held", "live"):
        table.add_column(column)
    now = time.time()
    for row in rows:
        held_at = row.get("heldAt")
        due = row.get("due") or 0.0
        table.add_row(
            row["courseId"] + (" (pinned)" if row["pinned"] else ""),
            str(row.get("reason", "-")),
            str(row.get("attempts", "-")),
            f"{max(0.0, due - now):.0f}s" if due else "-",
            f"{now - held_at:.0f}s ago {row.get('totals')}" if held_at else "-",
            str((row["live"] or {}).get("totals")),
        )
    console.print(table)


@held_app.command("approve")
def held_approve(course_id: str) -> None:
    """Publish a held build now (a held deletion deletes the course)."""
    rt = _runtime()
    held = rt.holds.held(course_id)
    if held is None:
        raise _fail(f"nothing held for course {course_id!r}", 2)
    _cancel_confirmation(rt, course_id)
    if held.zstd is None:
        rt.store.delete(course_id)
        console.print(f"approved: {course_id} deleted ({held.reason})")
        return
    doc = held.doc()
    if doc is None:
        raise _fail(f"the held build of {course_id!r} is unreadable; reject it", 3)
    out = rt.rebuilder.republish(course_id, doc, reason=f"approved ({held.reason})")
    rt.holds.drop(course_id)
    console.print(f"approved: {course_id} published as generation {out.generation}")


@held_app.command("reject")
def held_reject(course_id: str) -> None:
    """Drop a held build; the course keeps its live bundle until the next event."""
    rt = _runtime()
    _cancel_confirmation(rt, course_id)
    if not rt.holds.drop(course_id):
        raise _fail(f"nothing held for course {course_id!r}", 2)
    console.print(f"rejected: {course_id} keeps its live bundle")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
