"""Log lines (JSON and console, structlog and stdlib) never carry a secret, wherever it hides."""

from __future__ import annotations

import logging
import random

import httpx
import pytest

from core.errors import OneRosterHTTPError
from core.logging import configure_logging, get_logger
from core.oneroster.client import OneRosterClient
from tests.core.oneroster.fakes import BASE, FakeClock, make_settings, token_response

CLIENT_SECRET = "cs-9f8e7d6c5b4a"
TOKEN = "at-0a1b2c3d4e5f6a7b"


def _echoing_oneroster(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/oauth/token":
        return token_response(TOKEN)
    description = f"refused {request.headers['authorization']}; raw {TOKEN} {CLIENT_SECRET}"
    return httpx.Response(400, json={"imsx_description": description})


def _client() -> OneRosterClient:
    """A client that has registered its secret and obtained TOKEN (as a worker's would)."""
    return OneRosterClient(
        make_settings(oneroster_client_secret=CLIENT_SECRET),
        http=httpx.Client(transport=httpx.MockTransport(_echoing_oneroster)),
        clock=FakeClock(),
        rng=random.Random(1),
    )


def _assert_clean(text: str) -> None:
    assert text.strip(), "nothing was logged"
    for secret in (CLIENT_SECRET, TOKEN):
        assert secret not in text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_secret_reaches_a_log_line(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt, "DEBUG", force=True)
    log = get_logger("tests.logging")
    with _client() as client, pytest.raises(OneRosterHTTPError) as caught:
        client.list_courses()
    log.error("rebuild_failed", course_id="c1", error=str(caught.value))
    log.warning(
        "upstream_said",
        reason=f"upstream quoted client_secret={CLIENT_SECRET}&grant_type=client_credentials",
        nested={"headers": [("Authorization", f"Bearer {TOKEN}")], "raw": [TOKEN]},
        url=f"https://client-1:{CLIENT_SECRET}@oneroster.test/oauth/token",
    )
    try:
        raise RuntimeError(f"OneRoster echoed {TOKEN} and {CLIENT_SECRET}")
    except RuntimeError:
        log.exception("rebuild_crashed", course_id="c1")
    out = capsys.readouterr()
    _assert_clean(out.err + out.out)
    assert "rebuild_crashed" in out.err + out.out
    assert "[redacted]" in out.err + out.out


def test_stdlib_records_are_scrubbed_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    configure_logging("json", "DEBUG", force=True)
    _client().close()  # registers the client secret
    try:
        raise ValueError(f"bad answer: Authorization: Bearer {TOKEN}")
    except ValueError:
        logging.getLogger("celery.app.trace").exception(
            "Task %s raised: %s", "rebuild", f"client_secret={CLIENT_SECRET}"
        )
    assert caplog.records
    _assert_clean(caplog.text)


def test_httpx_request_lines_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    configure_logging("json", "DEBUG", force=True)
    transport = httpx.MockTransport(lambda _r: httpx.Response(200))
    with httpx.Client(transport=transport) as http:
        http.get(f"{BASE}/x", params={"client_secret": CLIENT_SECRET})
    assert [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))] == []
