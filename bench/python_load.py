"""The Python load generator: spawned client processes, each driving its share of a cell's calls
from one asyncio loop (grpc.aio with raw bytes; keep-alive sockets sending a pre-encoded HTTP/1.1
request). Used when h2load is not on PATH or with ``--load-generator python``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import v2_load
from payloads import check_reply, grpc_request, http_request
from saved_models import check_predictions, serving_input_alias
from server_process import Server
from tables import Cell, print_cell, summarize


@dataclass
class Load:
    """One client process's share of a cell: pre-encoded requests, driven from one event loop."""

    kind: str  # "grpc" (payload = serialized PredictRequest) or "http" (payload = full request)
    port: int
    payload: bytes
    concurrency: int
    start_at: float  # time.monotonic() (system-wide on Linux) when all processes start
    seconds: float
    min_calls: int
    method: str = "/tensorflow.serving.PredictionService/Predict"  # the gRPC method (V2: ModelInfer)


@dataclass
class LoadResult:
    latencies: list[float]
    errors: int
    started: float
    ended: float
    cpu_seconds: float


def run_load(load: Load) -> LoadResult:
    """Client process entry point (spawned): run ``load`` and return its latencies and CPU time."""
    return asyncio.run(_run_load(load))


class _HttpCaller:
    """Calls over one keep-alive connection: send the pre-encoded request, read the reply."""

    def __init__(self, port: int, payload: bytes) -> None:
        self.port = port
        self.payload = payload
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def __call__(self) -> bool:
        try:
            if self.stream is None:
                self.stream = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = self.stream
            writer.write(self.payload)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.stream = None
            return False
        return head.startswith(b"HTTP/1.1 200") and len(body) > 2


async def _run_load(load: Load) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    channel = None
    callers: list[Callable[[], Awaitable[bool]]]
    if load.kind == "grpc":
        import grpc

        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{load.port}",
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        method = channel.unary_unary(load.method)

        async def grpc_call() -> bool:
            try:
                return len(await method(load.payload, timeout=600)) > 0
            except grpc.aio.AioRpcError:
                return False

        callers = [grpc_call] * load.concurrency
    else:
        callers = [_HttpCaller(load.port, load.payload) for _ in range(load.concurrency)]
    await asyncio.sleep(max(0.0, load.start_at - time.monotonic()))
    cpu0 = time.process_time()
    started = time.monotonic()
    deadline = max(load.start_at, started) + load.seconds

    async def worker(call: Callable[[], Awaitable[bool]]) -> None:
        nonlocal errors
        while time.monotonic() < deadline or len(latencies) + errors < load.min_calls:
            t0 = time.perf_counter()
            ok = await call()
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
                if errors > 20 and not latencies:
                    return

    await asyncio.gather(*(worker(call) for call in callers))
    ended = time.monotonic()
    cpu = time.process_time() - cpu0
    if channel is not None:
        await channel.close()
    return LoadResult(latencies, errors, started, ended, cpu)


class ClientPool:
    """``procs`` spawned client processes (spawn: the parent has TensorFlow's threads running)."""

    def __init__(self, procs: int) -> None:
        self.procs = procs
        self._pool = concurrent.futures.ProcessPoolExecutor(
            procs, mp_context=multiprocessing.get_context("spawn")
        )
        list(self._pool.map(time.sleep, [0.0] * procs))  # start them now, not inside a cell

    def drive(self, kind: str, port: int, payload: bytes, concurrency: int, seconds: float,
              min_calls: int, method: str = Load.method) -> tuple[list[float], int, float, float]:
        """Run one cell; returns (latencies, errors, elapsed seconds, client CPU in cores)."""
        procs = min(self.procs, concurrency)
        shares = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
        start_at = time.monotonic() + 0.5
        loads = [Load(kind, port, payload, share, start_at, seconds, max(1, min_calls // procs), method)
                 for share in shares]
        results = list(self._pool.map(run_load, loads))
        elapsed = max(r.ended for r in results) - min(r.started for r in results)
        latencies = [lat for r in results for lat in r.latencies]
        errors = sum(r.errors for r in results)
        cpu = sum(r.cpu_seconds for r in results) / elapsed
        return latencies, errors, elapsed, cpu

    def close(self) -> None:
        self._pool.shutdown()


def server_cells(pool: ClientPool, target: str, model: str, version_dir: Path, shape: tuple[int, ...],
                 server: Server, batches: list[int], concurrencies: list[int], seconds: float,
                 min_calls: int) -> list[Cell]:
    cells = []
    alias = serving_input_alias(version_dir)
    for batch in batches:
        x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
        method = Load.method
        if target in v2_load.V2_TARGETS:
            v2 = v2_load.v2_request(target, server, model, alias, x)
            check_predictions(target, model, version_dir, x, v2.predictions)
            kind, port, payload, method = v2.kind, v2.port, v2.payload, v2.method or method
        elif target.startswith("grpc"):
            check_predictions(target, model, version_dir, x, check_reply(target, server, model, alias, x)[1])
            kind, port, payload = "grpc", server.grpc_port, grpc_request(model, alias, x)
        else:
            check_predictions(target, model, version_dir, x, check_reply(target, server, model, alias, x)[1])
            kind, port = "http", server.rest_port
            payload = http_request(port, f"/v1/models/{model}:predict", x)
        assert port is not None
        for concurrency in concurrencies:
            server_cpu0, wall0 = server.cpu_seconds(), time.monotonic()
            latencies, errors, elapsed, cpu = pool.drive(kind, port, payload, concurrency,
                                                         seconds, min_calls, method)
            server_cpu = (server.cpu_seconds() - server_cpu0) / (time.monotonic() - wall0)
            cell = summarize(model, target, batch, concurrency, latencies, errors, elapsed)
            cell.client_cpu = round(cpu, 2)
            cell.server_cpu = round(server_cpu, 2)
            cells.append(cell)
            print_cell(cell)
    return cells
