"""Real processes for the fault scenarios: a private redis-server, Celery worker and beat, the API.

Every process runs in its own session (process group), so a scenario can SIGKILL a whole worker
node or only its pool children, and ``System.stop`` can always reap everything it started.
Data lives in DB 0 and the broker in DB 1 of a redis-server the scenario owns (on a free port),
so nothing touches the machine's shared Redis and a "Redis restart with nothing kept" is real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import redis
from redis import Redis

from core.bundle.store import BundleStore
from core.keys import Keys
from core.settings import Settings
from worker.simulator.catalog import CatalogConfig
from worker.supervise import free_port

ROOT = Path(__file__).resolve().parents[2]
FULL_ENV = "CB_FAULTS_FULL"
API_TOKEN = "faults-all-scopes"
KEY_PREFIX = "cbf:"


# --- sizes ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sizes:
    """How hard each scenario pushes: the CI subset, or the full suite (CB_FAULTS_FULL=1)."""

    full: bool
    kills: int
    outage_s: float
    bad_events: int
    bad_requests: int
    schemathesis_examples: int
    disorder_examples: int

    @property
    def mode(self) -> str:
        return "full" if self.full else "subset"


def sizes() -> Sizes:
    """The sizes for this run, from ``CB_FAULTS_FULL``."""
    if os.environ.get(FULL_ENV, "") not in ("", "0", "false", "no"):
        return Sizes(True, 20, 60.0, 10_000, 2_000, 60, 100)
    return Sizes(False, 3, 6.0, 500, 200, 8, 5)


def small_catalog(courses: int = 5, *, seed: int = 11) -> CatalogConfig:
    """A few small courses: rebuilds stay cheap so the scenarios spend their time on faults."""
    return CatalogConfig(
        seed=seed,
        courses=courses,
        units=(2, 3),
        lessons=(2, 3),
        resources=(2, 4),
        quizzes=(0, 1),
        deleted_courses=0,
        missing_metadata=1,
        students=3,
        results_per_student=3,
    )


# --- small helpers -------------------------------------------------------------------------------
def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = ""
) -> float:
    """Poll until ``predicate()`` is truthy; the seconds it took. AssertionError on timeout."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (redis.RedisError, httpx.HTTPError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what or predicate}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (read from /proc; Linux only)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; the parent pid follows its closing paren.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


# --- processes -----------------------------------------------------------------------------------
@dataclass
class Proc:
    """One started process (leader of its own process group) and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, *, grace_s: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left; always reaps the leader."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
        self.signal_group(signal.SIGKILL)  # stray pool children too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def spawn(name: str, cmd: list[str], *, env: dict[str, str], log_path: Path) -> Proc:
    log = log_path.open("ab")
    try:
        popen = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()
    return Proc(name, popen, log_path)


class RedisServer:
    """A private redis-server (nothing persisted) that can be killed and restarted empty."""

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.proc: Proc | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db), socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        self.starts += 1
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--maxclients", "2000",
        ]  # fmt: skip
        if self.password:
            cmd += ["--requirepass", self.password]
        self.proc = spawn(
            "redis", cmd, env=dict(os.environ), log_path=self.workdir / "redis-server.log"
        )
        probe = self.client()
        try:
            wait_until(probe.ping, timeout=10, interval=0.02, what="redis-server answers PING")
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone."""
        if self.proc is not None:
            self.proc.signal_group(signal.SIGKILL)
            self.proc.popen.wait(timeout=10)
            self.proc = None

    def shutdown(self) -> None:
        """SHUTDOWN NOSAVE: Redis closes every client connection, then exits (a clean stop)."""
        if self.proc is None:
            return
        client = self.client()
        with contextlib.suppress(redis.RedisError):
            client.shutdown(nosave=True)
        client.close()
        self.proc.popen.wait(timeout=10)
        self.proc = None

    def restart_empty(self, *, down_s: float = 0.0, graceful: bool = False) -> float:
        """Stop (SIGKILL, or SHUTDOWN when ``graceful``), stay down ``down_s``, start again on
        the same port with nothing kept. Returns the seconds it was down (stop to PING)."""
        down_at = time.monotonic()
        if graceful:
            self.shutdown()
        else:
            self.kill()
        time.sleep(down_s)
        self.start()
        return time.monotonic() - down_at

    def stop(self) -> None:
        self.kill()


