"""redact(): known secret values and credential shapes are masked, ordinary text is kept."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from core.redaction import MASK, SecretRegistry, redact, redact_value

SECRET = "orsecret-4f3e2d1c"


@pytest.fixture
def registry() -> SecretRegistry:
    found = SecretRegistry(recent=2)
    found.register(SECRET)
    return found


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        urllib.parse.quote(SECRET + "/+", safe=""),
        base64.b64encode(SECRET.encode()).decode(),
    ],
)
def test_registered_values_are_masked_raw_and_encoded(registry: SecretRegistry, form: str) -> None:
    registry.register(SECRET + "/+")
    assert redact(f"upstream said <{form}>", registry) == f"upstream said <{MASK}>"


def test_only_the_most_recent_tokens_are_kept(registry: SecretRegistry) -> None:
    for token in ("token-aaaaaaaa", "token-bbbbbbbb", "token-cccccccc"):
        registry.register(token, rotating=True)
    text = redact("token-aaaaaaaa token-bbbbbbbb token-cccccccc " + SECRET, registry)
    assert text == f"token-aaaaaaaa {MASK} {MASK} {MASK}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.DEF-1~+/== refused", f"Authorization: {MASK} refused"),
        ('{"authorization": "Basic dXNlcjpwdw=="}', f'{{"authorization": "{MASK}"}}'),
        ("sent Bearer xyz123 twice", f"sent Bearer {MASK} twice"),
        ("grant_type=x&client_secret=p%40ss&scope=y", f"grant_type=x&client_secret={MASK}&scope=y"),
        (
            '{"access_token": "t0k", "expires_in": 0}',
            f'{{"access_token": "{MASK}", "expires_in": 0}}',
        ),
        ("redis://:pw-1@127.0.0.1:6379/0", f"redis://:{MASK}@127.0.0.1:6379/0"),
        ("amqp://guest:guest@host//", f"amqp://guest:{MASK}@host//"),
    ],
)
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text, SecretRegistry()) == expected


@pytest.mark.parametrize(
    "text",
    ["course c01 has 3 units", "missing authorization header", "https://oneroster.test/x?y=1", ""],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text, SecretRegistry()) == text


def test_short_values_are_not_registered() -> None:
    registry = SecretRegistry()
    registry.register("unit")
    assert redact("unit 1", registry) == "unit 1"


def test_nested_values_are_redacted(registry: SecretRegistry) -> None:
    value = {"a": [SECRET, ("x", {"b": f"Bearer {SECRET}"})], "n": 3}
    assert redact_value(value, registry) == {"a": [MASK, ("x", {"b": f"Bearer {MASK}"})], "n": 3}
