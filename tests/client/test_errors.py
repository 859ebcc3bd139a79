"""Every error class over both transports, with the client's hints; retries stop at their bound."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tfship.client import ClientConfig, RetryPolicy, connect
from tfship.deploy.launch import free_port

from tfship.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    ServingError,
    UnavailableError,
    UnimplementedError,
)

AB = {"a": np.ones((2, 3), np.float32), "b": np.zeros(2, np.int64)}


def test_unknown_model_names_the_problem(client: Any) -> None:
    with pytest.raises(NotFoundError) as info:
        client.predict("nope", AB)
    assert "Servable not found for request: Latest(nope)" in info.value.message
    assert "has no model named 'nope'" in str(info.value)
    assert info.value.http_status == 404


def test_unknown_version_lists_the_versions_the_model_has(client: Any) -> None:
    with pytest.raises(NotFoundError) as info:
        client.predict("multi", AB, version=9)
    assert "Specific(multi, 9)" in info.value.message
    assert "Model 'multi' has versions: 2 (AVAILABLE), 1 (AVAILABLE)." in info.value.hint


def test_unknown_label(client: Any) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.predict("multi", AB, label="nightly")
    assert "Unrecognized servable version label: nightly" in info.value.message
    assert "has versions: 2 (AVAILABLE), 1 (AVAILABLE)" in info.value.hint


def test_wrong_dtype_names_the_expected_inputs(client: Any) -> None:
    bad = {"a": np.ones((2, 3), np.float32), "b": np.full(2, 0.5)}  # b must be int64
    with pytest.raises(InvalidArgumentError) as info:
        client.predict("multi", bad, version=1)
    hint = info.value.hint
    assert "expects inputs: a: DT_FLOAT [-1, 3], b: DT_INT64 [-1]" in hint
    assert "you sent: a: float32 [2, 3], b: float64 [2]" in hint


def test_missing_input_for_a_multi_input_signature(client: Any) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.predict("multi", np.ones((2, 3), np.float32))
    assert "takes 2 inputs; pass a dict with keys ['a', 'b']" in str(info.value)


def test_unknown_signature(client: Any) -> None:
    # gRPC answers FAILED_PRECONDITION, REST 400 (INVALID_ARGUMENT); both get the signature list.
    with pytest.raises((FailedPreconditionError, InvalidArgumentError)) as info:
        client.predict("multi", AB, signature="nope")
    assert "nope" in info.value.message
    if client.transport == "grpc":
        assert isinstance(info.value, FailedPreconditionError)
        assert "has signatures: serving_default, single" in info.value.hint


def test_unimplemented_over_rest(rest_client: Any) -> None:
    with pytest.raises(UnimplementedError) as info:
        rest_client.predict("dtypes", np.ones((1, 1), np.float16), signature="id_float16")
    assert info.value.http_status == 501


def test_deadline_exceeded(client: Any) -> None:
    big = np.ones((2000, 1000), np.float32)
    client.predict("dtypes", big[:1])  # warm: connection open, metadata cached
    with pytest.raises(DeadlineExceededError):
        client.predict("dtypes", big, timeout=1e-3)


def test_message_size_limit_is_resource_exhausted(server: Any) -> None:
    small = connect(server.grpc_url, ClientConfig(max_send_message_bytes=1000))
    with small, pytest.raises(ResourceExhaustedError):
        small.predict("dtypes", np.ones((1, 1000), np.float32))


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_retries_stop_at_their_bound_when_the_server_is_down(scheme: str) -> None:
    port = free_port()  # nothing listens here: connection refused
    config = ClientConfig(timeout=5, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01))
    with connect(f"{scheme}://127.0.0.1:{port}", config) as down:
        calls = _count_calls(down)
        with pytest.raises(UnavailableError) as info:
            down.predict("m", {"x": np.ones(1, np.float32)})
    assert calls["n"] == 3
    assert info.value.details == {"attempts": 3}
    assert "Gave up after 3 attempt(s)" in str(info.value)


def test_invalid_input_is_never_retried(client: Any) -> None:
    calls = _count_calls(client)
    try:
        with pytest.raises(InvalidArgumentError):
            client.predict("multi", {"a": np.ones((2, 3), np.float32), "b": np.full(2, 0.5)})
    finally:
        del client._predict  # back to the class method
    assert calls["n"] == 1


def _count_calls(client: Any) -> dict[str, int]:
    """Spy on the transport call (the real call still happens)."""
    calls = {"n": 0}
    real = client._predict

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real(*args, **kwargs)

    client._predict = counting
    return calls


def test_errors_are_one_tree(client: Any) -> None:
    with pytest.raises(ServingError):
        client.status("nope")
