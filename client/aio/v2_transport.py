"""The Open Inference Protocol (KServe V2) for the asyncio client: the same requests, decoders and
error mapping as :mod:`tfship.client.v2_transport`, on grpc.aio and ``httpx.AsyncClient``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
import httpx
import numpy as np
from tfship.client.aio.base import AsyncClient
from tfship.client.base import ModelRef
from tfship.client.config import ClientConfig
from tfship.client.endpoints import Target
from tfship.client.grpc_transport import channel_setup, rpc_error
from tfship.client.rest_transport import RestReplicas, http_client_options, request_options
from tfship.client.types import ClassifyResult, ModelMetadata, VersionStatus
from tfship.client.v2_transport import (
    V2_METHODS,
    grpc_metadata,
    grpc_metadata_request,
    grpc_ready_request,
    infer_answer,
    infer_body,
    infer_request,
    metadata_from_v2,
    model_path,
    prediction,
    read_answer,
    ready_answer,
    reload_unsupported,
    status_from_readiness,
    unsupported,
)

from tfship.errors import InvalidArgumentError, NotFoundError, UnavailableError
from tfship.wire import v2
from tfship.wire.protos import open_inference_pb2 as pb

__all__ = ["AsyncV2GrpcClient", "AsyncV2RestClient"]


class _AsyncV2Client(AsyncClient):
    """What both V2 transports answer alike: the protocol has no Classify, Regress or reload."""

    async def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                        timeout: float | None) -> ClassifyResult:
        raise unsupported("Classify", self.url)

    async def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                       timeout: float | None) -> np.ndarray:
        raise unsupported("Regress", self.url)

    async def _reload_config(self, config: str, timeout: float | None) -> None:
        raise reload_unsupported(self.url)


class AsyncV2GrpcClient(_AsyncV2Client):
    """Asyncio client over the V2 gRPC service (``v2+grpc://host:port``)."""

    transport = "v2-grpc"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        address, options, creds = channel_setup(target, config)
        self._channel = (grpc.aio.secure_channel(address, creds, options=options) if creds is not None
                         else grpc.aio.insecure_channel(address, options=options))
        self._rpc = {name: self._channel.unary_unary(path) for name, path in V2_METHODS.items()}

    async def _invoke(self, method: str, request: bytes, timeout: float | None, ref: ModelRef) -> bytes:
        try:
            return await self._rpc[method](request, timeout=timeout)  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            raise rpc_error(exc, ref) from None
        except (ValueError, grpc.aio.UsageError) as exc:  # "Channel is closed."
            raise UnavailableError(f"gRPC channel to {self.url} is unusable: {exc}") from None

    async def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                       timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        request = v2.request_to_proto(infer_request(ref, inputs, output_filter))
        return prediction(v2.response_from_proto(await self._invoke("ModelInfer", request, timeout, ref)))

    async def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        return grpc_metadata(await self._invoke("ModelMetadata", grpc_metadata_request(ref), timeout, ref), ref)

    async def _ready(self, name: str, version: str, timeout: float | None, ref: ModelRef) -> bool:
        raw = await self._invoke("ModelReady", grpc_ready_request(name, version), timeout, ref)
        return bool(pb.ModelReadyResponse.FromString(raw).ready)

    async def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        if ref.version is not None:
            ready = await self._ready(ref.name, str(ref.version), timeout, ref)
            return status_from_readiness([(str(ref.version), ready)])
        raw = await self._invoke("ModelMetadata", grpc_metadata_request(ref), timeout, ref)
        versions = list(pb.ModelMetadataResponse.FromString(raw).versions) or [""]
        return status_from_readiness([(v, await self._ready(ref.name, v, timeout, ref)) for v in versions])

    async def server_ready(self, timeout: float | None = None) -> bool:
        """V2 ServerReady: the server is up and every model it serves is ready."""
        raw = await self._invoke("ServerReady", pb.ServerReadyRequest().SerializeToString(), timeout, ModelRef("-"))
        return bool(pb.ServerReadyResponse.FromString(raw).ready)

    async def close(self) -> None:
        await self._close_replicas()
        await self._channel.close()


class AsyncV2RestClient(_AsyncV2Client):
    """Asyncio client over the V2 REST API (``v2+http://host:port``)."""

    transport = "v2-rest"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        self._http = httpx.AsyncClient(**http_client_options(config))
        self._replicas = RestReplicas(target, self._faults)

    async def _send(self, method: str, path: str, ref: ModelRef, timeout: float | None,
                    body: bytes | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        endpoint, base = self._replicas.pick()
        options = request_options(self.config, endpoint, timeout)
        if body is not None:
            options["content"] = body
            options["headers"] = {**options.get("headers", {}), **(headers or {})}
        try:
            response = await self._http.request(method, base + path, **options)
        except (httpx.TransportError, OSError, RuntimeError) as exc:
            raise self._replicas.failed(endpoint, exc, ref, timeout) from None
        self._replicas.answered(endpoint)
        return response

    async def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                       timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        body, headers = infer_body(ref, inputs, output_filter, self.config.v2_binary_data)
        return infer_answer(await self._send("POST", model_path(ref) + "/infer", ref, timeout, body, headers), ref)

    async def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        doc = read_answer(await self._send("GET", model_path(ref), ref, timeout), ref)
        if not isinstance(doc, dict):
            raise InvalidArgumentError(f"Unexpected V2 model metadata from {self.url}.")
        return metadata_from_v2(ref, doc.get("name", ""), doc.get("versions") or [], doc.get("inputs") or [],
                                doc.get("outputs") or [])

    async def _ready(self, ref: ModelRef, timeout: float | None) -> bool:
        return ready_answer(await self._send("GET", model_path(ref) + "/ready", ref, timeout), ref)

    async def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        if ref.version is not None:
            return status_from_readiness([(str(ref.version), await self._ready(ref, timeout))])
        doc = read_answer(await self._send("GET", model_path(ref), ref, timeout), ref)
        versions = ([str(v) for v in (doc.get("versions") or [])] if isinstance(doc, dict) else []) or [""]
        return status_from_readiness(
            [(v, await self._ready(ModelRef(ref.name, int(v)) if v.isdigit() else ref, timeout)) for v in versions])

    async def server_ready(self, timeout: float | None = None) -> bool:
        """``GET /v2/health/ready``: the server is up and every model it serves is ready."""
        try:
            return (await self._send("GET", "/v2/health/ready", ModelRef("-"), timeout)).status_code == 200
        except NotFoundError:
            return False

    async def close(self) -> None:
        await self._close_replicas()
        await self._http.aclose()
