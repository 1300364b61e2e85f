"""Benchmark: Redis bytes read per lesson read on a simulated 100-course catalog, steady state.

Side by side, same catalog, same Redis, same run:
- ``old``: the old app's path, emulated as the seed describes: every lesson page reads the
  org-wide resource list and the org-wide component-resource list from Redis (legacy keys
  ``oneroster-getAllResources`` / ``oneroster-getAllComponentResources``, the catalog's records
  as OneRoster returns them) and filters them in memory.
- ``new``: the API (in process, real Redis, swap listener on) answering
  ``GET /v1/courses/{id}/units/{u}/lessons/{l}`` for random lessons of all 100 courses, after one
  warm-up read per course; the near cache serves, a backstop HMGET per course per
  ``near_cache_check_s`` is the only steady traffic.

Bytes are counted by a TCP proxy in front of Redis (server -> client bytes of this process's
connections only, so other Redis users do not disturb the count). Medians over ``--reps``.
Writes bench/out/egress.json.

    python bench/egress.py [--courses 100] [--seconds 6] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402

from core.bundle.builder import build_bundle  # noqa: E402
from core.bundle.codec import encode_bundle  # noqa: E402
from core.bundle.store import BundleStore  # noqa: E402
from core.keys import Keys  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from core.oneroster.models import (  # noqa: E402
    ComponentResource,
    Course,
    CourseComponent,
    CourseRecords,
    Resource,
)
from core.settings import Settings  # noqa: E402
from worker.api.app import create_app  # noqa: E402
from worker.api.services import ApiServices  # noqa: E402
from worker.simulator.catalog import CatalogConfig, generate_catalog  # noqa: E402

OUT = ROOT / "bench" / "out" / "egress.json"
TOKEN = "bench-read-token"
OLD_KEYS = ("oneroster-getAllResources", "oneroster-getAllComponentResources")


class CountingProxy:
    """A TCP proxy to Redis that counts the bytes Redis sends back (egress)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.egress = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target, limit=1 << 20)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(1 << 20):
                    if count:
                        self.egress += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                if not dst.is_closing():
                    dst.close()

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))


# --- the catalog ---------------------------------------------------------------------------------
def catalog_records(courses: int, seed: int) -> tuple[list[CourseRecords], dict[str, bytes]]:
    """Per-course records for the bundles, and the org-wide blobs the old app cached."""
    cfg = CatalogConfig(courses=courses, deleted_courses=0, seed=seed)
    cat = generate_catalog(cfg)
    comps = cat.records("courseComponents")
    links = cat.records("componentResources")
    resources = {r["sourcedId"]: r for r in cat.records("resources")}
    course_of_comp = {c["sourcedId"]: c["course"]["sourcedId"] for c in comps}
    comps_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    links_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for comp in comps:
        comps_by[comp["course"]["sourcedId"]].append(comp)
    for link in links:
        owner = course_of_comp.get(link["courseComponent"]["sourcedId"])
        if owner is not None:
            links_by[owner].append(link)
    out = []
    for course in cat.records("courses"):
        cid = course["sourcedId"]
        rids = dict.fromkeys(link["resource"]["sourcedId"] for link in links_by[cid])
        out.append(
            CourseRecords(
                course=Course.model_validate(course),
                components=[CourseComponent.model_validate(c) for c in comps_by[cid]],
                component_resources=[ComponentResource.model_validate(x) for x in links_by[cid]],
                resources=[Resource.model_validate(resources[r]) for r in rids if r in resources],
            )
        )
    blobs = {
        OLD_KEYS[0]: orjson.dumps(cat.records("resources")),
        OLD_KEYS[1]: orjson.dumps(links),
    }
    return out, blobs


def store_all(store: BundleStore, all_records: list[CourseRecords]) -> list[tuple[str, str, str]]:
    """Build and store every course; return every (course, unit, lesson) there is to read."""
    lessons: list[tuple[str, str, str]] = []
    now = dt.datetime.now(dt.UTC)
    for recs in all_records:
        generation = store.next_generation(recs.course.sourcedId)
        result = build_bundle(recs, generation=generation, built_at=now)
        store.write(
            recs.course.sourcedId,
            result.doc,
            encode_bundle(result.doc),
            resource_ids=result.resource_ids,
        )
        for unit in result.doc["units"]:
            for lesson in unit["lessons"]:
                lessons.append((result.doc["courseId"], unit["slug"], lesson["slug"]))
    return lessons


# --- the two paths -------------------------------------------------------------------------------
def old_path(proxy: CountingProxy, reads: int, db: int, keys: list[str]) -> float:
    """Bytes per lesson page on the old path: both org-wide lists, every page."""
    client = redis.Redis(host="127.0.0.1", port=proxy.port, db=db)
    client.ping()
    before = proxy.egress
    for _ in range(reads):
        resources = orjson.loads(client.get(keys[0]) or b"[]")
        links = orjson.loads(client.get(keys[1]) or b"[]")
        # The page then filters both lists in memory for its lesson (not Redis traffic).
        del resources, links
    used = proxy.egress - before
    client.close()
    return used / reads


