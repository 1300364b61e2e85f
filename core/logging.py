"""structlog, configured once per process: JSON lines in production, readable in a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False

# Keys whose values must never reach a log line, whatever a caller passes.
_SECRET_KEYS = frozenset(
    {"token", "access_token", "authorization", "client_secret", "secret", "password", "api_token"}
)


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (test runners and CLIs swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(fmt: str = "auto", level: str = "INFO", *, force: bool = False) -> None:
    """Configure structlog and stdlib logging; later calls are no-ops unless ``force``."""
    global _configured  # noqa: PLW0603 - process-wide, once
    if _configured and not force:
        return
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            # rich shows each frame's local variables by default: headers, tokens, bodies.
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info
            if use_json
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    _configured = True


def get_logger(name: str) -> Any:
    """A lazy structlog logger bound to ``module=name`` (configuration applies on first use)."""
    return structlog.get_logger(module=name)
