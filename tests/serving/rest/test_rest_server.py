"""RestServer on its event loop (uvicorn + httptools): many idle connections, slow clients, HTTP framing.

A real RestServer serves half_plus_two on a free 127.0.0.1 port; clients are raw sockets (to hold
connections and send exact bytes) and httpx.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from needs import skip_or_fail

pytest.importorskip("tensorflow")

from tfship.serving.config.model_config import ModelEntry  # noqa: E402
from tfship.serving.core.server_core import CoreOptions, ServerCore  # noqa: E402
from tfship.serving.rest.server import RestServer  # noqa: E402

PREDICT = b"/v1/models/half:predict"
GOOD_BODY = b'{"instances": [2.0]}'


@pytest.fixture(scope="module")
def core(tf_serving_testdata: Path) -> Iterator[ServerCore]:
    core = ServerCore(CoreOptions(max_num_load_retries=0))
    core.manager.apply_config([ModelEntry("half", str(tf_serving_testdata / "saved_model_half_plus_two_cpu"))])
    yield core
    core.stop(drain_timeout=5)


@pytest.fixture
def start_rest(core: ServerCore) -> Iterator[Callable[..., RestServer]]:
    """Factory: a started RestServer on a free port; shut down at teardown."""
    servers: list[RestServer] = []

    def start(**kwargs: Any) -> RestServer:
        server = RestServer(core, port=0, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown(drain_timeout=5)


def post(path: bytes, body: bytes, *headers: bytes) -> bytes:
    head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_response(
    sock: socket.socket, head_only: bool = False, pending: bytearray | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One response from ``sock`` (Content-Length framed, or up to the close; ``head_only`` for HEAD).

    ``pending`` keeps bytes read past this response (pipelined responses can arrive in one read).
    """
    data = bytes(pending or b"")
    if pending is not None:
        pending.clear()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines)}
    length = 0 if head_only else int(headers.get(b"content-length", b"-1"))
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if length >= 0:
        body, extra = body[:length], body[length:]
        assert pending is not None or not extra, "pipelined responses need `pending`"
        if pending is not None:
            pending += extra
    return int(status_line.split(b" ", 2)[1]), headers, body


def exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[bytes, bytes], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_response(sock)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ----------------------------------------------------------------------------- many idle clients


