"""REST for the asyncio client: the same bodies, decoders and error mapping as
:mod:`tfship.client.rest_transport`, sent with ``httpx.AsyncClient``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
from tfship.client.aio.base import AsyncClient
from tfship.client.base import ModelRef
from tfship.client.config import ClientConfig
from tfship.client.endpoints import Target
from tfship.client.rest_transport import (
    RestReplicas,
    decode_classify,
    decode_predict,
    decode_regress,
    examples_body,
    http_client_options,
    metadata_from_json,
    model_path,
    predict_body,
    read_response,
    reload_unimplemented,
    request_options,
    status_from_json,
)
from tfship.client.types import ClassifyResult, ModelMetadata, SignatureInfo, VersionStatus

from tfship.errors import InvalidArgumentError

__all__ = ["AsyncRestClient"]


class AsyncRestClient(AsyncClient):
    """Asyncio client over TF Serving's REST API (``http://host:port`` or ``https://``)."""

    transport = "rest"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        self._http = httpx.AsyncClient(**http_client_options(config))
        self._replicas = RestReplicas(target, self._faults)

    async def _request(self, method: str, path: str, ref: ModelRef, timeout: float | None,
                       body: Any = None) -> Any:
        # Cancelling the awaiting task closes the request's connection (httpx/anyio cancellation).
        endpoint, base = self._replicas.pick()
        try:
            response = await self._http.request(method, base + path,
                                                 **request_options(self.config, endpoint, timeout, body))
        except (httpx.TransportError, OSError, RuntimeError) as exc:
            raise self._replicas.failed(endpoint, exc, ref, timeout) from None
        self._replicas.answered(endpoint)
        return read_response(response, ref)

    async def _signature(self, ref: ModelRef) -> SignatureInfo | None:
        try:
            return (await self._cached_metadata(ref)).signature(ref.signature)
        except InvalidArgumentError:
            return None

    async def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                       timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        doc = await self._request("POST", model_path(ref) + ":predict", ref, timeout, predict_body(ref, inputs))
        return decode_predict(doc, await self._signature(ref), output_filter, self.url), None

    async def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                        timeout: float | None) -> ClassifyResult:
        return decode_classify(await self._request("POST", model_path(ref) + ":classify", ref, timeout,
                                                   examples_body(ref, examples, context)))

    async def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                       timeout: float | None) -> np.ndarray:
        return decode_regress(await self._request("POST", model_path(ref) + ":regress", ref, timeout,
                                                  examples_body(ref, examples, context)))

    async def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        doc = await self._request("GET", model_path(ref) + "/metadata", ref, timeout)
        return metadata_from_json(doc, ref.name)

    async def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        return status_from_json(await self._request("GET", model_path(ref), ref, timeout))

    async def _reload_config(self, config: str, timeout: float | None) -> None:
        raise reload_unimplemented(self.url)

    async def close(self) -> None:
        await self._close_replicas()
        await self._http.aclose()
