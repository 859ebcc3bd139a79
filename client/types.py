"""Types shared by both transports and both drivers: what a call addresses (:class:`ModelRef`),
model status, signatures, classification results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfship.errors import InvalidArgumentError

__all__ = [
    "ModelRef", "Inputs", "Outputs", "VersionStatus", "TensorSpec", "SignatureInfo", "ModelMetadata",
    "ClassifyResult", "Prediction", "STATE_NAMES",
]

Inputs = Any  # ndarray | list | Mapping[str, ndarray | list]
Outputs = Any  # ndarray | dict[str, ndarray]


@dataclass(frozen=True)
class ModelRef:
    """Which model/version/signature a request addresses (TF Serving's ModelSpec)."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.label is not None:
            raise InvalidArgumentError(
                f"Give either version={self.version} or label={self.label!r} for model "
                f"{self.name!r}, not both (ModelSpec holds one of them)."
            )
        if not self.name:
            raise InvalidArgumentError("A model name is required (ModelSpec has no name specified).")

    def describe(self) -> str:
        where = (f" version {self.version}" if self.version is not None
                 else f" label {self.label!r}" if self.label else "")
        return f"model {self.name!r}{where}"


#: ModelVersionStatus.State numbers (apis/get_model_status.proto).
STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


@dataclass(frozen=True)
class VersionStatus:
    """One version of a model as the server reports it (``state`` is e.g. ``"AVAILABLE"``)."""

    version: int
    state: str
    error_code: int = 0
    error_message: str = ""

    @property
    def available(self) -> bool:
        return self.state == "AVAILABLE"

    def __str__(self) -> str:
        text = f"{self.version} ({self.state})"
        return f"{text}: {self.error_message}" if self.error_message else text


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: its dtype name (``DT_FLOAT``) and shape (-1 = any size).

    ``shape`` is None when the rank is unknown.
    """

    dtype: str
    shape: tuple[int, ...] | None
    tensor_name: str = ""

    def __str__(self) -> str:
        shape = "unknown rank" if self.shape is None else list(self.shape)
        return f"{self.dtype} {shape}"


@dataclass(frozen=True)
class SignatureInfo:
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]

    def describe_inputs(self) -> str:
        return ", ".join(f"{name}: {spec}" for name, spec in sorted(self.inputs.items()))


@dataclass(frozen=True)
class ModelMetadata:
    """What GetModelMetadata says: the version that answered and every SignatureDef."""

    name: str
    version: int
    signatures: dict[str, SignatureInfo] = field(default_factory=dict)

    def signature(self, name: str | None) -> SignatureInfo | None:
        return self.signatures.get(name or "serving_default")


@dataclass(frozen=True)
class ClassifyResult:
    """Classification of a batch of examples: ``labels`` (str) and ``scores`` (float32), [batch, n]."""

    labels: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Prediction:
    """A predict answer: ``outputs`` by name and the ``version`` that answered (None over REST)."""

    outputs: dict[str, np.ndarray]
    version: int | None
