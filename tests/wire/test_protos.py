"""tfship's own TF-free protos: regenerated output is committed, and bytes match TF Serving's."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfship.wire.protos import serving_wire_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "tfship" / "wire" / "protos"


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed")
def test_regenerating_gives_the_committed_files(tmp_path: Path) -> None:
    # The script runs with this test's interpreter: grpc_tools was found here, maybe not in PATH's python3.
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", str(ROOT / "scripts" / "gen-protos"), str(tmp_path)], cwd=ROOT, check=True, env=env)
    for name in ("serving_wire_pb2.py", "serving_wire_pb2.pyi", "open_inference_pb2.py", "open_inference_pb2.pyi"):
        fresh = tmp_path / "tfship" / "wire" / "protos" / name
        assert filecmp.cmp(fresh, PROTO_DIR / name, shallow=False), (
            f"{name} is stale: run scripts/gen-protos and commit the result")


def test_own_package_never_collides_with_tensorflow_names() -> None:
    assert pb.DESCRIPTOR.package == "tfship.serving_wire"
    assert pb.PredictRequest.DESCRIPTOR.full_name == "tfship.serving_wire.PredictRequest"


def _ours() -> dict[str, object]:
    spec = pb.ModelSpec(name="m", signature_name="sig")
    spec.version.value = 7
    predict = pb.PredictRequest(model_spec=spec, output_filter=["y"])
    t = predict.inputs["x"]
    t.dtype = pb.DT_FLOAT
    t.tensor_shape.dim.add(size=2)
    t.float_val.extend([1.5, -2.0])
    s = predict.inputs["s"]
    s.dtype = pb.DT_STRING
    s.string_val.extend([b"a", b"\xff"])
    i = predict.inputs["i"]
    i.dtype = pb.DT_INT64
    i.int64_val.extend([-1, 2**40])
    h = predict.inputs["h"]
    h.dtype = pb.DT_HALF
    h.half_val.extend([15360])
    response = pb.PredictResponse(model_spec=spec)
    response.outputs["y"].CopyFrom(t)
    example = pb.Example()
    example.features.feature["f"].float_list.value.extend([1.0, 2.0])
    example.features.feature["b"].bytes_list.value.append(b"x")
    example.features.feature["n"].int64_list.value.extend([3, -4])
    classify = pb.ClassificationRequest(model_spec=pb.ModelSpec(name="m", version_label="stable"))
    classify.input.example_list_with_context.examples.append(example)
    classify.input.example_list_with_context.context.CopyFrom(example)
    cresp = pb.ClassificationResponse(model_spec=spec)
    cresp.result.classifications.add().classes.add(label="cat", score=0.75)
    regress = pb.RegressionRequest(model_spec=spec)
    regress.input.example_list.examples.append(example)
    rresp = pb.RegressionResponse(model_spec=spec)
    rresp.result.regressions.add(value=3.5)
    sigmap = pb.SignatureDefMap()
    sig = sigmap.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["x"].name = "x:0"
    sig.inputs["x"].dtype = pb.DT_FLOAT
    sig.inputs["x"].tensor_shape.dim.add(size=-1)
    sig.outputs["y"].coo_sparse.values_tensor_name = "v"
    sig.outputs["y"].tensor_shape.unknown_rank = True
    meta = pb.GetModelMetadataResponse(model_spec=spec)
    meta.metadata["signature_def"].Pack(sigmap)
    status = pb.GetModelStatusResponse()
    status.model_version_status.add(version=2, state=pb.ModelVersionStatus.AVAILABLE)
    status.model_version_status.add(version=1, state=pb.ModelVersionStatus.END,
                                    status=pb.StatusProto(error_code=5, error_message="gone"))
    log = pb.PredictionLog(predict_log=pb.PredictLog(request=predict, response=response))
    log.log_metadata.model_spec.CopyFrom(spec)
    log.log_metadata.sampling_config.sampling_rate = 0.25
    log.log_metadata.saved_model_tags.append("serve")
    log.log_metadata.timestamp_secs = 1_700_000_000
    multi = pb.MultiInferenceRequest(input=regress.input)
    multi.tasks.add(model_spec=spec, method_name="tensorflow/serving/regress")
    mresp = pb.MultiInferenceResponse()
    mresp.results.add(model_spec=spec).regression_result.CopyFrom(rresp.result)
    mresp.results.add(model_spec=spec).classification_result.CopyFrom(cresp.result)
    return {
        "prediction_log_pb2.PredictionLog": log,
        "prediction_log_pb2.ClassifyLog": pb.ClassifyLog(request=classify, response=cresp),
        "prediction_log_pb2.RegressLog": pb.RegressLog(request=regress, response=rresp),
        "prediction_log_pb2.MultiInferenceLog": pb.MultiInferenceLog(request=multi, response=mresp),
        "predict_pb2.PredictRequest": predict, "predict_pb2.PredictResponse": response,
        "classification_pb2.ClassificationRequest": classify,
        "classification_pb2.ClassificationResponse": cresp,
        "regression_pb2.RegressionRequest": regress, "regression_pb2.RegressionResponse": rresp,
        "get_model_metadata_pb2.GetModelMetadataRequest": pb.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]),
        "get_model_metadata_pb2.SignatureDefMap": sigmap,
        "get_model_status_pb2.GetModelStatusRequest": pb.GetModelStatusRequest(model_spec=spec),
        "get_model_status_pb2.GetModelStatusResponse": status,
        "get_model_metadata_pb2.GetModelMetadataResponse": meta,
        "model_management_pb2.ReloadConfigRequest": _reload_request(),
        "model_management_pb2.ReloadConfigResponse": pb.ReloadConfigResponse(
            status=pb.StatusProto(error_code=3, error_message="bad"),
            metric=[pb.Metric(name="m", int64_value_increase=2)]),
    }


def _reload_request() -> object:
    request = pb.ReloadConfigRequest(metric_names=["m"])
    config = request.config.model_config_list.config.add(name="m", base_path="/m", model_platform="tensorflow",
                                                         model_type=pb.TENSORFLOW)
    config.model_version_policy.specific.versions.extend([1, 2])
    config.version_labels["stable"] = 1
    config.logging_config.log_collector_config.type = "t"
    config.logging_config.sampling_config.sampling_rate = 0.5
    config.logging_config.sampling_config.per_task_sampling_configs.add(dc="x", task_index=1, sampling_rate=0.1)
    other = request.config.model_config_list.config.add(name="n", base_path="/n")
    other.model_version_policy.latest.num_versions = 2
    request.config.model_config_list.config.add(name="o", base_path="/o").model_version_policy.all.SetInParent()
    return request


@pytest.mark.parametrize("official", sorted(_ours()))
def test_bytes_round_trip_through_tensorflow_serving_api(official: str) -> None:
    apis = pytest.importorskip("tensorflow_serving.apis")
    module_name, cls_name = official.split(".")
    module = __import__(f"{apis.__name__}.{module_name}", fromlist=[cls_name])
    theirs_cls = getattr(module, cls_name)
    ours = _ours()[official]
    data = ours.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
    theirs = theirs_cls.FromString(data)
    # Every field is known to the official message (no unknown fields) and re-serializes identically.
    assert theirs.SerializeToString(deterministic=True) == data
    assert not _has_unknown_fields(theirs)
    back = type(ours).FromString(theirs.SerializeToString(deterministic=True))
    assert back == ours


def _has_unknown_fields(message: object) -> bool:
    from google.protobuf.unknown_fields import UnknownFieldSet

    if len(UnknownFieldSet(message)):  # type: ignore[arg-type]
        return True
    for field, value in message.ListFields():  # type: ignore[attr-defined]
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = value.values() if field.message_type.fields_by_name["value"].message_type else []
        elif field.is_repeated:
            items = value
        else:
            items = [value]
        if any(_has_unknown_fields(item) for item in items):
            return True
    return False


def test_official_predict_request_parses_with_our_codec() -> None:
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    from tfship.client.base import ModelRef
    from tfship.client.grpc_transport import predict_request

    from tfship.wire.predict import decode_predict_response
    from tfship.wire.tensor import to_ndarray, to_tensor_proto

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = predict_request(ModelRef("m", version=3, signature="s"), {"x": x}, ["y"])
    official = predict_pb2.PredictRequest.FromString(data)
    assert official.model_spec.name == "m" and official.model_spec.version.value == 3
    assert list(official.output_filter) == ["y"]
    np.testing.assert_array_equal(to_ndarray(official.inputs["x"]), x)

    response = predict_pb2.PredictResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 3
    to_tensor_proto(x, response.outputs["y"], typed=True)
    outputs, version = decode_predict_response(response.SerializeToString())
    assert version == 3
    np.testing.assert_array_equal(outputs["y"], x)
    assert outputs["y"].dtype == np.float32
