"""The REST HTTP server: stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive) around protocol.py.

Why the stdlib server: requests are model-bound and JSON work happens in orjson/numpy, so the
HTTP layer is a small part of a request (measured in bench/); it adds no dependency. Concurrency:
one thread per connection, at most ``rest_api_num_threads`` requests processed at once
(semaphore). Bodies are bounded (``max_body_bytes``, also after gzip decompression).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import re
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tfship.wire import json as wjson

from ..core.server_core import ServerCore
from .protocol import handle

__all__ = ["RestServer", "DEFAULT_MAX_BODY_BYTES"]

log = logging.getLogger("tfship.serving")

#: default bound of a request body (after decompression); --rest_api_max_request_bytes changes it
DEFAULT_MAX_BODY_BYTES = 512 * 1024 * 1024

_V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_ORIGIN = re.compile(r"https?://.*", re.IGNORECASE)
_JSON = "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _ack_now(h: BaseHTTPRequestHandler) -> None:
    """ACK the headers at once: clients that write headers and body separately (httpx, requests)
    with Nagle on would otherwise wait for our delayed ACK (~40 ms) before sending the body."""
    with contextlib.suppress(OSError, AttributeError):
        h.connection.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


class RestServer:
    """Serve ``/v1/...`` (and the Prometheus path) for one :class:`ServerCore`."""

    def __init__(
        self,
        core: ServerCore,
        *,
        host: str = "127.0.0.1",
        port: int = 8501,
        num_threads: int = 4,
        timeout_ms: int = 30000,
        cors: bool = False,
        prometheus_path: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        serving_loop: Any = None,
    ) -> None:
        self.core = core
        self.metrics = core.metrics
        self.timeout = timeout_ms / 1000.0 if timeout_ms > 0 else None
        self.cors = cors
        self.prometheus_path = prometheus_path
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(num_threads)
        self._inflight = 0
        self._idle = threading.Condition()
        self._closing = False
        self._httpd = _Server((host, port), self._handler_class())
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="rest", daemon=True
        )
        self._thread.start()

    def shutdown(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, wait (bounded) for in-flight requests, close the socket."""
        self._closing = True
        self._httpd.shutdown()
        deadline = time.monotonic() + drain_timeout
        with self._idle:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(remaining)
        self._httpd.server_close()

    # ------------------------------------------------------------------ request handling

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        rest = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK
            # add ~40 ms to every keep-alive request
            disable_nagle_algorithm = True
            server_version = "tfship-model-server"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # access logs would cost more than the request itself

            def do_GET(self) -> None:  # noqa: N802
                rest._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                rest._serve(self, "POST")

            def do_OPTIONS(self) -> None:  # noqa: N802
                rest._serve(self, "OPTIONS")

            def do_PUT(self) -> None:  # noqa: N802
                rest._serve(self, "PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                rest._serve(self, "DELETE")

            def do_PATCH(self) -> None:  # noqa: N802
                rest._serve(self, "PATCH")

            def do_HEAD(self) -> None:  # noqa: N802
                rest._serve(self, "HEAD")

        return Handler

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None = _JSON
    ) -> None:
        h.send_response(status)
        if content_type:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        if self.cors:
            h.send_header("Access-Control-Allow-Origin", "*")
            h.send_header("Access-Control-Allow-Methods", "POST, GET")
            h.send_header("Access-Control-Allow-Headers", "Content-Type")
        if self._closing:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, message: str) -> None:
        self._send(h, status, wjson.dumps({"error": message}))

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes | None:
        """The (decompressed) body, or ``None`` after an error response was sent."""
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked(h)
            if body is None:
                return None
        else:
            try:
                length = int(h.headers.get("Content-Length") or 0)
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                self._error(h, 400, "Invalid Content-Length header")
                h.close_connection = True
                return None
            if length > self.max_body_bytes:
                self._too_large(h, length)
                return None
            if length > 0:
                _ack_now(h)
            body = h.rfile.read(length) if length > 0 else b""
        if h.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(body, self.max_body_bytes + 1)
                if len(out) > self.max_body_bytes:
                    self._too_large(h, len(out))
                    return None
                if not d.eof:  # zlib returns what it could; the JSON error would mislead
                    raise zlib.error("the gzip stream ends early (truncated body?)")
                body = out
            except (zlib.error, gzip.BadGzipFile) as exc:
                self._error(h, 400, f"Failed to decompress gzip request body: {exc}")
                return None
        return body

    def _read_chunked(self, h: BaseHTTPRequestHandler) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = h.rfile.readline(65537)
            try:
                size = int(line.split(b";")[0].strip(), 16)
                if size < 0:  # int() takes "-1", and read(-1) would read to the end of the stream
                    raise ValueError(line)
            except ValueError:
                self._error(h, 400, "Malformed chunked request body: a chunk size must be a "
                                    "non-negative hexadecimal number")
                h.close_connection = True
                return None
            if size == 0:
                while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > self.max_body_bytes:
                self._too_large(h, total)
                return None
            parts.append(h.rfile.read(size))
            h.rfile.readline(3)

    def _too_large(self, h: BaseHTTPRequestHandler, size: int) -> None:
        h.close_connection = True  # the unread body makes the connection unusable
        self._error(
            h, 413,
            f"Request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes "
            "(--rest_api_max_request_bytes): send fewer rows per request or raise the limit.",
        )

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._idle:
            self._inflight += 1
        try:
            self._dispatch(h, method)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        finally:
            with self._idle:
                self._inflight -= 1
                if not self._inflight:
                    self._idle.notify_all()

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        # Always consume the body, whatever the method: leftovers would corrupt keep-alive.
        body = b""
        if h.headers.get("Content-Length") or h.headers.get("Transfer-Encoding"):
            read = self._read_body(h)
            if read is None:
                return
            body = read
        path = h.path.split("?", 1)[0]
        if self.prometheus_path is not None and path == self.prometheus_path and method == "GET":
            from ..metrics import CONTENT_TYPE

            self._send(h, 200, self.metrics.exposition(), CONTENT_TYPE)
            return
        if not _V1.fullmatch(path):
            self._send(h, 404, b"<html><body>404 Not Found</body></html>", "text/html")
            return
        if method == "OPTIONS":
            origin = h.headers.get("Origin", "")
            if _ORIGIN.fullmatch(origin):
                self._send(h, 200, b"", None)
            else:
                self._error(h, 400, "Origin header is missing in CORS preflight")
            return
        start = time.perf_counter()
        gauge = self.metrics.in_flight("REST") if self.metrics is not None else None
        if gauge is not None:
            gauge.inc()
        try:
            with self._slots:
                response = handle(self.core, method, path, body, self.timeout)
        finally:
            if gauge is not None:
                gauge.dec()
        if self.metrics is not None and response.api:
            self.metrics.observe_request(
                response.model, response.version, response.api, "REST", response.code,
                time.perf_counter() - start,
            )
        self._send(h, response.status, response.body)

