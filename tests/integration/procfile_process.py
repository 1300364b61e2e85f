"""Start a Procfile process exactly as its line is written (``sh -c 'exec <line>'``, ``PORT``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from worker.supervise import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = str(Path(sys.executable).parent)


def procfile_line(name: str) -> str:
    for raw in (ROOT / "Procfile").read_text().splitlines():
        key, sep, command = raw.partition(":")
        if sep and key.strip() == name:
            return command.strip()
    raise KeyError(name)


@dataclass
class Process:
    """One running Procfile process: where it listens and what it wrote (stdout and stderr)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def spawn(
    name: str, env: dict[str, str], log_path: Path, *, extra: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    """The Procfile's ``name`` line (plus ``extra`` options) on a free port, from the repo root."""
    port = free_port()
    script = f"exec {procfile_line(name)}{extra}"
    full_env = {**env, "PORT": str(port), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    log = log_path.open("ab")
    try:
        proc = subprocess.Popen(
            ["sh", "-c", script],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def wait_for(
    predicate: Callable[[], Any], what: str, log: Callable[[], str], timeout: float = 30.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s; log tail:\n{log()[-3000:]}")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running(name: str, env: dict[str, str], log_path: Path, ready_path: str) -> Iterator[Process]:
    """The process, started and answering 200 on ``ready_path``; stopped after."""
    proc, port = spawn(name, env, log_path)
    process = Process(proc, port, log_path)
    try:
        wait_for(
            lambda: proc.poll() is None and http_ok(process.url + ready_path),
            f"{name} answering on {ready_path}",
            process.log,
        )
        yield process
    finally:
        stop(proc)
