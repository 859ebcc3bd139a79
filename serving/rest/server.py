"""The REST HTTP server: uvicorn (httptools) running app.py's ASGI app on the server's event loop.

A connection, idle or mid-request, is a protocol object on the loop, not a thread: thousands of
idle keep-alive clients and clients that send their bodies slowly cost memory, not throughput.
uvicorn parses HTTP/1.1 (chunked bodies, keep-alive, pipelining, ``Expect: 100-continue``);
asyncio sets TCP_NODELAY on accepted TCP sockets. What is ours: binding the socket ourselves
(so ``.port`` and bind errors are known when :meth:`RestServer.start` returns), parse errors
answered in TF Serving's ``{"error": ...}`` form, a bound on the request head, an immediate ACK
of a request head (Nagle-on clients), and draining.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import sys
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tfship.wire import json as wjson

from ..core.server_core import ServerCore
from ..data_plane import DataPlane
from ..event_loop import ServingLoop
from .app import DEFAULT_MAX_BODY_BYTES, RestApp, cors_headers, too_large_message

__all__ = ["RestServer", "DEFAULT_MAX_BODY_BYTES"]

log = logging.getLogger("tfship.serving")

#: connections waiting to be accepted; 2,048 so a burst of clients is not refused (uvicorn's default)
BACKLOG = 2048
#: an idle keep-alive connection is closed after this long. TF Serving keeps idle connections open;
#: pooled clients (nginx upstream keepalive 60 s, requests without expiry) must not have a pooled
#: connection closed under them (a POST racing the close fails), while a connection abandoned without
#: a FIN is reclaimed eventually. An idle connection costs a few KiB on the loop, nothing else.
KEEP_ALIVE_SECONDS = 600
#: the request line and headers together; the stdlib server allowed 100 lines of 64 KiB
MAX_HEAD_BYTES = 1024 * 1024


def _protocol_class(extra_headers: list[tuple[bytes, bytes]], max_body_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, answering malformed requests like the rest of the API."""

    class Protocol(HttpToolsProtocol):
        _head_bytes = 0
        _in_body = False

        def data_received(self, data: bytes) -> None:
            if not self._in_body:
                # httptools buffers a header until its line ends: bound what a client can make us hold
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse(431, f"Request header fields too large: the request line and headers "
                                      f"exceed {MAX_HEAD_BYTES} bytes.")
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._head_bytes = 0
            self._in_body = True
            if any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers):
                _ack_now(self.transport)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            # uvicorn calls this from its `except httptools.HttpParserError`: the reason is llhttp's
            exc = sys.exc_info()[1]
            self._refuse(*_parse_error(str(exc) if exc is not None else msg, max_body_bytes))

        def _refuse(self, status: int, message: str) -> None:
            if self.transport.is_closing():
                return
            body = wjson.dumps({"error": message})
            head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
            headers = [*self.server_state.default_headers, (b"content-type", b"application/json"),
                       (b"content-length", b"%d" % len(body)), *extra_headers, (b"connection", b"close")]
            head += [b"%s: %s\r\n" % header for header in headers]
            self.transport.write(b"".join(head) + b"\r\n" + body)
            self.transport.close()

    return Protocol


def _ack_now(transport: Any) -> None:
    """ACK the request head at once: a client that writes head and body separately with Nagle on
    (httpx, requests) otherwise holds its body until our delayed ACK (~40 ms per request)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


def _parse_error(reason: str, max_body_bytes: int) -> tuple[int, str]:
    """The status and message for an llhttp error (its reasons are short English sentences)."""
    lowered = reason.lower()
    if "overflow" in lowered:  # a Content-Length or chunk size beyond 2**64
        return 413, too_large_message(f"more than {2**64 - 1}", max_body_bytes)
    if "content-length" in lowered:
        return 400, f"Invalid Content-Length header: {reason}"
    if "chunk" in lowered:
        return 400, ("Malformed chunked request body: a chunk size must be a non-negative hexadecimal "
                     f"number and each chunk end with CRLF ({reason})")
    return 400, f"Malformed HTTP request: {reason}"


class RestServer:
    """Serve ``/v1/...`` (and the Prometheus path) for one :class:`ServerCore` on an event loop.

    ``serving_loop`` is the process's :class:`ServingLoop` (shared with gRPC); without one the
    server makes and owns a loop whose executor runs ``num_threads`` model calls at once.
    """

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
        serving_loop: ServingLoop | None = None,
        data_plane: DataPlane | None = None,
        rollout_admin: bool = True,
    ) -> None:
        self.core = core
        self.host = host
        self.port = port
        self._owns_loop = serving_loop is None
        self.serving_loop = serving_loop if serving_loop is not None else ServingLoop(num_threads, name="rest")
        self.app = RestApp(
            core, self.serving_loop, num_threads=num_threads, timeout_ms=timeout_ms, cors=cors,
            prometheus_path=prometheus_path, max_body_bytes=max_body_bytes, data_plane=data_plane,
            rollout_admin=rollout_admin,
        )
        if logging.getLogger("uvicorn.error").level == logging.NOTSET:
            # uvicorn logs every malformed request at WARNING: a hostile client must not flood our log
            logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
        self._config = uvicorn.Config(
            self.app,
            http=_protocol_class(cors_headers(cors), max_body_bytes),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # the API does not look at the client's address
            server_header=False,
            headers=[("server", "tfship-model-server")],
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            backlog=BACKLOG,
            limit_concurrency=None,  # idle connections are cheap; rest_api_num_threads bounds the work
        )
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._serving: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        """Bind and listen (errors raise here), then serve on the event loop."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it a response's head and body writes meet the client's delayed ACK (+40 ms)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]
        if self._owns_loop:
            self.serving_loop.start()
        # Server.serve(sockets=...) is uvicorn's way to serve a socket bound elsewhere; it installs
        # no signal handlers off the main thread (the process's main thread handles SIGTERM).
        self._serving = self.serving_loop.submit(self._server.serve(sockets=[self._socket]))

    def shutdown(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``drain_timeout``), close."""
        if self._serving is None:
            return
        self.app.closing = True
        self._config.timeout_graceful_shutdown = max(0.0, drain_timeout)  # type: ignore[assignment]
        self._server.should_exit = True
        try:
            self._serving.result(drain_timeout + 5)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            log.warning("REST server did not stop within %.0f s", drain_timeout)
        except Exception:  # noqa: BLE001 - stopping must finish; the failure is logged
            log.exception("REST server failed while stopping")
        self._serving = None
        if self.serving_loop.running:
            self.serving_loop.call(self._close_connections(), timeout=5)
        if self._owns_loop:
            self.serving_loop.stop()

    async def _close_connections(self) -> None:
        # uvicorn leaves connections whose requests outlived the drain open; nothing will answer them
        for connection in list(self._server.server_state.connections):
            connection.transport.close()
        await asyncio.sleep(0)
