"""Attempt key layout: the web tier's names by default, hash tags when configured, ids checked."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from core.attempts import AttemptKeys, InvalidAttemptId
from core.errors import AttemptError, ConfigError
from core.settings import Settings

TAGGED = AttemptKeys(
    pointer_template="assess:active:{u:{userId}:{resourceId}}",
    state_template="assess:state:{u:{userId}:{resourceId}}:{attemptNumber}",
    index_template="assess:attempts:{u:{userId}:{resourceId}}",
    hwm_template="assess:hwm:{u:{userId}:{resourceId}}",
)


def test_defaults_are_the_web_tiers_key_names() -> None:
    keys = AttemptKeys()
    assert keys.pointer("u1", "r1") == "assess:active:u1:r1"
    assert keys.state("u1", "r1", 3) == "assess:state:u1:r1:3"
    assert keys.index("u1", "r1") == "assess:attempts:u1:r1"
    assert keys.hwm("u1", "r1") == "assess:hwm:u1:r1"


def test_from_settings_uses_the_configured_templates() -> None:
    settings = Settings(
        attempt_pointer_template="p:{resourceId}:{userId}",
        attempt_state_template="s:{userId}:{resourceId}:{attemptNumber}",
        attempt_index_template="i:{userId}:{resourceId}",
        attempt_hwm_template="h:{userId}:{resourceId}",
    )
    keys = AttemptKeys.from_settings(settings)
    assert keys.pointer("u1", "r1") == "p:r1:u1"
    assert keys.state("u1", "r1", 2) == "s:u1:r1:2"
    assert AttemptKeys.from_settings(Settings()) == AttemptKeys()


def test_hash_tagged_templates_keep_their_braces_and_share_one_slot() -> None:
    assert TAGGED.pointer("u1", "r1") == "assess:active:{u:u1:r1}"
    assert TAGGED.state("u1", "r1", 12) == "assess:state:{u:u1:r1}:12"
    slots = {
        key_slot(key.encode())
        for key in (
            TAGGED.pointer("u1", "r1"),
            TAGGED.state("u1", "r1", 1),
            TAGGED.state("u1", "r1", 99),
            TAGGED.index("u1", "r1"),
            TAGGED.hwm("u1", "r1"),
        )
    }
    assert len(slots) == 1


@pytest.mark.parametrize(
    "bad", ["", "has space", "quote'", "star*", "brace{", "x" * 201, "ünïcode", "a\nb", "org:u1"]
)
def test_ids_outside_the_allow_list_are_refused(bad: str) -> None:
    keys = AttemptKeys()
    with pytest.raises(InvalidAttemptId):
        keys.pointer(bad, "r1")
    with pytest.raises(InvalidAttemptId):
        keys.state("u1", bad, 1)
    with pytest.raises(AttemptError):
        keys.hwm(bad, "r1")


def test_ids_with_dots_dashes_and_underscores_are_fine() -> None:
    assert AttemptKeys().pointer("org.u-1_2", "r.1") == "assess:active:org.u-1_2:r.1"


@pytest.mark.parametrize(
    ("user_id", "resource_id"), [("a:b", "c"), ("a", "b:c"), ("a:", "b"), (":a", "b")]
)
def test_ids_with_a_colon_are_refused_so_two_identities_never_share_a_key(
    user_id: str, resource_id: str
) -> None:
    """Learner ``a:b`` on ``c`` and learner ``a`` on ``b:c`` would both be assess:active:a:b:c."""
    keys = AttemptKeys()
    with pytest.raises(InvalidAttemptId) as caught:
        keys.pointer(user_id, resource_id)
    assert "':'" in caught.value.message
    assert caught.value.context["field"] == ("userId" if ":" in user_id else "resourceId")


@pytest.mark.parametrize("bad", [0, -1, True, "3", 2.0])
def test_attempt_numbers_must_be_positive_integers(bad: object) -> None:
    with pytest.raises(InvalidAttemptId):
        AttemptKeys().state("u1", "r1", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "template"),
    [
        ("pointer_template", "assess:active:{userId}"),
        ("pointer_template", "assess:active:{userId}:{resourceId}:{attemptNumber}"),
        ("state_template", "assess:state:{userId}:{resourceId}"),
        ("state_template", "s:{userId}:{resourceId}:{attemptNumber}:{attemptNumber}"),
        ("index_template", "assess:attempts"),
        ("hwm_template", "assess:active:{userId}:{resourceId}"),  # same key as the pointer
    ],
)
def test_templates_are_checked_at_construction(field: str, template: str) -> None:
    with pytest.raises(ConfigError):
        AttemptKeys(**{field: template})
