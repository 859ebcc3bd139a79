"""The V2 REST API, mounted at ``/v2`` in the REST server's ASGI app (beside TF Serving's ``/v1``).

The app does what every REST request gets (body limit, gzip, CORS, the in-flight gauge, a slot
for POSTs, ``Connection: close`` while draining); this module only routes ``/v2`` paths, decodes
with :mod:`tfship.wire.v2`, calls the data plane and encodes. Errors are V2's ``{"error": "..."}``
with the HTTP status of their canonical code (a client's mistake is a 4xx).

Large JSON bodies are parsed, and large JSON answers encoded, on the loop's executor; binary
bodies (the binary tensor data extension) only parse their small JSON header.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tfship.errors import InvalidArgumentError, NotFoundError, ServingError
from tfship.wire import v2
from tfship.wire.json import dumps

from ..data_plane import DataPlane, ModelRef
from . import mapping

__all__ = ["V2Rest", "RestAnswer", "PREFIX"]

PREFIX = "/v2"
_ENTRYPOINT = "REST"
_JSON = b"application/json"
_OCTETS = b"application/octet-stream"
#: bodies and answers this big are parsed / encoded off the loop (a 1 MB JSON body takes ~10 ms)
OFF_LOOP_BYTES = 1 << 18
_MODEL = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")


@dataclass
class RestAnswer:
    """What the app sends: status, body, content type, extra headers."""

    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _json(status: int, doc: Any) -> RestAnswer:
    return RestAnswer(status, dumps(doc))


def _error(exc: ServingError) -> RestAnswer:
    return _json(exc.http_status, {"error": exc.message})


class _WrongMethod(Exception):
    """A V2 path asked with a method it does not take: 405 with ``Allow`` (no canonical code says it)."""

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"Use {allowed} for this V2 path, not {method}.")
        self.allowed = allowed


class V2Rest:
    """The ``/v2`` routes over one :class:`DataPlane`."""

    prefix = PREFIX

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    @staticmethod
    def takes_slot(method: str) -> bool:
        """Only model runs (POST infer) wait for one of the app's slots; probes never queue."""
        return method == "POST"

    async def handle(self, method: str, path: str, header: Callable[[bytes], bytes | None], body: bytes,
                     timeout: float | None) -> RestAnswer:
        """Answer one request for a path under ``/v2`` (``path`` is the raw, still quoted target)."""
        try:
            return await self._route(method, path.split("?", 1)[0], header, body, timeout)
        except ServingError as exc:
            return _error(exc)
        except _WrongMethod as exc:
            return RestAnswer(405, dumps({"error": str(exc)}), headers=[(b"allow", exc.allowed.encode())])

    async def _route(self, method: str, path: str, header: Callable[[bytes], bytes | None], body: bytes,
                     timeout: float | None) -> RestAnswer:
        if path in ("/v2", "/v2/"):
            self._method(method, "GET")
            return _json(200, {"name": mapping.SERVER_NAME, "version": mapping.server_version(),
                               "extensions": list(mapping.EXTENSIONS)})
        if path == "/v2/health/live":
            self._method(method, "GET")
            return _json(200, {"live": True})
        if path == "/v2/health/ready":
            self._method(method, "GET")
            ready = mapping.server_ready(self.plane)
            return _json(200, {"ready": True}) if ready else _json(
                503, {"ready": False, "error": "Not every model has an AVAILABLE version yet."})
        match = _MODEL.fullmatch(path)
        if match is None:
            raise NotFoundError(f"No V2 route for {path[:200]!r}: see /v2, /v2/health/{{live,ready}} and "
                                "/v2/models/{name}[/versions/{v}][/ready|/infer].")
        name, version, action = unquote(match[1]), unquote(match[2] or ""), match[3]
        if action == "/infer":
            self._method(method, "POST")
            return await self._infer(name, version, header, body, timeout)
        self._method(method, "GET")
        if action == "/ready":
            if mapping.model_ready(self.plane, name, version, entrypoint=_ENTRYPOINT):
                return _json(200, {"name": name, "ready": True})
            return _json(503, {"name": name, "ready": False,
                               "error": f"Model {name!r} {'version ' + version + ' ' if version else ''}is not "
                                        "AVAILABLE (loading, unloading or failed): see its status."})
        meta = mapping.model_metadata(self.plane, name, version, entrypoint=_ENTRYPOINT)
        return _json(200, meta.as_json())

    @staticmethod
    def _method(method: str, allowed: str) -> None:
        if method != allowed:
            raise _WrongMethod(method, allowed)

    async def _infer(self, name: str, version: str, header: Callable[[bytes], bytes | None], body: bytes,
                     timeout: float | None) -> RestAnswer:
        raw_length = header(v2.HEADER_LENGTH.lower().encode())
        length = raw_length.decode("latin-1") if raw_length is not None else None
        json_part = len(body) if length is None else (int(length) if length.isdigit() else 0)
        try:
            if json_part >= OFF_LOOP_BYTES:
                request = await self.plane.loop.run_blocking(v2.request_from_json, body, length, name, version)
            else:
                request = v2.request_from_json(body, length, name, version)
            mapping.model_ref(name, version)
        except InvalidArgumentError as exc:
            raise self.plane.reject("predict", ModelRef(name), exc, entrypoint=_ENTRYPOINT) from None
        response = await mapping.infer(self.plane, request, timeout, entrypoint=_ENTRYPOINT)
        size = sum(a.nbytes for a in response.outputs.values())
        if size >= OFF_LOOP_BYTES and not all(request.binary_output(n) for n in response.outputs):
            data, head = await self.plane.loop.run_blocking(v2.response_to_json, response, request.binary_output)
        else:
            data, head = v2.response_to_json(response, request.binary_output)
        if head is None:
            return RestAnswer(200, data)
        return RestAnswer(200, data, _OCTETS, [(v2.HEADER_LENGTH.encode(), str(head).encode())])
