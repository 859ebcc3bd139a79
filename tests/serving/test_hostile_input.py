"""Bad input never gets a 5xx/UNKNOWN: each hostile case of hostile_cases.py against a real server
on the TF Serving test models, and the server answers a good request right after."""

from __future__ import annotations

import grpc
import httpx
import pytest
from hostile_cases import (
    GRPC_CASES,
    RAW_HTTP_CASES,
    REST_CASES,
    GrpcCase,
    RawHttpCase,
    RestCase,
    assert_still_serving,
    raw_call,
    raw_http,
)
from model_server_process import ServerProcess


@pytest.mark.parametrize("case", REST_CASES, ids=lambda c: c.id)
def test_rest_hostile_body(shared_models_server: ServerProcess, case: RestCase) -> None:
    r = httpx.post(shared_models_server.rest_url + case.path, content=case.body,
                   headers=dict(case.headers), timeout=60)
    assert r.status_code == case.status, r.text[:500]
    assert r.headers["content-type"] == "application/json"
    if case.status != 200:
        assert case.fragment in r.json()["error"]
    assert_still_serving(shared_models_server)


@pytest.mark.parametrize("case", RAW_HTTP_CASES, ids=lambda c: c.id)
def test_rest_hostile_framing(shared_models_server: ServerProcess, case: RawHttpCase) -> None:
    assert shared_models_server.rest_port is not None
    status, body = raw_http(shared_models_server.rest_port, case.request)
    assert status == case.status and case.fragment.encode() in body, body[:500]
    assert_still_serving(shared_models_server)


@pytest.mark.parametrize("case", GRPC_CASES, ids=lambda c: c.id)
def test_grpc_hostile_request(shared_models_server: ServerProcess, case: GrpcCase) -> None:
    with pytest.raises(grpc.RpcError) as info:
        raw_call(shared_models_server.channel, case.method, case.data)
    assert info.value.code() == case.code, info.value.details()
    assert case.fragment in (info.value.details() or "")
    assert_still_serving(shared_models_server)
