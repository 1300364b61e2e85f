"""Benchmark: one course rebuild on a simulated ~500-resource course.

Prints upstream requests per rebuild (course-scoped pages only) against the old app's org-wide
reads on the same catalog, build CPU time (median of repeated runs; build alone and build+encode),
and compressed size as a share of the raw JSON. Writes bench/out/build.json.

    python bench/build.py [--resources 500] [--runs 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path

import orjson

from core.bundle.builder import build_bundle
from core.bundle.codec import encode_bundle
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import fetch_course_records
from core.settings import Settings
from worker.simulator.catalog import generate_catalog, single_course_config
from worker.simulator.testing import run_simulator_in_thread

OUT = Path(__file__).parent / "out" / "build.json"


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
        "targets": {"buildCpuMs": 10, "compressedShare": 0.25},
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
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
