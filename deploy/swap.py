"""Verified, zero-downtime hot-swap of model versions, and rollback.

A swap only ever talks to the server through TF Serving's public APIs (GetModelStatus,
GetModelMetadata, Predict, HandleReloadConfigRequest) and the on-disk contract (numeric version
dirs under the model's base path), so it works the same against tfship-model-server, the Docker
image and the real ``tensorflow/serving``.

Two ways a server can pick its default version, two swap plans:

* **latest-N policy** (no label): the highest AVAILABLE version answers unlabelled requests, so a
  version becomes the default the moment the server has loaded it. tfship therefore proves the
  version *before* it is visible: export into a staging dir the server does not watch, load it
  in-process with tfship's TF-Serving-compatible runtime and compare with the exported reference
  samples, then publish it atomically (one rename), wait until the server reports it AVAILABLE and
  re-check parity against that exact version on the server. TF Serving loads the new version
  before unloading the old one, so no request fails.
* **labels** (``--label stable``): the server is started with a model config file. The version is
  published, added to the config's specific versions (push 1), loaded, parity-checked on the
  server by version number, and only then the label is moved (push 2: TF Serving refuses a label
  on a version that is not loaded), and the old version is dropped (push 3).

Every outcome is appended to the swap history (:mod:`tfship.deploy.history`). A version that fails
to load or fails parity never becomes the default: it is moved to ``MODELS_DIR/.tfship/quarantine``
and the swap raises :class:`~tfship.errors.SwapError` carrying the :class:`SwapRecord`.

>>> from tfship.deploy.swap import SwapOptions, swap
>>> options = SwapOptions(url="grpc://127.0.0.1:8500")
>>> record = swap("models", "mnist", "mnist_v2.keras", options=options)  # doctest: +SKIP
>>> record.to_version, record.publish_to_serving_s  # doctest: +SKIP
(4, 0.83)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfship.deploy.plan import SwapOptions, SwapPlan, SwapRecord, signature_differences

from tfship.errors import SwapError

__all__ = ["SwapOptions", "swap", "rollback", "signature_differences", "SwapRecord"]


# --------------------------------------------------------------------------- public API


def swap(
    models_dir: str | os.PathLike[str],
    name: str,
    new_model: Any = None,
    *,
    version: int | None = None,
    options: SwapOptions,
    export_kwargs: Mapping[str, Any] | None = None,
) -> SwapRecord:
    """Make a new version of ``name`` the served default, verified, without dropping a request.

    ``new_model`` is anything :func:`tfship.export.export_model` takes (a Keras model or a path);
    or pass ``version=`` for a version already exported under ``models_dir/name`` (or in the
    staging dir). Returns the history record of a promotion; raises :class:`SwapError` (with
    ``.record``) when the swap was refused or failed, after the old version was kept serving.
    """
    if (new_model is None) == (version is None):
        raise SwapError("Pass either a new model to export or version= of an exported one (not both).")
    models_dir = Path(models_dir)
    plan = _plan(models_dir, name, options)
    with plan.client() as client:
        current = plan.current_default(client)
        staged = plan.stage(new_model, version, export_kwargs)
        plan.guard(client, current, staged)
        return plan.promote(client, current, staged)


def rollback(
    models_dir: str | os.PathLike[str],
    name: str,
    *,
    options: SwapOptions,
    to_version: int | None = None,
) -> SwapRecord:
    """Return the default (or the label) to the previous good version.

    The target is ``to_version`` or the version the last promotion replaced (from the history).
    Its dir must still be on disk (see ``SwapOptions.retention``).
    """
    models_dir = Path(models_dir)
    plan = _plan(models_dir, name, options)
    with plan.client() as client:
        current = plan.current_default(client)
        target = to_version if to_version is not None else plan.previous_good(current)
        return plan.roll_back_to(client, current, target)


def _plan(models_dir: Path, name: str, options: SwapOptions) -> SwapPlan:
    """A fleet's plan when the URL names several replicas (every step on every replica)."""
    from tfship.client.endpoints import parse_target

    if parse_target(options.url).several:
        from tfship.deploy.fleet import FleetPlan

        return FleetPlan(models_dir, name, options)
    return SwapPlan(models_dir, name, options)
