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

from core.errors import BundlesError, InvalidEvent
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
    found = rt.store.read(course_id, "identity")
    if found is None:
        raise _fail(f"no bundle stored for course {course_id!r}", 2)
    _meta, data = found
    if encoding != "identity":
        compressed = rt.store.read(course_id, encoding)
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
    """Re-validate a dead letter and publish it; it is removed once accepted."""
    from core.events.broker import default_sender  # noqa: PLC0415
    from core.events.publisher import Publisher  # noqa: PLC0415

    rt = _runtime()
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


@dlq_app.command("purge")
def dlq_purge(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every dead letter."""
    rt = _runtime()
    if not yes and not typer.confirm(f"Delete {rt.dlq.count()} dead letters?"):
        raise typer.Exit(1)
    console.print(f"purged {rt.dlq.purge()} dead letters")


def main() -> None:
    """Console-script entry point."""
    app()
