"""The rollout admin protocol: JSON in, JSON out, the same on gRPC and REST.

gRPC: ``/tfship.serving.RolloutService/GetRollout`` and ``/SetRollout``, raw JSON bytes as the
messages (no proto to compile on either side). REST: ``GET /tfship/v1/rollout[/MODEL]`` and
``PUT /tfship/v1/rollout/MODEL``. TF Serving itself has neither: a client that gets UNIMPLEMENTED
(gRPC) or 404 (REST) is talking to a server that cannot shadow or split.

Why a route and not an extension of the model config: the config is TF Serving's (a proto the
real server parses, pushed with HandleReloadConfigRequest) and carries no field for weights, so
an extension would be a second file every replica polls — changes would land replica by replica
at poll time with nothing to confirm them. A route changes one replica at once and answers with
the state it now has, which the rollout tool checks on every replica before a step starts.
"""

from __future__ import annotations

import json
from typing import Any

from tfship.errors import InvalidArgumentError
from tfship.rollout_protocol import GET_METHOD, GRPC_SERVICE, REST_PREFIX, SET_METHOD

from .controller import RolloutController

__all__ = ["GRPC_SERVICE", "GET_METHOD", "SET_METHOD", "REST_PREFIX", "get_json", "set_json"]
#: admin requests are tiny; anything bigger is a mistake
MAX_REQUEST_BYTES = 64 * 1024


def _parse(body: bytes) -> Any:
    if len(body) > MAX_REQUEST_BYTES:
        raise InvalidArgumentError(f"Rollout request of {len(body)} bytes; at most {MAX_REQUEST_BYTES}.")
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"The rollout request is not JSON: {exc}") from None


def get_json(controller: RolloutController, body: bytes, model: str | None = None) -> bytes:
    """``GetRollout``: ``{"model": NAME}`` (or nothing: every model under rollout)."""
    request = _parse(body)
    if not isinstance(request, dict):
        raise InvalidArgumentError("The rollout request must be a JSON object.")
    model = model if model is not None else request.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidArgumentError('"model" must be a string.')
    return json.dumps(controller.get(model)).encode()


def set_json(controller: RolloutController, body: bytes, model: str | None = None) -> bytes:
    """``SetRollout``: see :meth:`RolloutController.set`."""
    request = _parse(body)
    if not isinstance(request, dict):
        raise InvalidArgumentError("The rollout request must be a JSON object.")
    if model is not None:
        if request.get("model", model) != model:
            raise InvalidArgumentError(f'The body names model {request["model"]!r} but the path {model!r}.')
        request["model"] = model
    return json.dumps(controller.set(request)).encode()
