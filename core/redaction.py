"""Secrets out of text: by value (a registry of known secrets) and by pattern (credential shapes).

Anything quoted from upstream or an exception (error context, log fields, dead-letter reasons,
problem bodies) goes through :func:`redact` before it is kept or shown. Values are registered by
whoever holds them: the OneRoster client registers its client secret and every token it obtains.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

MASK: Final = "[redacted]"
MIN_SECRET_CHARS: Final = 8  # shorter values would match ordinary words; patterns still apply
RECENT_TOKENS: Final = 8  # tokens kept after being replaced (they may still be quoted back)

# The value part of each pattern is replaced; the name stays, so a reader knows what was there.
_TOKEN68 = r"[A-Za-z0-9\-._~+/]+=*"
_PATTERNS: Final = (
    # Authorization: [scheme] credentials
    re.compile(
        r"(?i)(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)"
        r"((?:[A-Za-z][\w-]*[ \t]+)?[^\s\"'\\,;}]+)"
    ),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)(" + _TOKEN68 + ")"),
    re.compile(
        r"(?i)(\b(?:client_secret|access_token|refresh_token|id_token|password|api_token)"
        r"\b[\"']?\s*[:=]\s*[\"']?)([^\"'\\&\s,;}]+)"
    ),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@\"']*:)([^@/\s\"'\\]+)(?=@)"),
)


def _forms(value: str) -> set[str]:
    """The value and the encodings it is usually quoted in (URL-encoded, base64)."""
    found = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    found.add(base64.b64encode(value.encode()).decode())
    return {f for f in found if len(f) >= MIN_SECRET_CHARS}


class SecretRegistry:
    """Known secret values (fixed ones, plus the most recent tokens); thread-safe."""

    def __init__(self, *, recent: int = RECENT_TOKENS) -> None:
        self._lock = threading.Lock()
        self._fixed: set[str] = set()
        self._recent: deque[str] = deque(maxlen=recent)
        self._forms: tuple[str, ...] = ()

    def register(self, value: str | None, *, rotating: bool = False) -> None:
        """Remember ``value``; ``rotating`` values (tokens) keep only the last few."""
        if not value or len(value) < MIN_SECRET_CHARS:
            return
        with self._lock:
            if value in self._fixed or value in self._recent:
                return
            if rotating:
                self._recent.append(value)
            else:
                self._fixed.add(value)
            forms: set[str] = set()
            for known in (*self._fixed, *self._recent):
                forms |= _forms(known)
            # Longest first, so a value inside another's encoding is not half-replaced.
            self._forms = tuple(sorted(forms, key=len, reverse=True))

    def values(self) -> tuple[str, ...]:
        """Every registered form, longest first."""
        return self._forms

    def clear(self) -> None:
        with self._lock:
            self._fixed.clear()
            self._recent.clear()
            self._forms = ()


SECRETS = SecretRegistry()


def register_secret(value: str | None, *, rotating: bool = False) -> None:
    """Add ``value`` to the process-wide registry that :func:`redact` consults."""
    SECRETS.register(value, rotating=rotating)


def redact(text: str, registry: SecretRegistry | None = None) -> str:
    """``text`` with every registered secret and every credential-shaped value masked."""
    if not text:
        return text
    for value in (registry or SECRETS).values():
        if value in text:
            text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_keep_name, text)
    return text


def _keep_name(match: re.Match[str]) -> str:
    return match.group(1) + MASK


def redact_value(value: Any, registry: SecretRegistry | None = None, *, depth: int = 0) -> Any:
    """Strings redacted inside dicts, lists and tuples (nested); other values unchanged."""
    if isinstance(value, str):
        return redact(value, registry)
    if depth > 20:
        return value
    if isinstance(value, Mapping):
        return {k: redact_value(v, registry, depth=depth + 1) for k, v in value.items()}
    if type(value) in (list, tuple):
        items: Iterable[Any] = (redact_value(v, registry, depth=depth + 1) for v in value)
        return tuple(items) if type(value) is tuple else list(items)
    return value
