"""The asyncio client against tfship-model-server over both transports, and against small
in-process servers for the faults the model server cannot produce (an answer that never comes,
UNAVAILABLE that clears up)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from client_test_models import multi_expected
from tfship.client import ClientConfig, RetryPolicy
from tfship.client import connect as sync_connect
from tfship.client.aio import AsyncClient, connect
from tfship.deploy.launch import free_port

from tfship.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
    UnavailableError,
)
from tfship.wire.protos import serving_wire_pb2 as pb
from tfship.wire.tensor import encode_tensor

pytestmark = pytest.mark.anyio
AB = {"a": np.ones((2, 3), np.float32), "b": np.zeros(2, np.int64)}
ONE_X = {"x": np.ones((1, 1), np.float32)}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # grpc.aio runs on asyncio only


@pytest.fixture(params=["grpc", "rest"])
async def aclient(request: pytest.FixtureRequest, server: Any) -> AsyncIterator[AsyncClient]:
    """An asyncio client per test (its channel belongs to the test's event loop), per transport."""
    async with connect(server.grpc_url if request.param == "grpc" else server.rest_url) as client:
        yield client


def test_import_tfship_client_leaves_the_asyncio_parts_unimported() -> None:
    code = ("import sys, tfship.client\n"
            "loaded = [m for m in sys.modules if m.startswith(('tfship.client.aio', 'grpc', 'httpx', 'asyncio'))]\n"
            "assert not loaded, loaded\n"
            "import tfship.client.aio, tfship.client.batcher\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflow_serving')]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------- against tfship-model-server

async def test_predict_metadata_status(aclient: AsyncClient) -> None:
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = np.array([1, -5, 2**40, 0], np.int64)
    out = await aclient.predict("multi", {"a": a, "b": b}, version=1)
    for name, expected in multi_expected(1, a, b).items():
        assert out[name].tolist() == expected.tolist()
    detailed = await aclient.predict_detailed("multi", {"a": a, "b": b}, label="canary")
    assert detailed.outputs["tag"].tolist() == [b"v2"] * 4
    assert detailed.version == (2 if aclient.transport == "grpc" else None)
    # A nested list takes the signature's dtype, a single output comes back as one array.
    y = await aclient.predict("multi", [[1, 2, 3]], signature="single", version=2)
    assert y.dtype == np.float32 and y.tolist() == [[3.0, 6.0, 9.0]]
    assert [(v.version, v.state) for v in await aclient.status("multi")] == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    meta = await aclient.metadata("multi", version=1)
    assert meta.version == 1 and set(meta.signatures) >= {"serving_default", "single"}
    assert (await aclient.signature_info("multi", signature="single")).describe_inputs() == "a: DT_FLOAT [-1, 3]"
    assert await aclient.wait_until_available("multi", 1, timeout=5) == 1


async def test_wait_until_available_times_out_naming_the_model(aclient: AsyncClient) -> None:
    with pytest.raises(UnavailableError, match="waiting for version 7 of model 'multi'"):
        await aclient.wait_until_available("multi", 7, timeout=0.3)


async def test_predict_batches_equals_one_call(aclient: AsyncClient) -> None:
    a = np.random.default_rng(3).normal(size=(50, 3)).astype(np.float32)
    seen: list[int] = []
    y = await aclient.predict_batches("multi", {"a": a}, signature="single", version=1, batch_size=8,
                                      concurrency=3, progress=lambda done, total: seen.append(done))
    np.testing.assert_array_equal(y, a * 2)
    assert seen[-1] == 50 and len(seen) == 7


async def test_200_concurrent_coroutines_on_one_client_each_get_their_own_answer(aclient: AsyncClient) -> None:
    rows = np.random.default_rng(4).normal(size=(200, 1, 3)).astype(np.float32)
    answers = await asyncio.gather(*(aclient.predict("multi", {"a": row}, signature="single", version=1)
                                     for row in rows))
    for row, answer in zip(rows, answers, strict=True):
        np.testing.assert_array_equal(answer, row * 2)


async def test_deadline_exceeded(aclient: AsyncClient) -> None:
    big = np.ones((2000, 1000), np.float32)
    await aclient.predict("dtypes", big[:1])  # warm: connection open, metadata cached
    with pytest.raises(DeadlineExceededError):
        await aclient.predict("dtypes", big, timeout=1e-3)


ERROR_CASES: list[tuple[str, Callable[[Any], Any]]] = [
    ("unknown model", lambda c: c.predict("nope", AB)),
    ("unknown version", lambda c: c.predict("multi", AB, version=9)),
    ("unknown label", lambda c: c.predict("multi", AB, label="nightly")),
    ("wrong dtype", lambda c: c.predict("multi", {"a": AB["a"], "b": np.full(2, 0.5)}, version=1)),
    ("missing input", lambda c: c.predict("multi", np.ones((2, 3), np.float32))),
    ("unknown signature", lambda c: c.predict("multi", AB, signature="nope")),
    ("status of an unknown model", lambda c: c.status("nope")),
]


@pytest.mark.parametrize(("case", "call"), ERROR_CASES, ids=[c for c, _ in ERROR_CASES])
async def test_errors_and_hints_are_the_sync_clients(aclient: AsyncClient, server: Any, case: str,
                                                     call: Callable[[Any], Any]) -> None:
    with sync_connect(aclient.url) as sync_client, pytest.raises(ServingError) as sync_info:
        call(sync_client)
    with pytest.raises(ServingError) as async_info:
        await call(aclient)
    assert type(async_info.value) is type(sync_info.value)
    assert isinstance(async_info.value, (NotFoundError, InvalidArgumentError, FailedPreconditionError))
    assert str(async_info.value) == str(sync_info.value)
    assert async_info.value.hint == sync_info.value.hint


async def test_a_closed_client_says_so(server: Any) -> None:
    for url in (server.grpc_url, server.rest_url):
        client = connect(url, ClientConfig(retry=RetryPolicy(max_attempts=1)))
        await client.close()
        with pytest.raises(UnavailableError):
            await client.status("multi")


# ---------------------------------------------------------------------- faults from in-process servers

async def _grpc_server(predict: Callable[[bytes, Any], Awaitable[bytes]]) -> tuple[Any, str]:
    import grpc
    import grpc.aio

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": grpc.unary_unary_rpc_method_handler(predict)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"grpc://127.0.0.1:{port}"


async def _http_server(answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                       ) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


def _predict_response(y: np.ndarray) -> bytes:
    response = pb.PredictResponse()
    response.outputs["y"].ParseFromString(encode_tensor(y))
    return response.SerializeToString()  # type: ignore[no-any-return]


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_cancelling_a_coroutine_cancels_its_request(transport: str) -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def never_answer(request: bytes, context: Any) -> bytes:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:  # grpc.aio cancels the handler when the client cancels the RPC
            ended.set()
        raise AssertionError("unreachable")

    async def never_answer_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        started.set()
        await reader.read()  # returns b"" once the client closes the connection
        ended.set()
        writer.close()

    server, url = await (_grpc_server(never_answer) if transport == "grpc" else _http_server(never_answer_http))
    try:
        async with connect(url) as client:
            call = asyncio.ensure_future(client.predict("m", ONE_X, timeout=60))
            await asyncio.wait_for(started.wait(), 10)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.wait_for(ended.wait(), 10)  # the server saw the RPC / connection end
    finally:
        await (server.stop(None) if transport == "grpc" else _close_http(server))  # type: ignore[union-attr]


async def _close_http(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_unavailable_is_retried_until_the_server_answers(transport: str) -> None:
    calls = {"n": 0}
    y = np.full((1, 1), 7.0, np.float32)

    async def flaky(request: bytes, context: Any) -> bytes:
        import grpc

        calls["n"] += 1
        if calls["n"] < 3:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return _predict_response(y)

    async def flaky_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            if request.startswith(b"GET"):  # the metadata lookup that names and types the output
                status, body = b"200 OK", b"{}"
            else:
                calls["n"] += 1
                status, body = (b"503 Service Unavailable", b'{"error": "warming up"}') if calls["n"] < 3 else (
                    b"200 OK", b'{"outputs": [[7.0]]}')
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    server, url = await (_grpc_server(flaky) if transport == "grpc" else _http_server(flaky_http))
    config = ClientConfig(timeout=10, retry=RetryPolicy(max_attempts=4, initial_backoff=0.01))
    try:
        async with connect(url, config) as client:
            out = await client.predict("m", ONE_X)
        assert calls["n"] == 3
        assert out.tolist() == [[7.0]]
    finally:
        await (server.stop(None) if transport == "grpc" else _close_http(server))  # type: ignore[union-attr]


@pytest.mark.parametrize("scheme", ["grpc", "http"])
async def test_retries_stop_at_their_bound_when_the_server_is_down(scheme: str) -> None:
    config = ClientConfig(timeout=5, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01))
    async with connect(f"{scheme}://127.0.0.1:{free_port()}", config) as down:  # connection refused
        calls = {"n": 0}
        real = down._predict

        async def counting(*args: Any) -> Any:
            calls["n"] += 1
            return await real(*args)

        down._predict = counting  # type: ignore[method-assign]
        with pytest.raises(UnavailableError) as info:
            await down.predict("m", ONE_X)
    assert calls["n"] == 3
    assert info.value.details == {"attempts": 3}
    assert "Gave up after 3 attempt(s)" in str(info.value)


@pytest.fixture(scope="module")
def half_plus_two(tf_serving_testdata: Any, tfship_serve_session: Any) -> Any:
    """TF Serving's own test model (classify/regress signatures), served via the pytest plugin."""
    return tfship_serve_session(tf_serving_testdata / "saved_model_half_plus_two_cpu", "half")


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_classify_and_regress(half_plus_two: Any, transport: str) -> None:
    async with connect(half_plus_two.grpc.url if transport == "grpc" else half_plus_two.rest.url) as client:
        result = await client.classify("half", [{"x": 1.0}, {"x": 3.0}], signature="classify_x_to_y")
        np.testing.assert_allclose(result.scores, [[2.5], [3.5]])
        assert result.labels.tolist() == [[""], [""]]
        np.testing.assert_allclose(await client.regress("half", [{"x": 2.0}], signature="regress_x_to_y"), [3.0])


@pytest.mark.parametrize("scheme", ["grpc", "http"])
async def test_several_replicas_one_down_every_call_answers(server: Any, scheme: str) -> None:
    # The sync client's URL forms and failover, through the same endpoint code: a list with a
    # replica that refuses connections still answers every call (retried on the live one).
    live = server.grpc_port if scheme == "grpc" else server.rest_port
    url = f"{scheme}://127.0.0.1:{free_port()},127.0.0.1:{live}"
    async with connect(url, ClientConfig(timeout=20)) as client:
        assert [r.url for r in client.replicas()] == [f"{scheme}://127.0.0.1:{p}" for p in
                                                      (int(url.split(":")[2].split(",")[0]), live)]
        ys = await asyncio.gather(*(client.predict("multi", {"a": np.full((1, 3), i, np.float32)},
                                                   signature="single", version=1) for i in range(20)))
    assert [y.tolist() for y in ys] == [[[2.0 * i] * 3] for i in range(20)]
