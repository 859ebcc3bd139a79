"""Config reload by file polling and by ModelService/HandleReloadConfigRequest
(TF Serving compat spec §2.3-2.5, 5.6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from model_server_process import ServerProcess, substitute_config, wait_until
from tensorflow_serving.apis import model_management_pb2, predict_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfship.wire.tensor import to_tensor_proto

TWO = "saved_model_half_plus_two_2_versions"


def _predict_version(server: ServerProcess, model: str, label: str = "") -> int:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    if label:
        req.model_spec.version_label = label
    to_tensor_proto(np.array([[1.0]], np.float32), req.inputs["x"])
    return int(server.prediction.Predict(req, timeout=30).model_spec.version.value)


def _config(*models: tuple[str, Path], labels: dict[str, int] | None = None) -> Any:
    config = model_server_config_pb2.ModelServerConfig()
    for name, path in models:
        mc = config.model_config_list.config.add()
        mc.name, mc.base_path, mc.model_platform = name, str(path), "tensorflow"
        if name == TWO:
            mc.model_version_policy.all.SetInParent()
            for k, v in (labels or {}).items():
                mc.version_labels[k] = v
    return config


def _reload(server: ServerProcess, config: Any) -> Any:
    req = model_management_pb2.ReloadConfigRequest()
    req.config.CopyFrom(config)
    return server.model_service.HandleReloadConfigRequest(req, timeout=120)


def test_model_config_file_is_polled(start_model_server: Any, tmp_path: Path, tf_serving_testdata: Path) -> None:
    good = substitute_config((tf_serving_testdata / "good_model_config.txt").read_text(), tf_serving_testdata)
    only_two = (f'model_config_list {{ config {{ name: "half_plus_two" base_path: '
                f'"{tf_serving_testdata / "saved_model_half_plus_two_cpu"}" model_platform: "tensorflow" }} }}')
    path = tmp_path / "models.config"
    path.write_text(only_two)
    server = start_model_server(f"--model_config_file={path}", "--model_config_file_poll_wait_seconds=1",
                                models=("half_plus_two",), rest=False)
    assert not server.available_versions("half_plus_three")
    path.write_text(good)
    wait_until(lambda: server.available_versions("half_plus_three") == {123}, 10, "half_plus_three")
    # an unparsable file is logged and ignored: the old config stays in force
    path.write_text("improperly formatted file")
    wait_until(lambda: "Invalid protobuf file" in server.output(), 10, "reload error logged")
    assert server.available_versions("half_plus_two") == {123}
    # dropping a model unloads it; its versions stay listed in END
    path.write_text(good.replace('name: "half_plus_two"', 'name: "hp2_renamed"'))
    wait_until(lambda: [s.state for s in server.status("half_plus_two").model_version_status] == [50],
               15, "half_plus_two unloaded")
    wait_until(lambda: server.available_versions("hp2_renamed") == {123}, 15, "renamed model")


def test_handle_reload_config_request(start_model_server: Any, tf_serving_testdata: Path) -> None:
    td = tf_serving_testdata
    two = (TWO, td / TWO)
    three = ("half_plus_three", td / "saved_model_half_plus_three")
    server = start_model_server(f"--model_name={TWO}", f"--model_base_path={td / TWO}",
                                "--max_num_load_retries=0", rest=False, models=(TWO,))
    assert server.available_versions(TWO) == {124}

    resp = _reload(server, _config(two, three))
    assert resp.status.error_code == 0
    assert server.available_versions("half_plus_three") == {123}  # the call blocked until loaded
    wait_until(lambda: server.available_versions(TWO) == {123, 124}, 60, "policy change to all")

    assert _reload(server, _config(two, three, labels={"stable": 123, "canary": 124})).status.error_code == 0
    assert _predict_version(server, TWO, "stable") == 123
    assert _predict_version(server, TWO, "canary") == 124

    with pytest.raises(grpc.RpcError) as info:
        _reload(server, _config(two, three, labels={"stable": 125}))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not currently available for inference" in info.value.details()
    assert _predict_version(server, TWO, "stable") == 123  # old config kept

    with pytest.raises(grpc.RpcError) as info:
        _reload(server, _config(two, ("rel", Path("relative/path"))))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "to have an absolute path or URI" in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        _reload(server, _config(two, two))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(grpc.RpcError) as info:
        _reload(server, model_server_config_pb2.ModelServerConfig())
    assert "Only ModelConfigList is currently supported" in info.value.details()

    # a new model that fails to load fails the reload call; the others keep serving
    with pytest.raises(grpc.RpcError) as info:
        _reload(server, _config(two, three, ("bad", td / "bad_half_plus_two")))
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert "1 model(s) did not become available: {{{name: bad version: 123} due to error" in info.value.details()
    assert _predict_version(server, "half_plus_three") == 123

    # remove a model, then add it back: it loads again
    _reload(server, _config(three))
    wait_until(lambda: not server.available_versions(TWO), 30, f"{TWO} unloaded")
    with pytest.raises(grpc.RpcError) as info:
        _predict_version(server, TWO)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    _reload(server, _config(two, three))
    assert _predict_version(server, TWO) == 124

    # a served model's platform may not change; upstream checks that before the platform itself
    for platform in ("not_a_platform", "tensorflow_lite"):
        changed = _config(two, three)
        changed.model_config_list.config[1].model_platform = platform
        with pytest.raises(grpc.RpcError) as info:
            _reload(server, changed)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == (
            "Illegal to change a model's platform. For model half_plus_three platform was "
            f"tensorflow and new platform requested is {platform}")
    # a new model with an unknown platform still says so
    unknown = _config(two, three, ("new", td / "saved_model_half_plus_three"))
    unknown.model_config_list.config[2].model_platform = "not_a_platform"
    with pytest.raises(grpc.RpcError) as info:
        _reload(server, unknown)
    assert "Model new requests unsupported platform not_a_platform" in info.value.details()
    assert _predict_version(server, "half_plus_three") == 123