@dataclass
class System:
    """A deployment against the simulator: Redis, worker(s), beat and API, torn down at exit."""

    workdir: Path
    redis_server: RedisServer
    sim_url: str
    overrides: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    api_url: str = ""
    api_sim_url: str | None = None

    @property
    def env(self) -> dict[str, str]:
        base = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CB_REDIS_URL": self.redis_server.url(0),
            "CB_BROKER_URL": self.redis_server.url(1),
            "CB_KEY_PREFIX": KEY_PREFIX,
            "CB_ONEROSTER_BASE_URL": self.sim_url,
            "CB_ONEROSTER_MAX_ATTEMPTS": "3",
            "CB_ONEROSTER_DEADLINE_S": "5",
            "CB_DEBOUNCE_S": "0.25",
            "CB_DEBOUNCE_MAX_WAIT_S": "2",
            "CB_REBUILD_LEASE_MS": "3000",
            "CB_RECONCILE_PERIOD_S": "2",
            "CB_BROKER_VISIBILITY_TIMEOUT_S": "90",
            "CB_API_TOKENS": orjson.dumps({API_TOKEN: ["read", "events", "attempts"]}).decode(),
            "CB_LOG_FORMAT": "json",
            "CB_LOG_LEVEL": "WARNING",
        }
        base.update(self.overrides)
        return base

    @property
    def settings(self) -> Settings:
        """The same settings as the processes, for the test process's own clients."""
        env = self.env
        return Settings(
            _env_file=None,
            redis_url=env["CB_REDIS_URL"],
            broker_url=env["CB_BROKER_URL"],
            key_prefix=env["CB_KEY_PREFIX"],
            oneroster_base_url=self.sim_url,
            oneroster_client_id=env.get("CB_ONEROSTER_CLIENT_ID", "demo-client"),
            oneroster_client_secret=env.get("CB_ONEROSTER_CLIENT_SECRET", "demo-secret"),
            broker_visibility_timeout_s=int(env["CB_BROKER_VISIBILITY_TIMEOUT_S"]),
        )

    @property
    def keys(self) -> Keys:
        return Keys(prefix=KEY_PREFIX)

    def redis(self, db: int = 0) -> Redis:
        return self.redis_server.client(db)

    def store(self, client: Redis | None = None) -> BundleStore:
        return BundleStore(client or self.redis(), self.keys)

    # --- processes -------------------------------------------------------------------------------
    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start_worker(self, *, concurrency: int = 2, loglevel: str = "WARNING") -> Proc:
        n = sum(1 for p in self.procs if p.name.startswith("worker"))
        cmd = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker",
            "-Q", "events,rebuilds", "--concurrency", str(concurrency), "--pool", "prefork",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", loglevel, "-n", f"faults-{os.getpid()}-{n}@%h",
        ]  # fmt: skip
        proc = spawn(f"worker-{n}", cmd, env=self.env, log_path=self._log("worker"))
        self.procs.append(proc)
        return proc

    def start_beat(self, *, loglevel: str = "WARNING") -> Proc:
        schedule = self.workdir / "beat-schedule"
        cmd = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "beat",
            "--schedule", str(schedule), "--loglevel", loglevel,
        ]  # fmt: skip
        proc = spawn("beat", cmd, env=self.env, log_path=self._log("beat"))
        self.procs.append(proc)
        return proc

    def start_api(self, *, log_level: str = "warning", access_log: bool = False) -> Proc:
        port = free_port()
        env = self.env
        if self.api_sim_url is not None:
            env["CB_ONEROSTER_BASE_URL"] = self.api_sim_url
        cmd = [
            sys.executable, "-m", "worker.serve",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level,
        ]  # fmt: skip
        if access_log:
            cmd.append("--access-log")
        proc = spawn("api", cmd, env=env, log_path=self._log("api"))
        self.procs.append(proc)
        self.api_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: proc.alive() and httpx.get(self.api_url + "/healthz", timeout=2).is_success,
            timeout=30,
            what="API /healthz",
        )
        return proc

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("worker") and p.alive()]

    def kill_worker_node(self, proc: Proc) -> None:
        """SIGKILL the worker's main process and its pool children at once (the node dies)."""
        proc.signal_group(signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def kill_worker_children(self, proc: Proc) -> int:
        """SIGKILL only the pool processes (as an OOM killer would); the main process lives on."""
        killed = 0
        for pid in children_of(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def wait_worker_consuming(self, proc: Proc, *, timeout: float = 30.0) -> None:
        """Wait until the worker's pool runs and its consumer waits on the queues (BRPOP).

        Celery gives up on the whole node if a pool process dies before the consumer loop
        starts ("Could not start worker processes"), so kills wait for this.
        """

        def consuming() -> bool:
            assert proc.alive(), f"{proc.name} exited:\n{proc.log()[-3000:]}"
            if not children_of(proc.pid):
                return False
            client = self.redis(1)
            try:
                clients = cast(list[dict[str, Any]], client.client_list())
            finally:
                client.close()
            return any(c.get("cmd") == "brpop" and c.get("db") == "1" for c in clients)

        wait_until(consuming, timeout=timeout, what=f"{proc.name} consuming")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def logs(self) -> str:
        """Every process log of this system, concatenated."""
        texts = []
        for path in sorted(self.workdir.glob("*.log")):
            texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def log_tail(self, chars: int = 4000) -> str:
        return self.logs()[-chars:]


@contextlib.contextmanager
def running_system(
    workdir: Path,
    sim_url: str,
    *,
    overrides: dict[str, str] | None = None,
    password: str | None = None,
    api_sim_url: str | None = None,
) -> Iterator[System]:
    """A private redis-server and a System around it; every process is reaped at exit."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (the fault suite starts its own)")
    server = RedisServer(workdir, password=password)
    server.start()
    system = System(
        workdir, server, sim_url, overrides=dict(overrides or {}), api_sim_url=api_sim_url
    )
    try:
        yield system
    finally:
        system.stop()
        server.stop()


def api_client(system: System, *, token: str = API_TOKEN, timeout: float = 10.0) -> httpx.Client:
    """An HTTP client for the system's API with a token of every scope."""
    return httpx.Client(
        base_url=system.api_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
