"""What a Resource record means for the bundle: its ``kind`` and its entry fields, from metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from core.bundle.limits import DEFAULT_LIMITS, BundleLimits
from core.bundle.model import Kind
from core.bundle.paths import is_valid_slug
from core.oneroster.models import Resource

# Normalised (lower-case, no separators) activity names -> kind.
_ACTIVITY_KINDS: dict[str, Kind] = {
    "video": "video",
    "article": "article",
    "exercise": "exercise",
    "quiz": "quiz",
    "unittest": "unit-test",
    "coursechallenge": "course-challenge",
}
# The spellings OneRoster actually sends, looked up before normalising.
_EXACT: dict[str, Kind] = {
    "Video": "video",
    "Article": "article",
    "Exercise": "exercise",
    "Quiz": "quiz",
    "UnitTest": "unit-test",
    "CourseChallenge": "course-challenge",
}
# Integers above this cannot round-trip through a JavaScript number (the web tier is TypeScript).
_MAX_INT = 2**53 - 1


class ResourceFacts(NamedTuple):
    """What a valid Resource contributes to every bundle entry that links it."""

    kind: Kind
    slug: str
    title: str
    xp: int
    xp_invalid: bool
    youtube_id: str | None
    question_count: int | None
    url: str | None


def _normalised(value: str) -> Kind | None:
    key = value.lower().replace("-", "").replace("_", "").replace(" ", "")
    return _ACTIVITY_KINDS.get(key)


def kind_from_metadata(metadata: Mapping[str, Any] | None) -> Kind | None:
    """The kind named by ``khanActivityType``, else by ``type``; None when neither names one.

    A present but unknown ``khanActivityType`` is invalid (None) even if ``type`` says video;
    ``qti``/``interactive`` without an activity type cannot be told apart, so they are None too.
    """
    if not metadata:
        return None
    activity = metadata.get("khanActivityType")
    if activity is not None:
        if not isinstance(activity, str):
            return None
        return _EXACT.get(activity) or _normalised(activity)
    fallback = metadata.get("type")
    if isinstance(fallback, str):
        return _normalised(fallback)
    return None


def resource_kind(resource: Resource) -> Kind | None:
    """The bundle kind of a Resource record, or None when its metadata names no known kind."""
    return kind_from_metadata(resource.metadata)


def read_resource(
    resource: Resource | None, limits: BundleLimits = DEFAULT_LIMITS
) -> ResourceFacts | str:
    """The resource's bundle fields, or the reason code why it cannot be placed.

    Only the kind and the slug are required; a missing ``xp`` is 0, an invalid one is 0 with
    ``xp_invalid`` set; optional fields that are absent or malformed are left out. A text field
    longer than ``limits`` allows makes the resource unplaceable (``resource_*_too_long``).
    """
    if resource is None:
        return "resource_missing"
    if not resource.is_active:
        return "resource_inactive"
    meta = resource.metadata
    if not meta:
        return "resource_missing_metadata"
    kind = kind_from_metadata(meta)
    if kind is None:
        return "resource_unknown_kind"
    slug = meta.get("khanSlug")
    if slug is None:
        return "resource_missing_slug"
    if not is_valid_slug(slug):
        return "resource_invalid_slug"
    youtube_id = meta.get("youtubeId")
    url = meta.get("url")
    oversize = _oversize_field(resource.title, youtube_id, url, limits)
    if oversize is not None:
        return f"resource_{oversize}_too_long"
    raw_xp = meta.get("xp")
    xp = 0 if raw_xp is None else non_negative_int(raw_xp)
    raw_count = meta.get("questionCount")
    return ResourceFacts(
        kind=kind,
        slug=slug,
        title=resource.title,
        xp=0 if xp is None else xp,
        xp_invalid=xp is None,
        youtube_id=youtube_id if isinstance(youtube_id, str) and youtube_id else None,
        question_count=None if raw_count is None else non_negative_int(raw_count),
        url=url if isinstance(url, str) and url else None,
    )


def _oversize_field(
    title: str, youtube_id: object, url: object, limits: BundleLimits
) -> str | None:
    """The name of the first text field longer than its cap, or None."""
    if len(title) > limits.title_chars:
        return "title"
    if isinstance(youtube_id, str) and len(youtube_id) > limits.youtube_id_chars:
        return "youtube_id"
    if isinstance(url, str) and len(url) > limits.url_chars:
        return "url"
    return None


def non_negative_int(value: object) -> int | None:
    """An integer in [0, 2**53) from an int, an integral float or a digit string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    elif isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_INT:
        return value
    return None
