"""tfship-model-server: a TensorFlow-Serving-compatible model server (gRPC + REST) in Python.

Public API (imported lazily; nothing here imports TensorFlow until used):

* :func:`main` - the ``tfship-model-server`` console script (TF Serving's flags).
* :class:`ModelServer` - the whole server in-process: ``ModelServer.from_flags([...]).start()``.

Running the server as a subprocess or a container and waiting for it is orchestration: see
:mod:`tfship.deploy.launch` (what ``tfship serve`` uses).

Subpackages: ``core`` (versions, manager, config application), ``data_plane`` (every model API
once, transport-free, with the routing and observer hooks; ``ModelServer.data_plane``), the front
ends over it ``grpc`` and ``rest`` (thin adapters that never import each other), ``runtime``
(loading/executing SavedModels), ``config`` (config file formats).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["main", "ModelServer"]

_LAZY = {
    "main": "tfship.serving.main",
    "ModelServer": "tfship.serving.main",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfship.serving' has no attribute {name!r}")
