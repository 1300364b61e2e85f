"""Run the simulator on a free 127.0.0.1 port in a background thread, for tests of other parts.

with run_simulator_in_thread(CatalogConfig(courses=3), total_mode="link") as sim:
    client = OneRosterClient(base_url=sim.base_url, ...)
    sim.set_faults(fail_next=2)
    ...
    assert sim.stats()["kinds"]["courses"] == 1
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from core.errors import BundlesError
from worker.simulator.app import create_app
from worker.simulator.catalog import Catalog, CatalogConfig, generate_catalog
from worker.simulator.faults import FaultSettings
from worker.simulator.state import (
    DEMO_CLIENTS,
    SimulatorOptions,
    SimulatorState,
    options_dict,
    update_options,
)

CLIENT_ID, CLIENT_SECRET = next(iter(DEMO_CLIENTS.items()))


class SimulatorStartError(BundlesError, RuntimeError):
    """The simulator thread did not start serving in time."""


@dataclass(slots=True)
class SimulatorHandle:
    """A running simulator: its address, demo credentials and its live state."""

    base_url: str
    app: Starlette
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    @property
    def state(self) -> SimulatorState:
        state: SimulatorState = self.app.state.sim
        return state

    @property
    def catalog(self) -> Catalog:
        """The live catalog: assert on it or mutate it directly (changes are served at once)."""
        return self.state.catalog

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault configuration (fields of :class:`FaultSettings`)."""
        state = self.state
        state.faults.configure(FaultSettings(**settings), now=state.options.clock())
        return state.faults.describe(now=state.options.clock())

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def stats(self) -> dict[str, Any]:
        """Requests per kind and per path since start or the last reset."""
        return self.state.stats.snapshot()

    def reset_stats(self) -> None:
        self.state.stats.reset()

    def set_options(self, **changes: Any) -> dict[str, Any]:
        """Change options at run time (``total_mode``, ``max_limit``, ``token_ttl_s``, ...)."""
        update_options(self.state.options, changes)
        return options_dict(self.state.options)

    def revoke_tokens(self) -> int:
        """Invalidate every issued token (the next read answers 401)."""
        return self.state.tokens.revoke_all()


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening-ready TCP socket bound to a free port (handed to uvicorn: no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@contextlib.contextmanager
def run_simulator_in_thread(
    config: CatalogConfig | None = None,
    *,
    catalog: Catalog | None = None,
    startup_timeout_s: float = 10.0,
    **options: Any,
) -> Iterator[SimulatorHandle]:
    """Serve a simulator over real HTTP for the duration of the ``with`` block.

    ``config`` seeds a fresh catalog (ignored when ``catalog`` is given); ``options`` are
    :class:`SimulatorOptions` fields such as ``total_mode``, ``max_limit`` or ``token_ttl_s``.
    """
    app = create_app(catalog or generate_catalog(config), SimulatorOptions(), **options)
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"simulator-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SimulatorStartError("simulator did not start", port=port)
            time.sleep(0.005)
        yield SimulatorHandle(base_url=f"http://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()
