"""The API as the Procfile starts it holds against hostile and careless clients (issue 18).

Each test starts the Procfile's ``web`` line on a free port, with short limits in its
environment, and talks raw HTTP/1.1 over sockets where a client library would hide the abuse.
"""

from __future__ import annotations

import re
import select
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import TEST_REDIS_URL
from tests.integration.procfile_process import Process, running, wait_for

pytestmark = pytest.mark.integration

TOKEN = f"tok-{uuid.uuid4().hex}"  # must never reach a log line
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.5
READ_LIMIT_S = 15.0  # a socket read that waits this long means the server held the client


def api_env(**overrides: str) -> dict[str, str]:
    env = {
        "CB_REDIS_URL": TEST_REDIS_URL,
        "CB_KEY_PREFIX": f"cbtest:http-{uuid.uuid4().hex[:8]}:",
        "CB_API_TOKENS": orjson.dumps({TOKEN: ["read", "events"]}).decode(),
        "CB_LOG_FORMAT": "json",
        "CB_LOG_LEVEL": "INFO",
        "CB_API_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "CB_API_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    }
    env.update(overrides)
    return env


StartApi = Callable[..., Process]


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[StartApi]:
    """Start the Procfile's web line with ``api_env(**overrides)``; stopped at the end."""
    stack: list[object] = []

    def start(**overrides: str) -> Process:
        log_path = tmp_path / f"web-{len(stack)}.log"
        ctx = running("web", api_env(**overrides), log_path, "/healthz")
        process = ctx.__enter__()
        stack.append(ctx)
        return process

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)  # type: ignore[attr-defined]


def connect(api: Process) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=READ_LIMIT_S)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes; a read timeout (the server held on) fails the test."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server kept the connection open; got so far {b''.join(chunks)!r}")
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    assert match is not None, raw[:200]
    return int(match.group(1))


def healthz_answers(api: Process) -> None:
    # A timeout here means the process is stalled by the other client.
    assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200


def metrics(api: Process) -> str:
    return httpx.get(f"{api.url}/metrics", timeout=5).text


def test_an_oversized_header_is_refused_and_the_connection_closed(start_api: StartApi) -> None:
    api = start_api()
    with connect(api) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * (20 * 1024) + b"\r\n\r\n"
        )
        raw = read_all(sock)
    assert status_of(raw) in (400, 431)
    healthz_answers(api)


def head_of(size: int, path: bytes = b"/healthz") -> bytes:
    """A complete GET head of exactly ``size`` bytes (request line, headers, blank line)."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def send_in_pieces(sock: socket.socket, data: bytes, piece: int = 128) -> int:
    """Send ``data`` in small TCP segments; stop once the server answers. Returns bytes sent."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = 0
    while sent < len(data):
        readable, _, _ = select.select([sock], [], [], 0.002)
        if readable:
            break
        sock.sendall(data[sent : sent + piece])
        sent += piece
    return min(sent, len(data))


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return raw


def test_a_20_kib_head_in_one_packet_gets_431_and_a_close(start_api: StartApi) -> None:
    api = start_api()
    with connect(api) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head_of(20 * 1024))  # one segment on loopback: the head is whole at once
        raw = read_all(sock)
    assert status_of(raw) == 431
    assert b"header-too-large" in raw
    assert b"connection: close" in raw.lower()
    healthz_answers(api)


def test_a_head_trickled_in_small_packets_is_refused_before_it_ends(start_api: StartApi) -> None:
    # A header timeout far away: only the size limit can end this connection in time.
    api = start_api(CB_API_HEADER_TIMEOUT_S="60")
    endless = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * (256 * 1024)
    with connect(api) as sock:
        sent = send_in_pieces(sock, endless)
        raw = read_all(sock)
    assert status_of(raw) == 431
    assert sent < len(endless), "the server read a 256 KiB head without answering"
    healthz_answers(api)


@pytest.mark.parametrize("split", [False, True], ids=["one-packet", "small-packets"])
def test_the_header_limit_is_exact(start_api: StartApi, split: bool) -> None:
    api = start_api(CB_API_MAX_HEADER_BYTES="4096")
    with connect(api) as sock:
        head = head_of(4096)
        send_in_pieces(sock, head) if split else sock.sendall(head)
        assert status_of(read_response(sock)) == 200
    with connect(api) as sock:
        head = head_of(4097)
        send_in_pieces(sock, head) if split else sock.sendall(head)
        assert status_of(read_all(sock)) == 431


