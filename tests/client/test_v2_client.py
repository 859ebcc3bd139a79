"""The client over the Open Inference Protocol: ``v2+grpc://`` and ``v2+http://`` against
tfship-model-server's V2 front ends give what TF Serving's API gives, with the same errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_test_models import DTYPES, multi_expected, sample
from tfship.client import ClientConfig, check_parity, connect

from tfship.errors import InvalidArgumentError, NotFoundError, UnimplementedError

V2_DTYPES = [d for d in DTYPES if not d.startswith("complex")]


def _v2(url: str) -> str:
    return "v2+" + url


@pytest.fixture(scope="module", params=["grpc", "http-binary", "http-json"])
def v2_client(request: pytest.FixtureRequest, server: Any) -> Any:
    kind = request.param
    url = _v2(server.grpc_url if kind == "grpc" else server.rest_url)
    with connect(url, ClientConfig(v2_binary_data=kind != "http-json")) as client:
        yield client


def test_predict_named_inputs_with_versions_and_labels(v2_client: Any) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7, -1], np.int64)
    for version, label, answered in [(None, None, 2), (1, None, 1), (None, "stable", 1), (None, "canary", 2)]:
        got = v2_client.predict_detailed("multi", {"a": a, "b": b}, version=version, label=label)
        assert got.version == answered
        expected = multi_expected(answered, a, b)
        assert set(got.outputs) == set(expected)
        for name, value in expected.items():
            assert got.outputs[name].dtype == value.dtype
            assert got.outputs[name].tolist() == value.tolist()


def test_signature_and_output_filter(v2_client: Any) -> None:
    a = np.ones((1, 3), np.float32)
    assert v2_client.predict("multi", {"a": a}, signature="single", version=1).tolist() == [[2.0, 2.0, 2.0]]
    only = v2_client.predict("multi", {"a": a, "b": np.array([1], np.int64)}, output_filter=["next"])
    assert only.tolist() == [2]


@pytest.mark.parametrize("dtype", V2_DTYPES)
def test_every_v2_datatype_round_trips(v2_client: Any, dtype: str) -> None:
    x = sample(dtype)
    if dtype == "string" and v2_client.transport == "v2-rest" and not v2_client.config.v2_binary_data:
        x = x[:, :1]  # JSON carries text; non-UTF-8 elements travel as binary data regardless
    got = v2_client.predict("dtypes", {"x": x}, signature=f"id_{dtype}")
    assert got.dtype == x.dtype and got.tolist() == x.tolist()


def test_bare_array_uses_the_signature_from_v2_metadata(v2_client: Any) -> None:
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    meta = v2_client.metadata("keras")
    sig = meta.signature(None)
    assert meta.version == 1 and list(sig.inputs) == ["features"]
    assert sig.inputs["features"].dtype == "DT_FLOAT" and sig.inputs["features"].shape == (-1, 4)
    assert v2_client.predict("keras", x).shape == (3, 3)
    assert v2_client.predict("keras", x.tolist()).shape == (3, 3)  # lists get the dtype from metadata


def test_status_and_wait_until_available(v2_client: Any) -> None:
    assert [(s.version, s.state) for s in v2_client.status("multi")] == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    assert v2_client.wait_until_available("multi", 1, timeout=10) == 1


def test_errors_are_the_same_classes_with_hints(v2_client: Any) -> None:
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        v2_client.predict("nope", {"x": np.ones((1, 1), np.float32)})
    with pytest.raises(NotFoundError, match="has versions: 2 .AVAILABLE., 1 .AVAILABLE."):
        v2_client.predict("multi", {"a": np.ones((1, 3), np.float32)}, version=9)
    with pytest.raises(InvalidArgumentError, match="Expects arg.a. to be float"):
        v2_client.predict("multi", {"a": np.ones((1, 3), np.int32), "b": np.ones(1, np.int64)})
    with pytest.raises(UnimplementedError, match="no Open Inference Protocol .V2. equivalent"):
        v2_client.classify("multi", [{"a": [1.0]}])


def test_parity_with_the_export_manifest(v2_client: Any, model_base: Path) -> None:
    report = check_parity(v2_client, "keras", model_base / "keras" / "1")
    assert report.ok, report.text()


def test_smoke_cli_over_v2(server: Any, model_base: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tfship", "smoke", "--url", _v2(server.grpc_url),
                           "--url", _v2(server.rest_url), "--model", "keras",
                           "--manifest", str(model_base / "keras" / "1")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS keras v1") == 2


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_asyncio_client(server: Any, scheme: str) -> None:
    from tfship.client.aio import connect as aconnect

    a = np.ones((2, 3), np.float32)
    b = np.array([1, 2], np.int64)

    async def run() -> Any:
        async with aconnect(_v2(server.grpc_url if scheme == "grpc" else server.rest_url)) as client:
            got = await asyncio.gather(*(client.predict_detailed("multi", {"a": a, "b": b}, label="stable")
                                         for _ in range(8)))
            status = await client.status("multi")
            return got, status

    got, status = asyncio.run(run())
    assert all(g.version == 1 and g.outputs["next"].tolist() == [2, 3] for g in got)
    assert [s.version for s in status] == [2, 1]


def test_replicas_keep_the_protocol(server: Any) -> None:
    with connect([_v2(server.grpc_url), _v2(server.grpc_url.replace("127.0.0.1", "localhost"))]) as client:
        assert [r.url.startswith("v2+grpc://") for r in client.replicas()] == [True, True]
        assert all(type(r).__name__ == "V2GrpcClient" for r in client.replicas())
