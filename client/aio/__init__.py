"""The asyncio client: the same API as :mod:`tfship.client`, awaitable, on grpc.aio and httpx.AsyncClient.

For asyncio applications (FastAPI, aiohttp, Starlette, async consumers): calls never block the
event loop and need no thread pool. Requests are built, decoded and mapped to errors by the same
code as the blocking client; only the waiting differs.

>>> from tfship.client.aio import connect
>>> async with connect("grpc://127.0.0.1:8500") as client:            # doctest: +SKIP
...     await client.wait_until_available("half_plus_two", timeout=30)
...     y = await client.predict("half_plus_two", np.array([1.0, 2.0], np.float32))

Not imported by ``import tfship.client`` (keeps the blocking client's start-up fast).
"""

from __future__ import annotations

from tfship.client.aio.base import AsyncClient
from tfship.client.aio.connect import connect

__all__ = ["connect", "AsyncClient"]
