"""gRPC for the asyncio client: the same requests, decoders and error mapping as
:mod:`tfship.client.grpc_transport`, sent on a grpc.aio channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np
from tfship.client.aio.base import AsyncClient
from tfship.client.base import CONFIG_REF, ModelRef
from tfship.client.config import ClientConfig
from tfship.client.endpoints import Endpoint, Target
from tfship.client.grpc_transport import (
    METHODS,
    channel_setup,
    decode_classify,
    decode_metadata,
    decode_regress,
    decode_reload,
    decode_status,
    examples_request,
    metadata_request,
    predict_request,
    reload_request,
    replica_target,
    rpc_error,
    status_request,
)
from tfship.client.resilience import current_endpoint
from tfship.client.types import ClassifyResult, ModelMetadata, VersionStatus

from tfship.errors import UnavailableError
from tfship.wire.predict import decode_predict_response
from tfship.wire.protos import serving_wire_pb2 as pb

__all__ = ["AsyncGrpcClient"]


class AsyncGrpcClient(AsyncClient):
    """Asyncio client over gRPC (``grpc://host:port``, or ``grpcs://`` for TLS)."""

    transport = "grpc"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        # Over several replicas with fault handling: a channel per replica, opened on first use.
        self._channels: dict[Endpoint, tuple[grpc.aio.Channel, dict[str, Any]]] = {}
        if not self._faults.active:
            self._channel, self._rpc = self._open(target)

    def _open(self, target: Target) -> tuple[grpc.aio.Channel, dict[str, Any]]:
        address, options, creds = channel_setup(target, self.config)
        if creds is not None:
            channel = grpc.aio.secure_channel(address, creds, options=options)
        else:
            channel = grpc.aio.insecure_channel(address, options=options)
        # Raw bytes in and out: we serialize and parse ourselves.
        return channel, {name: channel.unary_unary(path) for name, path in METHODS.items()}

    def _stubs(self) -> tuple[Endpoint | None, dict[str, Any]]:
        if not self._faults.active:
            return None, self._rpc
        endpoint = current_endpoint() or self._faults.pick()
        assert endpoint is not None
        opened = self._channels.get(endpoint)
        if opened is None:
            opened = self._channels[endpoint] = self._open(replica_target(endpoint))
        return endpoint, opened[1]

    async def _invoke(self, method: str, request: bytes, timeout: float | None, ref: ModelRef) -> bytes:
        # Cancelling the awaiting task cancels the RPC (grpc.aio's call does it on CancelledError).
        endpoint, rpc = self._stubs()
        try:
            return await rpc[method](request, timeout=timeout)  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            error = rpc_error(exc, ref)
            if endpoint is not None and isinstance(error, UnavailableError) and self._faults.pool is not None:
                self._faults.pool.mark_down(endpoint)
            raise error from None
        except (ValueError, grpc.aio.UsageError) as exc:  # "Channel is closed."
            raise UnavailableError(f"gRPC channel to {self.url} is unusable: {exc}") from None

    async def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                       timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        raw = await self._invoke("Predict", predict_request(ref, inputs, output_filter), timeout, ref)
        return decode_predict_response(raw)

    async def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                        timeout: float | None) -> ClassifyResult:
        request = examples_request(pb.ClassificationRequest, ref, examples, context)
        return decode_classify(await self._invoke("Classify", request, timeout, ref))

    async def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                       timeout: float | None) -> np.ndarray:
        request = examples_request(pb.RegressionRequest, ref, examples, context)
        return decode_regress(await self._invoke("Regress", request, timeout, ref))

    async def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        return decode_metadata(await self._invoke("GetModelMetadata", metadata_request(ref), timeout, ref), ref)

    async def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        return decode_status(await self._invoke("GetModelStatus", status_request(ref), timeout, ref))

    async def _reload_config(self, config: str, timeout: float | None) -> None:
        request = reload_request(config)
        decode_reload(await self._invoke("HandleReloadConfigRequest", request, timeout, CONFIG_REF))

    async def close(self) -> None:
        await self._close_replicas()
        channels, self._channels = [channel for channel, _ in self._channels.values()], {}
        for channel in channels:
            await channel.close()
        if not self._faults.active:
            await self._channel.close()
