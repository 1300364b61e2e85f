"""Benchmark: one course rebuild on a simulated ~500-resource course.

Prints upstream requests per rebuild (course-scoped pages only) against the old app's org-wide
reads on the same catalog, build CPU time (median of repeated runs; build alone and build+encode),
and compressed size as a share of the raw JSON; and publish safety's costs: the CPU the
validation before the swap adds to a rebuild (shape, content digest, the rules against the stored
shape) as a share of build CPU, and the Redis bytes that keeping N earlier generations costs per
course (MEMORY USAGE, on the Redis at --redis-url). Writes bench/out/build.json.

    python bench/build.py [--resources 500] [--runs 50] [--redis-url redis://127.0.0.1:6379/9]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

from core.bundle.builder import build_bundle
from core.bundle.codec import encode_bundle
from core.bundle.model import BundleDoc
from core.bundle.store import BundleStore
from core.bundle.validation import BundleShape, Removals, content_digest, validate
from core.keys import Keys
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import fetch_course_records
from core.settings import Settings
from worker.simulator.catalog import generate_catalog, single_course_config
from worker.simulator.testing import run_simulator_in_thread

OUT = Path(__file__).parent / "out" / "build.json"
DEFAULT_REDIS_URL = os.environ.get("CB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def validation_cpu_ms(doc: BundleDoc, raw_json: bytes, old_shape: bytes, runs: int) -> list[float]:
    """CPU of what a guarded rebuild adds before the swap, per run (Redis round trips aside)."""
    spent: list[float] = []
    removals = Removals.from_members([])
    for _ in range(runs):
        t0 = time.process_time()
        shape = BundleShape.of(doc)
        content_digest(raw_json)
        verdict = validate(shape, BundleShape.loads(old_shape), removals=removals)
        spent.append((time.process_time() - t0) * 1000)
        assert verdict.ok
    return spent


def kept_generations_bytes(doc: BundleDoc, redis_url: str, keep: int) -> dict[str, Any]:
    """Redis bytes of one course's live bundle and of ``keep`` kept earlier generations."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix=f"cbbench:{uuid.uuid4().hex[:8]}:")
    store = BundleStore(client, keys, keep_generations=keep)
    course_id = doc["courseId"]
    try:
        for n in range(keep + 2):  # every write differs, so each pushes one into the kept set
            changed: BundleDoc = {**doc, "generation": store.next_generation(course_id)}
            changed["course"] = {**doc["course"], "title": f"{doc['course']['title']} v{n}"}
            store.write(course_id, changed, encode_bundle(changed))
        live = int(client.memory_usage(keys.bundle(course_id), samples=0) or 0)
        kept = int(client.memory_usage(keys.kept(course_id), samples=0) or 0)
        return {
            "keep": keep,
            "kept": len(store.kept(course_id)),
            "liveBundleBytes": live,
            "keptBytes": kept,
            "keptBytesPerGeneration": kept // max(1, keep),
        }
    finally:
        for key in client.scan_iter(match=f"{keys.prefix}*"):
            client.delete(key)
        client.close()


