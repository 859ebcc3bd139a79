"""One client contract, two drivers: the blocking and the asyncio client must not drift apart.

Every public call, every error and every hint runs through both clients against the same server
and must come back the same: the same value, or the same error class with the same message and
hint. The public surface (every public method's signature, ``connect``, the batchers) must match
too, so adding a parameter to one client and forgetting the other fails here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tfship.client import ClientConfig, RetryPolicy
from tfship.client import connect as sync_connect
from tfship.client.aio import connect as async_connect
from tfship.deploy.launch import free_port

from tfship.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
    UnavailableError,
)

AB = {"a": np.ones((2, 3), np.float32), "b": np.arange(2, dtype=np.int64)}
TEN = {"a": np.arange(30, dtype=np.float32).reshape(10, 3), "b": np.arange(10, dtype=np.int64)}
EXAMPLES = [{"x": 1.0}, {"x": 3.0}]


@dataclasses.dataclass(frozen=True)
class Case:
    """One public call: ``method(*args, **kwargs)`` on a client connected to the server."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    raises: type[ServingError] | None = None
    hint: str | None = None  # expected in the error's hint (both clients must give the same one)


CASES = {
    "predict": Case("predict", ("multi", AB), {"version": 1}),
    "predict label": Case("predict", ("multi", AB), {"label": "canary"}),
    "predict bare array": Case("predict", ("multi", np.ones((2, 3), np.float32)), {"signature": "single"}),
    "predict output_filter": Case("predict", ("multi", AB), {"version": 2, "output_filter": ["scaled"]}),
    "predict_detailed": Case("predict_detailed", ("multi", AB), {"version": 2}),
    "classify": Case("classify", ("half", EXAMPLES), {"signature": "classify_x_to_y"}),
    "regress": Case("regress", ("half", EXAMPLES), {"signature": "regress_x_to_y"}),
    "metadata": Case("metadata", ("multi",), {"version": 1}),
    "status": Case("status", ("multi",)),
    "wait_until_available": Case("wait_until_available", ("multi", 2), {"timeout": 30}),
    "predict_batches": Case("predict_batches", ("multi", TEN), {"batch_size": 3, "concurrency": 2, "version": 1}),
    "signature_info": Case("signature_info", ("multi",), {"signature": "single", "version": 1}),
    "batcher": Case("batcher.predict", ("multi", AB), {"version": 1}),
    # errors and their hints
    "unknown model": Case("predict", ("nope", AB), raises=NotFoundError, hint="has no model named 'nope'"),
    "unknown version": Case("predict", ("multi", AB), {"version": 9}, raises=NotFoundError,
                            hint="Model 'multi' has versions: 2 (AVAILABLE), 1 (AVAILABLE)."),
    "unknown label": Case("predict", ("multi", AB), {"label": "nightly"}, raises=InvalidArgumentError,
                          hint="Version labels are defined in the server's model config"),
    "wrong dtype": Case("predict", ("multi", {"a": AB["a"], "b": np.full(2, 0.5)}), {"version": 1},
                        raises=InvalidArgumentError, hint="expects inputs: a: DT_FLOAT [-1, 3], b: DT_INT64 [-1]"),
    "bare array, two inputs": Case("predict", ("multi", np.ones((2, 3), np.float32)), raises=InvalidArgumentError,
                                   hint="Expected inputs: a: DT_FLOAT [-1, 3], b: DT_INT64 [-1]"),
    "unknown signature": Case("predict", ("multi", AB), {"signature": "nope", "version": 1},
                              raises=ServingError),  # gRPC: FAILED_PRECONDITION + signatures hint; REST: 400
    "signature_info unknown": Case("signature_info", ("multi",), {"signature": "nope", "version": 1},
                                   raises=FailedPreconditionError, hint="has signatures: serving_default, single"),
    "metadata unknown model": Case("metadata", ("nope",), raises=NotFoundError, hint="has no model named 'nope'"),
    "status unknown model": Case("status", ("nope",), raises=NotFoundError),  # status explains nothing
    "wait_until_available times out": Case("wait_until_available", ("nope",), {"timeout": 0.3},
                                           raises=UnavailableError, hint="Check the server log"),
    "predict_batches concurrency": Case("predict_batches", ("multi", TEN), {"concurrency": 0},
                                        raises=InvalidArgumentError),
    "predict_batches no rows": Case("predict_batches", ("multi", {"a": AB["a"][:0], "b": AB["b"][:0]}),
                                    raises=InvalidArgumentError),
}


# ---------------------------------------------------------------------- the two drivers


def run_sync(url: str, case: Case, config: ClientConfig | None = None) -> Any:
    with sync_connect(url, config) as client:
        if case.method == "batcher.predict":
            model, inputs = case.args
            with client.batcher(model, **case.kwargs) as batcher:
                return batcher.predict(inputs)
        return getattr(client, case.method)(*case.args, **case.kwargs)


