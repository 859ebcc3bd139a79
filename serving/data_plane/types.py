"""The data plane's transport-free values: what a request names, what it returns, what observers see.

Front ends build a :class:`ModelRef` from their wire form (a ``ModelSpec``, a REST path, a V2
path) and encode :class:`Served`, :class:`ModelMetadata` and ``VersionStatus`` back into theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from tfship.errors import InvalidArgumentError, ServingError

__all__ = [
    "ModelRef", "InferenceTask", "Served", "ModelMetadata", "InferenceRecord",
    "RoutingPolicy", "Observer", "highest_version", "DEFAULT_SIGNATURE",
]

DEFAULT_SIGNATURE = "serving_default"

T = TypeVar("T")


@dataclass(frozen=True)
class ModelRef:
    """The model a request names: ``version`` or ``label`` pins it; neither leaves it to routing."""

    name: str
    version: int | None = None
    label: str | None = None

    @property
    def pinned(self) -> bool:
        return self.version is not None or bool(self.label)

    @classmethod
    def from_spec(cls, spec: Any, has_spec: bool = True) -> ModelRef:
        """A ``tensorflow.serving.ModelSpec`` (``has_spec``: the request set the field at all).

        The empty name is kept: the data plane rejects it with TF Serving's message.
        """
        if not has_spec:
            raise InvalidArgumentError("Missing ModelSpec")
        which = spec.WhichOneof("version_choice")
        if which == "version":
            return cls(spec.name, int(spec.version.value))
        if which == "version_label":
            return cls(spec.name, label=spec.version_label)
        return cls(spec.name)


@dataclass(frozen=True)
class InferenceTask:
    """One task of a MultiInference request: a signature of the model run as ``method_name``."""

    ref: ModelRef
    signature_name: str
    method_name: str


@dataclass(frozen=True)
class Served(Generic[T]):
    """A model call's result and the exact version that produced it."""

    model: str
    version: int
    signature_name: str  # "" resolved to serving_default
    value: T


@dataclass(frozen=True)
class ModelMetadata:
    """GetModelMetadata: the version that answered and every SignatureDef of its MetaGraph."""

    model: str
    version: int
    signature_defs: Mapping[str, Any]  # name -> tensorflow SignatureDef


@dataclass(frozen=True)
class InferenceRecord:
    """What an observer sees of one served predict / classify / regress / multi_inference.

    ``inputs`` is the numpy dict of a predict, or the serialized tf.Examples of the others (``None``
    when the request failed before they were decoded). ``outputs`` is the predict's numpy dict, a
    classify's ``runtime.Classification``, a regress's float32 array, a multi_inference's list of
    those (``None`` on error). For multi_inference ``signature_name`` joins the tasks' names
    with ``,``. Arrays may be read-only views into the request: copy what you keep.
    """

    api: str  # "predict" | "classify" | "regress" | "multi_inference"
    model: str
    version: int | None  # the version that served; None if the request failed before one was chosen
    signature_name: str
    pinned: bool  # the request named a version or label (routing did not choose)
    inputs: Mapping[str, np.ndarray] | Sequence[bytes] | None
    outputs: Any
    latency: float  # seconds, acquire to result
    error: ServingError | None
    entrypoint: str = ""  # "GRPC", "REST", ...


#: ``policy(model, available) -> version``: which AVAILABLE version (ascending tuple, never empty)
#: serves an unpinned request. Runs under the model manager's lock: keep it cheap, never block.
RoutingPolicy = Callable[[str, tuple[int, ...]], int]

#: ``observer(record)``, called on the serving loop after every served model call: keep it cheap
#: (hand heavy work to a queue); an exception is logged and counted, never raised to the caller.
Observer = Callable[[InferenceRecord], None]


def highest_version(model: str, available: tuple[int, ...]) -> int:
    """TF Serving's rule: an unpinned request is served by the highest available version."""
    return available[-1]
