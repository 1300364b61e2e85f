"""A OneRoster that pages forever, sends huge or trickling bodies: the client gives up, bounded."""

from __future__ import annotations

import httpx
import orjson
import pytest

from core.errors import OneRosterProtocolError, OneRosterUnavailable
from tests.core.oneroster.fakes import FakeClock
from tests.core.oneroster.hostile import KINDS, Kind, Stream, Upstream, course, run_list

MIB = 1024 * 1024
SAFETY = 300  # the hostile servers stop here, so the code without bounds still ends


def _endless(fresh_ids: bool) -> Upstream:
    """Ignores offset and always links a next page; ids repeat, or are new on every page."""

    def page(request: httpx.Request, n: int) -> httpx.Response:
        ids = [f"c{n:04d}a", f"c{n:04d}b"] if fresh_ids else ["c1", "c2"]
        nxt = request.url.copy_set_param("offset", str(2 * n))
        headers = {"Link": f'<{nxt}>; rel="next"'} if n < SAFETY else {}
        return httpx.Response(200, json={"courses": [course(i) for i in ids]}, headers=headers)

    return Upstream(page)


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_that_ignores_offset_is_refused_on_the_second_page(
    kind: Kind, clock: FakeClock
) -> None:
    upstream = _endless(fresh_ids=False)
    with pytest.raises(OneRosterProtocolError, match="no new records"):
        run_list(kind, upstream, clock)
    assert len(upstream.api_requests()) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_endless_fresh_pages_stop_at_the_page_cap(kind: Kind, clock: FakeClock) -> None:
    upstream = _endless(fresh_ids=True)
    with pytest.raises(OneRosterProtocolError, match="more pages than allowed") as caught:
        run_list(kind, upstream, clock, oneroster_max_pages=20)
    assert len(upstream.api_requests()) == 21
    assert caught.value.context["max_pages"] == 20


@pytest.mark.parametrize("kind", KINDS)
def test_a_list_past_the_record_cap_is_refused(kind: Kind, clock: FakeClock) -> None:
    def page(request: httpx.Request, n: int) -> httpx.Response:
        ids = [f"c{(n - 1) * 100 + i:05d}" for i in range(100)]
        body = {"courses": [course(i) for i in ids]}
        return httpx.Response(200, json=body, headers={"X-Total-Count": "10000"})

    upstream = Upstream(page)
    with pytest.raises(OneRosterProtocolError, match="more records than allowed"):
        run_list(kind, upstream, clock, oneroster_max_records=250)
    assert len(upstream.api_requests()) == 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_body_is_not_read_past_the_byte_cap(
    kind: Kind, declared: bool, clock: FakeClock
) -> None:
    body = Stream(total=40 * MIB, chunk=64 * 1024, prefix=b'{"courses": [')
    headers = {"Content-Length": str(body.total)} if declared else {}
    upstream = Upstream(lambda _r, _n: httpx.Response(200, headers=headers, stream=body))
    with pytest.raises(OneRosterProtocolError, match="larger than allowed"):
        run_list(kind, upstream, clock, oneroster_max_response_bytes=MIB)
    assert body.sent <= MIB + body.chunk
    assert len(upstream.api_requests()) == 1  # the same answer would come again: no retry


@pytest.mark.parametrize("kind", KINDS)
def test_a_trickling_body_is_given_up_at_the_deadline(kind: Kind, clock: FakeClock) -> None:
    """One byte per (fake) second: each chunk is quick to come, the whole answer is not."""
    streams: list[Stream] = []
    page = orjson.dumps({"courses": [course("c1")]})

    def drip(_r: httpx.Request, _n: int) -> httpx.Response:
        streams.append(Stream(total=len(page), chunk=1, clock=clock, tick=1.0, prefix=page))
        return httpx.Response(200, stream=streams[-1])

    started = clock()
    with pytest.raises(OneRosterUnavailable) as caught:
        run_list(
            kind,
            Upstream(drip),
            clock,
            oneroster_timeout_s=3.0,
            oneroster_deadline_s=8.0,
            oneroster_max_attempts=4,
        )
    assert len(page) > 30  # the whole body would take longer than the deadline
    assert caught.value.context["last"] == "BudgetExceeded"
    assert clock() - started <= 8.0 + 1.0  # one chunk past the deadline at most
    assert all(s.sent <= 4 for s in streams)  # no attempt read past its 3 s budget
