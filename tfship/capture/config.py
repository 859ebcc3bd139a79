"""What to capture and how much to keep: one :class:`CaptureConfig` for the server and the client.

On the server it comes from TF Serving's own ``ModelConfig.logging_config``::

    logging_config {
      sampling_config { sampling_rate: 0.05 }
      log_collector_config {
        type: "tfrecord?max_total_bytes=1GiB&exclude_inputs=email,ssn"
        filename_prefix: "/var/log/tfship/capture/"
      }
    }

TF Serving's proto has fields for the rate and the file prefix only, so tfship's options ride in
the collector ``type`` string, URL-query style: ``tfrecord`` alone takes every default. The type
names the collector (upstream looks a collector up by this string), so options stay next to the
config they belong to and are re-read on every config reload.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

from tfship.errors import ConfigError

__all__ = ["CaptureConfig", "COLLECTOR_TYPE", "parse_size"]

#: The log collector ``type`` tfship implements: size-rotated TFRecord files of PredictionLog.
COLLECTOR_TYPE = "tfrecord"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str | int, what: str = "size") -> int:
    """``"64MiB"`` -> 67108864 (units B, KB/MB/GB, KiB/MiB/GiB; a bare number is bytes)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ConfigError(f"{what}: {text!r} is not a size; write bytes or a number with KiB, MiB or GiB "
                          "(e.g. 64MiB).")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class CaptureConfig:
    """Where captured calls go, which are sampled, how much disk they may take, what is left out.

    ``filename_prefix``: files are ``<prefix>.<model>.<UTC time>.<seq>.tfrecord``; a prefix ending
    in ``/`` is a directory (``<dir>/<model>.<UTC time>.<seq>.tfrecord``), see
    :mod:`tfship.capture.files`. ``max_total_bytes`` bounds each model's files together; when a
    record would pass it, ``retention="drop_new"`` (default) drops and counts new records, keeping
    what was captured first, and ``"delete_oldest"`` deletes the model's oldest files instead (a
    rolling window of the latest traffic). ``exclude_inputs``/``exclude_outputs`` leave those
    tensors out of every record; ``requests_only`` leaves responses out altogether.
    """

    filename_prefix: str
    sampling_rate: float = 1.0
    max_file_bytes: int = 64 * 2**20
    max_total_bytes: int = 2**30
    retention: Literal["drop_new", "delete_oldest"] = "drop_new"
    exclude_inputs: frozenset[str] = field(default_factory=frozenset)
    exclude_outputs: frozenset[str] = field(default_factory=frozenset)
    requests_only: bool = False
    queue_records: int = 10_000
    queue_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        if not self.filename_prefix:
            raise ConfigError("capture needs a filename_prefix (log_collector_config.filename_prefix): the "
                              "directory or file prefix the capture files are written to.")
        if not (0.0 <= self.sampling_rate <= 1.0) or math.isnan(self.sampling_rate):
            raise ConfigError(f"sampling_rate {self.sampling_rate} must be between 0 and 1.")
        if self.max_file_bytes < 1024 or self.max_total_bytes < 1024:
            raise ConfigError("max_file_bytes and max_total_bytes must be at least 1KiB.")
        if self.retention not in ("drop_new", "delete_oldest"):
            raise ConfigError(f"retention {self.retention!r}: use drop_new or delete_oldest.")
        if self.queue_records < 1 or self.queue_bytes < 1:
            raise ConfigError("queue_records and queue_bytes must be at least 1.")
        for name in ("exclude_inputs", "exclude_outputs"):
            value = getattr(self, name)
            if not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(_names(value)))

    @classmethod
    def from_collector(cls, collector_type: str, filename_prefix: str, sampling_rate: float) -> CaptureConfig:
        """The config of a ``log_collector_config`` (``type``, ``filename_prefix``) and a rate."""
        kind, _, query = collector_type.partition("?")
        if kind != COLLECTOR_TYPE:
            raise ConfigError(f"log_collector_config.type {collector_type!r}: tfship-model-server "
                              f"implements the collector {COLLECTOR_TYPE!r} (TFRecord files of "
                              f"PredictionLog), options as {COLLECTOR_TYPE}?max_total_bytes=1GiB&...")
        known = {f.name for f in fields(cls)} - {"filename_prefix", "sampling_rate"}
        options: dict[str, Any] = {}
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError as exc:
            raise ConfigError(f"log_collector_config.type {collector_type!r}: {exc}") from None
        for key, value in pairs:
            if key not in known:
                raise ConfigError(f"log_collector_config.type: unknown option {key!r}; known: "
                                  f"{', '.join(sorted(known))}.")
            if key in ("max_file_bytes", "max_total_bytes", "queue_bytes"):
                options[key] = parse_size(value, key)
            elif key == "queue_records":
                options[key] = int(parse_size(value, key))
            elif key == "requests_only":
                if value.lower() not in ("true", "false", "1", "0", ""):
                    raise ConfigError(f"requests_only={value!r}: use true or false.")
                options[key] = value.lower() in ("true", "1", "")
            elif key in ("exclude_inputs", "exclude_outputs"):
                options[key] = frozenset(_names(value.split(",")))
            else:
                options[key] = value
        return cls(filename_prefix=filename_prefix, sampling_rate=float(sampling_rate), **options)

    def collector_type(self) -> str:
        """The ``log_collector_config.type`` string that gives back this config."""
        default = CaptureConfig(self.filename_prefix)
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("filename_prefix", "sampling_rate") or value == getattr(default, f.name):
                continue
            text = ",".join(sorted(value)) if isinstance(value, frozenset) else str(value).lower() \
                if isinstance(value, bool) else str(value)
            parts.append(f"{f.name}={quote(text, safe=',')}")
        return COLLECTOR_TYPE + ("?" + "&".join(parts) if parts else "")


def _names(values: Iterable[str]) -> list[str]:
    return [v.strip() for v in values if v.strip()]
