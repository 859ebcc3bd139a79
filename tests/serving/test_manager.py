"""ModelManager in-process with real Servables: drain before close, retries, label rules
(TF Serving compat spec §2.4, 3)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_server_process import wait_until
from tfship.serving.config.model_config import ModelEntry
from tfship.serving.core.manager import ModelManager, State
from tfship.serving.core.server_core import CoreOptions, ServerCore

from tfship.errors import FailedPreconditionError, NotFoundError, UnknownError


@pytest.fixture
def base(tmp_path: Path, tf_serving_testdata: Path) -> Path:
    base = tmp_path / "half"
    base.mkdir()
    os.symlink(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "1")
    return base


def _states(mgr: ModelManager, name: str) -> dict[int, State]:
    try:
        return {s.version: s.state for s in mgr.status(name)}
    except NotFoundError:
        return {}


def test_unload_waits_for_in_flight_requests(base: Path, tf_serving_testdata: Path) -> None:
    core = ServerCore(CoreOptions(max_num_load_retries=0))
    mgr = core.manager
    try:
        mgr.apply_config([ModelEntry("half", str(base))])
        handle = mgr.acquire("half")
        assert handle.version == 1
        os.symlink(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "2")
        mgr.poll_model("half")
        wait_until(lambda: _states(mgr, "half").get(1) == State.UNLOADING, 60, "v1 UNLOADING")
        # new requests go to version 2 while version 1 drains; the held request still runs on 1
        with mgr.acquire("half") as h2:
            assert h2.version == 2
        out = handle.servable.predict("", {"x": np.array([[4.0]], np.float32)})
        assert out["y"].tolist() == [[4.0]]
        assert _states(mgr, "half")[1] == State.UNLOADING
        handle.release()
        wait_until(lambda: _states(mgr, "half").get(1) == State.END, 60, "v1 END after release")
        assert _states(mgr, "half")[2] == State.AVAILABLE
    finally:
        core.stop(drain_timeout=5)


def test_load_retries_then_error_in_status(tmp_path: Path, tf_serving_testdata: Path) -> None:
    base = tmp_path / "bad"
    base.mkdir()
    os.symlink(tf_serving_testdata / "bad_half_plus_two" / "00000123", base / "7")
    calls: list[int] = []
    core = ServerCore(CoreOptions(max_num_load_retries=2, load_retry_interval_micros=1000))
    real_loader = core._load_servable

    def counting_loader(name: str, version: int, path: Path) -> Any:
        calls.append(version)
        return real_loader(name, version, path)

    core.manager._loader = counting_loader
    try:
        with pytest.raises(UnknownError, match="1 servable\\(s\\) did not become available"):
            core.manager.apply_config([ModelEntry("bad", str(base))])
        assert calls == [7, 7, 7]
        (status,) = core.manager.status("bad")
        assert status.state == State.END
        assert status.error is not None and "Session Bundle is deprecated" in status.error.message
    finally:
        core.stop(drain_timeout=5)


def test_label_rules_with_allow_flag(base: Path) -> None:
    core = ServerCore(CoreOptions(allow_version_labels_for_unavailable_models=True))
    mgr = core.manager
    try:
        # a new label may point at a version that is not available (yet)
        mgr.apply_config([ModelEntry("half", str(base), version_labels={"canary": 2})])
        assert mgr.labels("half") == {"canary": 2}
        with pytest.raises(NotFoundError, match=r"Specific\(half, 2\)"):
            mgr.acquire("half", label="canary")
        # moving an existing label to another unavailable version is refused
        with pytest.raises(FailedPreconditionError, match="not currently available for inference"):
            mgr.apply_config([ModelEntry("half", str(base), version_labels={"canary": 3})])
        assert mgr.labels("half") == {"canary": 2}
        mgr.apply_config([ModelEntry("half", str(base), version_labels={"canary": 1, "stable": 1})])
        with mgr.acquire("half", label="stable") as h:
            assert h.version == 1
    finally:
        core.stop(drain_timeout=5)


def test_concurrent_acquire_release_is_consistent(base: Path) -> None:
    core = ServerCore(CoreOptions())
    mgr = core.manager
    try:
        mgr.apply_config([ModelEntry("half", str(base))])
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(500):
                    with mgr.acquire("half") as h:
                        assert h.servable is not None
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert mgr._models["half"].versions[1].refs == 0
    finally:
        core.stop(drain_timeout=5)


def test_reload_config_response_reports_the_increase_of_requested_metrics(
    tmp_path: Path, tf_serving_testdata: Path
) -> None:
    import shutil

    import tensorflow as tf
    from tensorflow_serving.apis import model_management_pb2, predict_pb2, prediction_log_pb2
    from tfship.serving.event_loop import ServingLoop
    from tfship.serving.grpc.service import ModelServicer
    from tfship.serving.metrics import ServerMetrics
    from tfship.serving.runtime.warmup import warmup_path

    from tfship.wire.tensor import to_tensor_proto

    version = Path(shutil.copytree(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123",
                                   tmp_path / "half" / "123"))
    record = prediction_log_pb2.PredictionLog()
    record.predict_log.request.CopyFrom(predict_pb2.PredictRequest())
    to_tensor_proto(np.float32([[1.0]]), record.predict_log.request.inputs["x"])
    warmup_path(version).parent.mkdir()
    with tf.io.TFRecordWriter(str(warmup_path(version))) as writer:
        writer.write(record.SerializeToString())

    core = ServerCore(CoreOptions(), metrics=ServerMetrics())
    servicer = ModelServicer(core, ServingLoop())
    request = model_management_pb2.ReloadConfigRequest()
    entry = request.config.model_config_list.config.add()
    entry.name, entry.base_path, entry.model_platform = "half", str(tmp_path / "half"), "tensorflow"
    request.metric_names.extend(["/tensorflow/serving/model_warmup_latency",
                                 "/tensorflow/serving/runtime_latency", "/no/such/metric"])
    try:
        first = servicer.reload_response(request)
        assert first.status.error_code == 0
        # loading half v123 replayed its one warmup record: one warmup, one TF run; unknown -> 0
        assert [(m.name, m.int64_value_increase) for m in first.metric] == [
            ("/tensorflow/serving/model_warmup_latency", 1),
            ("/tensorflow/serving/runtime_latency", 1),
            ("/no/such/metric", 0),
        ]
        again = servicer.reload_response(request)  # nothing to load this time
        assert [m.int64_value_increase for m in again.metric] == [0, 0, 0]
    finally:
        core.stop(drain_timeout=5)


def test_after_an_unload_nothing_holds_the_version_and_its_series_are_gone(
        base: Path, tf_serving_testdata: Path) -> None:
    """The after-unload hook (gc + malloc_trim) runs once the servable can be freed, and the
    version's metric series are dropped: nothing stays behind per swap."""
    import weakref

    from tfship.serving.metrics import ServerMetrics

    metrics = ServerMetrics()
    core = ServerCore(CoreOptions(max_num_load_retries=0), metrics=metrics)
    mgr = core.manager
    seen: list[tuple[str, int, bool]] = []
    hook = core._on_unloaded

    def on_unloaded(name: str, version: int, path: Path) -> None:
        seen.append((name, version, servable_ref() is None or _collected(servable_ref)))
        hook(name, version, path)

    mgr._on_unloaded = on_unloaded
    try:
        mgr.apply_config([ModelEntry("half", str(base))])
        with mgr.acquire("half") as handle:
            servable_ref = weakref.ref(handle.servable)
            metrics.observe_request("half", 1, "predict", "GRPC", "OK", 0.001)
        del handle  # as a request does when it ends
        os.symlink(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "2")
        mgr.poll_model("half")
        wait_until(lambda: bool(seen), 60, "version 1 unloaded")
        assert seen == [("half", 1, True)]
        page = metrics.exposition().decode()
        assert 'version="1"' not in page and 'version="2"' in page
    finally:
        core.stop(drain_timeout=5)


def _collected(ref: Any) -> bool:
    import gc

    gc.collect()
    return ref() is None
