"""``--batching_parameters_file``: a text-format ``tensorflow.serving.BatchingParameters``.

The pip ``tensorflow-serving-api`` does not ship ``session_bundle_config.proto``, so the message is
declared here field for field (names, numbers and wrapper types as upstream
``tensorflow_serving/servables/tensorflow/session_bundle_config.proto``) in a private descriptor
pool, and parsed with protobuf's own text-format parser. Unset wrapper fields take TF Serving's
defaults (TF Serving compat spec §7).

These are TF Serving's knobs with TF Serving's meaning; tfship adds no field. One rule is ours
(serving/runtime/batching.py, "The bypass"): a task the scheduler would start at once as a batch of
its own - it fills ``max_batch_size`` alone, or ``batch_timeout_micros`` is 0 and nothing is queued,
running or arriving - skips the queue and runs as an unbatched call does, still holding one of the
``num_batch_threads`` slots. Which rows run together, padding and timeouts are unchanged.

>>> params = parse_batching_parameters(
...     "max_batch_size { value: 128 } num_batch_threads { value: 8 }")
>>> params.max_batch_size, params.num_batch_threads, params.max_enqueued_batches
(128, 8, 10)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from google.protobuf.message import Message
from tfship.serving.config.textproto import parse_text, read_text_file

__all__ = [
    "BatchingParameters",
    "BatchingParametersProto",
    "parse_batching_parameters",
    "read_batching_parameters_file",
    "format_batching_parameters",
]

_F = descriptor_pb2.FieldDescriptorProto

# (name, number, wrapper message or scalar type, repeated). Upstream declares 8 and 9 among the
# scheduler options, before allowed_batch_sizes (6) and pad_variable_length_inputs (7).
_FIELDS: tuple[tuple[str, int, str | int, bool], ...] = (
    ("max_batch_size", 1, ".google.protobuf.Int64Value", False),
    ("batch_timeout_micros", 2, ".google.protobuf.Int64Value", False),
    ("max_enqueued_batches", 3, ".google.protobuf.Int64Value", False),
    ("num_batch_threads", 4, ".google.protobuf.Int64Value", False),
    ("thread_pool_name", 5, ".google.protobuf.StringValue", False),
    ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue", False),
    ("max_execution_batch_size", 9, ".google.protobuf.Int64Value", False),
    ("allowed_batch_sizes", 6, _F.TYPE_INT64, True),
    ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, False),
)


def _build_message_class() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto_file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
    )
    message = proto_file.message_type.add(name="BatchingParameters")
    for name, number, kind, repeated in _FIELDS:
        entry = message.field.add(name=name, number=number, json_name=_camel(name))
        entry.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        if isinstance(kind, str):
            entry.type = _F.TYPE_MESSAGE
            entry.type_name = kind
        else:
            entry.type = kind
    pool.Add(proto_file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


#: Generated class of ``tensorflow.serving.BatchingParameters`` (private descriptor pool).
BatchingParametersProto = _build_message_class()


def _default_threads() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingParameters:
    """Batching knobs with TF Serving's defaults for every field a file leaves out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=_default_threads)
    thread_pool_name: str = "model_server_batch_threads"
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def to_proto(self) -> Message:
        """This config as a ``BatchingParameters`` message with every field set explicitly."""
        msg = BatchingParametersProto()
        msg.max_batch_size.value = self.max_batch_size
        msg.batch_timeout_micros.value = self.batch_timeout_micros
        msg.max_enqueued_batches.value = self.max_enqueued_batches
        msg.num_batch_threads.value = self.num_batch_threads
        msg.thread_pool_name.value = self.thread_pool_name
        if self.enable_large_batch_splitting:
            msg.enable_large_batch_splitting.value = True
        if self.max_execution_batch_size is not None:
            msg.max_execution_batch_size.value = self.max_execution_batch_size
        msg.allowed_batch_sizes.extend(self.allowed_batch_sizes)
        msg.pad_variable_length_inputs = self.pad_variable_length_inputs
        return msg

    @classmethod
    def from_proto(cls, msg: Message) -> BatchingParameters:
        """Fields set in ``msg`` override the defaults."""
        values: dict[str, object] = {}
        for name, _number, kind, _repeated in _FIELDS:
            if isinstance(kind, str) and msg.HasField(name):
                values[name] = getattr(msg, name).value
        values["allowed_batch_sizes"] = tuple(msg.allowed_batch_sizes)
        values["pad_variable_length_inputs"] = msg.pad_variable_length_inputs
        return cls(**values)  # type: ignore[arg-type]


def parse_batching_parameters(
    text: str, path: str | os.PathLike[str] | None = None
) -> BatchingParameters:
    """Parse a text-format BatchingParameters; bad text raises InvalidArgumentError (as TF)."""
    return BatchingParameters.from_proto(parse_text(text, BatchingParametersProto(), path))


def read_batching_parameters_file(path: str | os.PathLike[str]) -> BatchingParameters:
    """Read and parse ``--batching_parameters_file``."""
    return parse_batching_parameters(read_text_file(path), path)


def format_batching_parameters(params: BatchingParameters) -> str:
    """Text-format BatchingParameters for ``params`` (every knob written explicitly)."""
    return text_format.MessageToString(params.to_proto())