def org_wide_requests(settings: Settings) -> int:
    """The old path: every resource and every component resource of the org, paged."""
    client = OneRosterClient(settings)
    before = client.requests_made
    client.list_resources()
    client.list_component_resources()
    client.list_components()
    made = client.requests_made - before
    client.close()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="for the kept bytes")
    parser.add_argument("--keep", type=int, default=3, help="kept generations (setting default)")
    args = parser.parse_args()

    big = generate_catalog(single_course_config(args.resources))
    course_id = big.records("courses")[0]["sourcedId"]
    with run_simulator_in_thread(catalog=big) as sim:
        settings = Settings(
            _env_file=None, oneroster_base_url=sim.base_url, oneroster_page_size=args.page_size
        )
        client = OneRosterClient(settings)
        fetch_ms: list[float] = []
        requests: list[int] = []
        records = None
        for _ in range(5):
            t0 = time.perf_counter()
            records = fetch_course_records(client, course_id)
            fetch_ms.append((time.perf_counter() - t0) * 1000)
            requests.append(records.upstream_requests)
        assert records is not None
        client.close()
    # The old path on the simulator's default 20-course org: every page of the org-wide lists.
    with run_simulator_in_thread(catalog=generate_catalog()) as sim:
        settings = Settings(
            _env_file=None, oneroster_base_url=sim.base_url, oneroster_page_size=args.page_size
        )
        old_requests = org_wide_requests(settings)

    built_at = dt.datetime.now(dt.UTC)
    build_cpu: list[float] = []
    total_cpu: list[float] = []
    for i in range(args.runs):
        t0 = time.process_time()
        result = build_bundle(records, generation=i + 1, built_at=built_at)
        t1 = time.process_time()
        encoded = encode_bundle(result.doc)
        t2 = time.process_time()
        build_cpu.append((t1 - t0) * 1000)
        total_cpu.append((t2 - t0) * 1000)
    totals = result.doc["totals"]
    raw, gz, zs = len(encoded.json), len(encoded.gzip), len(encoded.zstd)
    old_shape = BundleShape.of(result.doc).dumps()
    guard_cpu = validation_cpu_ms(result.doc, encoded.json, old_shape, args.runs)
    guard_ms = statistics.median(guard_cpu)
    kept = kept_generations_bytes(result.doc, args.redis_url, args.keep)
    report = {
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "course": {
            "resources": totals["resources"],
            "lessons": totals["lessons"],
            "units": totals["units"],
            "skipped": result.doc["skipped"],
        },
        "upstreamRequestsPerRebuild": statistics.median(requests),
        "orgWideRequestsOldPath": old_requests,
        "requestRatioOldOverNew": round(old_requests / statistics.median(requests), 1),
        "fetchMsMedian": round(statistics.median(fetch_ms), 1),
        "buildCpuMsMedian": round(statistics.median(build_cpu), 2),
        "buildPlusEncodeCpuMsMedian": round(statistics.median(total_cpu), 2),
        "rawBytes": raw,
        "gzipBytes": gz,
        "zstdBytes": zs,
        "gzipShare": round(gz / raw, 3),
        "zstdShare": round(zs / raw, 3),
        "validationCpuMsMedian": round(guard_ms, 3),
        "validationShareOfBuildCpu": round(guard_ms / statistics.median(build_cpu), 3),
        "validationShareOfBuildPlusEncodeCpu": round(guard_ms / statistics.median(total_cpu), 3),
        "shapeBytes": len(old_shape),
        "keptGenerations": kept,
        "targets": {"buildCpuMs": 10, "compressedShare": 0.25, "validationShareOfBuildCpu": 0.1},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(
        f"course {course_id}: {totals['resources']} resources, {totals['lessons']} lessons, "
        f"{totals['units']} units, skipped {result.doc['skipped']}"
    )
    print(
        f"upstream requests per rebuild: {report['upstreamRequestsPerRebuild']} "
        f"(old org-wide path: {old_requests}, {report['requestRatioOldOverNew']}x more)"
    )
    print(f"fetch wall time median: {report['fetchMsMedian']} ms")
    print(
        f"build CPU median: {report['buildCpuMsMedian']} ms; build+encode: "
        f"{report['buildPlusEncodeCpuMsMedian']} ms (target <= 10 ms)"
    )
    print(
        f"raw {raw} B, gzip {gz} B ({report['gzipShare']:.1%}), zstd {zs} B "
        f"({report['zstdShare']:.1%}) (target <= 25%)"
    )
    print(
        f"validation before the swap: {guard_ms:.3f} ms CPU per rebuild, "
        f"{report['validationShareOfBuildCpu']:.1%} of build CPU, "
        f"{report['validationShareOfBuildPlusEncodeCpu']:.1%} of build+encode (target < 10%); "
        f"stored shape {len(old_shape)} B"
    )
    print(
        f"kept generations: {kept['kept']} kept cost {kept['keptBytes']} B in Redis "
        f"({kept['keptBytesPerGeneration']} B each; the live bundle {kept['liveBundleBytes']} B)"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
