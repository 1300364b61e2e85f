"""Scoped bearer tokens: constant-time lookup, 401 for no or unknown token, 403 for a wrong scope.

Tokens come from ``CB_API_TOKENS`` (token -> scopes). A presented token is hashed once and its
digest compared with ``hmac.compare_digest`` against the digest of *every* configured token, with
no early exit, so neither the position of a match nor a partial match shows in the timing.
Tokens are never logged and never echoed.

``AuthGate`` checks them in front of the router (pure ASGI, no per-request dependency solving):
the request's route is found by path and method, and only a protected route needs a token. It
runs before parameters are validated, so an unauthenticated caller learns nothing else. An
admitted request carries ``scope[TOKEN_ID]``, a short digest naming its token (the key of the
per-token rate limits; never the token itself).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.api.problems import ProblemError, send_problem

SCHEME_NAME = "bearer"
REALM = 'Bearer realm="course-bundles"'
TOKEN_ID = "cb.token_id"  # noqa: S105 - a scope key, not a secret


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenTable:
    """The configured tokens, kept only as digests, with their scopes."""

    def __init__(self, tokens: Mapping[str, Iterable[str]]) -> None:
        self._entries = [
            (_digest(token.encode("utf-8", "surrogatepass")), frozenset(scopes))
            for token, scopes in tokens.items()
        ]

    def scopes_for(self, presented: bytes) -> frozenset[str] | None:
        """The scopes of ``presented``, or None when it is not a configured token."""
        digest = _digest(presented)
        found: frozenset[str] | None = None
        for known, scopes in self._entries:
            match = hmac.compare_digest(known, digest)
            found = scopes if match else found
        return found

    def __len__(self) -> int:
        return len(self._entries)


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header (raw ASGI headers), or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            if scheme.lower() != b"bearer" or not token:
                return None
            return token
    return None


def unauthorized(detail: str, *, error: str | None = None) -> ProblemError:
    """401 with the ``WWW-Authenticate: Bearer`` challenge."""
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return ProblemError(401, detail, kind="unauthorized", headers={"WWW-Authenticate": challenge})


def authorize(table: TokenTable, headers: Iterable[tuple[bytes, bytes]], scope: str) -> str:
    """The token's id; raise 401 unless a configured token is given, 403 unless it has ``scope``."""
    token = bearer_token(headers)
    if token is None:
        raise unauthorized("a bearer token is required")
    scopes = table.scopes_for(token)
    if scopes is None:
        raise unauthorized("the bearer token is not valid", error="invalid_token")
    if scope not in scopes:
        raise ProblemError(
            403,
            f"the token lacks the {scope!r} scope",
            kind="forbidden",
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
        )
    return _digest(token)[:8].hex()


def token_id_of(scope: Scope) -> str:
    """The id ``AuthGate`` gave the request's token ("" on an unprotected route)."""
    value = scope.get(TOKEN_ID)
    return value if isinstance(value, str) else ""


def too_many(detail: str, retry_after_s: int) -> ProblemError:
    """429 with ``Retry-After``: the token spent its allowance; nothing was done."""
    return ProblemError(
        429,
        detail,
        kind="rate-limited",
        title="Too Many Requests",
        headers={"Retry-After": str(retry_after_s)},
    )


class AuthGate:
    """Refuses requests to protected routes that lack a token with the route's scope."""

    def __init__(
        self, app: ASGIApp, *, table: TokenTable, protected: Sequence[tuple[APIRoute, str]]
    ) -> None:
        self.app = app
        self.table = table
        self.protected = [
            (route.path_regex, frozenset(route.methods or ()), route, scope)
            for route, scope in protected
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            for regex, methods, route, needed in self.protected:
                if method in methods and regex.match(path) is not None:
                    try:
                        scope[TOKEN_ID] = authorize(self.table, scope["headers"], needed)
                    except ProblemError as refused:
                        scope["route"] = route  # so metrics count it under its route
                        await send_problem(send, refused, scope.get("request_id"))
                        return
                    break
        await self.app(scope, receive, send)


def check_metrics_token(headers: Iterable[tuple[bytes, bytes]], expected: bytes | None) -> None:
    """When a metrics token is configured, ``/metrics`` needs it (401 otherwise)."""
    if expected is None:
        return
    token = bearer_token(headers)
    if token is None:
        raise unauthorized("a bearer token is required for /metrics")
    if not hmac.compare_digest(_digest(token), expected):
        raise unauthorized("the bearer token is not valid", error="invalid_token")


def metrics_digest(token: str | None) -> bytes | None:
    """The digest ``check_metrics_token`` compares against (None: /metrics is open)."""
    return _digest(token.encode("utf-8", "surrogatepass")) if token else None
