"""CaptureConfig from TF Serving's log_collector_config: the type string carries tfship's options."""

from __future__ import annotations

import pytest

from tfship.capture import CaptureConfig, parse_size
from tfship.errors import ConfigError


def test_plain_type_takes_the_defaults() -> None:
    config = CaptureConfig.from_collector("tfrecord", "/var/cap/", 0.05)
    assert config == CaptureConfig("/var/cap/", sampling_rate=0.05)
    assert config.collector_type() == "tfrecord"


def test_options_in_the_type_string_round_trip() -> None:
    text = ("tfrecord?max_file_bytes=8MiB&max_total_bytes=1GiB&retention=delete_oldest"
            "&exclude_inputs=email,ssn&exclude_outputs=embedding&requests_only=true&queue_records=500")
    config = CaptureConfig.from_collector(text, "/c/", 1.0)
    assert config.max_file_bytes == 8 * 2**20 and config.max_total_bytes == 2**30
    assert config.exclude_inputs == {"email", "ssn"} and config.exclude_outputs == {"embedding"}
    assert config.requests_only and config.retention == "delete_oldest" and config.queue_records == 500
    assert CaptureConfig.from_collector(config.collector_type(), "/c/", 1.0) == config


@pytest.mark.parametrize(("kind", "prefix", "rate", "needle"), [
    ("kafka", "/c/", 1.0, "implements the collector 'tfrecord'"),
    ("tfrecord?max_bytes=1", "/c/", 1.0, "unknown option 'max_bytes'"),
    ("tfrecord?max_total_bytes=lots", "/c/", 1.0, "is not a size"),
    ("tfrecord?retention=forever", "/c/", 1.0, "drop_new or delete_oldest"),
    ("tfrecord", "", 1.0, "filename_prefix"),
    ("tfrecord", "/c/", 1.5, "between 0 and 1"),
])
def test_bad_options_name_the_problem(kind: str, prefix: str, rate: float, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        CaptureConfig.from_collector(kind, prefix, rate)


def test_sizes() -> None:
    assert parse_size("64MiB") == 64 * 2**20 and parse_size("10") == 10 and parse_size("1.5KB") == 1500


def test_predict_records_assembled_at_the_wire_level_equal_the_message_built_field_by_field() -> None:
    import numpy as np

    from tfship.capture import predict_log
    from tfship.wire.protos import serving_wire_pb2 as pb
    from tfship.wire.tensor import to_tensor_proto

    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    s = np.array([b"a", b"\xff"], object)
    config = CaptureConfig("/c/", sampling_rate=0.5, exclude_inputs=frozenset({"secret"}))
    data = predict_log("m", 4, "sig", {"x": x, "s": s, "secret": x}, {"y": x * 2}, config,
                       output_filter=["y"], timestamp=1_700_000_000)
    want = pb.PredictionLog()
    meta = want.log_metadata
    meta.model_spec.name, meta.model_spec.signature_name = "m", "sig"
    meta.model_spec.version.value = 4
    meta.sampling_config.sampling_rate = 0.5
    meta.saved_model_tags.append("serve")
    meta.timestamp_secs = 1_700_000_000
    request, response = want.predict_log.request, want.predict_log.response
    request.model_spec.name, request.model_spec.signature_name = "m", "sig"
    to_tensor_proto(x, request.inputs["x"])
    to_tensor_proto(s, request.inputs["s"])
    request.output_filter.append("y")
    response.model_spec.CopyFrom(meta.model_spec)
    to_tensor_proto(x * 2, response.outputs["y"])
    assert pb.PredictionLog.FromString(data) == want
