"""Benchmark: lesson-read throughput and p99 of the API against a bare endpoint, same server.

One API process (1 worker, started as the Procfile's web line: ``python -m worker.serve``,
httptools with the request limits) serves both:
- ``api``: ``GET /v1/courses/{id}/units/{u}/lessons/{l}`` (auth, near cache, ETag and bundle
  headers, metrics) on a ~500-resource course stored in the real Redis;
- ``bare``: ``GET /bench/bare/{id}/units/{u}/lessons/{l}`` (enabled by ``CB_API_BENCH_BARE``),
  a route of the same app that returns the same bytes from memory and does nothing else.

wrk drives each for ``--seconds`` with ``--connections``, alternating api/bare ``--reps``
times; medians. Without wrk the script stops and says how to install it, unless
``--python-client`` asks for the slower httpx generator (its numbers are not comparable).
Targets: api throughput >= 0.8x bare, api p99 <= 2x bare.

``--compare-unlimited`` also runs the same measurement on the server as it was before the
limits (``uvicorn --factory`` with its default httptools parser and no limits), alternating
the two servers rep by rep, and reports the limited server's api throughput and p99 as ratios
of the unlimited one's (docs/deploy.md; targets >= 0.9x and <= 1.1x), then times the
protocol alone in memory with and without the limits (no sockets: the limits' own cost, which
req/s on a shared machine cannot resolve). Writes bench/out/api.json.

    python -m bench.api [--seconds 8] [--connections 32] [--reps 3] [--compare-unlimited]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402

from bench.egress import store_all  # noqa: E402
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
from worker.simulator.catalog import generate_catalog, single_course_config  # noqa: E402
from worker.supervise import free_port  # noqa: E402

OUT = ROOT / "bench" / "out" / "api.json"
TOKEN = "bench-read-token"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")


def one_course(resources: int) -> CourseRecords:
    cat = generate_catalog(single_course_config(resources))
    course = cat.records("courses")[0]
    cid = course["sourcedId"]
    links = cat.component_resources_of(cid)
    return CourseRecords(
        course=Course.model_validate(course),
        components=[CourseComponent.model_validate(c) for c in cat.components_of(cid)],
        component_resources=[ComponentResource.model_validate(x) for x in links],
        resources=[Resource.model_validate(r) for r in cat.resources_of(cid)],
    )


SERVERS = {
    # The server we ship: the Procfile's web line (httptools with the request limits).
    "limited": [sys.executable, "-m", "worker.serve", "--host", "127.0.0.1"],
    # The server before the limits: uvicorn's defaults (httptools), no header/body deadlines.
    "unlimited": [
        sys.executable, "-m", "uvicorn", "worker.api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning",
    ],
}  # fmt: skip


def start_server(
    env: dict[str, str], port: int, server: str = "limited"
) -> subprocess.Popen[bytes]:
    cmd = [*SERVERS[server], "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API did not start")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds the server process has used (Linux ``/proc``; else 0)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load generators ---------------------------------------------------------------------------
def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(url: str, seconds: float, connections: int, threads: int) -> dict[str, float]:
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--latency",
        "-H", f"Authorization: Bearer {TOKEN}", url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses from {url}")
    done = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": _ms(pct["50"]), "p99_ms": _ms(pct["99"]), "requests": done}


def run_python(url: str, seconds: float, connections: int) -> dict[str, float]:
    """Fallback generator: ``connections`` keep-alive clients in one asyncio loop."""
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient, deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            resp = await client.get(url)
            latencies.append((time.perf_counter() - started) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"{resp.status_code} from {url}")

    async def main() -> float:
        limits = httpx.Limits(max_connections=connections)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(limits=limits, headers=headers) as client:
            started = time.monotonic()
            deadline = started + seconds
            await asyncio.gather(*(worker(client, deadline) for _ in range(connections)))
            return time.monotonic() - started

    took = asyncio.run(main())
    latencies.sort()
    return {
        "rps": len(latencies) / took,
        "requests": float(len(latencies)),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


# --- the protocol alone, in this process -------------------------------------------------------
class _NullTransport(asyncio.Transport):
    """Takes the answers and drops them, so only the protocol and a trivial app cost time."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def protocol_cost(body: bytes, requests: int = 10_000, reps: int = 9) -> dict[str, float]:
    """Microseconds per kept-alive request of uvicorn's httptools protocol with and without the
    limits, fed in memory (no sockets, no other load): what the limits cost by themselves."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from worker.server import LimitedHttpToolsProtocol

    length = str(len(body)).encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
        )
        await send({"type": "http.response.body", "body": body})

    request = (
        b"GET /v1/courses/c/units/u/lessons/l HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
    )
    config = uvicorn.Config(app, http="httptools", access_log=False, log_level="warning")
    config.load()

    async def one(cls: type[HttpToolsProtocol]) -> float:
        proto = cls(config, ServerState(), {}, _loop=asyncio.get_running_loop())
        proto.connection_made(_NullTransport())
        started = time.perf_counter()
        for _ in range(requests):
            proto.data_received(request)
            while not proto.cycle.response_complete:
                await asyncio.sleep(0)
        took = time.perf_counter() - started
        proto.connection_lost(None)
        return took / requests * 1e6

    async def alternate() -> dict[str, list[float]]:
        classes = {"httptools": HttpToolsProtocol, "limited": LimitedHttpToolsProtocol}
        got: dict[str, list[float]] = {name: [] for name in classes}
        for rep in range(reps):
            for name in list(classes) if rep % 2 == 0 else list(classes)[::-1]:
                got[name].append(await one(classes[name]))
        return got

    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    got = runner(alternate())
    return {name: round(statistics.median(values), 2) for name, values in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--resources", type=int, default=500)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument(
        "--python-client",
        action="store_true",
        help="without wrk, load with a Python httpx generator (slower; not comparable)",
    )
    parser.add_argument(
        "--compare-unlimited",
        action="store_true",
        help="also measure the server without the request limits (uvicorn defaults)",
    )
    args = parser.parse_args()
    configure_logging("console", "ERROR", force=True)
    if shutil.which("wrk"):
        tool = "wrk"
    elif args.python_client:
        tool = "python-httpx (wrk not installed)"
    else:
        sys.exit(
            "bench.api needs wrk (https://github.com/wg/wrk) on PATH: apt-get install wrk, "
            "brew install wrk, or build it from source. --python-client runs a slower Python "
            "load generator instead; its numbers are not comparable with wrk's."
        )

    prefix = f"cbbench:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(args.redis_url)
    store = BundleStore(client, Keys(prefix=prefix))
    lessons = store_all(store, [one_course(args.resources)])
    course_id, unit_slug, lesson_slug = lessons[len(lessons) // 2]
    doc = store.read_doc(course_id)
    assert doc is not None
    unit = next(u for u in doc["units"] if u["slug"] == unit_slug)
    lesson = next(le for le in unit["lessons"] if le["slug"] == lesson_slug)
    body = orjson.dumps({**lesson, "unitSlug": unit_slug})  # exactly what the API serves

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as bare_file:
        bare_file.write(body)
    env = {
        "CB_REDIS_URL": args.redis_url,
        "CB_KEY_PREFIX": prefix,
        "CB_API_TOKENS": orjson.dumps({TOKEN: ["read"]}).decode(),
        "CB_API_BENCH_BARE": bare_file.name,
        "CB_LOG_LEVEL": "WARNING",
    }
    servers = ["limited", "unlimited"] if args.compare_unlimited else ["limited"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, dict[str, str]] = {}
    tail = f"{course_id}/units/{unit_slug}/lessons/{lesson_slug}"
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        server: {"api": [], "bare": []} for server in servers
    }
    try:
        for server in servers:
            port = free_port()
            procs[server] = start_server(env, port, server)
            base = f"http://127.0.0.1:{port}"
            urls[server] = {"api": f"{base}/v1/courses/{tail}", "bare": f"{base}/bench/bare/{tail}"}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for server in servers:
            served = {name: httpx.get(url, headers=auth) for name, url in urls[server].items()}
            assert served["api"].status_code == 200, served["api"].text
            assert served["api"].content == served["bare"].content == body
        print(f"lesson body {len(body)} B; load generator: {tool}", flush=True)
        for rep in range(args.reps):
            for server in servers if rep % 2 == 0 else servers[::-1]:
                for name in ("api", "bare") if rep % 2 == 0 else ("bare", "api"):
                    url = urls[server][name]
                    cpu_before = process_cpu_s(procs[server].pid)
                    if tool == "wrk":
                        got = run_wrk(url, args.seconds, args.connections, args.threads)
                    else:
                        got = run_python(url, args.seconds, args.connections)
                    cpu = process_cpu_s(procs[server].pid) - cpu_before
                    got["cpu_us_per_req"] = cpu * 1e6 / max(got.pop("requests"), 1.0)
                    runs[server][name].append(got)
                    print(
                        f"rep {rep + 1} {server:>9} {name:>4}: {got['rps']:8.0f} req/s  "
                        f"p50 {got['p50_ms']:.2f} ms  p99 {got['p99_ms']:.2f} ms  "
                        f"server CPU {got['cpu_us_per_req']:.0f} us/req",
                        flush=True,
                    )
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
        os.unlink(bare_file.name)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)

    def medians(by_name: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
        return {
            name: {k: statistics.median(r[k] for r in got) for k in METRICS}
            for name, got in by_name.items()
        }

    results = runs["limited"]
    med = medians(results)
    rps_ratio = med["api"]["rps"] / med["bare"]["rps"]
    p99_ratio = med["api"]["p99_ms"] / med["bare"]["p99_ms"]
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_version()} cpus={os.cpu_count()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadGenerator": tool,
        "seconds": args.seconds,
        "connections": args.connections,
        "reps": args.reps,
        "lessonBytes": len(body),
        "api": {k: round(v, 3) for k, v in med["api"].items()},
        "bare": {k: round(v, 3) for k, v in med["bare"].items()},
        "throughputRatio": round(rps_ratio, 3),
        "p99Ratio": round(p99_ratio, 3),
        "runs": results,
        "targets": {"throughputRatio": 0.8, "p99Ratio": 2.0},
        "met": {"throughputRatio": rps_ratio >= 0.8, "p99Ratio": p99_ratio <= 2.0},
    }
    if "unlimited" in runs:
        plain = medians(runs["unlimited"])
        limited_rps = med["api"]["rps"] / plain["api"]["rps"]
        limited_p99 = med["api"]["p99_ms"] / plain["api"]["p99_ms"]
        result["unlimited"] = {
            "server": "uvicorn --factory (httptools, no request limits)",
            "api": {k: round(v, 3) for k, v in plain["api"].items()},
            "bare": {k: round(v, 3) for k, v in plain["bare"].items()},
            "runs": runs["unlimited"],
            # The limited server's api numbers as ratios of the unlimited one's.
            "limitedThroughputRatio": round(limited_rps, 3),
            "limitedP99Ratio": round(limited_p99, 3),
            # Server CPU per request: far less sensitive to other load than req/s is.
            "limitedCpuPerRequestRatio": round(
                med["api"]["cpu_us_per_req"] / max(plain["api"]["cpu_us_per_req"], 1e-9), 3
            ),
            "targets": {"limitedThroughputRatio": 0.9, "limitedP99Ratio": 1.1},
            "met": {
                "limitedThroughputRatio": limited_rps >= 0.9,
                "limitedP99Ratio": limited_p99 <= 1.1,
            },
        }
    if "unlimited" in runs:
        cost = protocol_cost(body)
        result["unlimited"]["protocolUsPerRequest"] = cost
        result["unlimited"]["protocolCostRatio"] = round(cost["limited"] / cost["httptools"], 3)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\napi : {med['api']['rps']:.0f} req/s, p50 {med['api']['p50_ms']:.2f} ms, "
        f"p99 {med['api']['p99_ms']:.2f} ms, server CPU {med['api']['cpu_us_per_req']:.0f} us/req "
        f"(median of {args.reps})\n"
        f"bare: {med['bare']['rps']:.0f} req/s, p50 {med['bare']['p50_ms']:.2f} ms, "
        f"p99 {med['bare']['p99_ms']:.2f} ms\n"
        f"throughput {rps_ratio:.2f}x bare (target >= 0.8); p99 {p99_ratio:.2f}x bare "
        f"(target <= 2)\nwritten to {OUT.relative_to(ROOT)}"
    )
    if "unlimited" in result:
        u = result["unlimited"]
        print(
            f"without the limits (httptools): api {u['api']['rps']:.0f} req/s, "
            f"p99 {u['api']['p99_ms']:.2f} ms, server CPU {u['api']['cpu_us_per_req']:.0f} us/req; "
            "with them: throughput "
            f"{u['limitedThroughputRatio']:.2f}x (target >= 0.9), p99 "
            f"{u['limitedP99Ratio']:.2f}x (target <= 1.1); server CPU per request "
            f"{u['limitedCpuPerRequestRatio']:.2f}x\n"
            f"the protocol alone, in memory: {u['protocolUsPerRequest']['httptools']:.1f} us per "
            f"request without the limits, {u['protocolUsPerRequest']['limited']:.1f} us with them"
        )


if __name__ == "__main__":
    main()
