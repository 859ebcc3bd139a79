"""The REST front end as an ASGI application: HTTP framing rules around protocol.py.

What lives here is what TF Serving's HTTP layer does before and after a ``/v1`` request: the
body limit (``--rest_api_max_request_bytes``, from Content-Length before reading, while the body
streams in, and after gzip decompression), CORS, the Prometheus path, the 404 page for other
paths, the in-flight gauge, and at most ``rest_api_num_threads`` requests handled at once (status and metadata
GETs, answered on the loop, take no slot). HTTP/1.1 itself
(parsing, chunked bodies, keep-alive, pipelining) is uvicorn's; server.py runs this app on the
server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from tfship.rollout_protocol import REST_PREFIX
from tfship.wire import json as wjson

from ..core.server_core import ServerCore
from ..data_plane import DataPlane
from ..event_loop import ServingLoop
from .protocol import handle

__all__ = ["RestApp", "DEFAULT_MAX_BODY_BYTES", "too_large_message"]

#: default bound of a request body (after decompression); --rest_api_max_request_bytes changes it
DEFAULT_MAX_BODY_BYTES = 512 * 1024 * 1024

_V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_ROLLOUT = REST_PREFIX  # tfship's rollout admin, not TF Serving's
_ORIGIN = re.compile(r"https?://.*", re.IGNORECASE)
_JSON = b"application/json"
_HTML_404 = b"<html><body>404 Not Found</body></html>"
#: the methods TF Serving's REST API answers (others get 501, as from the stdlib server before)
_METHODS = frozenset({"GET", "POST", "OPTIONS", "PUT", "DELETE", "PATCH", "HEAD"})
#: gzip bodies at least this large are decompressed off the loop (a 512 MB body takes seconds)
_GZIP_OFF_LOOP_BYTES = 64 * 1024

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def too_large_message(size: int | str, limit: int) -> str:
    return (f"Request body of {size} bytes exceeds the limit of {limit} bytes "
            "(--rest_api_max_request_bytes): send fewer rows per request or raise the limit.")


def cors_headers(enabled: bool) -> list[tuple[bytes, bytes]]:
    if not enabled:
        return []
    return [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", b"POST, GET"),
            (b"access-control-allow-headers", b"Content-Type")]


class _Reject(Exception):
    """A request refused before it reaches protocol.py (its status, message, and whether the
    connection must close because an unread body is left on it)."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


class _Gone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


