"""A private RabbitMQ node on free loopback ports, so a scenario can restart a broker it owns.

The machine's own RabbitMQ is left as it is: this node has its own name, ports, data and config.
The queues Celery declares are durable, so they and their messages survive a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.faults.harness import Proc, spawn, wait_until
from worker.supervise import free_port


def _listening(port: int) -> bool:
    import socket

    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RabbitNode:
    """``rabbitmq-server`` with its own node name, AMQP and distribution ports, and data dir."""

    def __init__(self) -> None:
        if shutil.which("rabbitmq-server") is None:
            pytest.skip("rabbitmq-server is not installed")
        # Not under pytest's tmp_path: its parents are private to root, and the node runs as the
        # rabbitmq user.
        self.home = Path(tempfile.mkdtemp(prefix="cb-rabbit-"))
        self.home.chmod(0o755)
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"cbfaults{self.port}@localhost"
        self.proc: Proc | None = None

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        h = self.home
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(h / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(h / "mnesia"),
            "RABBITMQ_LOG_BASE": str(h / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(h / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(h / "feature_flags"),
            "RABBITMQ_PID_FILE": str(h / "pid"),
        }

    def start(self, *, timeout: float = 60.0) -> None:
        h = self.home
        (h / "mnesia").mkdir(parents=True, exist_ok=True)
        (h / "log").mkdir(parents=True, exist_ok=True)
        (h / "enabled_plugins").write_text("[].\n")
        (h / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        if os.geteuid() == 0:
            # The Debian wrapper runs the node as the rabbitmq user.
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(h)], check=False)
        self.proc = spawn("rabbitmq", ["rabbitmq-server"], env=self._env(), log_path=h / "out.log")
        wait_until(lambda: _listening(self.port), timeout=timeout, what="rabbitmq listening")

    def stop(self, *, graceful: bool = True) -> None:
        if self.proc is None:
            return
        if graceful:
            subprocess.run(
                ["rabbitmqctl", "-n", self.node, "stop"],
                env=self._env(),
                capture_output=True,
                timeout=60,
                check=False,
            )
        with contextlib.suppress(ProcessLookupError):
            self.proc.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.popen.wait(timeout=10)
        self.proc = None

    def restart(self, *, down_s: float = 0.0) -> float:
        """Stop cleanly, stay down ``down_s``, start on the same ports with the same data."""
        down_at = time.monotonic()
        self.stop()
        time.sleep(down_s)
        self.start()
        return time.monotonic() - down_at

    def close(self) -> None:
        """Stop the node and remove its data."""
        self.stop(graceful=False)
        shutil.rmtree(self.home, ignore_errors=True)
