"""Benchmark: event published -> new generation readable, on a ~500-resource simulated course.

Each round changes a lesson title in the simulator (as the course builder would), publishes the
matching event, and waits for the swap notice of a newer generation. Rounds are spaced beyond the
debounce window, as human edits are; a second pass measures edits arriving faster than the window.
Prints p50/p90/p99 and writes bench/out/freshness.json. Target: p99 <= 300 ms. Also reports the
durable schedule's lag (an entry's due time to its message on the broker), p50/p99, read from the
worker's own ``cb_schedule_lag_seconds`` histogram.

    python bench/freshness.py [--events 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench._pipeline import make_event, running_pipeline
from core.events.publisher import publish_events
from worker.supervise import free_port

OUT = Path(__file__).parent / "out" / "freshness.json"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative (upper bound, count) buckets, in ms."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound * 1000
            share = (rank - lower_count) / max(count - lower_count, 1e-9)
            return (lower_bound + (bound - lower_bound) * share) * 1000
        lower_bound, lower_count = bound, count
    return lower_bound * 1000


def schedule_lag_buckets(port: int) -> list[tuple[float, float]]:
    """The worker's cb_schedule_lag_seconds buckets (cumulative), summed over its processes."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    sums: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "cb_schedule_lag_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                sums[bound] = sums.get(bound, 0.0) + sample.value
    return sorted(sums.items())


def measure(events: int, gap_s: float, debounce_s: float) -> tuple[list[float], dict[str, float]]:
    lags: list[float] = []
    port = free_port()
    with running_pipeline(debounce_s=debounce_s, worker_metrics_port=port) as (
        sim,
        pipe,
        course_id,
    ):
        publish_events(make_event("course.updated", course_id, course_id), settings=pipe.settings)
        pipe.wait_for(lambda: pipe.generation(course_id) > 0, timeout=60)
        pipe.wait_quiet(course_id, settle=0.5)
        lessons = [
            c["sourcedId"]
            for c in sim.catalog.components_of(course_id)
            if c.get("parent") and c["status"] == "active"
        ]
        pubsub = pipe.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(pipe.keys.swaps_channel())
        time.sleep(0.2)
        for i in range(events):
            lesson = lessons[i % len(lessons)]
            before = pipe.generation(course_id)
            sim.catalog.update("courseComponents", lesson, title=f"Edit {i}")
            t0 = time.perf_counter()
            publish_events(
                make_event("courseComponent.updated", lesson, course_id), settings=pipe.settings
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = pubsub.get_message(timeout=1.0)
                if msg is None:
                    continue
                body = orjson.loads(msg["data"])
                if body.get("courseId") == course_id and body.get("generation", 0) > before:
                    lags.append((time.perf_counter() - t0) * 1000)
                    break
            time.sleep(gap_s)
        pubsub.close()
        buckets = schedule_lag_buckets(port)
    schedule = {
        "entries": buckets[-1][1] if buckets else 0.0,
        "p50Ms": round(histogram_quantile(buckets, 0.5), 1),
        "p99Ms": round(histogram_quantile(buckets, 0.99), 1),
    }
    return lags, schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--debounce", type=float, default=0.25)
    args = parser.parse_args()
    spaced, spaced_schedule = measure(
        args.events, gap_s=args.debounce + 0.05, debounce_s=args.debounce
    )
    rapid, rapid_schedule = measure(max(20, args.events // 4), gap_s=0.05, debounce_s=args.debounce)
    report = {
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "debounceS": args.debounce,
        "spaced": {
            "events": len(spaced),
            "p50Ms": round(statistics.median(spaced), 1),
            "p90Ms": round(pct(spaced, 0.9), 1),
            "p99Ms": round(pct(spaced, 0.99), 1),
            "maxMs": round(max(spaced), 1),
            "scheduleLag": spaced_schedule,
        },
        "rapid": {
            "events": len(rapid),
            "p50Ms": round(statistics.median(rapid), 1),
            "p99Ms": round(pct(rapid, 0.99), 1),
            "scheduleLag": rapid_schedule,
        },
        "targetP99Ms": 300,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    s, r = report["spaced"], report["rapid"]
    print(
        f"event -> fresh bundle, {s['events']} edits spaced beyond the window: "
        f"p50 {s['p50Ms']} ms, p90 {s['p90Ms']} ms, p99 {s['p99Ms']} ms (target p99 <= 300 ms)"
    )
    print(
        f"edits every 50 ms (inside the window, trailing edge): "
        f"p50 {r['p50Ms']} ms, p99 {r['p99Ms']} ms"
    )
    for name, part in (("spaced", s), ("rapid", r)):
        lag = part["scheduleLag"]
        print(
            f"schedule lag ({name}: {lag['entries']:.0f} delayed entries): "
            f"p50 {lag['p50Ms']} ms, p99 {lag['p99Ms']} ms (loop tick 50 ms)"
        )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
