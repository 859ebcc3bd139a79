"""TF-free unit tests (no server): URL parsing, REST JSON documents, examples, file formats, chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tfship.client import ClientConfig, ModelRef, RetryPolicy, connect
from tfship.client.batch.formats import OutputWriter, read_inputs
from tfship.client.batch.job import _chunk_bytes, _load_chunk
from tfship.client.examples import example_json, example_proto
from tfship.client.rest_transport import metadata_from_json, status_from_json
from tfship.client.types import SignatureInfo, TensorSpec

from tfship.errors import ConfigError, InvalidArgumentError

SIG = SignatureInfo("tensorflow/serving/predict",
                    {"a": TensorSpec("DT_FLOAT", (-1, 3)), "b": TensorSpec("DT_INT64", (-1,))},
                    {"y": TensorSpec("DT_FLOAT", (-1,))})
ONE = SignatureInfo("", {"x": TensorSpec("DT_INT32", (-1, 2))}, {"y": TensorSpec("DT_FLOAT", (-1,))})


@pytest.mark.parametrize("url", ["tcp://h:1", "localhost:8500", "grpc://", "grpc://h:1/v1/models"])
def test_bad_urls_say_what_to_use(url: str) -> None:
    with pytest.raises(ConfigError, match="grpc://"):
        connect(url)


def test_connect_picks_the_transport() -> None:
    with connect("grpc://127.0.0.1:1") as g, connect("http://127.0.0.1:1/") as r:
        assert (g.transport, r.transport) == ("grpc", "rest")
        assert r.url == "http://127.0.0.1:1"


def test_model_ref_refuses_version_and_label() -> None:
    with pytest.raises(InvalidArgumentError, match="either version=1 or label='x'"):
        ModelRef("m", version=1, label="x")


def test_config_defaults_raise_message_limits_and_bound_backoff() -> None:
    config = ClientConfig()
    assert config.max_receive_message_bytes > 4 * 2**20 and config.max_send_message_bytes > 4 * 2**20
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.3)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]


@pytest.mark.tf_serving_shared
def test_metadata_json_from_tf_serving(tf_serving_shared: Path) -> None:
    doc = json.loads((tf_serving_shared / "half_plus_two_model_metadata.json").read_text())
    meta = metadata_from_json(doc, "half")
    sig = meta.signatures["serving_default"]
    assert sig.inputs["x"].dtype == "DT_FLOAT" and sig.inputs["x"].shape == (-1, 1)
    assert meta.signatures["classify_x_to_y"].inputs["inputs"].shape is None  # unknown rank


def test_status_json() -> None:
    doc = {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "END", "status": {"error_code": "NOT_FOUND", "error_message": "gone"}}]}
    versions = status_from_json(doc)
    assert [(v.version, v.state, v.error_code) for v in versions] == [(2, "AVAILABLE", 0), (1, "END", 5)]
    assert str(versions[1]) == "1 (END): gone"


def test_examples_map_like_tf_serving_rest() -> None:
    ex = {"f": 1.0, "n": [1, 2], "s": "t", "b": b"\xff"}
    proto = example_proto(ex)
    feature = proto.features.feature
    assert list(feature["f"].float_list.value) == [1.0]
    assert list(feature["n"].int64_list.value) == [1, 2]
    assert list(feature["b"].bytes_list.value) == [b"\xff"]
    assert example_json(ex) == {"f": 1.0, "n": [1, 2], "s": "t", "b": {"b64": "/w=="}}
    assert example_json(proto.SerializeToString())["n"] == [1, 2]
    with pytest.raises(InvalidArgumentError, match="mixes strings and numbers"):
        example_proto({"x": [1, "a"]})


def test_jsonl_and_csv_inputs(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"a": [1, 2, 3], "b": 4}\n\n{"a": [0.5, 0, 0], "b": -1}\n')
    got = read_inputs(tmp_path / "rows.jsonl", SIG)
    assert got["a"].dtype == np.float32 and got["b"].dtype == np.int64
    assert got["b"].tolist() == [4, -1]
    (tmp_path / "cols.csv").write_text("b,c\n1,2\n")
    with pytest.raises(ConfigError, match="signature has inputs"):
        read_inputs(tmp_path / "cols.csv", SIG)
    (tmp_path / "feat.csv").write_text("p,q\n1,2\n3,4\n")
    x = read_inputs(tmp_path / "feat.csv", ONE)["x"]
    assert x.dtype == np.int32 and x.tolist() == [[1, 2], [3, 4]]
    (tmp_path / "bad.jsonl").write_text('{"a": [1, 2, 3]}\n')
    with pytest.raises(ConfigError, match="line 1"):
        read_inputs(tmp_path / "bad.jsonl", SIG)
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(ConfigError, match="Unsupported file type"):
        read_inputs(tmp_path / "x.xlsx", SIG)


def test_output_writer_refuses_npy_for_several_outputs(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path / "y.npy", 2)
    with pytest.raises(ConfigError, match="write .npz, .jsonl or .csv"):
        writer.write({"a": np.ones(2), "b": np.ones(2)})


def test_chunks_keep_strings_exactly() -> None:
    s = np.empty((2, 2), object)
    s[:] = [[b"a\x00", b""], [b"\xff", b"x"]]
    back = _load_chunk_from(_chunk_bytes({"s": s, "f": np.arange(2.0)}))
    assert back["s"].tolist() == s.tolist() and back["f"].tolist() == [0.0, 1.0]


def _load_chunk_from(data: bytes) -> dict[str, np.ndarray]:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".npz") as fh:
        fh.write(data)
        fh.flush()
        return _load_chunk(Path(fh.name))
