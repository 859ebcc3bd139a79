"""``connect(url)`` for the asyncio client: the same URLs as :func:`tfship.client.connect`."""

from __future__ import annotations

from collections.abc import Sequence

from tfship.client.aio.base import AsyncClient
from tfship.client.config import ClientConfig
from tfship.client.endpoints import parse_target

__all__ = ["connect"]


def connect(url: str | Sequence[str], config: ClientConfig | None = None) -> AsyncClient:
    """An :class:`AsyncClient` for ``grpc://``, ``grpcs://``, ``http://`` or ``https://`` URLs
    (``v2+`` in front for the Open Inference Protocol).

    The same targets as :func:`tfship.client.connect`, parsed by the same code: several replicas
    as ``grpc://a:8500,b:8500`` (or a list), or ``dns:///NAME:8500`` / ``dns+http:///NAME:8501``,
    with the same per-call balancing and failover retries.

    Call it inside the running event loop (grpc.aio binds its channel to the loop), and close
    the client with ``async with`` or ``await client.close()``::

        async with connect("grpc://127.0.0.1:8500") as client:
            y = await client.predict("half_plus_two", np.array([1.0, 2.0], np.float32))
    """
    config = config or ClientConfig()
    target = parse_target(url)
    if target.protocol == "v2":
        from tfship.client.aio.v2_transport import AsyncV2GrpcClient, AsyncV2RestClient

        return AsyncV2GrpcClient(target, config) if target.is_grpc else AsyncV2RestClient(target, config)
    if target.is_grpc:
        from tfship.client.aio.grpc_transport import AsyncGrpcClient

        return AsyncGrpcClient(target, config)
    from tfship.client.aio.rest_transport import AsyncRestClient

    return AsyncRestClient(target, config)
