"""Redis keys of attempt pointers, built from configurable templates.

A template names its parts with ``{userId}``, ``{resourceId}`` and ``{attemptNumber}``; those three
placeholders are replaced and every other brace is left as written, so a template can carry a Redis
Cluster hash tag: ``assess:active:{u:{userId}:{resourceId}}`` gives ``assess:active:{u:U:R}``.
The defaults are the key names the web tier already uses. Ids cannot contain ``:``: with it,
learner ``a:b`` on resource ``c`` and learner ``a`` on resource ``b:c`` would share every key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import AttemptError, ConfigError

if TYPE_CHECKING:
    from core.settings import Settings

USER = "{userId}"
RESOURCE = "{resourceId}"
ATTEMPT = "{attemptNumber}"

DEFAULT_POINTER_TEMPLATE = "assess:active:{userId}:{resourceId}"
DEFAULT_STATE_TEMPLATE = "assess:state:{userId}:{resourceId}:{attemptNumber}"
DEFAULT_INDEX_TEMPLATE = "assess:attempts:{userId}:{resourceId}"
DEFAULT_HWM_TEMPLATE = "assess:hwm:{userId}:{resourceId}"

# The OneRoster filter allow-list minus ``:``, the separator of the default templates.
_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
_PLACEHOLDER = re.compile(r"\{(userId|resourceId|attemptNumber)\}")


class InvalidAttemptId(AttemptError, ValueError):
    """A user id, resource id or attempt number cannot name an attempt key; nothing was touched."""


def check_id(value: str, *, field: str) -> str:
    """``value`` if it can name an attempt (the OneRoster filter allow-list without ``:``)."""
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        reason = (
            "attempt ids cannot contain ':' (two identities would share one key)"
            if isinstance(value, str) and ":" in value
            else "id outside ^[A-Za-z0-9._-]{1,200}$"
        )
        raise InvalidAttemptId(reason, field=field, value=str(value)[:40])
    return value


def check_attempt(value: int) -> int:
    """``value`` if it is a positive integer attempt number, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidAttemptId("attempt number must be a positive integer", attempt=value)
    return value


def _render(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _check_template(name: str, template: str, *, with_attempt: bool) -> None:
    wanted = {USER, RESOURCE} | ({ATTEMPT} if with_attempt else set())
    found = {f"{{{m}}}" for m in _PLACEHOLDER.findall(template)}
    if found != wanted or any(template.count(p) != 1 for p in wanted):
        raise ConfigError(
            "attempt key template must name each of its placeholders exactly once",
            template=name,
            value=template,
            placeholders=sorted(wanted),
        )


@dataclass(frozen=True, slots=True)
class AttemptKeys:
    """Builds the keys of one learner and resource: pointer, state (per attempt), index, hwm."""

    pointer_template: str = DEFAULT_POINTER_TEMPLATE
    state_template: str = DEFAULT_STATE_TEMPLATE
    index_template: str = DEFAULT_INDEX_TEMPLATE
    hwm_template: str = DEFAULT_HWM_TEMPLATE

    def __post_init__(self) -> None:
        _check_template("pointer", self.pointer_template, with_attempt=False)
        _check_template("state", self.state_template, with_attempt=True)
        _check_template("index", self.index_template, with_attempt=False)
        _check_template("hwm", self.hwm_template, with_attempt=False)
        templates = (self.pointer_template, self.index_template, self.hwm_template)
        if len(set(templates)) != len(templates):
            raise ConfigError(
                "pointer, index and hwm templates must differ", templates=list(templates)
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> AttemptKeys:
        """The templates configured as ``CB_ATTEMPT_*_TEMPLATE``."""
        return cls(
            pointer_template=settings.attempt_pointer_template,
            state_template=settings.attempt_state_template,
            index_template=settings.attempt_index_template,
            hwm_template=settings.attempt_hwm_template,
        )

    def pointer(self, user_id: str, resource_id: str) -> str:
        """String: the active attempt number."""
        return _render(self.pointer_template, _ids(user_id, resource_id))

    def state(self, user_id: str, resource_id: str, attempt: int) -> str:
        """String: the cached assessment state of one attempt (written by the web tier)."""
        values = _ids(user_id, resource_id)
        values["attemptNumber"] = str(check_attempt(attempt))
        return _render(self.state_template, values)

    def index(self, user_id: str, resource_id: str) -> str:
        """Sorted set: attempt numbers with cached state (member = score = the number)."""
        return _render(self.index_template, _ids(user_id, resource_id))

    def hwm(self, user_id: str, resource_id: str) -> str:
        """String: the highest attempt number ever handed out or saved (the high-water mark)."""
        return _render(self.hwm_template, _ids(user_id, resource_id))


def _ids(user_id: str, resource_id: str) -> dict[str, str]:
    return {
        "userId": check_id(user_id, field="userId"),
        "resourceId": check_id(resource_id, field="resourceId"),
    }
