"""``connect(url)`` for the asyncio client: the same URLs as :func:`tfship.client.connect`."""

from __future__ import annotations

from tfship.client.aio.base import AsyncClient
from tfship.client.config import ClientConfig
from tfship.client.connect import parse_url

__all__ = ["connect"]


def connect(url: str, config: ClientConfig | None = None) -> AsyncClient:
    """An :class:`AsyncClient` for ``grpc://``, ``grpcs://``, ``http://`` or ``https://`` URLs.

    Call it inside the running event loop (grpc.aio binds its channel to the loop), and close
    the client with ``async with`` or ``await client.close()``::

        async with connect("grpc://127.0.0.1:8500") as client:
            y = await client.predict("half_plus_two", np.array([1.0, 2.0], np.float32))
    """
    config = config or ClientConfig()
    target = parse_url(url)
    if target.transport == "grpc":
        from tfship.client.aio.grpc_transport import AsyncGrpcClient

        return AsyncGrpcClient(url, target.address, config, secure=target.secure)
    from tfship.client.aio.rest_transport import AsyncRestClient

    return AsyncRestClient(target.address, config)
