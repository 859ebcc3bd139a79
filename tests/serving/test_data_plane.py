"""The data plane under every front end, called directly (no transport) on TF Serving's test models.

``two`` serves versions 123 and 124 (labels ``stable`` -> 123, ``canary`` -> 124); ``half`` is
half_plus_two with its predict, classify and regress signatures. The signature method-name check
is on, as ``--enable_signature_method_name_check``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tfship.serving.config.model_config import AllVersions, ModelEntry  # noqa: E402
from tfship.serving.core.server_core import CoreOptions, ServerCore  # noqa: E402
from tfship.serving.data_plane import (  # noqa: E402
    DataPlane,
    InferenceRecord,
    InferenceTask,
    ModelRef,
    highest_version,
)
from tfship.serving.event_loop import ServingLoop  # noqa: E402
from tfship.serving.metrics import ServerMetrics  # noqa: E402

from tfship.errors import (  # noqa: E402
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
)

X = np.array([[1.0], [2.0], [5.0]], np.float32)


def _example(x: float) -> bytes:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def served(tf_serving_testdata: Path) -> Iterator[tuple[ServingLoop, ServerCore]]:
    loop = ServingLoop(model_threads=2, name="plane-test").start()
    options = CoreOptions(file_system_poll_wait_seconds=0, serving_loop=loop,
                          enable_signature_method_name_check=True)
    core = ServerCore(options, metrics=ServerMetrics())
    two = str(tf_serving_testdata / "saved_model_half_plus_two_2_versions")
    half = ModelEntry("half", str(tf_serving_testdata / "saved_model_half_plus_two_cpu"))
    core.manager.apply_config([ModelEntry("two", two, version_policy=AllVersions()), half])
    # labels may only name versions that are loaded (as upstream): label them once they are
    core.manager.apply_config([ModelEntry("two", two, version_policy=AllVersions(),
                                          version_labels={"stable": 123, "canary": 124}), half])
    yield loop, core
    core.stop(drain_timeout=5)
    loop.stop()


@pytest.fixture
def plane(served: tuple[ServingLoop, ServerCore]) -> DataPlane:
    """A fresh plane (default routing, no observers) over the shared core."""
    loop, core = served
    return DataPlane(core, loop)


def run(plane: DataPlane, coro: Any) -> Any:
    return plane.loop.call(coro, timeout=60)


# --------------------------------------------------------------------------- versions and labels


def test_unpinned_requests_get_the_highest_version_and_pins_are_honoured(plane: DataPlane) -> None:
    assert run(plane, plane.predict(ModelRef("two"), "", {"x": X})).version == 124
    assert run(plane, plane.predict(ModelRef("two", version=123), "", {"x": X})).version == 123
    stable = run(plane, plane.predict(ModelRef("two", label="stable"), "", {"x": X}))
    assert (stable.version, stable.signature_name) == (123, "serving_default")
    np.testing.assert_allclose(stable.value["y"], X / 2 + 2)


@pytest.mark.parametrize(("ref", "error", "message"), [
    (ModelRef("nope"), NotFoundError, r"Servable not found for request: Latest\(nope\)"),
    (ModelRef("two", version=7), NotFoundError, r"Specific\(two, 7\)"),
    (ModelRef("two", label="beta"), InvalidArgumentError, "Unrecognized servable version label: beta"),
    (ModelRef(""), InvalidArgumentError, "ModelSpec has no name specified."),
])
def test_unresolvable_refs_fail_with_tf_servings_errors(
    plane: DataPlane, ref: ModelRef, error: type[ServingError], message: str
) -> None:
    with pytest.raises(error, match=message):
        run(plane, plane.predict(ref, "", {"x": X}))


def test_status_and_metadata_are_plain_values(plane: DataPlane) -> None:
    statuses = plane.model_status(ModelRef("two"))
    assert [s.version for s in statuses] == [124, 123]  # highest first
    assert [s.version for s in plane.model_status(ModelRef("two", version=123))] == [123]
    metadata = plane.model_metadata(ModelRef("two", label="stable"))
    assert (metadata.model, metadata.version) == ("two", 123)
    assert "serving_default" in metadata.signature_defs
    with pytest.raises(InvalidArgumentError, match="Metadata field bogus is not supported"):
        plane.model_metadata(ModelRef("half"), ["bogus"])


# --------------------------------------------------------------------------- the APIs and their checks


def test_classify_regress_and_multi_inference_on_example_bytes(plane: DataPlane) -> None:
    examples = [_example(1.0), _example(4.0)]
    regressed = run(plane, plane.regress(ModelRef("half"), "regress_x_to_y", examples))
    np.testing.assert_allclose(regressed.value, [2.5, 4.0])
    classified = run(plane, plane.classify(ModelRef("half"), "classify_x_to_y", lambda _sigs: examples))
    np.testing.assert_allclose(classified.value.scores[:, 0], [2.5, 4.0])
    multi = run(plane, plane.multi_inference(
        [InferenceTask(ModelRef("half"), "regress_x_to_y", "tensorflow/serving/regress"),
         InferenceTask(ModelRef("half"), "classify_x_to_y", "tensorflow/serving/classify")], examples))
    assert (multi.version, multi.signature_name) == (123, "regress_x_to_y,classify_x_to_y")
    np.testing.assert_allclose(multi.value[0], [2.5, 4.0])


def test_method_names_are_checked_before_inputs_are_decoded(plane: DataPlane) -> None:
    decoded: list[str] = []

    def decode(_sigs: Any) -> list[bytes]:
        decoded.append("examples")
        return [_example(1.0)]

    with pytest.raises(InvalidArgumentError, match="Expected classification signature method_name"):
        run(plane, plane.classify(ModelRef("half"), "regress_x_to_y", decode))
    with pytest.raises(InvalidArgumentError, match="Expected regression signature method_name"):
        run(plane, plane.regress(ModelRef("half"), "classify_x_to_y", decode))
    assert decoded == []  # neither request got as far as its inputs
    plane.method_name_check = False  # without the flag the runtime reports the misfit itself
    with pytest.raises(FailedPreconditionError, match="No regression outputs found in SignatureDef"):
        run(plane, plane.regress(ModelRef("half"), "classify_x_to_y", decode))
    assert decoded == ["examples"]


def test_multi_inference_checks_its_tasks(plane: DataPlane) -> None:
    with pytest.raises(InvalidArgumentError, match="Tasks is empty."):
        run(plane, plane.multi_inference([], [_example(1.0)]))
    mixed = [InferenceTask(ModelRef("half"), "regress_x_to_y", "tensorflow/serving/regress"),
             InferenceTask(ModelRef("two"), "regress_x_to_y", "tensorflow/serving/regress")]
    with pytest.raises(InvalidArgumentError, match="must access the same model name"):
        run(plane, plane.multi_inference(mixed, [_example(1.0)]))


def test_failures_are_recorded_in_the_metrics_with_the_front_ends_entrypoint(plane: DataPlane) -> None:
    run(plane, plane.predict(ModelRef("two", version=123), "", {"x": X}, entrypoint="PLANE-TEST"))
    with pytest.raises(InvalidArgumentError):
        run(plane, plane.predict(ModelRef("two"), "", {"nope": X}, entrypoint="PLANE-TEST"))
    page = plane.metrics.exposition().decode()
    assert ('request_count{model_name="two",version="123",API="predict",entrypoint="PLANE-TEST",'
            'status="OK"} 1.0') in page
    assert ('request_count{model_name="two",version="124",API="predict",entrypoint="PLANE-TEST",'
            'status="INVALID_ARGUMENT"} 1.0') in page


# --------------------------------------------------------------------------- the routing hook


def test_routing_chooses_the_version_of_unpinned_requests_only(plane: DataPlane) -> None:
    seen: list[tuple[str, tuple[int, ...]]] = []

    def oldest(model: str, available: tuple[int, ...]) -> int:
        seen.append((model, available))
        return available[0]

    plane.routing = oldest
    assert run(plane, plane.predict(ModelRef("two"), "", {"x": X})).version == 123
    assert run(plane, plane.regress(ModelRef("two"), "regress_x_to_y", [_example(1.0)])).version == 123
    assert seen == [("two", (123, 124))] * 2
    # pinned requests, status and metadata never ask the policy
    assert run(plane, plane.predict(ModelRef("two", label="canary"), "", {"x": X})).version == 124
    assert plane.model_metadata(ModelRef("two")).version == 124
    assert len(seen) == 2
    plane.routing = lambda model, available: 999  # a policy naming no available version
    with pytest.raises(NotFoundError, match=r"Specific\(two, 999\)"):
        run(plane, plane.predict(ModelRef("two"), "", {"x": X}))
    assert highest_version("two", (123, 124)) == 124


# --------------------------------------------------------------------------- the observer hook


def test_observers_see_every_model_call_with_the_version_that_served(plane: DataPlane) -> None:
    records: list[InferenceRecord] = []
    remove = plane.add_observer(records.append)
    run(plane, plane.predict(ModelRef("two"), "", {"x": X}, entrypoint="GRPC"))
    run(plane, plane.regress(ModelRef("two", label="stable"), "regress_x_to_y", [_example(3.0)]))
    with pytest.raises(NotFoundError):
        run(plane, plane.predict(ModelRef("two", version=9), "", {"x": X}))
    remove()
    run(plane, plane.predict(ModelRef("two"), "", {"x": X}))
    predict, regress, failed = records  # nothing after remove()
    assert (predict.api, predict.model, predict.version, predict.signature_name, predict.pinned,
            predict.entrypoint) == ("predict", "two", 124, "serving_default", False, "GRPC")
    np.testing.assert_array_equal(predict.inputs["x"], X)
    np.testing.assert_allclose(predict.outputs["y"], X / 2 + 2)
    assert predict.error is None and predict.latency > 0
    assert (regress.api, regress.version, regress.pinned, regress.inputs) == ("regress", 123, True, [_example(3.0)])
    np.testing.assert_allclose(regress.outputs, [3.5])
    assert (failed.version, failed.outputs) == (None, None) and isinstance(failed.error, NotFoundError)


def test_an_observer_that_raises_never_fails_the_request(plane: DataPlane) -> None:
    records: list[InferenceRecord] = []

    def broken(record: InferenceRecord) -> None:
        raise RuntimeError("observer bug")

    plane.add_observer(broken)
    plane.add_observer(records.append)  # later observers still run
    result = run(plane, plane.predict(ModelRef("half"), "", {"x": X}))
    np.testing.assert_allclose(result.value["y"], X / 2 + 2)
    assert plane.observer_failures == 1 and len(records) == 1


def test_a_record_is_frozen(plane: DataPlane) -> None:
    records: list[InferenceRecord] = []
    plane.add_observer(records.append)
    run(plane, plane.predict(ModelRef("half"), "", {"x": X}))
    with pytest.raises(AttributeError):
        records[0].version = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- under both front ends


def test_grpc_and_rest_serve_through_the_servers_one_plane(tf_serving_testdata: Path) -> None:
    import json
    import urllib.request

    import grpc
    from model_server_process import free_port
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from tfship.serving.main import ModelServer

    from tfship.wire.tensor import to_tensor_proto

    grpc_port, rest_port = free_port(), free_port()
    server = ModelServer.from_flags([
        "--host=127.0.0.1", f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--model_name=half",
        f"--model_base_path={tf_serving_testdata / 'saved_model_half_plus_two_cpu'}",
        "--file_system_poll_wait_seconds=0",
    ])
    server.start()
    try:
        records: list[InferenceRecord] = []
        server.data_plane.add_observer(records.append)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half"
        to_tensor_proto(X, request.inputs["x"])
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        body = json.dumps({"instances": [[1.0], [2.0]]}).encode()
        rest = urllib.request.Request(f"http://127.0.0.1:{rest_port}/v1/models/half/versions/123:predict", body)
        with urllib.request.urlopen(rest, timeout=30) as response:
            assert json.loads(response.read()) == {"predictions": [[2.5], [3.0]]}
        assert [(r.entrypoint, r.api, r.version, r.pinned) for r in records] == [
            ("GRPC", "predict", 123, False), ("REST", "predict", 123, True)]
    finally:
        server.stop(drain_timeout=5)
