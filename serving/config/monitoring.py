"""TF Serving's ``--monitoring_config_file``: a text-format ``tensorflow.serving.MonitoringConfig``.

Not shipped by the pip ``tensorflow-serving-api``; declared here as upstream
``tensorflow_serving/config/monitoring_config.proto`` (``PrometheusConfig{bool enable = 1;
string path = 2}``, ``MonitoringConfig{PrometheusConfig prometheus_config = 1}``) in a private
descriptor pool (TF Serving compat spec §8).

>>> format_monitoring_config(MonitoringConfig(prometheus_enabled=True))
'prometheus_config {\\n  enable: true\\n  path: "/monitoring/prometheus/metrics"\\n}\\n'
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import Message
from tfship.serving.config.textproto import parse_text, read_text_file

__all__ = [
    "DEFAULT_PROMETHEUS_PATH",
    "MonitoringConfig",
    "MonitoringConfigProto",
    "parse_monitoring_config",
    "read_monitoring_config_file",
    "format_monitoring_config",
]

#: PrometheusExporter::kPrometheusPath, used when the config leaves ``path`` empty.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

_F = descriptor_pb2.FieldDescriptorProto


def _build_message_class() -> type[Message]:
    proto_file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = proto_file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(
        name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL, json_name="enable"
    )
    prometheus.field.add(
        name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL, json_name="path"
    )
    monitoring = proto_file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=_F.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=_F.LABEL_OPTIONAL,
        json_name="prometheusConfig",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto_file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    )


#: Generated class of ``tensorflow.serving.MonitoringConfig`` (private descriptor pool).
MonitoringConfigProto = _build_message_class()


@dataclass(frozen=True)
class MonitoringConfig:
    """Whether the REST port serves Prometheus metrics, and at which exact path."""

    prometheus_enabled: bool = False
    path: str = DEFAULT_PROMETHEUS_PATH

    def to_proto(self) -> Message:
        msg = MonitoringConfigProto()
        msg.prometheus_config.enable = self.prometheus_enabled
        msg.prometheus_config.path = self.path
        return msg

    @classmethod
    def from_proto(cls, msg: Message) -> MonitoringConfig:
        prometheus = msg.prometheus_config
        return cls(prometheus.enable, prometheus.path or DEFAULT_PROMETHEUS_PATH)


def parse_monitoring_config(
    text: str, path: str | os.PathLike[str] | None = None
) -> MonitoringConfig:
    """Parse a text-format MonitoringConfig; bad text raises InvalidArgumentError (as TF)."""
    return MonitoringConfig.from_proto(parse_text(text, MonitoringConfigProto(), path))


def read_monitoring_config_file(path: str | os.PathLike[str]) -> MonitoringConfig:
    """Read and parse ``--monitoring_config_file``."""
    return parse_monitoring_config(read_text_file(path), path)


def format_monitoring_config(config: MonitoringConfig) -> str:
    """Text-format MonitoringConfig for ``config``."""
    return text_format.MessageToString(config.to_proto())
