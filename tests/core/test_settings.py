from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_defaults_work_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CB_REDIS_URL", "CB_BROKER_URL", "CB_ONEROSTER_BASE_URL", "CB_API_TOKENS"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(_env_file=None)
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.effective_broker_url == s.redis_url
    assert s.effective_token_url == "http://127.0.0.1:8765/oauth/token"
    assert s.key_prefix == "cb:"
    assert s.api_tokens == {}


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("CB_API_TOKENS", '{"t1": ["read", "events"]}')
    monkeypatch.setenv("CB_ONEROSTER_BASE_URL", "https://or.example/")
    s = Settings(_env_file=None)
    assert s.effective_broker_url.startswith("amqp://")
    assert s.api_tokens == {"t1": ["read", "events"]}
    assert s.effective_token_url == "https://or.example/oauth/token"


def test_unknown_scope_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_API_TOKENS", '{"t1": ["admin"]}')
    with pytest.raises(ValidationError, match="unknown API scopes"):
        Settings(_env_file=None)


def test_secret_is_not_in_repr() -> None:
    s = Settings(_env_file=None, oneroster_client_secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(s)


def test_empty_variables_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_API_TOKENS", "")
    monkeypatch.setenv("CB_BROKER_URL", "")
    s = Settings(_env_file=None)
    assert s.api_tokens == {}
    assert s.effective_broker_url == s.redis_url


@pytest.mark.parametrize(
    "tokens",
    [
        '{"TOKEN": ["admin"]}',  # unknown scope
        '{"TOKEN": "read"}',  # scopes not a list
        '{"ok": ["read"], "TOKEN": [1]}',  # a scope that is not a name
        '["TOKEN"]',  # not an object
    ],
)
def test_a_bad_token_table_is_refused_without_echoing_the_tokens(
    monkeypatch: pytest.MonkeyPatch, tokens: str
) -> None:
    secret = "s3cret-token-4f9a"
    monkeypatch.setenv("CB_API_TOKENS", tokens.replace("TOKEN", secret))
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert "api_tokens" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value.errors(include_input=False))
