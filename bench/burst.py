"""Benchmark: rebuilds caused by 1,000 events on one course within 1 s.

Baseline in the same run: the number of rebuilds a pipeline without debounce would run (one per
event). Checks that the final bundle equals a fresh build from OneRoster.
Writes bench/out/burst.json.
Target: rebuilds <= 1 + ceil(1 s / debounce window).

    python bench/burst.py [--events 1000] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import time
from pathlib import Path

import orjson

from bench._pipeline import make_event, running_pipeline
from core.bundle.builder import build_bundle
from core.events.publisher import publish_events
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import fetch_course_records

OUT = Path(__file__).parent / "out" / "burst.json"


def comparable(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("generation", "builtAt")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--debounce", type=float, default=0.25)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    with running_pipeline(debounce_s=args.debounce) as (sim, pipe, course_id):
        publish_events(make_event("course.updated", course_id, course_id), settings=pipe.settings)
        pipe.wait_for(lambda: pipe.generation(course_id) > 0, timeout=60)
        before = pipe.wait_quiet(course_id, settle=0.5)
        lessons = [
            c["sourcedId"]
            for c in sim.catalog.components_of(course_id)
            if c.get("parent") and c["status"] == "active"
        ]
        per_batch = args.events // args.batches
        step = args.seconds / args.batches
        batches = [
            [
                make_event(
                    "courseComponent.updated",
                    lessons[(b * per_batch + i) % len(lessons)],
                    course_id,
                )
                for i in range(per_batch)
            ]
            for b in range(args.batches)
        ]
        started = time.monotonic()
        for b, batch in enumerate(batches):
            sim.catalog.update("courseComponents", lessons[b % len(lessons)], title=f"Burst {b}")
            publish_events(batch, settings=pipe.settings)
            time.sleep(max(0.0, started + (b + 1) * step - time.monotonic()))
        elapsed = time.monotonic() - started
        after = pipe.wait_quiet(course_id, settle=1.0, timeout=60)
        stored = pipe.store.read_doc(course_id)
        with OneRosterClient(pipe.settings) as client:
            fresh = build_bundle(
                fetch_course_records(client, course_id),
                generation=0,
                built_at=dt.datetime.now(dt.UTC),
            ).doc
    rebuilds = after - before
    bound = 1 + math.ceil(args.seconds / args.debounce)
    equal = stored is not None and comparable(dict(stored)) == comparable(dict(fresh))
    report = {
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "events": per_batch * args.batches,
        "burstSeconds": round(elapsed, 3),
        "debounceS": args.debounce,
        "rebuilds": rebuilds,
        "baselineRebuildsWithoutDebounce": per_batch * args.batches,
        "reduction": round(per_batch * args.batches / max(1, rebuilds), 1),
        "target": bound,
        "finalEqualsFreshBuild": equal,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(
        f"{report['events']} events in {elapsed:.2f} s -> {rebuilds} rebuilds "
        f"(target <= {bound}; without debounce {report['events']}, {report['reduction']}x fewer)"
    )
    print(f"final bundle equals a fresh build: {equal}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
