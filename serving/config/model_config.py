"""TF Serving's model server config (``--model_config_file``): the one reader and the one writer.

The file is a text-format ``tensorflow.serving.ModelServerConfig`` (TF Serving compat spec §2). Parsing and
writing both go through the real protos shipped in ``tensorflow-serving-api``
(``tensorflow_serving.config``, which does not import TensorFlow), so whatever tfship writes is
exactly what ``tensorflow_model_server`` reads. Semantic checks (duplicate names, relative paths,
platforms, labels) belong to the server core, which reports them with upstream's messages.

>>> print(format_model_config([ModelEntry("mnist", "/models/mnist", Latest(2), {"stable": 1})]))
model_config_list {
  config {
    name: "mnist"
    base_path: "/models/mnist"
    model_platform: "tensorflow"
    model_version_policy {
      latest {
        num_versions: 2
      }
    }
    version_labels {
      key: "stable"
      value: 1
    }
  }
}
<BLANKLINE>
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfship.serving.config.textproto import parse_text, read_text_file

__all__ = [
    "ModelServerConfig",
    "ModelEntry",
    "Latest",
    "AllVersions",
    "Specific",
    "VersionPolicy",
    "parse_model_config",
    "read_model_config_file",
    "format_model_config",
    "model_entries",
]

ModelServerConfig = model_server_config_pb2.ModelServerConfig


@dataclass(frozen=True)
class Latest:
    """Serve the ``num_versions`` highest versions on disk (TF Serving's default, with 1)."""

    num_versions: int = 1


@dataclass(frozen=True)
class AllVersions:
    """Serve every version on disk."""


@dataclass(frozen=True)
class Specific:
    """Serve exactly these versions."""

    versions: tuple[int, ...]

    def __init__(self, versions: Iterable[int]) -> None:
        object.__setattr__(self, "versions", tuple(int(v) for v in versions))


VersionPolicy = Latest | AllVersions | Specific


@dataclass(frozen=True)
class ModelEntry:
    """One ``model_config_list.config`` entry.

    ``version_policy=None`` writes no policy (the server then serves the latest version).
    ``version_labels`` maps a label (e.g. ``"stable"``) to a version number.
    """

    name: str
    base_path: str
    version_policy: VersionPolicy | None = None
    version_labels: Mapping[str, int] = field(default_factory=dict)
    platform: str = "tensorflow"


def parse_model_config(
    text: str, path: str | os.PathLike[str] | None = None
) -> model_server_config_pb2.ModelServerConfig:
    """Parse a text-format ModelServerConfig.

    Raises :class:`~tfship.errors.InvalidArgumentError` ``Invalid protobuf file: '<path>'`` (after
    writing protobuf's ``Error parsing text-format tensorflow.serving.ModelServerConfig`` line to
    stderr) when the text does not parse. An empty text is a valid, empty config.
    """
    return parse_text(text, model_server_config_pb2.ModelServerConfig(), path)


def read_model_config_file(
    path: str | os.PathLike[str],
) -> model_server_config_pb2.ModelServerConfig:
    """Read and parse ``--model_config_file``; errors as :func:`parse_model_config`."""
    return parse_model_config(read_text_file(path), path)


def _to_proto(models: Iterable[ModelEntry]) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    config_list = config.model_config_list  # present even when empty: a list, not CONFIG_NOT_SET
    config_list.SetInParent()
    for entry in models:
        model = config_list.config.add()
        model.name = entry.name
        model.base_path = entry.base_path
        model.model_platform = entry.platform
        policy = entry.version_policy
        if isinstance(policy, Latest):
            model.model_version_policy.latest.num_versions = policy.num_versions
        elif isinstance(policy, AllVersions):
            model.model_version_policy.all.SetInParent()
        elif isinstance(policy, Specific):
            model.model_version_policy.specific.versions.extend(policy.versions)
        elif policy is not None:
            raise TypeError(
                f"unknown version policy {policy!r}; use Latest, AllVersions or Specific"
            )
        for label, version in entry.version_labels.items():
            model.version_labels[label] = int(version)
    return config


def format_model_config(models: Iterable[ModelEntry]) -> str:
    """The text-format ModelServerConfig serving ``models`` (the one writer tfship uses)."""
    return text_format.MessageToString(_to_proto(models))


def model_entries(config: model_server_config_pb2.ModelServerConfig) -> list[ModelEntry]:
    """The entries of a parsed config (inverse of :func:`format_model_config`)."""
    entries = []
    for model in config.model_config_list.config:
        which = model.model_version_policy.WhichOneof("policy_choice")
        policy: VersionPolicy | None
        if which == "latest":
            policy = Latest(model.model_version_policy.latest.num_versions or 1)
        elif which == "all":
            policy = AllVersions()
        elif which == "specific":
            policy = Specific(model.model_version_policy.specific.versions)
        else:
            policy = None
        entries.append(
            ModelEntry(
                name=model.name,
                base_path=model.base_path,
                version_policy=policy,
                version_labels=dict(model.version_labels),
                platform=model.model_platform,
            )
        )
    return entries
