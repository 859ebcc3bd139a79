"""Traffic capture, TensorFlow-free: PredictionLog records in size-rotated TFRecord files.

The server (``logging_config`` in its model config) and the client (``ClientConfig(capture=...)``)
write the same records through a :class:`CaptureSink`; ``tfship replay`` and ``--warmup-from``
read them back with :func:`read_capture`.
"""

from .config import COLLECTOR_TYPE, CaptureConfig, parse_size
from .files import CaptureFile, capture_file_name, expand_capture_paths, model_capture_files
from .records import (
    CapturedCall,
    CaptureReadReport,
    Position,
    client_log,
    decode_log,
    examples_log,
    multi_inference_log,
    predict_log,
    read_capture,
)
from .sink import DROP_REASONS, CaptureSink, SinkStats
from .tfrecord import Record, RecordFile, encode_record, read_records, write_records

__all__ = [
    "COLLECTOR_TYPE", "CaptureConfig", "parse_size",
    "CaptureFile", "capture_file_name", "expand_capture_paths", "model_capture_files",
    "CapturedCall", "CaptureReadReport", "Position", "client_log", "decode_log", "examples_log",
    "multi_inference_log", "predict_log", "read_capture",
    "DROP_REASONS", "CaptureSink", "SinkStats",
    "Record", "RecordFile", "encode_record", "read_records", "write_records",
]
