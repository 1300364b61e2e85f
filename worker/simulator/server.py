"""Run the simulator as a process (``python -m worker.simulator``, the CLI, the Procfile)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import fields

import uvicorn

from core.logging import configure_logging, get_logger
from worker.simulator.app import create_app
from worker.simulator.catalog import CatalogConfig, generate_catalog, single_course_config
from worker.simulator.state import TOTAL_MODES, SimulatorOptions

log = get_logger(__name__)


def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 42,
    courses: int = 20,
    *,
    single_course_resources: int | None = None,
    total_mode: str = "header",
    max_limit: int = 3000,
    default_limit: int = 100,
    token_ttl_s: float = 3600.0,
    dialect: str = "official",
    log_level: str = "warning",
) -> None:
    """Generate the catalog and serve it until interrupted.

    ``single_course_resources`` replaces the catalog with one course of about that many resources.
    """
    configure_logging(level=log_level)
    config = (
        single_course_config(single_course_resources, seed=seed)
        if single_course_resources
        else CatalogConfig(seed=seed, courses=courses)
    )
    config = dataclasses.replace(config, dialect=dialect)  # type: ignore[arg-type]
    catalog = generate_catalog(config)
    app = create_app(
        catalog,
        SimulatorOptions(
            token_ttl_s=token_ttl_s,
            max_limit=max_limit,
            default_limit=default_limit,
            total_mode=total_mode,  # type: ignore[arg-type]  # checked by create_app
        ),
    )
    log.warning(
        "simulator.start",
        url=f"http://{host}:{port}",
        seed=seed,
        courses=catalog.count("courses"),
        resources=catalog.count("resources"),
        total_mode=total_mode,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="off")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m worker.simulator``."""
    defaults = {f.name: f.default for f in fields(SimulatorOptions)}
    parser = argparse.ArgumentParser(
        prog="python -m worker.simulator",
        description="Serve a seeded synthetic OneRoster 1.2 catalog "
        "(client demo-client / demo-secret).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--courses", type=int, default=20)
    parser.add_argument(
        "--single-course-resources",
        type=int,
        default=None,
        help="serve one course of about this many resources instead (benchmarks)",
    )
    parser.add_argument("--total-mode", choices=TOTAL_MODES, default=defaults["total_mode"])
    parser.add_argument("--max-limit", type=int, default=defaults["max_limit"])
    parser.add_argument("--default-limit", type=int, default=defaults["default_limit"])
    parser.add_argument("--token-ttl-s", type=float, default=defaults["token_ttl_s"])
    parser.add_argument(
        "--dialect",
        choices=("official", "legacy"),
        default="official",
        help="legacy: refs without href/type, parent named courseComponent",
    )
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m worker.simulator``."""
    args = parse_args(argv)
    run(**vars(args))
