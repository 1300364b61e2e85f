"""A OneRoster that echoes the request in its error descriptions: no secret reaches the error."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from core.errors import OneRosterAuthError, OneRosterHTTPError
from tests.core.oneroster.fakes import SECRET, FakeClock, token_response
from tests.core.oneroster.hostile import KINDS, Kind, Upstream, run_list

TOKEN = "tok-Zm9vYmFyYmF6cXV4"


def _echo_form(request: httpx.Request) -> httpx.Response:
    form = request.content.decode()
    body = {
        "error": "invalid_client",
        "error_description": f"could not authenticate request body {form}",
    }
    return httpx.Response(401, json=body)


def _echo_headers(request: httpx.Request, _n: int) -> httpx.Response:
    auth = request.headers["authorization"]
    description = (
        f"rejected {request.method} {request.url} with headers "
        f"{{'authorization': '{auth}'}}; token {auth.removeprefix('Bearer ')} is not allowed"
    )
    return httpx.Response(400, json={"imsx_codeMajor": "failure", "imsx_description": description})


def _echo_xml(request: httpx.Request, _n: int) -> httpx.Response:
    auth = request.headers["authorization"]
    xml = (
        "<imsx_StatusInfo><imsx_codeMajor>failure</imsx_codeMajor>"
        f"<imsx_description>Authorization: {auth} refused</imsx_description></imsx_StatusInfo>"
    )
    return httpx.Response(403, text=xml, headers={"Content-Type": "application/xml"})


def _forms(secret: str) -> list[str]:
    return [secret, urllib.parse.quote(secret, safe="")]


@pytest.mark.parametrize("kind", KINDS)
def test_the_client_secret_echoed_by_the_token_endpoint_stays_out_of_the_error(
    kind: Kind, clock: FakeClock
) -> None:
    upstream = Upstream(lambda _r, _n: httpx.Response(200), token=_echo_form)
    with pytest.raises(OneRosterAuthError) as caught:
        run_list(kind, upstream, clock, oneroster_client_secret=SECRET + "/+=&x")
    text = f"{caught.value} {caught.value.context!r}"
    assert "could not authenticate" in text  # the description is still quoted
    for form in _forms(SECRET + "/+=&x"):
        assert form not in text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("echo", [_echo_headers, _echo_xml], ids=["json", "xml"])
def test_the_bearer_token_echoed_in_an_error_stays_out_of_the_error(
    kind: Kind, echo: object, clock: FakeClock
) -> None:
    upstream = Upstream(echo, token=lambda _r: token_response(TOKEN))  # type: ignore[arg-type]
    with pytest.raises(OneRosterHTTPError) as caught:
        run_list(kind, upstream, clock)
    text = f"{caught.value} {caught.value.context!r}"
    assert "refused" in text or "rejected" in text
    assert TOKEN not in text
    assert upstream.api_requests()[0].headers["authorization"] == f"Bearer {TOKEN}"