async def drive(
    app: Any, lessons: list[tuple[str, str, str]], seconds: float, concurrency: int
) -> int:
    """Random lesson reads for ``seconds``; returns how many were answered 200."""
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    done = 0
    deadline = time.monotonic() + seconds
    rng = random.Random(1)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            cid, unit, lesson = rng.choice(lessons)
            resp = await client.get(
                f"/v1/courses/{cid}/units/{unit}/lessons/{lesson}", headers=headers
            )
            assert resp.status_code == 200, resp.text
            done += 1

    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done


async def warm(app: Any, lessons: list[tuple[str, str, str]]) -> None:
    """One read per course (each loads its bundle into the near cache once)."""
    first: dict[str, tuple[str, str, str]] = {}
    for item in lessons:
        first.setdefault(item[0], item)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for cid, unit, lesson in first.values():
            resp = await client.get(
                f"/v1/courses/{cid}/units/{unit}/lessons/{lesson}", headers=headers
            )
            assert resp.status_code == 200, resp.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=6.0, help="steady-state run per rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--old-reads", type=int, default=3, help="old-path page reads per rep")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--check-s", type=float, default=2.0, help="near_cache_check_s")
    parser.add_argument("--redis-host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--db", type=int, default=9)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    configure_logging("console", "ERROR", force=True)

    prefix = f"cbbench:{uuid.uuid4().hex[:8]}:"
    direct = redis.Redis(host=args.redis_host, port=args.redis_port, db=args.db)
    proxy = CountingProxy(args.redis_host, args.redis_port).start()
    print(f"generating a {args.courses}-course catalog ...", flush=True)
    all_records, blobs = catalog_records(args.courses, args.seed)
    store = BundleStore(direct, Keys(prefix=prefix))
    lessons = store_all(store, all_records)
    old_keys = {f"{prefix}{name}": blob for name, blob in blobs.items()}
    for key, blob in old_keys.items():
        direct.set(key, blob)
    resources = sum(len(r.component_resources) for r in all_records)
    print(
        f"catalog: {len(all_records)} courses, {len(lessons)} lessons, {resources} placements; "
        f"old org-wide blobs {sum(map(len, blobs.values())) / 1e6:.1f} MB",
        flush=True,
    )

    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{proxy.port}/{args.db}",
        key_prefix=prefix,
        api_tokens={TOKEN: ["read"]},
        near_cache_check_s=args.check_s,
        near_cache_max_courses=max(256, args.courses),
        log_level="ERROR",
    )
    services = ApiServices.from_settings(settings)
    app = create_app(services=services)
    services.start()
    assert services.swaps.subscribed.wait(10)

    try:
        before = proxy.egress
        asyncio.run(warm(app, lessons))
        warmup_bytes = proxy.egress - before
        old_per_read: list[float] = []
        new_per_read: list[float] = []
        new_reads: list[int] = []
        check_bytes: list[float] = []
        for rep in range(args.reps):
            old_per_read.append(old_path(proxy, args.old_reads, args.db, list(old_keys)))
            checks_before = services.near_cache.stats.checks
            before = proxy.egress
            reads = asyncio.run(drive(app, lessons, args.seconds, args.concurrency))
            used = proxy.egress - before
            checks = services.near_cache.stats.checks - checks_before
            new_per_read.append(used / reads)
            new_reads.append(reads)
            if checks:
                check_bytes.append(used / checks)
            print(
                f"rep {rep + 1}: old {old_per_read[-1] / 1e6:.1f} MB/read; new {reads} reads, "
                f"{used} B from Redis ({checks} backstop checks) = {used / reads:.3f} B/read",
                flush=True,
            )
    finally:
        services.stop()
        proxy.stop()
        for key in direct.scan_iter(match=f"{prefix}*", count=1000):
            direct.delete(key)

    old_med = statistics.median(old_per_read)
    new_med = statistics.median(new_per_read)
    ratio = old_med / new_med if new_med else float("inf")
    result = {
        "machine": f"{platform.machine()} {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "catalog": {
            "courses": len(all_records),
            "lessons": len(lessons),
            "placements": resources,
            "oldBlobBytes": {k.removeprefix(prefix): len(v) for k, v in old_keys.items()},
        },
        "oldBytesPerLessonRead": round(old_med),
        "newBytesPerLessonReadSteadyState": round(new_med, 3),
        "ratioOldOverNew": round(ratio, 1) if ratio != float("inf") else None,
        "newReadsPerRep": new_reads,
        "newSecondsPerRep": args.seconds,
        "nearCacheCheckS": args.check_s,
        "warmupBytesOneReadPerCourse": warmup_bytes,
        "bytesPerBackstopCheck": round(statistics.median(check_bytes), 1) if check_bytes else None,
        "note": "a course read less often than once per nearCacheCheckS pays at most one "
        "backstop check (bytesPerBackstopCheck) per read; a cold course pays one bundle read",
        "targets": {"ratio": 10_000, "bytesPerRead": 1024},
        "met": {"ratio": ratio >= 10_000, "bytesPerRead": new_med <= 1024},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nold path: {old_med / 1e6:.2f} MB per lesson read (median of {args.reps})\n"
        f"new path: {new_med:.3f} B per lesson read, steady state (median of {args.reps})\n"
        f"ratio:    {ratio:,.0f}x fewer bytes (target >= 10,000x; <= 1 KB/read)\n"
        f"warm-up:  {warmup_bytes / 1e6:.2f} MB once for {len(all_records)} courses\n"
        f"worst steady case: one backstop check per read = "
        f"{result['bytesPerBackstopCheck']} B/read\n"
        f"written to {OUT.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