def run_async(url: str, case: Case, config: ClientConfig | None = None) -> Any:
    async def go() -> Any:
        async with async_connect(url, config) as client:
            if case.method == "batcher.predict":
                model, inputs = case.args
                async with client.batcher(model, **case.kwargs) as batcher:
                    return await batcher.predict(inputs)
            return await getattr(client, case.method)(*case.args, **case.kwargs)

    return asyncio.run(go())


DRIVERS: dict[str, Callable[..., Any]] = {"sync": run_sync, "async": run_async}


def outcome(driver: Callable[..., Any], url: str, case: Case, config: ClientConfig | None = None) -> Any:
    """What a call gave, in a form two drivers' answers compare by ``==``."""
    try:
        return ("ok", plain(driver(url, case, config)))
    except ServingError as exc:
        return ("error", type(exc).__name__, exc.message, exc.hint, exc.model, exc.details, str(exc))


def plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@pytest.fixture(params=["grpc", "rest"])
def url(request: pytest.FixtureRequest, server: Any) -> str:
    return str(server.grpc_url if request.param == "grpc" else server.rest_url)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_call_keeps_the_contract(driver: str, name: str, url: str) -> None:
    case = CASES[name]
    got = outcome(DRIVERS[driver], url, case)
    if case.raises is None:
        assert got[0] == "ok", got
    else:
        assert got[0] == "error" and issubclass(getattr(_errors(), got[1]), case.raises), got
        if case.hint is not None:
            assert got[3] is not None and case.hint in got[3], got
            assert case.hint in got[6]  # the hint is part of the error's text


@pytest.fixture(params=["grpc", "rest", "v2+grpc", "v2+rest"])
def any_url(request: pytest.FixtureRequest, server: Any) -> str:
    """Every transport, TF Serving's API and the Open Inference Protocol (V2)."""
    url = str(server.grpc_url if request.param.endswith("grpc") else server.rest_url)
    return "v2+" + url if request.param.startswith("v2") else url


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_clients_answer_alike(name: str, any_url: str) -> None:
    case = CASES[name]
    assert outcome(run_sync, any_url, case) == outcome(run_async, any_url, case)


