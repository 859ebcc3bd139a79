"""ServingError -> gRPC status, with TF Serving's 1024-char message cap (grpc_status_util.cc)."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from tfship.errors import Code, ServingError

__all__ = ["grpc_code", "truncate_message", "abort", "MAX_MESSAGE_CHARS"]

MAX_MESSAGE_CHARS = 1024

_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(code: Code | int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a canonical code (same numbers)."""
    return _BY_VALUE.get(int(code), grpc.StatusCode.UNKNOWN)


def truncate_message(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[:MAX_MESSAGE_CHARS] + "...TRUNCATED"


async def abort(context: Any, exc: ServingError) -> NoReturn:
    """End the RPC (a grpc.aio servicer context) with ``exc``'s code and (truncated) message."""
    await context.abort(grpc_code(exc.code), truncate_message(exc.message))
    raise AssertionError("unreachable")  # context.abort raises
