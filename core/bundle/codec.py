"""Serialise a bundle once into the three wire forms the API serves, plus its strong ETag.

The JSON is produced once by orjson; gzip and zstd compress those exact bytes, so every encoding
of one bundle decodes to the same document and shares one ETag (a hash of the JSON). Each stored
blob also gets a CRC-32 (``blob_checksum``) so damaged bytes are caught before they are served.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from typing import cast

import orjson
import zstandard

from core.bundle.model import BundleDoc
from core.errors import BundleError

GZIP_LEVEL = 6
ZSTD_LEVEL = 6  # ~= level 10 size on bundles at a third of the CPU
ETAG_DIGEST_BYTES = 16

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True, slots=True)
class EncodedBundle:
    """One bundle's bytes in every encoding, and its ETag (quoted, strong)."""

    json: bytes
    gzip: bytes
    zstd: bytes
    etag: str


def encode_bundle(doc: BundleDoc) -> EncodedBundle:
    """Serialise ``doc`` deterministically: the same document always gives the same bytes."""
    raw = orjson.dumps(doc)
    return EncodedBundle(
        json=raw,
        # mtime=0 keeps the gzip header (and so the bytes) independent of the clock.
        gzip=gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0),
        zstd=zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw),
        etag=etag_for(raw),
    )


def etag_for(raw_json: bytes) -> str:
    """The strong ETag of a bundle's JSON bytes: a quoted blake2b-128 hex digest."""
    return '"' + hashlib.blake2b(raw_json, digest_size=ETAG_DIGEST_BYTES).hexdigest() + '"'


def blob_checksum(data: bytes) -> str:
    """The checksum kept beside a stored blob: zlib CRC-32 of its exact bytes, in decimal.

    It guards against damage (truncation, flipped bytes), not tampering, so a fast CRC suffices.
    """
    return str(zlib.crc32(data))


def decode_bundle(data: bytes) -> BundleDoc:
    """Parse a bundle from its JSON bytes (gzip or zstd bytes are recognised and inflated)."""
    try:
        if data.startswith(_GZIP_MAGIC):
            data = gzip.decompress(data)
        elif data.startswith(_ZSTD_MAGIC):
            data = zstandard.ZstdDecompressor().decompress(data)
        doc = orjson.loads(data)
    except (OSError, EOFError, zstandard.ZstdError, orjson.JSONDecodeError) as exc:
        raise BundleError("bundle bytes do not decode", size=len(data), cause=str(exc)) from exc
    if not isinstance(doc, dict) or "courseId" not in doc or "generation" not in doc:
        raise BundleError("bundle bytes are not a bundle document", size=len(data))
    return cast(BundleDoc, doc)