@pytest.mark.parametrize("scheme", ["v2+grpc", "v2+rest"])
def test_v2_server_ready_alike(scheme: str, server: Any) -> None:
    url = "v2+" + (server.grpc_url if scheme.endswith("grpc") else server.rest_url)
    case = Case("server_ready")
    assert outcome(run_sync, url, case) == outcome(run_async, url, case) == ("ok", True)


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_both_clients_give_up_alike_when_the_server_is_down(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    config = ClientConfig(timeout=5, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    case = Case("predict", ("m", AB))
    answers = {name: outcome(driver, url, case, config) for name, driver in DRIVERS.items()}
    for kind, error, _message, hint, _model, details, _text in answers.values():
        assert (kind, error, details) == ("error", "UnavailableError", {"attempts": 2})
        assert hint == f"Gave up after 2 attempt(s) to {url}: is the server running and listening on that port?"
    # the transport's own words differ between httpx's sync and async stacks; the client's do not
    assert {a[3] for a in answers.values()} == {answers["sync"][3]}


def test_reload_config_alike(server: Any, model_base: Path) -> None:
    same = (model_base / "models.config").read_text()  # the server's own config: reloading changes nothing
    reload = Case("reload_config", (same,), {"timeout": 60})
    assert outcome(run_sync, server.grpc_url, reload) == outcome(run_async, server.grpc_url, reload) == ("ok", None)
    listed_twice = '\n  config { name: "multi" base_path: "/x" model_platform: "tensorflow" }'
    twice = same.replace("model_config_list {", "model_config_list {" + listed_twice, 1)
    refused = [outcome(driver, server.grpc_url, Case("reload_config", (twice,))) for driver in (run_sync, run_async)]
    assert refused[0] == refused[1] and refused[0][1] == "InvalidArgumentError", refused
    assert "multi" in refused[0][2]
    unparsable = [outcome(driver, server.grpc_url, Case("reload_config", ("model_config_list { nope: 1 }",)))
                  for driver in (run_sync, run_async)]
    assert unparsable[0] == unparsable[1] and unparsable[0][1] == "InvalidArgumentError", unparsable
    assert "not a text-format ModelServerConfig" in unparsable[0][2]
    over_rest = [outcome(driver, server.rest_url, Case("reload_config", (same,))) for driver in (run_sync, run_async)]
    assert over_rest[0] == over_rest[1] and over_rest[0][1] == "UnimplementedError", over_rest
    assert "grpc://" in over_rest[0][3]
    # the refused reloads left the config as it was
    with sync_connect(server.grpc_url) as client:
        assert [v.version for v in client.status("multi")] == [2, 1]


def test_replicas_alike(server: Any) -> None:
    url = f"grpc://127.0.0.1:{server.grpc_port},localhost:{server.grpc_port}"
    with sync_connect(url) as client:
        sync_urls = [r.url for r in client.replicas()]

    async def go() -> list[str]:
        async with async_connect(url) as client:
            return [r.url for r in client.replicas()]

    assert sync_urls == asyncio.run(go()) and len(sync_urls) == 2


def _errors() -> Any:
    import tfship.errors

    return tfship.errors


# ---------------------------------------------------------------------- the public surface


def _pairs() -> list[tuple[Any, Any]]:
    from tfship.client import Client
    from tfship.client.aio import AsyncClient
    from tfship.client.aio.grpc_transport import AsyncGrpcClient
    from tfship.client.aio.rest_transport import AsyncRestClient
    from tfship.client.aio.v2_transport import AsyncV2GrpcClient, AsyncV2RestClient
    from tfship.client.batcher import AsyncBatcher, Batcher
    from tfship.client.grpc_transport import GrpcClient
    from tfship.client.rest_transport import RestClient
    from tfship.client.v2_transport import V2GrpcClient, V2RestClient

    return [(Client, AsyncClient), (GrpcClient, AsyncGrpcClient), (RestClient, AsyncRestClient),
            (V2GrpcClient, AsyncV2GrpcClient), (V2RestClient, AsyncV2RestClient), (Batcher, AsyncBatcher)]


#: The asyncio spelling of a blocking name.
_ASYNC_NAME = {"__enter__": "__aenter__", "__exit__": "__aexit__"}
#: Calls that do no I/O stay plain functions on the asyncio client.
_NO_IO = {"replicas", "batcher"}


def _public(cls: type) -> dict[str, Any]:
    names = {n for n in dir(cls) if not n.startswith("_")} | {n for n in ("__enter__", "__exit__", "__aenter__",
                                                                          "__aexit__") if hasattr(cls, n)}
    return {n: inspect.getattr_static(cls, n) for n in sorted(names)}


def _spelling(sig: inspect.Signature) -> str:
    """The signature as text, the asyncio names read as the blocking ones (AsyncClient -> Client)."""
    text = str(sig)
    text = re.sub(r"\bAsync(Client|Batcher|GrpcClient|RestClient|V2GrpcClient|V2RestClient)\b", r"\1", text)
    return re.sub(r"\b[AT]\b", "Self", text)  # the TypeVar each class uses for `self`


@pytest.mark.parametrize("pair", _pairs(), ids=lambda pair: pair[0].__name__)
def test_public_surface_is_the_same(pair: tuple[type, type]) -> None:
    blocking, asyncio_ = pair
    ours, theirs = _public(blocking), _public(asyncio_)
    renamed = {_ASYNC_NAME.get(n, n): v for n, v in ours.items()}
    assert sorted(renamed) == sorted(theirs), "public names differ between the blocking and the asyncio client"
    for name, value in ours.items():
        other = theirs[_ASYNC_NAME.get(name, name)]
        if not callable(value) and not isinstance(value, (staticmethod, classmethod)):
            assert value == other, name
            continue
        fn, afn = getattr(blocking, name), getattr(asyncio_, _ASYNC_NAME.get(name, name))
        assert _spelling(inspect.signature(fn)) == _spelling(inspect.signature(afn)), (
            f"{blocking.__name__}.{name} and {asyncio_.__name__} differ: give both the same parameters")
        assert not inspect.iscoroutinefunction(fn), name
        if fn is afn:
            continue  # shared by both drivers (BaseClient): one function, no I/O
        wants_await = name not in _NO_IO and not name.startswith("__") or name in _ASYNC_NAME
        assert inspect.iscoroutinefunction(afn) == wants_await, f"{asyncio_.__name__}.{name} awaits wrongly"


def test_connect_and_predict_batches_take_the_same_arguments() -> None:
    from tfship.client.batching import predict_batches, predict_batches_async

    assert _spelling(inspect.signature(sync_connect)) == _spelling(inspect.signature(async_connect))
    # predict_batches' progress may be a callable or True in both
    assert list(inspect.signature(predict_batches).parameters) == list(
        inspect.signature(predict_batches_async).parameters)


def test_the_surface_check_sees_drift() -> None:
    class Blocking:
        def predict(self, model: str, *, version: int | None = None) -> None: ...

    class Drifted:
        async def predict(self, model: str, *, version: int | None = None, label: str | None = None) -> None: ...

    with pytest.raises(AssertionError, match="differ"):
        test_public_surface_is_the_same((Blocking, Drifted))
