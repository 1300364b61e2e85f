"""Canonical page paths (api.md) and the slug rule that keeps them well-formed."""

from __future__ import annotations

import re

from core.bundle.model import PATH_SEGMENT, Kind
from core.errors import BundleError

# One URL path segment: no separators, query/fragment marks or whitespace, and not a dot segment.
_SEGMENT = re.compile(r"[^/?#%\\\s]{1,200}")


def is_valid_slug(value: object) -> bool:
    """True when ``value`` can stand as one segment of a canonical path."""
    return (
        isinstance(value, str)
        and _SEGMENT.fullmatch(value) is not None
        and value not in {".", ".."}
    )


def resource_path(  # noqa: PLR0917 - the six URL parts, in URL order
    subject: str, course_slug: str, unit_slug: str, lesson_slug: str, kind: Kind, slug: str
) -> str:
    """``/{subject}/{course}/{unit}/{lesson}/{v|a|e|quiz|test}/{slug}`` for a lesson resource."""
    segment = PATH_SEGMENT.get(kind)
    if segment is None:
        raise BundleError("this kind has no lesson path", kind=kind, slug=slug)
    return f"/{subject}/{course_slug}/{unit_slug}/{lesson_slug}/{segment}/{slug}"


def course_challenge_path(subject: str, course_slug: str, slug: str) -> str:
    """``/{subject}/{course}/test/{slug}`` for the course challenge."""
    return f"/{subject}/{course_slug}/test/{slug}"
