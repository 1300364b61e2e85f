"""structlog, configured once per process: JSON lines in production, readable in a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from core.redaction import redact, redact_value

_configured = False

# Their INFO lines print request URLs, which may carry credentials.
_QUIET_LOGGERS = ("httpx", "httpcore")

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


def _scrub(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Mask known secret values and credential shapes in every string field, nested too."""
    for key, value in event_dict.items():
        event_dict[key] = redact_value(value)
    return event_dict


def _scrub_rendered(_: Any, __: str, rendered: Any) -> Any:
    """The rendered line once more: tracebacks are only text after rendering."""
    return redact(rendered) if isinstance(rendered, str) else rendered


class RedactingFilter(logging.Filter):
    """Masks secrets in stdlib records (Celery's, uvicorn's) before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _quiet_and_filter_stdlib() -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


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
        _scrub,
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
            _scrub_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    _quiet_and_filter_stdlib()
    _configured = True


def get_logger(name: str) -> Any:
    """A lazy structlog logger bound to ``module=name`` (configuration applies on first use)."""
    return structlog.get_logger(module=name)
