"""Child processes for the demo: start with readiness checks, stop every one of them cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if nothing listens there, else any free loopback port."""
    if preferred is not None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """One supervised process and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None


@dataclass
class Supervisor:
    """Starts children in their own process groups and guarantees they are all stopped."""

    log_dir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        cmd: list[str],
        *,
        ready: Callable[[], bool] | None = None,
        timeout_s: float = 30.0,
        url: str | None = None,
    ) -> Child:
        """Start ``cmd``; wait for ``ready()`` (raise with the log tail if it never comes)."""
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own commands, no shell
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        child = Child(name, proc, log_path, url)
        self.children.append(child)
        if ready is not None:
            deadline = time.monotonic() + timeout_s
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} did not become ready:\n{tail}")
                time.sleep(0.2)
        return child

    def alive(self) -> list[str]:
        """Names of children still running."""
        return [c.name for c in self.children if c.proc.poll() is None]

    def stop_all(self, *, grace_s: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every process group, then SIGKILL what is left; exit codes by name."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait(timeout=5)
        # Grandchildren (prefork pool processes) share the group: make sure none survive.
        for child in self.children:
            _signal_group(child.proc.pid, signal.SIGKILL)
        return {c.name: c.proc.returncode for c in self.children}


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
