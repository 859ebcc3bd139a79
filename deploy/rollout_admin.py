"""One replica's rollout admin, as the rollout tool calls it (gRPC or REST, JSON messages).

The methods are tfship-model-server's own (:mod:`tfship.rollout_protocol`); a replica that
answers UNIMPLEMENTED (gRPC) or 404 (REST) is a server that cannot shadow or split, such as the
real TensorFlow Serving image, and :class:`ReplicaAdmin` raises :class:`RolloutUnsupported`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from tfship.errors import SwapError, UnavailableError, error_for_code
from tfship.rollout_protocol import GET_METHOD, REST_PREFIX, SET_METHOD

__all__ = ["ReplicaAdmin", "RolloutUnsupported", "UNSUPPORTED_HINT"]

UNSUPPORTED_HINT = (
    "It cannot shadow or split traffic: that needs tfship-model-server (`tfship serve`, the tfship "
    "image). The real TensorFlow Serving image has no such route. To check a candidate's predictions "
    "there, capture live traffic and replay it against the candidate before a swap: `tfship replay` "
    "(the replay gate), then `tfship swap`.")


class RolloutUnsupported(SwapError):
    """The replica has no rollout admin route (UNIMPLEMENTED / 404)."""


class ReplicaAdmin:
    """``get(model)`` / ``set(model, **fields)`` on one replica; each returns the model's state dict."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._channel: Any = None
        if url.startswith("grpc://"):
            import grpc

            self._channel = grpc.insecure_channel(url[len("grpc://"):])
        elif not url.startswith("http://"):
            raise SwapError(f"Rollout admin needs a grpc:// or http:// replica URL, not {url!r}.")

    def get(self, model: str) -> dict[str, Any]:
        return self._call(GET_METHOD, model, {"model": model})

    def set(self, model: str, **fields: Any) -> dict[str, Any]:
        return self._call(SET_METHOD, model, {"model": model, **fields})

    def _call(self, method: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        answer = self._grpc(method, data) if self._channel is not None else self._rest(method, model, data)
        return json.loads(answer)["models"][model]  # type: ignore[no-any-return]

    def _grpc(self, method: str, data: bytes) -> bytes:
        import grpc

        try:
            return self._channel.unary_unary(method)(data, timeout=self.timeout)  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise RolloutUnsupported(f"Replica {self.url} has no rollout admin ({method}: UNIMPLEMENTED). "
                                         + UNSUPPORTED_HINT) from None
            raise error_for_code(exc.code().value[0], f"{self.url}: {exc.details()}") from None

    def _rest(self, method: str, model: str, data: bytes) -> bytes:
        verb = "GET" if method == GET_METHOD else "PUT"
        request = urllib.request.Request(f"{self.url}{REST_PREFIX}/{quote(model, safe='')}",
                                         data=None if verb == "GET" else data, method=verb,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                return response.read()  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code == 404 and not body.startswith(b"{"):
                raise RolloutUnsupported(f"Replica {self.url} has no rollout admin (GET {REST_PREFIX}: 404). "
                                         + UNSUPPORTED_HINT) from None
            from tfship.errors import HTTP_STATUS, Code

            code = next((c for c, s in HTTP_STATUS.items() if s == exc.code), Code.UNKNOWN)
            raise error_for_code(code, f"{self.url}: {json.loads(body).get('error', body.decode())}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UnavailableError(f"{self.url}: {exc}") from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
