"""TensorBoard's "capture profile" against a live server under load: the TF profiler service answers on
the gRPC port (``--enable_profiler``, upstream's default) and the trace it writes holds events."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tfship.client import connect
from tfship.deploy.traffic import Traffic

pytestmark = pytest.mark.slow

# TF's own client, in its own process: importing TensorFlow's profiler in the test process is not
# what a user's TensorBoard does, and the server must not care who asks.
_TRACE = """
import sys
import tensorflow as tf
tf.profiler.experimental.client.trace(sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def _events(xplane: Path) -> int:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace.FromString(xplane.read_bytes())
    return sum(len(line.events) for plane in space.planes for line in plane.lines)


def test_a_trace_of_a_server_under_load_is_captured_over_its_grpc_port(
        start_model_server: Callable[..., Any], tf_serving_testdata: Path, tmp_path: Path) -> None:
    server = start_model_server(f"--model_base_path={tf_serving_testdata / 'saved_model_half_plus_two_cpu'}",
                                "--model_name=half", models=("half",))
    url = f"grpc://{server.grpc_address}"
    x = np.array([[1.0], [2.0]], np.float32)
    with Traffic(url, "half", {"x": x}, clients=4, expected={123: np.array([[2.5], [3.0]], np.float32)},
                 max_seconds=300) as traffic:
        traffic.wait_for_requests(20)
        proc = subprocess.run([sys.executable, "-c", _TRACE, url, str(tmp_path / "logs"), "2000"],
                              capture_output=True, text=True, timeout=300)
        during = len(traffic.samples)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planes = list((tmp_path / "logs").glob("plugins/profile/*/*.xplane.pb"))
    assert len(planes) == 1, list((tmp_path / "logs").rglob("*"))
    assert _events(planes[0]) >= 1
    summary = traffic.summary()
    assert summary.ok, summary.line()  # serving went on, right, while the profiler ran
    assert during > 20


def test_a_second_capture_while_one_runs_is_unavailable_and_bad_requests_are_invalid(
        start_model_server: Callable[..., Any], tf_serving_testdata: Path) -> None:
    server = start_model_server(f"--model_base_path={tf_serving_testdata / 'saved_model_half_plus_two_cpu'}",
                                "--model_name=half", models=("half",))
    profile = server.channel.unary_unary("/tensorflow.ProfilerService/Profile")
    with pytest.raises(grpc.RpcError) as info:
        profile(b"\x08\xff\xff\xff\xff\x0f", timeout=30)  # duration_ms of 4294967295
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        profile(b"\x2a\xff", timeout=30)  # a truncated field
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    running = profile.future(b"\x08\xb8\x17", timeout=60)  # 3000 ms, no repository: nothing written
    with pytest.raises(grpc.RpcError) as info:
        for _ in range(100):  # until the first one holds the profiler (bounded)
            profile(b"\x08\x01", timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "Another profiling session" in info.value.details()
    assert running.result()[:2] == b"\x38\x00"  # empty_trace = false
    with connect(f"grpc://{server.grpc_address}") as client:
        client.predict("half", {"x": np.array([[1.0]], np.float32)})


def test_without_enable_profiler_the_service_is_unimplemented(
        start_model_server: Callable[..., Any], tf_serving_testdata: Path) -> None:
    server = start_model_server(f"--model_base_path={tf_serving_testdata / 'saved_model_half_plus_two_cpu'}",
                                "--model_name=half", "--enable_profiler=false", models=("half",), rest=False)
    with pytest.raises(grpc.RpcError) as info:
        server.channel.unary_unary("/tensorflow.ProfilerService/Profile")(b"\x08\x01", timeout=30)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