class RestApp:
    """ASGI application serving ``/v1/...`` (and the Prometheus path) for one :class:`ServerCore`."""

    def __init__(
        self,
        core: ServerCore,
        serving_loop: ServingLoop,
        *,
        num_threads: int = 4,
        timeout_ms: int = 30000,
        cors: bool = False,
        prometheus_path: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        data_plane: DataPlane | None = None,
        rollout_admin: bool = True,
    ) -> None:
        self.core = core
        self.plane = data_plane if data_plane is not None else DataPlane(core, serving_loop)
        self.rollout_admin = rollout_admin
        self.metrics = core.metrics
        self.serving_loop = serving_loop
        self.timeout = timeout_ms / 1000.0 if timeout_ms > 0 else None
        self.prometheus_path = prometheus_path
        self.max_body_bytes = max_body_bytes
        self.extra_headers = cors_headers(cors)
        #: set by the server when it drains: every response then says ``Connection: close``
        self.closing = False
        self._slots = asyncio.Semaphore(max(1, num_threads))
        self._mounts: list[Any] = []

    def mount(self, front_end: Any) -> None:
        """Serve another API beside ``/v1`` (e.g. the V2 front end at ``/v2``), with the same body
        limit, CORS, in-flight gauge and slots. ``front_end`` has ``prefix``,
        ``takes_slot(method)`` and ``async handle(method, raw_path, header, body, timeout)``
        returning an answer with ``status``, ``body``, ``content_type`` and ``headers``."""
        self._mounts.append(front_end)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        try:
            body = await self._read_body(scope, receive)
        except _Reject as exc:
            await self._send(send, exc.status, wjson.dumps({"error": exc.message}), close=exc.close)
            return
        except _Gone:
            return
        # the raw target, not uvicorn's percent-decoded path: protocol.py unquotes names itself
        path = scope["raw_path"].decode("latin-1")
        if self.prometheus_path is not None and path == self.prometheus_path and method == "GET":
            from ..metrics import CONTENT_TYPE

            await self._send(send, 200, self.metrics.exposition(), CONTENT_TYPE.encode())
            return
        if self.rollout_admin and path.startswith(_ROLLOUT):
            await self._rollout(send, method, path, body)
            return
        if method not in _METHODS:
            await self._send(send, 501, wjson.dumps({"error": f"Unsupported method ({method!r})"}))
            return
        mounted = next((m for m in self._mounts if path == m.prefix or path.startswith(m.prefix + "/")
                        or path.startswith(m.prefix + "?")), None)
        if mounted is None and not _V1.fullmatch(path):
            await self._send(send, 404, _HTML_404, b"text/html")
            return
        if method == "OPTIONS":
            origin = _header(scope, b"origin")
            if origin is not None and _ORIGIN.fullmatch(origin.decode("latin-1")):
                await self._send(send, 200, b"", None)
            else:
                await self._send(send, 400, wjson.dumps({"error": "Origin header is missing in CORS preflight"}))
            return
        gauge = self.metrics.in_flight("REST") if self.metrics is not None else None
        if gauge is not None:
            gauge.inc()
        try:
            # status and metadata are answered on the loop: they take no slot, never wait behind model runs
            if mounted is not None:
                async with self._slots if mounted.takes_slot(method) else contextlib.nullcontext():
                    answer = await mounted.handle(method, path, lambda name: _header(scope, name), body,
                                                  self.timeout)
                await self._send(send, answer.status, answer.body, answer.content_type, headers=answer.headers)
                return
            async with contextlib.nullcontext() if method == "GET" else self._slots:
                response = await handle(self.plane, method, path, body, self.timeout)
        finally:
            if gauge is not None:
                gauge.dec()
        await self._send(send, response.status, response.body)

    async def _rollout(self, send: Send, method: str, path: str, body: bytes) -> None:
        """``GET /tfship/v1/rollout[/MODEL]``, ``PUT /tfship/v1/rollout/MODEL`` (serving.rollout.admin)."""
        from urllib.parse import unquote

        from tfship.errors import HTTP_STATUS, ServingError

        from ..rollout.admin import get_json, set_json

        rest = path[len(_ROLLOUT):]
        model = unquote(rest[1:]) if rest.startswith("/") and len(rest) > 1 else None
        if rest not in ("", "/") and model is None or (model is not None and "/" in model):
            await self._send(send, 404, _HTML_404, b"text/html")
            return
        try:
            if method == "GET":
                payload = get_json(self.core.rollout, b"", model)
            elif method in ("PUT", "POST") and model is not None:
                payload = set_json(self.core.rollout, body, model)
            else:
                await self._send(send, 405, wjson.dumps({"error": f"{method} {path}: use GET, or PUT with a model"}))
                return
        except ServingError as exc:
            await self._send(send, HTTP_STATUS[exc.code], wjson.dumps({"error": exc.message}))
            return
        await self._send(send, 200, payload)

    async def _read_body(self, scope: dict[str, Any], receive: Receive) -> bytes:
        """The (decompressed) body. Read whatever the method: uvicorn frames it, we bound it."""
        length = encoding = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True  # the parser accepts no other final encoding
            elif name == b"content-encoding":
                encoding = value
        if length is None and not chunked:
            return b""
        if length is not None and int(length) > self.max_body_bytes:  # the parser checked it is a number
            raise _Reject(413, too_large_message(int(length), self.max_body_bytes), close=True)
        parts: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > self.max_body_bytes:  # only a chunked body gets here
                    raise _Reject(413, too_large_message(total, self.max_body_bytes), close=True)
                parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if encoding is not None and encoding.lower() == b"gzip":
            if len(body) >= _GZIP_OFF_LOOP_BYTES:
                return await self.serving_loop.run_blocking(self._gunzip, body)
            return self._gunzip(body)
        return body

    def _gunzip(self, body: bytes) -> bytes:
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(body, self.max_body_bytes + 1)
            if len(out) > self.max_body_bytes:
                raise _Reject(413, too_large_message(len(out), self.max_body_bytes), close=True)
            if not d.eof:  # zlib returns what it could; the JSON error would mislead
                raise zlib.error("the gzip stream ends early (truncated body?)")
            return out
        except zlib.error as exc:
            raise _Reject(400, f"Failed to decompress gzip request body: {exc}") from None

    async def _send(
        self, send: Send, status: int, body: bytes, content_type: bytes | None = _JSON, close: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [(b"content-length", str(len(body)).encode()), *(headers or ())]
        if content_type:
            headers.append((b"content-type", content_type))
        headers += self.extra_headers
        if close or self.closing:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None
