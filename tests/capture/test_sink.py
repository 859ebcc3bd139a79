"""CaptureSink: rotation, the disk budget (drop or delete), a full queue, flush and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from tfship.capture import CaptureConfig, CaptureSink, model_capture_files, predict_log, read_capture
from tfship.capture.files import parse_capture_name
from tfship.capture.tfrecord import RecordFile, encode_record

RECORD = b"r" * 1000
FRAMED = len(encode_record(RECORD))


def _files(prefix: str, model: str = "m") -> list[Path]:
    return [f.path for f in model_capture_files(prefix, model)]


def test_files_rotate_at_max_file_bytes_and_read_back_in_order(tmp_path: Path) -> None:
    prefix = f"{tmp_path}/cap/"
    config = CaptureConfig(prefix, max_file_bytes=4 * FRAMED, max_total_bytes=1 << 20)
    with CaptureSink(config, "m") as sink:
        for i in range(10):
            assert sink.record(b"%04d" % i + RECORD[4:])
    files = _files(prefix)
    assert len(files) == 3
    assert all(f.stat().st_size <= 4 * FRAMED for f in files)
    assert [parse_capture_name(f).seq for f in files] == [1, 2, 3]  # type: ignore[union-attr]
    data = [r.data[:4] for f in files for r in RecordFile(f)]
    assert data == [b"%04d" % i for i in range(10)]
    assert sink.stats.written == 10 and sink.stats.dropped_total == 0


def test_a_restart_continues_the_sequence(tmp_path: Path) -> None:
    prefix = str(tmp_path / "capture")
    config = CaptureConfig(prefix)
    for _ in range(2):
        with CaptureSink(config, "m") as sink:
            sink.record(RECORD)
    files = _files(prefix)
    assert [parse_capture_name(f).seq for f in files] == [1, 2]  # type: ignore[union-attr]
    assert files[0].name.startswith("capture.m.")


def test_drop_new_keeps_the_budget_and_counts_drops(tmp_path: Path) -> None:
    prefix = f"{tmp_path}/"
    dropped: list[str] = []
    config = CaptureConfig(prefix, max_file_bytes=3 * FRAMED, max_total_bytes=5 * FRAMED)
    with CaptureSink(config, "m", on_dropped=dropped.append) as sink:
        for _ in range(12):
            sink.record(RECORD)
    total = sum(f.stat().st_size for f in _files(prefix))
    assert total <= 5 * FRAMED
    assert sink.stats.written == 5 and sink.stats.dropped["budget"] == 7
    assert dropped == ["budget"] * 7


def test_delete_oldest_keeps_a_rolling_window(tmp_path: Path) -> None:
    prefix = f"{tmp_path}/"
    config = CaptureConfig(prefix, max_file_bytes=2 * FRAMED, max_total_bytes=5 * FRAMED,
                           retention="delete_oldest")
    with CaptureSink(config, "m") as sink:
        for i in range(12):
            sink.record(b"%04d" % i + RECORD[4:])
    files = _files(prefix)
    assert sum(f.stat().st_size for f in files) <= 5 * FRAMED
    kept = [r.data[:4] for f in files for r in RecordFile(f)]
    assert kept[-1] == b"0011" and kept == sorted(kept)  # the latest records, in order
    assert sink.stats.written == 12 and sink.stats.dropped_total == 0 and sink.stats.files_deleted >= 3


def test_a_full_queue_drops_without_blocking(tmp_path: Path) -> None:
    gate = threading.Event()

    def slow() -> bytes:
        gate.wait(10)
        return RECORD

    config = CaptureConfig(f"{tmp_path}/", queue_records=2)
    with CaptureSink(config, "m") as sink:
        assert sink.record(slow)  # the writer takes it and waits on the gate
        accepted = [sink.record(RECORD) for _ in range(10)]
        gate.set()
    assert accepted.count(True) <= 3 and sink.stats.dropped["queue_full"] >= 7
    assert sink.stats.written == 1 + accepted.count(True)


def test_a_failing_builder_drops_and_counts(tmp_path: Path) -> None:
    def broken() -> bytes:
        raise RuntimeError("boom")

    with CaptureSink(CaptureConfig(f"{tmp_path}/"), "m") as sink:
        sink.record(broken)
        sink.record(RECORD)
    assert sink.stats.dropped["error"] == 1 and sink.stats.written == 1


def test_flush_makes_records_readable_while_the_sink_runs(tmp_path: Path) -> None:
    prefix = f"{tmp_path}/"
    config = CaptureConfig(prefix)
    with CaptureSink(config, "m") as sink:
        x = np.arange(4, dtype=np.float32)
        sink.record(lambda: predict_log("m", 3, "serving_default", {"x": x}, {"y": x * 2}, config))
        assert sink.flush()
        (call,) = list(read_capture([prefix]))
        assert call.version == 3 and call.kind == "predict"
        np.testing.assert_array_equal(call.outputs["y"], x * 2)  # type: ignore[index]


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL semantics")
def test_sigkill_loses_only_unflushed_records_and_leaves_files_readable(tmp_path: Path) -> None:
    prefix = f"{tmp_path}/"
    script = textwrap.dedent(f"""
        import sys, time
        from tfship.capture import CaptureConfig, CaptureSink
        sink = CaptureSink(CaptureConfig({prefix!r}, max_file_bytes=50_000), "m")
        for i in range(200):
            sink.record(b"%06d" % i + b"x" * 994)
        assert sink.flush()
        print("flushed", flush=True)
        i = 200
        while True:   # keep writing until killed: the kill lands mid-stream
            sink.record(b"%06d" % i + b"x" * 994)
            i += 1
            if i % 100 == 0:
                time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "flushed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    records = [r.data[:6] for f in _files(prefix) for r in RecordFile(f)]
    assert records[:200] == [b"%06d" % i for i in range(200)]  # every flushed record survived
    assert records == [b"%06d" % i for i in range(len(records))]  # in order, nothing corrupt


def test_the_queue_is_bounded_in_bytes_too(tmp_path: Path) -> None:
    gate = threading.Event()

    def slow() -> bytes:
        gate.wait(10)
        return RECORD

    config = CaptureConfig(f"{tmp_path}/", queue_bytes=10_000)
    with CaptureSink(config, "m") as sink:
        assert sink.record(slow)  # taken by the writer, which waits on the gate
        accepted = [sink.record(lambda: RECORD, nbytes=3_000) for _ in range(5)]
        gate.set()
    assert accepted == [True, True, True, False, False]
    assert sink.stats.dropped["queue_full"] == 2 and sink.stats.written == 4
