"""Version discovery, policies and availability-preserving transitions (TF Serving compat spec §3) on a live server."""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from model_server_process import ServerProcess, copy_version, launch_unready, wait_until
from tensorflow_serving.apis import predict_pb2
from tfship.serving.core.policy import Action, State, next_action
from tfship.serving.core.versions import AllVersions, Latest, Specific, discover_versions, select

from tfship.wire.tensor import to_tensor_proto

# ----------------------------------------------------------------------------- pure rules


def test_discovery_and_policies(tmp_path: Path) -> None:
    for name in ("42", "33", "00030", "21", "17", "non_numerical_child", "2.denied", "0001", "001"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file is not a version")
    found = discover_versions(tmp_path)
    assert sorted(found) == [1, 17, 21, 30, 33, 42]
    assert sorted(select(Latest(3), found)) == [30, 33, 42]
    assert sorted(select(AllVersions(), found)) == sorted(found)
    assert sorted(select(Specific((17, 99)), found)) == [17]
    assert found[30].name == "00030"
    with pytest.raises(FileNotFoundError):
        discover_versions(tmp_path / "missing")


def test_availability_preserving_order() -> None:
    A, E = State.AVAILABLE, State.END
    assert next_action({2}, {1: A}, set()) == Action("load", 2)
    assert next_action({2}, {1: A, 2: A}, set()) == Action("unload", 1)
    assert next_action({2}, {1: A, 2: E}, {2}) is None  # failed new version: old keeps serving
    assert next_action(set(), {1: A}, set()) == Action("unload", 1)  # nothing aspired: unload
    assert next_action({3, 4}, {1: A, 2: A}, set()) == Action("unload", 1)  # 2 still serves
    assert next_action({1, 2, 3}, {}, set()) == Action("load", 3)


# ----------------------------------------------------------------------------- live server


def _predict_request(model: str) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    to_tensor_proto(np.array([[1.0], [2.0]], np.float32), req.inputs["x"])
    return req


def _state(server: ServerProcess, name: str, version: int) -> int | None:
    try:
        return int(server.status(name, version).model_version_status[0].state)
    except grpc.RpcError:
        return None


def test_policies_on_a_live_server(start_model_server: Any, tmp_path: Path, tf_serving_testdata: Path) -> None:
    base = tmp_path / "m"
    base.mkdir()
    src = tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    for v in ("1", "2", "0003"):
        os.symlink(src, base / v)
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{
      config {{ name: "latest2" base_path: "{base}" model_platform: "tensorflow"
                model_version_policy {{ latest {{ num_versions: 2 }} }} }}
      config {{ name: "all" base_path: "{base}" model_platform: "tensorflow" model_version_policy {{ all {{}} }} }}
      config {{ name: "specific" base_path: "{base}" model_platform: "tensorflow"
                model_version_policy {{ specific {{ versions: 1 versions: 7 }} }} }}
      config {{ name: "default_policy" base_path: "{base}" model_platform: "tensorflow" }}
    }}""")
    server = start_model_server(f"--model_config_file={config}", "--file_system_poll_wait_seconds=0",
                                models=("latest2", "all", "specific", "default_policy"), rest=False)
    wait_until(lambda: server.available_versions("latest2") == {2, 3}, 60, "latest2")
    wait_until(lambda: server.available_versions("all") == {1, 2, 3}, 60, "all")
    assert server.available_versions("specific") == {1}
    assert server.available_versions("default_policy") == {3}
    assert [s.version for s in server.status("all").model_version_status] == [3, 2, 1]


@pytest.mark.slow
def test_hot_swap_under_load_has_zero_failed_requests(
    start_model_server: Any, tmp_path: Path, tf_serving_testdata: Path
) -> None:
    """8 clients (gRPC + REST) keep predicting while versions are added, fail and are removed."""
    base = tmp_path / "half"
    src = tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    shutil.copytree(src, base / "1")
    server: ServerProcess = start_model_server(
        "--model_name=half", f"--model_base_path={base}", "--file_system_poll_wait_seconds=1",
        "--max_num_load_retries=0", models=("half",),
    )
    stop = threading.Event()
    failures: list[str] = []
    versions: Counter[int] = Counter()
    lock = threading.Lock()

    def grpc_client() -> None:
        req = _predict_request("half")
        while not stop.is_set():
            try:
                resp = server.prediction.Predict(req, timeout=30)
                assert list(resp.outputs["y"].float_val) == [2.5, 3.0]
                with lock:
                    versions[resp.model_spec.version.value] += 1
            except (grpc.RpcError, AssertionError) as exc:
                failures.append(repr(exc))

    def rest_client() -> None:
        with httpx.Client(base_url=server.rest_url, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v1/models/half:predict", json={"instances": [[1.0], [2.0]]})
                    if r.status_code != 200 or r.json() != {"predictions": [[2.5], [3.0]]}:
                        failures.append(r.text)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=grpc_client) for _ in range(4)]
    threads += [threading.Thread(target=rest_client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # publish version 2 atomically (copy beside, rename in): 2 loads, then 1 unloads
        shutil.copytree(src, base / ".tmp-2")
        os.rename(base / ".tmp-2", base / "2")
        wait_until(lambda: server.available_versions("half") == {2}, 60, "swap to version 2")
        wait_until(lambda: versions[2] > 0, 30, "requests served by version 2")
        assert {s.version: s.state for s in server.status("half").model_version_status} == {2: 30, 1: 50}

        # a broken version 3 fails to load, shows its error, and never replaces version 2
        shutil.copytree(tf_serving_testdata / "bad_half_plus_two" / "00000123", base / ".tmp-3")
        os.rename(base / ".tmp-3", base / "3")
        wait_until(lambda: _state(server, "half", 3) == State.END, 60, "version 3 load failure")
        st3 = server.status("half", 3).model_version_status[0]
        assert st3.status.error_code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert "Session Bundle is deprecated" in st3.status.error_message
        assert server.available_versions("half") == {2}
        shutil.rmtree(base / "3")

        # removing the serving version's dir: 1 comes back first, then 2 is unloaded
        os.rename(base / "2", base / "removed-2")
        wait_until(lambda: server.available_versions("half") == {1}, 60, "fallback to version 1")
        before = versions[1]
        wait_until(lambda: versions[1] > before + 20, 30, "requests served by version 1")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert failures == []
    assert versions[1] > 0 and versions[2] > 0


def test_a_base_path_that_appears_after_startup_is_polled_until_a_version_loads(
    tmp_path: Path, tf_serving_testdata: Path
) -> None:
    """Like TF Serving: startup waits, re-listing the base path every poll, and serves once the
    directory and a version exist (the server's gRPC port opens after the initial load)."""
    base = tmp_path / "not-yet" / "half"
    server = launch_unready(tmp_path / "server", "--model_name=half", f"--model_base_path={base}",
                            "--file_system_poll_wait_seconds=1")
    try:
        wait_until(lambda: server.output().count("could not list base path") >= 2, 60,
                   "two failed polls of the missing base path")
        copy_version(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base, 3)
        wait_until(lambda: server.available_versions("half") == {3}, 60, "version 3 AVAILABLE")
        response = server.prediction.Predict(_predict_request("half"), timeout=30)
        assert response.model_spec.version.value == 3
    finally:
        server.terminate()
