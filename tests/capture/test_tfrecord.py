"""TFRecord framing: what tf.io writes we read, what we write TF reads; torn tails and corruption."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tfship.capture import RecordFile, encode_record, read_records, write_records
from tfship.errors import CorruptRecordError

HAS_TF = importlib.util.find_spec("tensorflow") is not None
PAYLOADS = [b"", b"a", b"x" * 1000, bytes(range(256)) * 40]


def test_round_trip_with_offsets(tmp_path: Path) -> None:
    path = tmp_path / "r.tfrecord"
    write_records(path, PAYLOADS)
    records = list(RecordFile(path))
    assert [r.data for r in records] == PAYLOADS
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert records[1].offset == 16 and records[2].offset == 16 + 17


@pytest.mark.skipif(not HAS_TF, reason="needs TensorFlow to compare with tf.io")
def test_same_bytes_as_tensorflow(tmp_path: Path) -> None:
    import tensorflow as tf

    theirs = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for data in PAYLOADS:
            writer.write(data)
    assert theirs.read_bytes() == b"".join(encode_record(d) for d in PAYLOADS)
    ours = tmp_path / "ours.tfrecord"
    write_records(ours, PAYLOADS)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == PAYLOADS


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 13, 20])
def test_a_torn_last_record_ends_the_file_cleanly(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "torn.tfrecord"
    whole = encode_record(b"first") + encode_record(b"second record")
    path.write_bytes(whole[: len(encode_record(b"first")) + cut])
    reader = RecordFile(path)
    assert [r.data for r in reader] == [b"first"]
    assert reader.torn_at == len(encode_record(b"first"))


@pytest.mark.parametrize(("where", "problem"), [(3, "length"), (14, "data"), (-1, "data")])
def test_a_corrupt_record_names_file_and_offset(tmp_path: Path, where: int, problem: str) -> None:
    path = tmp_path / "bad.tfrecord"
    good = encode_record(b"good")
    bad = bytearray(encode_record(b"payload"))
    bad[where] ^= 0xFF
    path.write_bytes(good + bytes(bad))
    with pytest.raises(CorruptRecordError) as info:
        read_records(path)
    assert info.value.path == str(path) and info.value.offset == len(good)
    assert problem in str(info.value) and str(path) in str(info.value)
    assert f"offset {len(good)}" in str(info.value)


@pytest.mark.skipif(not HAS_TF, reason="needs TensorFlow to write a warmup file the TF way")
def test_reads_a_warmup_file_written_with_tf_io_and_official_protos(tmp_path: Path) -> None:
    # ../shared holds no upstream warmup file: export's writer (tf.io + tensorflow_serving's
    # PredictionLog) is the reference for the format here.
    import numpy as np
    from tfship.export.warmup import write_warmup_requests

    from tfship.capture import decode_log
    from tfship.capture.records import Position

    path = tmp_path / "tf_serving_warmup_requests"
    write_warmup_requests(path, "m", {"x": np.arange(6, dtype=np.float32).reshape(3, 2)})
    calls = [decode_log(r.data, Position(path, r.index, r.offset)) for r in RecordFile(path)]
    assert [c.kind for c in calls] == ["predict", "predict"]
    np.testing.assert_array_equal(calls[0].inputs["x"], np.arange(6, dtype=np.float32).reshape(3, 2))
    assert calls[1].inputs["x"].shape == (1, 2)
