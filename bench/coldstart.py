"""Cold start against a rate-limited OneRoster, with the fleet's budget on and off (issue 19).

A catalog of small courses served by the simulator (its own process) limited to R requests a
second; a private, empty Redis; two worker nodes and two API processes; ``bundles warm --all``
running while concurrent readers read courses with a Zipf popularity. The same run measures
the budget on and off (off: every process sends as fast as it can, as before):

* ``limit_ratio``: time until every course is built / (upstream requests / R); target <= 1.2
* ``throttled_share``: share of upstream answers that were 429; target <= 1 %
* ``hot_first_read_p99_ms``: p99 of the first read of the 20 most popular courses; target <= 2 s
* ``dead_letters``: dead-letter entries after the run; target 0

    python -m bench.coldstart [--courses 1000] [--rate 100] [--readers 50]

Writes ``bench/out/coldstart.json`` (the four keys, the same with ``_off``, and the upstream's
answers per second for the plot in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.faults.harness import API_TOKEN, System, running_system, small_catalog, wait_until
from worker.supervise import free_port

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "coldstart.json"
HOT = 20  # the most popular courses whose first read is measured
WARM_TIMEOUT_S = 90.0  # per mode: the off run may not build every course in time


def serve_simulator(port: int, courses: int) -> None:
    """Child mode: the simulator over a catalog of small courses, until killed."""
    import uvicorn

    from worker.simulator.app import create_app
    from worker.simulator.catalog import generate_catalog
    from worker.simulator.state import SimulatorOptions

    catalog = generate_catalog(small_catalog(courses, seed=101))
    uvicorn.run(
        create_app(catalog, SimulatorOptions()),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


@contextlib.contextmanager
def simulator(courses: int) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.coldstart", "--serve-simulator", str(port), "--courses",
         str(courses)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(url + "/_sim/stats", timeout=2).is_success, timeout=120)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class Readers:
    """Concurrent readers over both APIs; records the first read latency of the hot courses."""

    def __init__(self, apis: list[str], course_ids: list[str], threads: int) -> None:
        self.apis, self.course_ids = apis, course_ids
        weights = [1 / (rank + 1) for rank in range(len(course_ids))]  # Zipf, s = 1
        self.weights = weights
        self.first_ms: dict[str, float] = {}
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        clients = [httpx.Client(base_url=a, headers=headers, timeout=30) for a in self.apis]
        try:
            while not self.stop.is_set():
                course_id = rng.choices(self.course_ids, self.weights)[0]
                client = rng.choice(clients)
                started = time.perf_counter()
                try:
                    status = client.get(f"/v1/courses/{course_id}/bundle").status_code
                except httpx.HTTPError:
                    status = 0
                ms = (time.perf_counter() - started) * 1000
                with self.lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if course_id in self.course_ids[:HOT] and course_id not in self.first_ms:
                        self.first_ms[course_id] = ms
                time.sleep(0.1)
        finally:
            for c in clients:
                c.close()

    def __enter__(self) -> Readers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def built(system: System) -> int:
    client = system.redis()
    try:
        return int(client.scard(system.keys.courses()))
    finally:
        client.close()


def run_mode(sim_url: str, args: argparse.Namespace, *, budget: bool) -> dict[str, Any]:
    rate = args.rate
    overrides = {
        "CB_ONEROSTER_BUDGET_ENABLED": "true" if budget else "false",
        "CB_ONEROSTER_MAX_RPS": str(rate),
        "CB_ONEROSTER_BURST": str(max(1, rate // 20)),
        "CB_ONEROSTER_BUDGET_INCREASE_RPS": str(rate / 20),  # back from a cut within seconds
        "CB_ONEROSTER_MAX_INFLIGHT": "32",
        "CB_COLD_BUILDS_PER_TOKEN": "0",
        "CB_RECONCILE_PERIOD_S": "3600",
        "CB_ONEROSTER_MAX_ATTEMPTS": "5",
        "CB_ONEROSTER_DEADLINE_S": "30",
    }
    httpx.post(
        f"{sim_url}/_sim/faults",
        json={"rate_limit_rps": rate, "rate_limit_burst": max(1, rate // 5)},  # 0.2 s
    ).raise_for_status()
    workdir = Path(tempfile.mkdtemp(prefix="cb-coldstart-"))
    with running_system(workdir, sim_url, overrides=overrides) as system:
        workers = [system.start_worker(concurrency=2), system.start_worker(concurrency=2)]
        apis = []
        for _ in range(2):
            system.start_api()
            apis.append(system.api_url)
        for worker in workers:
            system.wait_worker_consuming(worker)
        summary = httpx.get(f"{sim_url}/_sim/catalog/summary", timeout=60).json()
        course_ids = sorted(
            c["sourcedId"] for c in summary["courses"] if c.get("status") == "active"
        )
        httpx.post(f"{sim_url}/_sim/stats/reset").raise_for_status()
        started = time.monotonic()
        warm = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "warm", "--all", "--json", "--workers", "8"],
            cwd=ROOT,
            env=system.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        order = course_ids[:]
        random.Random(5).shuffle(order)  # popularity unrelated to the warm's (sorted) order
        with Readers(apis, order, args.readers) as readers:
            try:
                out, _ = warm.communicate(timeout=WARM_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                warm.kill()
                out, _ = warm.communicate()
            with contextlib.suppress(AssertionError):  # reported as courses_built below
                wait_until(
                    lambda: built(system) >= len(course_ids),
                    timeout=max(1.0, WARM_TIMEOUT_S - (time.monotonic() - started)),
                )
            elapsed = time.monotonic() - started
        stats = httpx.get(f"{sim_url}/_sim/stats").json()
        dead = int(system.redis().hlen(system.keys.dlq()))
        done = built(system)
    try:
        report = json.loads(out)
        warm_failures = len(report.get("failures", {}))
    except ValueError:
        warm_failures = -1
    timeline = stats["timeline"]
    requests = sum(row[1] for row in timeline)
    throttled = sum(row[2] for row in timeline)
    per_second: dict[int, list[int]] = {}
    for slot, n, t in timeline:
        counts = per_second.setdefault(slot // 10, [0, 0])
        counts[0] += n - t
        counts[1] += t
    first = min(per_second) if per_second else 0
    return {
        "limit_ratio": round(elapsed / (requests / rate), 3) if requests else math.nan,
        "throttled_share": round(throttled / requests, 4) if requests else math.nan,
        "hot_first_read_p99_ms": round(p99(list(readers.first_ms.values())), 1),
        "dead_letters": dead,
        "seconds": round(elapsed, 1),
        "courses_built": done,
        "warm_failures": warm_failures,
        "upstream_requests": requests,
        "upstream_429": throttled,
        "hot_courses_read": len(readers.first_ms),
        "read_statuses": {str(k): v for k, v in sorted(readers.statuses.items())},
        "served_per_second": [per_second[s][0] for s in sorted(per_second)],
        "throttled_per_second": [per_second[s][1] for s in sorted(per_second)],
        "first_second": first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=100, help="the upstream limit R, req/s")
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--modes", default="on,off", help="on, off or both (on,off)")
    parser.add_argument("--serve-simulator", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulator:
        serve_simulator(args.serve_simulator, args.courses)
        return
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_version()} cpus={os.cpu_count()}",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"courses": args.courses, "rate": args.rate, "readers": args.readers},
        "targets": {
            "limit_ratio": 1.2,
            "throttled_share": 0.01,
            "hot_first_read_p99_ms": 2000,
            "dead_letters": 0,
        },
    }
    started = time.monotonic()
    with simulator(args.courses) as sim_url:
        for mode in args.modes.split(","):
            numbers = run_mode(sim_url, args, budget=mode == "on")
            suffix = "" if mode == "on" else "_off"
            series = {k: numbers.pop(k) for k in ("served_per_second", "throttled_per_second")}
            result.setdefault("timeline", {})[mode] = series
            for key, value in numbers.items():
                result[f"{key}{suffix}"] = value
            print(
                f"budget {mode}: {numbers['seconds']} s, limit ratio {numbers['limit_ratio']}, "
                f"429 share {numbers['throttled_share']}, hot first read p99 "
                f"{numbers['hot_first_read_p99_ms']} ms, dead letters {numbers['dead_letters']}, "
                f"built {numbers['courses_built']}/{args.courses}, warm failures "
                f"{numbers['warm_failures']}",
                flush=True,
            )
    result["total_seconds"] = round(time.monotonic() - started, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {OUT.relative_to(ROOT)} in {result['total_seconds']} s")


if __name__ == "__main__":
    main()
