"""Cache stampede on one cold bundle key: P processes x C concurrent readers, side by side.

Variants (same workload, same run):

- ``api``: the read API's way. C concurrent requests on one event loop per process; a miss goes
  through the routes' ``OffLoop`` (one worker thread per course), whose thread runs the
  ``ReadThrough`` (in-process flight, then the Redis ``DistributedFlight``).
- ``flight``: C threads per process, an in-process ``SingleFlight`` in front of the Redis flight.
- ``flight-raw``: C threads per process, each its own Redis flight waiter.
- ``readthrough``: C threads per process calling ``ReadThrough`` (what a worker thread does).
- ``none``: no coalescing (``DistributedFlight(enabled=False)``).
- ``dogpile``: dogpile.cache's Redis backend with ``distributed_lock=True``.
- ``floor``: the least any scheme must do with threads (one BLPOP per process, then an Event).

A build sleeps ``--build-ms`` and counts itself with INCR. Reported per variant, as medians over
``--reps``: upstream builds, and the waiters' wake-up delay (a waiter's return time minus the
moment the first build finished), p50/p99 ms. The targets (1 build, wake-up p99 <= 5 ms) are
checked on ``api``: that is how the service serves concurrent reads.

    python bench/stampede.py --procs 4 --callers 64
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from core.keys import Keys  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from core.singleflight.distributed import DistributedFlight, FlightLease  # noqa: E402
from core.singleflight.local import SingleFlight  # noqa: E402
from core.singleflight.readthrough import Cached, NegativeCache, ReadThrough  # noqa: E402
from core.singleflight.stats import FlightStats  # noqa: E402
from worker.api.routes_courses import OffLoop  # noqa: E402

VARIANTS = ("api", "flight", "flight-raw", "readthrough", "none", "dogpile", "floor")
BUNDLE = "bundle:course-1"
PAYLOAD = b'{"course":"course-1","units":[]}' * 64


def _keys(prefix: str) -> dict[str, str]:
    return {
        "bundle": f"{prefix}{BUNDLE}",
        "builds": f"{prefix}bench:builds",
        "done_at": f"{prefix}bench:done_at",
    }


class Builder:
    """The upstream build: counts itself, takes ``build_ms``, stores the bundle, stamps the end."""

    def __init__(self, client: redis.Redis, prefix: str, build_ms: int) -> None:
        self.client = client
        self.k = _keys(prefix)
        self.build_s = build_ms / 1000
        self.local = threading.local()

    def build(self) -> bytes:
        self.local.built = True
        self.client.incr(self.k["builds"])
        time.sleep(self.build_s)
        self.client.set(self.k["bundle"], PAYLOAD)
        self.client.set(self.k["done_at"], repr(time.time()), nx=True)
        return PAYLOAD

    def build_if_still_missing(self, _: str, __: FlightLease | None = None) -> None:
        # the leader's double-check that every read-through does
        if self.client.get(self.k["bundle"]) is None:
            self.build()

    def read(self, _: str) -> Cached[bytes] | None:
        raw = self.client.get(self.k["bundle"])
        return None if raw is None else Cached(raw, stale=False)


def _reader(
    variant: str, client: redis.Redis, prefix: str, b: Builder, url: str, procs: int
) -> Any:
    """A function that does one cold read of the bundle the way ``variant`` does it."""
    keys = Keys(prefix=prefix)
    flight = DistributedFlight(client, keys, enabled=variant != "none", stats=FlightStats())
    local: SingleFlight[bytes | None] = SingleFlight(stats=FlightStats())
    name = keys.bundle_flight_name("course-1")

    def build(lease: FlightLease) -> None:
        b.build_if_still_missing(BUNDLE, lease)

    def via_flight() -> bytes | None:
        if (raw := client.get(b.k["bundle"])) is not None:
            return raw
        if variant == "flight":  # one Redis waiter and one read per process, shared by its threads
            return local.do(name, lambda: (flight.run(name, build), client.get(b.k["bundle"]))[1])
        flight.run(name, build)
        return client.get(b.k["bundle"])

    if variant in ("flight", "flight-raw", "none"):
        return via_flight
    if variant == "readthrough":
        rt: ReadThrough[bytes] = ReadThrough(
            read=b.read,
            build=b.build_if_still_missing,
            flight=flight,
            negative=NegativeCache(client, lambda k: f"{prefix}missing:{k}"),
            flight_name=lambda _: name,
        )
        return lambda: rt.get(BUNDLE).value
    if variant == "floor":
        return _floor_reader(client, prefix, b, procs)
    from dogpile.cache import make_region

    region = make_region(key_mangler=lambda k: f"{prefix}{k}").configure(
        "dogpile.cache.redis",
        expiration_time=300,
        arguments={
            "url": url,
            "distributed_lock": True,
            "lock_timeout": 30,
            "thread_local_lock": False,  # dogpile's advice with distributed_lock
        },
    )
    return lambda: region.get_or_create("dogpile:" + BUNDLE, b.build)


def _floor_reader(client: redis.Redis, prefix: str, b: Builder, procs: int) -> Any:
    """The least any scheme must do: one cross-process signal (BLPOP), one Event per process.

    No failure handling, no fencing: a lower bound for wake-up on this machine, not a design.
    """
    done = threading.Event()
    shared: list[bytes | None] = [None]
    signal_key = f"{prefix}bench:floor-done"

    def watch() -> None:
        client.blpop([signal_key], timeout=60)
        shared[0] = client.get(b.k["bundle"])
        done.set()

    threading.Thread(target=watch, daemon=True).start()

    def read() -> bytes | None:
        if client.set(f"{prefix}bench:floor-claim", b"1", nx=True):
            b.build()
            client.rpush(signal_key, *[b"1"] * procs)
        done.wait(60)
        return shared[0]

    return read


def _api_burst(client: redis.Redis, prefix: str, b: Builder, callers: int) -> list[dict[str, Any]]:
    """The API's way: C concurrent requests on one event loop; a miss goes through the routes'
    ``OffLoop`` (one worker thread per course), whose thread runs the read-through."""
    keys = Keys(prefix=prefix)
    rt: ReadThrough[bytes] = ReadThrough(
        read=b.read,
        build=b.build_if_still_missing,
        flight=DistributedFlight(client, keys, stats=FlightStats()),
        negative=NegativeCache(client, lambda k: f"{prefix}missing:{k}"),
        flight_name=lambda _: keys.bundle_flight_name("course-1"),
    )
    off_loop = OffLoop()

    def load(key: str) -> tuple[bytes, bool]:
        b.local.built = False
        return rt.get(key).value, b.local.built

    async def one(first: bool) -> dict[str, Any]:
        try:
            raw, built = await off_loop.run(BUNDLE, load, BUNDLE)
        except Exception as exc:
            return {"error": repr(exc)}
        # every caller gets the one thread's answer; the first caller is the one that asked
        return {"ok": raw is not None, "built": first and built, "end": time.time()}

    async def burst() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(i == 0) for i in range(callers))))

    return asyncio.run(burst())


def _worker(
    url: str, procs: int, callers: int, commands: Any, results: Any, start: Any, finish: Any
) -> None:
    """One process: for each command, C callers released together do one cold read each."""
    configure_logging(fmt="json", level="WARNING")
    client = redis.Redis.from_url(url, max_connections=4 * callers)
    pool = ThreadPoolExecutor(callers)
    while (cmd := commands.get()) is not None:
        variant, prefix, build_ms = cmd
        builder = Builder(client, prefix, build_ms)
        if variant == "api":
            start.wait()
            calls = _api_burst(client, prefix, builder, callers)
            finish.wait()  # report only when every process is done: pickling steals CPU
            results.put(calls)
            continue
        read = _reader(variant, client, prefix, builder, url, procs)
        gate = threading.Barrier(callers + 1)

        def one(read: Any = read, gate: threading.Barrier = gate, b: Builder = builder) -> Any:
            b.local.built = False
            gate.wait()
            try:
                ok = read() is not None
            except Exception as exc:
                return {"error": repr(exc)}
            return {"ok": ok, "built": b.local.built, "end": time.time()}

        futures = [pool.submit(one) for _ in range(callers)]
        start.wait()
        gate.wait()
        calls = [f.result() for f in futures]
        finish.wait()
        results.put(calls)
    pool.shutdown()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _cleanup(client: redis.Redis, prefix: str) -> None:
    for pattern in (f"{prefix}*", f"_lock{prefix}*"):
        found = list(client.scan_iter(match=pattern, count=1000))
        if found:
            client.delete(*found)


def _round(
    client: redis.Redis, procs: list[Any], results: Any, start: Any, variant: str, build_ms: int
) -> dict[str, Any]:
    prefix = f"cbbench:{uuid.uuid4().hex[:10]}:"
    try:
        t0 = time.time()
        for _, commands in procs:
            commands.put((variant, prefix, build_ms))
        start.wait()
        per_proc = [results.get(timeout=120) for _ in procs]
        calls = [c for batch in per_proc for c in batch]
        wall_ms = (time.time() - t0) * 1000
        k = _keys(prefix)
        builds = int(client.get(k["builds"]) or 0)
        done_at = float(client.get(k["done_at"]) or 0)
    finally:
        _cleanup(client, prefix)
    errors = [c["error"] for c in calls if "error" in c]
    waiters = [(c["end"] - done_at) * 1000 for c in calls if "error" not in c and not c["built"]]
    # a process's first waiter to return: when the cross-process signal reached that process
    firsts = [
        (min(c["end"] for c in batch) - done_at) * 1000
        for batch in per_proc
        if not any(c.get("built") or "error" in c for c in batch)
    ]
    return {
        "builds": builds,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "all_read_ok": all(c.get("ok") for c in calls),
        "waiters": len(waiters),
        "wake_p50_ms": _percentile(waiters, 0.5) if waiters else None,
        "wake_p99_ms": _percentile(waiters, 0.99) if waiters else None,
        "proc_wake_p50_ms": statistics.median(firsts) if firsts else None,
        "wall_ms": wall_ms,
    }


def _median(rounds: list[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in rounds if r[field] is not None]
    return statistics.median(values) if values else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--callers", type=int, default=64, help="concurrent readers per process")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--build-ms", type=int, default=50)
    parser.add_argument(
        "--url", default=os.environ.get("CB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "stampede.json"))
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    configure_logging(fmt="json", level="WARNING")

    ctx = mp.get_context("spawn")
    start = ctx.Barrier(args.procs + 1)
    finish = ctx.Barrier(args.procs)
    results = ctx.Queue()
    procs = []
    for _ in range(args.procs):
        commands = ctx.Queue()
        proc = ctx.Process(
            target=_worker,
            args=(args.url, args.procs, args.callers, commands, results, start, finish),
            daemon=True,
        )
        proc.start()
        procs.append((proc, commands))
    client = redis.Redis.from_url(args.url)
    rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        _round(client, procs, results, start, variants[0], args.build_ms)  # warm-up, not counted
        for _ in range(args.reps):
            for variant in variants:  # interleaved so drift hits every variant alike
                rounds[variant].append(
                    _round(client, procs, results, start, variant, args.build_ms)
                )
    finally:
        for _proc, commands in procs:
            commands.put(None)
        for proc, _ in procs:
            proc.join(timeout=30)

    summary = {
        v: {
            "builds_median": _median(rs, "builds"),
            "builds_per_rep": [r["builds"] for r in rs],
            "wake_p50_ms_median": _median(rs, "wake_p50_ms"),
            "wake_p99_ms_median": _median(rs, "wake_p99_ms"),
            "proc_wake_p50_ms_median": _median(rs, "proc_wake_p50_ms"),
            "wall_ms_median": _median(rs, "wall_ms"),
            "errors_total": sum(r["errors"] for r in rs),
            "first_error": next((r["first_error"] for r in rs if r["first_error"]), None),
            "all_reads_ok": all(r["all_read_ok"] for r in rs),
        }
        for v, rs in rounds.items()
    }
    print(
        f"stampede: {args.procs} procs x {args.callers} callers, build {args.build_ms} ms, "
        f"medians of {args.reps} reps"
    )
    head = ("variant", "builds", "wake p50 ms", "wake p99 ms", "proc wake ms", "wall ms")
    print(
        f"{head[0]:<12} {head[1]:>7} {head[2]:>12} {head[3]:>12} {head[4]:>13} {head[5]:>8}  errors"
    )
    for v, s in summary.items():
        p50, p99 = (_ms(s["wake_p50_ms_median"]), _ms(s["wake_p99_ms_median"]))
        first = _ms(s["proc_wake_p50_ms_median"])
        print(
            f"{v:<12} {s['builds_median']:>7} {p50:>12} {p99:>12} {first:>13} "
            f"{s['wall_ms_median']:>8.1f}  {s['errors_total']}"
        )
    api = summary.get("api")
    if api:
        print(
            f"targets (api): exactly 1 build -> {api['builds_per_rep']}; "
            f"wake-up p99 <= 5 ms -> {_ms(api['wake_p99_ms_median'])}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "stampede",
                "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "config": {
                    "procs": args.procs,
                    "callers": args.callers,
                    "reps": args.reps,
                    "build_ms": args.build_ms,
                    "url": args.url,
                    "cpus": os.cpu_count(),
                },
                "summary": summary,
                "rounds": rounds,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
