"""Semantic validation of a ``ModelServerConfig`` (TF Serving compat spec §2.2) into :class:`ModelEntry` objects.

Parsing the text format is ``serving.config.model_config``'s job; this module applies
server_core.cc's rules with its messages, so a bad config fails the same way as upstream.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from tfship.errors import FailedPreconditionError, InvalidArgumentError

from ..config.model_config import ModelEntry, model_entries

__all__ = ["entries_from_config", "single_model_entry", "SUPPORTED_PLATFORMS"]

SUPPORTED_PLATFORMS = ("tensorflow",)
_MODEL_TYPE_TENSORFLOW = 1


def _is_absolute_or_uri(path: str) -> bool:
    return os.path.isabs(path) or "://" in path


def entries_from_config(
    config: Any, previous: Mapping[str, ModelEntry] | None = None, *, reload: bool = False
) -> list[ModelEntry]:
    """Validate ``config`` (a ``ModelServerConfig``) and return its models.

    ``previous`` are the models currently served (for the change-of-platform rule); ``reload``
    enables the reload-only rules (only model_config_list may be applied).
    """
    which = config.WhichOneof("config")
    if which != "model_config_list" and reload:
        raise FailedPreconditionError(
            "Cannot transition to requested config. It is only legal to transition from one "
            "ModelConfigList to another."
        )
    if which is None:
        return []
    if which != "model_config_list":
        raise InvalidArgumentError(
            "ServerCore: custom_model_config is not supported by tfship-model-server; "
            "use model_config_list"
        )
    platforms: list[str] = []
    seen: set[str] = set()
    for mc in config.model_config_list.config:
        name = mc.name
        if name in seen:
            raise InvalidArgumentError(f"Illegal to list model {name} multiple times in config list")
        seen.add(name)
        if not _is_absolute_or_uri(mc.base_path):
            raise InvalidArgumentError(
                f"Expected model {name} to have an absolute path or URI; got "
                f"base_path()={mc.base_path}"
            )
        if mc.model_type and mc.model_platform:
            raise InvalidArgumentError(
                "Illegal setting both ModelServerConfig::model_type (deprecated) "
                "and ModelServerConfig::model_platform."
            )
        if mc.model_type:
            if mc.model_type != _MODEL_TYPE_TENSORFLOW:
                raise InvalidArgumentError(
                    f"ModelServerConfig::model_type choice {mc.model_type} not supported."
                )
            platform = "tensorflow"
        elif mc.model_platform:
            platform = mc.model_platform
        else:
            raise InvalidArgumentError(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) "
                "nor ModelServerConfig::model_platform."
            )
        # upstream checks a served model's platform change (ReloadConfig) before it looks the
        # platform up, so changing to an unknown platform reports the change
        if previous and name in previous and previous[name].platform != platform:
            raise InvalidArgumentError(
                f"Illegal to change a model's platform. For model {name} platform was "
                f"{previous[name].platform} and new platform requested is {platform}"
            )
        if platform not in SUPPORTED_PLATFORMS:
            raise InvalidArgumentError(f"Model {name} requests unsupported platform {platform}")
        platforms.append(platform)
    return [
        dataclasses.replace(entry, platform=platform)
        for entry, platform in zip(model_entries(config), platforms, strict=True)
    ]


def single_model_entry(name: str, base_path: str) -> ModelEntry:
    """Single-model mode (``--model_name``/``--model_base_path``), validated like a config."""
    from tensorflow_serving.config import model_server_config_pb2 as pb

    config = pb.ModelServerConfig()
    mc = config.model_config_list.config.add()
    mc.name, mc.base_path, mc.model_platform = name, base_path, "tensorflow"
    return entries_from_config(config)[0]
