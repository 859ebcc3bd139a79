"""Orchestration a user runs, on top of export, serving and client.

* :mod:`tfship.deploy.launch` - start ``tfship-model-server`` as a subprocess or a server container
  and wait until every model is AVAILABLE (one readiness wait: GetModelStatus through the client);
* :mod:`tfship.deploy.docker` - ``Dockerfile.serving`` build contexts, image builds, containers;
* :mod:`tfship.deploy.swap` (+ ``history``, ``traffic``) - verified hot-swap and rollback, its steps in
  :mod:`tfship.deploy.plan` (shared with the fleet);
* :mod:`tfship.deploy.fleet` - the same over every replica of a fleet; :mod:`tfship.deploy.local_fleet`
  (+ :mod:`tfship.deploy.nginx`) - N replicas on loopback with nginx in front;
* :mod:`tfship.deploy.demo` - ``tfship demo``; :mod:`tfship.deploy.pytest_plugin` - the pytest fixtures;
* :mod:`tfship.deploy.k8s` - Kubernetes and KServe manifests for a serving image (``tfship k8s render``).

Importing this package imports nothing else (the pytest plugin is loaded by every pytest run,
also in TensorFlow-free client installs); the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["start_model_server", "start_local_server", "LocalServer", "ModelServer", "discover_models"]

_LAZY = {name: "tfship.deploy.launch" for name in __all__}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfship.deploy' has no attribute {name!r}")
