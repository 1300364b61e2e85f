"""How big a bundle and each of its fields may be: one place for every size bound of the build.

Ids and slugs are bounded by their rules (``is_valid_ref``, ``is_valid_slug``: 200 characters);
the other text fields by the constants below, and the whole encoded document by
``CB_BUNDLE_MAX_BYTES``. Every default is far above real data (docs/bundle.md, "Size bounds").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from core.settings import Settings

MAX_TITLE_CHARS: Final = 1000  # course, unit, lesson and resource titles
MAX_URL_CHARS: Final = 4096  # a resource's ``url``
MAX_YOUTUBE_ID_CHARS: Final = 64  # a resource's ``youtubeId`` (YouTube's are 11)
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024  # the encoded JSON of one bundle


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """The bounds one build applies; an oversize field skips its record, an oversize bundle
    raises ``BundleTooLarge``."""

    max_bytes: int = DEFAULT_MAX_BYTES
    title_chars: int = MAX_TITLE_CHARS
    url_chars: int = MAX_URL_CHARS
    youtube_id_chars: int = MAX_YOUTUBE_ID_CHARS

    @classmethod
    def from_settings(cls, settings: Settings) -> BundleLimits:
        """The configured whole-bundle cap (``CB_BUNDLE_MAX_BYTES``) with the field caps."""
        return cls(max_bytes=settings.bundle_max_bytes)


DEFAULT_LIMITS: Final = BundleLimits()