def test_2000_idle_keep_alive_connections_do_not_block_others(start_rest: Callable[..., RestServer]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 5000 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 5000:
        skip_or_fail("needs 5000 file descriptors (2000 connections, both ends in this process): "
                     "raise the hard limit (ulimit -Hn; .ci/run raises the soft one to it)")
    server = start_rest(num_threads=2)
    status_request = b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\n\r\n"
    idle: list[socket.socket] = []
    try:
        for _ in range(2000):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            idle.append(sock)
            sock.sendall(status_request)
        for sock in idle:  # one GET each, answered; the connections stay open
            status, headers, body = read_response(sock)
            assert status == 200 and b"AVAILABLE" in body and b"close" not in headers.get(b"connection", b"")

        def predict(_: int) -> Any:
            return httpx.post(f"http://127.0.0.1:{server.port}{PREDICT.decode()}", content=GOOD_BODY, timeout=30)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(predict, range(64)))
        assert [(r.status_code, r.json()) for r in responses] == [(200, {"predictions": [3.0]})] * 64
        for sock in idle:  # every idle connection still serves
            sock.sendall(status_request)
        for sock in idle:
            assert read_response(sock)[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_client_sending_one_byte_per_second_does_not_delay_others(
    start_rest: Callable[..., RestServer],
) -> None:
    # One request slot: a server that took the slot before the body arrived would stall everyone.
    server = start_rest(num_threads=1)
    stop = threading.Event()
    sent = [0]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(post(PREDICT, b"")[: -len(b"Content-Length: 0\r\n\r\n")]
                     + b"Content-Length: %d\r\n\r\n" % len(GOOD_BODY))

        def trickle() -> None:
            while sent[0] < len(GOOD_BODY) - 1 and not stop.is_set():
                slow.sendall(GOOD_BODY[sent[0]: sent[0] + 1])
                sent[0] += 1
                stop.wait(1.0)  # the pace of the slow client, not synchronisation

        slowpoke = threading.Thread(target=trickle)
        slowpoke.start()
        try:
            with httpx.Client(timeout=5) as client:
                started = time.monotonic()
                for _ in range(20):
                    r = client.post(f"http://127.0.0.1:{server.port}{PREDICT.decode()}", content=GOOD_BODY)
                    assert (r.status_code, r.json()) == (200, {"predictions": [3.0]})
                elapsed = time.monotonic() - started
            assert sent[0] < len(GOOD_BODY) - 1, "the slow client finished before the others were served"
        finally:
            stop.set()
            slowpoke.join(10)
        assert elapsed < 5  # 20 requests behind a slow body would take >= 19 s at one byte per second
        slow.sendall(GOOD_BODY[sent[0]:])  # the slow request is still intact and gets its answer
        status, _, body = read_response(slow)
        assert status == 200 and b"3.0" in body


# ----------------------------------------------------------------------------- HTTP framing (uvicorn's part)


@pytest.mark.parametrize(
    ("request_bytes", "status", "fragment"),
    [
        pytest.param(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"200\r\n" + b" " * 512 + b"\r\n" + b"200\r\n" + b" " * 512 + b"\r\n0\r\n\r\n",
                     413, b"Request body of 1024 bytes exceeds the limit of 1000 bytes", id="chunked-too-large"),
        pytest.param(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"2\r\n{}XX0\r\n\r\n", 400, b"Malformed chunked request body", id="chunk-without-crlf"),
        pytest.param(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"fffffffffffffffffffff\r\n", 413, b"exceeds the limit of 1000 bytes", id="chunk-size-overflow"),
        pytest.param(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999"
                     b"\r\n\r\n", 413, b"exceeds the limit of 1000 bytes", id="content-length-overflow"),
        pytest.param(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Content-Length: 3\r\n\r\n{}", 400, b"Invalid Content-Length header", id="two-content-lengths"),
        pytest.param(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400,
                     b"Transfer-Encoding can't be present with Content-Length",
                     id="content-length-and-chunked"),  # request smuggling: refused, not guessed
        pytest.param(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}",
                     400, b"Malformed HTTP request", id="transfer-encoding-not-chunked"),
        pytest.param(b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n",
                     431, b"Request header fields too large", id="head-too-large"),
    ],
)
def test_framing_errors_are_client_errors_with_a_message(
    start_rest: Callable[..., RestServer], request_bytes: bytes, status: int, fragment: bytes
) -> None:
    server = start_rest(max_body_bytes=1000, cors=True)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # the server may answer and close before reading everything (head-too-large)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request_bytes)
        got, headers, body = read_response(sock)
        assert (got, headers[b"content-type"]) == (status, b"application/json")
        assert fragment in body, body
        assert headers[b"access-control-allow-origin"] == b"*"
        assert headers[b"connection"] == b"close" and closed_by_server(sock)


def test_content_length_over_the_limit_is_refused_before_the_body_is_sent(
    start_rest: Callable[..., RestServer],
) -> None:
    server = start_rest(max_body_bytes=1000)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 413 and b"Request body of 1001 bytes exceeds the limit of 1000 bytes" in body
    assert headers[b"connection"] == b"close"


def test_keep_alive_pipelining_expect_continue_and_headers(start_rest: Callable[..., RestServer]) -> None:
    server = start_rest()
    pending = bytearray()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post(PREDICT, GOOD_BODY) + b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\n\r\n")
        # pipelined: answered in order (both may arrive in one read)
        first, second = read_response(sock, pending=pending), read_response(sock, pending=pending)
        assert first[0] == 200 and b"3.0" in first[2]
        assert second[0] == 200 and b"AVAILABLE" in second[2]
        assert first[1][b"server"] == b"tfship-model-server" and b"date" in first[1]
        # head and body of a response are two writes: without TCP_NODELAY each meets a delayed ACK
        (connection,) = server._server.server_state.connections
        assert connection.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        sock.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(GOOD_BODY))
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(GOOD_BODY)
        assert read_response(sock, pending=pending)[0] == 200
        sock.sendall(b"HEAD /v1/models/half HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(sock, head_only=True, pending=pending)  # a Content-Length, but no body
        assert status == 400 and int(headers[b"content-length"]) > 0 and body == b""
        sock.sendall(b"PROPFIND /v1/models/half HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(sock, pending=pending)
        assert status == 501 and b"Unsupported method ('PROPFIND')" in body
        sock.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(sock, pending=pending)
        assert (status, headers[b"content-type"]) == (404, b"text/html")
        assert body == b"<html><body>404 Not Found</body></html>"


def test_shutdown_drains_in_flight_requests_and_closes_idle_connections(
    core: ServerCore, start_rest: Callable[..., RestServer]
) -> None:
    server = start_rest()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    busy = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        idle.sendall(b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle)[0] == 200
        # the body is still missing when shutdown starts: the request is in flight during the drain
        busy.sendall(post(PREDICT, GOOD_BODY)[:-3])
        stopping = threading.Thread(target=server.shutdown, kwargs={"drain_timeout": 10})
        stopping.start()
        assert closed_by_server(idle)
        busy.sendall(GOOD_BODY[-3:])
        status, headers, body = read_response(busy)
        assert status == 200 and b"3.0" in body and headers[b"connection"] == b"close"
        stopping.join(15)
        assert not stopping.is_alive()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        idle.close()
        busy.close()


def test_start_raises_when_the_port_is_taken(core: ServerCore, start_rest: Callable[..., RestServer]) -> None:
    taken = start_rest()
    second = RestServer(core, port=taken.port)
    with pytest.raises(OSError):
        second.start()
