"""``python -m worker.serve``: the read API as every deployment starts it (Procfile ``web``).

Reads the settings first, so a bad configuration stops the process with a short message that
names the setting and never its value, then serves with the limits of ``worker/server.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from core.logging import configure_logging
from core.settings import get_settings
from worker.server import run, server_config

STARTUP_FAILURE = 3  # uvicorn's exit code when the server could not start


def settings_error(exc: ValidationError) -> str:
    """One line per bad setting: its variable and why, without the value (it may be a secret)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "settings"
        lines.append(f"  CB_{field.upper()}: {err['msg']}")
    return "invalid settings:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's own log level (default: uvicorn's)",
    )
    parser.add_argument("--access-log", action="store_true", help="uvicorn's access log lines")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.stderr.write(settings_error(exc) + "\n")
        return 2
    except SettingsError as exc:  # a value that is not JSON where JSON is needed (no value shown)
        sys.stderr.write(f"invalid settings: {exc}\n")
        return 2
    configure_logging(settings.log_format, settings.log_level)
    config = server_config(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0 if run(config) else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
