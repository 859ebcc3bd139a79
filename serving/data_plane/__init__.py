"""The data plane: every model API once, transport-free, under every front end.

gRPC (``serving/grpc``), TF Serving REST (``serving/rest``) and any later front end are thin
adapters: decode their wire form -> call :class:`DataPlane` -> encode what it returns. Only the
data plane resolves versions and labels, acquires and releases servables, checks signature
method names, applies deadlines, batches (through the servable), records request metrics and
turns failures into :mod:`tfship.errors` exceptions (a front end maps those to its codes).

>>> plane = DataPlane(core, serving_loop)                                  # doctest: +SKIP
>>> served = await plane.predict(ModelRef("half"), "", {"x": x}, entrypoint="REST")  # doctest: +SKIP
>>> served.version, served.value["y"]                                      # doctest: +SKIP

Two hook points, for features above plain TF Serving (canary, shadow, capture):

* **Routing** - ``plane.routing``: a :data:`RoutingPolicy` ``policy(model, available) -> version``
  chooses the version of every *unpinned* predict / classify / regress / multi_inference (no
  version, no label); ``available`` is the ascending tuple of AVAILABLE versions, never empty.
  It runs under the model manager's lock: keep it cheap. Default :func:`highest_version`
  (TF Serving's rule). Pinned requests, status and metadata are never routed.
* **Observers** - ``remove = plane.add_observer(fn)``: ``fn(record)`` is called after every
  predict / classify / regress / multi_inference, from any front end, served or failed, with a
  frozen :class:`InferenceRecord` (api, model, the version that served, signature, pinned, inputs,
  outputs, latency, error, entrypoint). It runs on the serving loop: keep it cheap. An observer's
  exception is logged and counted in ``plane.observer_failures``, never raised to the request.

:mod:`.tf_serving` builds TF Serving's status and metadata messages both TF Serving front ends send.
"""

from __future__ import annotations

from ..core.manager import VersionStatus
from .plane import DataPlane
from .types import (
    DEFAULT_SIGNATURE,
    InferenceRecord,
    InferenceTask,
    ModelMetadata,
    ModelRef,
    Observer,
    RoutingPolicy,
    Served,
    highest_version,
)

__all__ = [
    "DataPlane", "ModelRef", "InferenceTask", "Served", "ModelMetadata", "VersionStatus",
    "InferenceRecord", "RoutingPolicy", "Observer", "highest_version", "DEFAULT_SIGNATURE",
]