def test_a_kept_alive_connection_is_limited_per_request_not_in_total(start_api: StartApi) -> None:
    api = start_api(CB_API_MAX_HEADER_BYTES="4096")
    with connect(api) as sock:
        for _ in range(20):  # 20 x 3 KiB heads, one after the other
            sock.sendall(head_of(3 * 1024))
            assert status_of(read_response(sock)) == 200
        # Pipelined: 20 heads in one packet, 60 KiB together, each within the limit.
        sock.sendall(
            head_of(3 * 1024) * 19
            + head_of(3 * 1024).replace(b"Host:", b"Connection: close\r\nHost:")
        )
        raw = read_all(sock)
    assert raw.count(b"HTTP/1.1 200 ") == 20, raw[:300]


def test_headers_trickled_on_a_kept_alive_connection_get_408(start_api: StartApi) -> None:
    api = start_api()
    with connect(api) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status_of(read_response(sock)) == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        raw = trickle_until_closed(sock)
    assert status_of(raw) == 408
    assert b"header-timeout" in raw


def test_headers_trickled_past_the_header_timeout_get_408_and_a_close(
    start_api: StartApi,
) -> None:
    api = start_api()
    with connect(api) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        raw = trickle_until_closed(sock)  # one byte of a header line at a time, never finished
    assert status_of(raw) == 408
    assert b"header-timeout" in raw
    healthz_answers(api)


def test_a_body_stalled_past_the_body_timeout_gets_408_and_a_close(start_api: StartApi) -> None:
    api = start_api()
    with connect(api) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n["
        )
        raw = read_all(sock)
    assert status_of(raw) == 408
    assert b"body-timeout" in raw
    assert b"connection: close" in raw.lower()
    assert 'status="408"' in metrics(api)


def test_a_body_nobody_reads_is_cut_off_after_the_answer(start_api: StartApi) -> None:
    api = start_api()
    with connect(api) as sock:
        # No token: answered 401 at once; the client then goes on trickling its body.
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n["
        )
        raw = trickle_until_closed(sock)
    assert status_of(raw) == 401


def trickle_until_closed(sock: socket.socket) -> bytes:
    """Send one byte every 0.3 s (each resets an idle timer) until the server closes."""
    sock.settimeout(0.3)
    got = b""
    for _ in range(int(READ_LIMIT_S / 0.3)):
        try:
            sock.sendall(b" ")
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return got
        if not chunk:
            return got
        got += chunk
    pytest.fail(f"the server kept a trickling client for {READ_LIMIT_S} s; got {got!r}")


def test_requests_past_the_concurrency_limit_get_503(start_api: StartApi) -> None:
    api = start_api(CB_API_MAX_CONCURRENCY="4", CB_API_HEADER_TIMEOUT_S="30")
    idle = [connect(api) for _ in range(4)]
    try:
        with connect(api) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            raw = read_all(sock)
        assert status_of(raw) == 503
    finally:
        for sock in idle:
            sock.close()
    # Once the others are gone, the process serves again.
    wait_for(lambda: httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200, "200", api.log)


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_dropped_upload_is_one_info_line_and_no_500(start_api: StartApi, log_format: str) -> None:
    api = start_api(CB_LOG_FORMAT=log_format)
    with connect(api) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n["
        )
        time.sleep(0.3)  # the request is being read when the client goes

    def counted() -> str | None:
        text = metrics(api)
        seen = "cb_api_client_disconnects_total{" in text or 'status="500"' in text
        return text if seen else None

    text = wait_for(counted, "the dropped upload counted", api.log, timeout=10)
    assert 'status="500"' not in text
    assert re.search(r'cb_api_client_disconnects_total\{route="/v1/events"\} 1\.0', text)
    log = api.log()
    assert log.count("client disconnected") == 1, log
    for line in log.splitlines():
        if "client disconnected" in line:
            assert "info" in line.lower(), line
    assert "Traceback" not in log and "unhandled error" not in log, log
    assert TOKEN not in log


def test_a_trailing_slash_is_not_redirected_to_the_host_header(start_api: StartApi) -> None:
    api = start_api()
    answer = httpx.get(
        f"{api.url}/healthz/", headers={"Host": "evil.example"}, follow_redirects=False, timeout=5
    )
    assert "evil.example" not in answer.headers.get("location", "")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
