"""HTTP representation of bundle-derived answers: ETag, 304, content coding, bundle headers.

Bodies are always bytes that already exist (the stored bundle encodings, or a slice serialised
once per generation); this module only picks which bytes and writes the headers.
"""

from __future__ import annotations

from typing import Literal

from starlette.responses import Response

from core.bundle.nearcache import Slice

Coding = Literal["identity", "gzip", "zstd"]

JSON = b"application/json"
_ACCEPT_CACHE_MAX = 256
_accept_cache: dict[tuple[str, bool], Coding] = {}
# Header lists of slice answers, built once per (slice ETag, bundle, staleness, coding).
_HEADERS_CACHE_MAX = 4096
_headers_cache: dict[tuple[str, int | None, str | None, bool, str], list[tuple[bytes, bytes]]] = {}
RawHeaders = list[tuple[bytes, bytes]]


class RawResponse(Response):
    """A response whose headers are given raw (no re-encoding of a headers mapping)."""

    def __init__(self, body: bytes, status_code: int, raw_headers: list[tuple[bytes, bytes]]):
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def conditional_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """``If-None-Match`` and ``Accept-Encoding`` from raw ASGI headers, in one pass."""
    if_none_match = accept = None
    for name, value in raw:
        if name == b"if-none-match":
            if_none_match = value.decode("latin-1")
        elif name == b"accept-encoding":
            accept = value.decode("latin-1")
    return if_none_match, accept


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of ``If-None-Match`` against the current ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        if candidate.strip().removeprefix("W/") == bare:
            return True
    return False


def choose_coding(accept_encoding: str | None, *, zstd: bool = True) -> Coding:
    """The best coding the client accepts: zstd (if offered), then gzip, else identity."""
    if not accept_encoding:
        return "identity"
    key = (accept_encoding, zstd)
    found = _accept_cache.get(key)
    if found is None:
        found = _parse_accept(accept_encoding, zstd=zstd)
        if len(_accept_cache) >= _ACCEPT_CACHE_MAX:
            _accept_cache.clear()
        _accept_cache[key] = found
    return found


def _parse_accept(header: str, *, zstd: bool) -> Coding:
    weights: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[name] = q
    star = weights.get("*", 0.0)
    order: list[Coding] = ["zstd", "gzip"] if zstd else ["gzip"]
    best: Coding = "identity"
    best_q = 0.0
    for coding in order:
        q = weights.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    return best


def bundle_headers(
    etag: str, generation: int | None, built_at: str | None, *, stale: bool
) -> list[tuple[bytes, bytes]]:
    """ETag, X-Bundle-Generation, X-Bundle-Built-At (and X-Bundle-Stale), caching headers."""
    raw = [
        (b"etag", etag.encode("latin-1")),
        (b"cache-control", b"no-cache"),
        (b"vary", b"Accept-Encoding"),
    ]
    if generation is not None:
        raw.append((b"x-bundle-generation", str(generation).encode("latin-1")))
    if built_at:
        raw.append((b"x-bundle-built-at", built_at.encode("latin-1")))
    if stale:
        raw.append((b"x-bundle-stale", b"true"))
    return raw


def not_modified(headers: list[tuple[bytes, bytes]]) -> RawResponse:
    """304 with the validators and bundle headers, and no body."""
    return RawResponse(b"", 304, headers)


def body_response(body: bytes, headers: list[tuple[bytes, bytes]], coding: Coding) -> RawResponse:
    """200 with ``body`` already in ``coding``."""
    headers.append((b"content-type", JSON))
    headers.append((b"content-length", str(len(body)).encode("latin-1")))
    if coding != "identity":
        headers.append((b"content-encoding", coding.encode("latin-1")))
    return RawResponse(body, 200, headers)


def slice_response(
    piece: Slice,
    *,
    generation: int | None,
    built_at: str | None,
    stale: bool,
    if_none_match: str | None,
    accept_encoding: str | None,
) -> tuple[RawResponse, Coding]:
    """A slice's answer: 304 when the ETag matches, else its identity or (large) gzip bytes."""
    if etag_matches(if_none_match, piece.etag):
        headers = _slice_headers(
            piece, generation=generation, built_at=built_at, stale=stale, variant="304"
        )
        return not_modified(headers), "identity"
    coding: Coding = "identity"
    body = piece.body
    if piece.gzip is not None and choose_coding(accept_encoding, zstd=False) == "gzip":
        coding, body = "gzip", piece.gzip
    headers = _slice_headers(
        piece,
        generation=generation,
        built_at=built_at,
        stale=stale,
        variant=coding,
        length=len(body),
    )
    return RawResponse(body, 200, headers), coding


def _slice_headers(
    piece: Slice,
    *,
    generation: int | None,
    built_at: str | None,
    stale: bool,
    variant: str,
    length: int = 0,
) -> RawHeaders:
    key = (piece.etag, generation, built_at, stale, variant)
    found = _headers_cache.get(key)
    if found is None:
        found = bundle_headers(piece.etag, generation, built_at, stale=stale)
        if variant != "304":
            found.append((b"content-type", JSON))
            found.append((b"content-length", str(length).encode("latin-1")))
            if variant != "identity":
                found.append((b"content-encoding", variant.encode("latin-1")))
        if len(_headers_cache) >= _HEADERS_CACHE_MAX:
            _headers_cache.clear()
        _headers_cache[key] = found
    return list(found)
