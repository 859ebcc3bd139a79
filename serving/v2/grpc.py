"""``inference.GRPCInferenceService`` on the model server's grpc.aio server.

Requests arrive as bytes and are parsed here, so bytes that are no message get INVALID_ARGUMENT
(grpcio answers a failing deserializer with INTERNAL); ModelInfer's tensors are views of the
request's ``raw_input_contents`` (no copy). Answers carry ``raw_output_contents``, which is what
tritonclient reads. Errors are the data plane's ServingErrors with their canonical gRPC codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from tfship.errors import InvalidArgumentError, ServingError
from tfship.wire import v2
from tfship.wire.protos import open_inference_pb2 as pb

from ..data_plane import DataPlane, ModelRef
from . import mapping

__all__ = ["SERVICE", "V2Servicer", "v2_service_handler"]

SERVICE = "inference.GRPCInferenceService"
_ENTRYPOINT = "GRPC"
_MAX_MESSAGE_CHARS = 1024  # TF Serving's cap on a status message (grpc_status_util.cc)
_CODES = {c.value[0]: c for c in grpc.StatusCode}
M = TypeVar("M")


def _parse(cls: type[M], data: bytes) -> M:
    try:
        return cls.FromString(data)  # type: ignore[attr-defined,no-any-return]
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise InvalidArgumentError(f"The request bytes are not a {cls.__name__}.") from None


def _timeout(context: Any) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e8 else None  # no deadline: a huge number


async def _answer(context: Any, work: Callable[[], Awaitable[bytes]]) -> bytes:
    try:
        return await work()
    except ServingError as exc:
        message = exc.message if len(exc.message) <= _MAX_MESSAGE_CHARS else (
            exc.message[:_MAX_MESSAGE_CHARS] + "...TRUNCATED")
        await context.abort(_CODES.get(int(exc.code), grpc.StatusCode.UNKNOWN), message)
        raise AssertionError("unreachable") from None  # context.abort raises


class V2Servicer:
    """The six V2 RPCs over one :class:`DataPlane`; every method takes and returns bytes."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request: bytes, context: Any) -> bytes:  # noqa: N802 - the RPC's name
        async def work() -> bytes:
            _parse(pb.ServerLiveRequest, request)
            return pb.ServerLiveResponse(live=True).SerializeToString()  # type: ignore[no-any-return]

        return await _answer(context, work)

    async def ServerReady(self, request: bytes, context: Any) -> bytes:  # noqa: N802
        async def work() -> bytes:
            _parse(pb.ServerReadyRequest, request)
            return pb.ServerReadyResponse(  # type: ignore[no-any-return]
                ready=mapping.server_ready(self.plane)).SerializeToString()

        return await _answer(context, work)

    async def ServerMetadata(self, request: bytes, context: Any) -> bytes:  # noqa: N802
        async def work() -> bytes:
            _parse(pb.ServerMetadataRequest, request)
            return pb.ServerMetadataResponse(  # type: ignore[no-any-return]
                name=mapping.SERVER_NAME, version=mapping.server_version(),
                extensions=list(mapping.EXTENSIONS)).SerializeToString()

        return await _answer(context, work)

    async def ModelReady(self, request: bytes, context: Any) -> bytes:  # noqa: N802
        async def work() -> bytes:
            message = _parse(pb.ModelReadyRequest, request)
            ready = mapping.model_ready(self.plane, message.name, message.version, entrypoint=_ENTRYPOINT)
            return pb.ModelReadyResponse(ready=ready).SerializeToString()  # type: ignore[no-any-return]

        return await _answer(context, work)

    async def ModelMetadata(self, request: bytes, context: Any) -> bytes:  # noqa: N802
        async def work() -> bytes:
            message = _parse(pb.ModelMetadataRequest, request)
            meta = mapping.model_metadata(self.plane, message.name, message.version, entrypoint=_ENTRYPOINT)
            response = pb.ModelMetadataResponse(name=meta.name, versions=meta.versions, platform=meta.platform)
            for tensor in meta.inputs:
                response.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            for tensor in meta.outputs:
                response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            return response.SerializeToString()  # type: ignore[no-any-return]

        return await _answer(context, work)

    async def ModelInfer(self, request: bytes, context: Any) -> bytes:  # noqa: N802
        async def work() -> bytes:
            try:
                infer = v2.request_from_proto(request)
            except ServingError as exc:
                raise self.plane.reject("predict", ModelRef(""), exc, entrypoint=_ENTRYPOINT) from None
            response = await mapping.infer(self.plane, infer, _timeout(context), entrypoint=_ENTRYPOINT)
            return v2.response_to_proto(response)

        return await _answer(context, work)


def v2_service_handler(plane: DataPlane) -> grpc.GenericRpcHandler:
    """The generic handler to add to a grpc.aio server: ``server.add_generic_rpc_handlers((h,))``."""
    servicer = V2Servicer(plane)
    names = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
    handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name)) for name in names}
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
