"""The rollout controller: the routing policy and the observer a server plugs in, plus admin.

The server calls :meth:`RolloutController.route` when an unpinned request picks its version and
:meth:`RolloutController.observe` after every served call; the admin route calls :meth:`get` and
:meth:`set`. Nothing here knows gRPC or HTTP.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfship.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError

from .policy import CANARY, STABLE, RolloutSettings, RoutingPolicy
from .shadow import ShadowJob, ShadowRunner
from .window import Window

__all__ = ["RolloutController", "ServedCall"]


@dataclass(frozen=True)
class ServedCall:
    """One served call, with the fields of the data plane's ``InferenceRecord`` (its observers'
    argument), so either can be observed."""

    api: str  # "predict", "classify", ...
    model: str
    version: int | None  # the version that answered (None: the call failed before one was chosen)
    signature_name: str
    pinned: bool  # the request named a version or a label
    inputs: Any = None
    outputs: Any = None
    latency: float = 0.0
    error: Any = None  # the ServingError, None when it succeeded
    entrypoint: str = ""


class RolloutController:
    """Canary routing, shadow sampling and per-step windows for every model of one server.

    ``labels(model)``: the model's version labels; ``acquire(model, version)``: a handle on a
    loaded version; ``loaded(model)``: the AVAILABLE version numbers (``None``: unknown model);
    ``busy()``: the server is saturated (shadow runs are then dropped); ``metrics``: a
    :class:`~tfship.serving.metrics.ServerMetrics` for the Prometheus side.
    """

    def __init__(
        self,
        labels: Callable[[str], Mapping[str, int]],
        acquire: Callable[[str, int], Any],
        loaded: Callable[[str], set[int] | None],
        *,
        busy: Callable[[], bool] = lambda: False,
        metrics: Any = None,
        rng: Any = None,
    ) -> None:
        self.policy = RoutingPolicy(labels, rng)
        self._loaded = loaded
        self._metrics = metrics
        self._windows: dict[str, Window] = {}
        self._generations = itertools.count(1)
        self._admin = threading.Lock()
        self._plane: Any = None
        self._plane_routing: Any = None
        self._remove_observer: Callable[[], None] | None = None
        self.shadow = ShadowRunner(
            acquire, busy=busy,
            on_result=metrics.observe_shadow if metrics is not None else None,
            on_drop=metrics.count_shadow_dropped if metrics is not None else None,
        )

    # ------------------------------------------------------------------ data-plane hooks

    def attach(self, plane: Any) -> None:
        """Serve through ``plane`` (a ``serving.data_plane.DataPlane``): while any model is under
        rollout, its routing policy is :meth:`choose` and :meth:`observe` watches its calls;
        otherwise the plane runs exactly as without a rollout (TF Serving's default, no observer)."""
        with self._admin:
            self._plane = plane
            self._plane_routing = plane.routing
            if self.policy.models():
                self._install()

    def _install(self) -> None:
        if self._plane is not None and self._remove_observer is None:
            self._plane.routing = self.choose
            self._remove_observer = self._plane.add_observer(self.observe)

    def _uninstall(self) -> None:
        if self._plane is not None and self._remove_observer is not None:
            self._plane.routing = self._plane_routing
            self._remove_observer()
            self._remove_observer = None

    def active(self, model: str) -> bool:
        """``model`` is under rollout here (the servers skip building a ServedCall otherwise)."""
        return self.policy.get(model) is not None

    def route(self, model: str) -> int | None:
        """The version an unpinned request of ``model`` goes to; ``None``: the server's default."""
        return self.policy.route(model)

    def choose(self, model: str, available: tuple[int, ...]) -> int:
        """The data plane's routing policy: ``available`` is ascending and never empty. Called under
        the model manager's lock, so it reads the labels without taking it."""
        routed = self.policy.route(model)
        return routed if routed is not None and routed in available else available[-1]

    def observe(self, call: Any) -> None:
        """Record an unpinned call (a :class:`ServedCall` or the data plane's ``InferenceRecord``)
        in its model's window, and maybe shadow it on the candidate."""
        if call.pinned:
            return
        settings = self.policy.get(call.model)
        window = self._windows.get(call.model)
        if settings is None or window is None:
            return
        window.served(call.version, call.latency, call.error is not None)
        if call.error is not None or call.outputs is None or call.api != "predict" \
                or not self.policy.sample(settings.shadow_percent) or settings.expired:
            return
        stable, canary = self.policy.versions(call.model)
        if canary is None or call.version != stable or canary == stable:
            return
        # the request's arrays may be views into its buffers: the lane keeps its own copy
        inputs = {k: np.array(v, copy=True) for k, v in call.inputs.items()}
        self.shadow.offer(ShadowJob(call.model, canary, call.signature_name, inputs, call.outputs, window))

    # ------------------------------------------------------------------ admin

    def get(self, model: str | None = None) -> dict[str, Any]:
        """Every model under rollout (or one model, under rollout or not) and what it observed."""
        if model is not None:
            return {"models": {model: self._state(model)}}
        return {"models": {name: self._state(name) for name in sorted(self.policy.models())}}

    def set(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``{"model", "canary_percent", "shadow_percent", "step", "lease_seconds"}``, or
        ``{"model", "renew": true}`` (the lease starts again, the window stays), or
        ``{"model", "clear": true}``.

        New settings and a fresh window replace the old ones at once; returns the new state.
        """
        if not isinstance(request, Mapping):
            raise InvalidArgumentError("The rollout request must be a JSON object.")
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidArgumentError('The rollout request needs "model": the model name.')
        unknown = set(request) - {"model", "canary_percent", "shadow_percent", "step", "lease_seconds", "clear",
                                  "renew"}
        if unknown:
            raise InvalidArgumentError(f"Unknown rollout field(s) {sorted(unknown)}; expected model, "
                                       "canary_percent, shadow_percent, step, lease_seconds, renew or clear.")
        if self._loaded(model) is None:
            raise NotFoundError(f"Model {model!r} is not served here.", model=model)
        with self._admin:
            if request.get("clear"):
                self.policy.set(model, None)
                self._windows.pop(model, None)
                if not self.policy.models():
                    self._uninstall()
                return self.get(model)
            if request.get("renew"):
                current = self.policy.get(model)
                if current is None:
                    raise FailedPreconditionError(f"Model {model!r} has no rollout to renew here (the "
                                                  "replica restarted, or the rollout was cleared).", model=model)
                self.policy.set(model, current.renewed())
                return self.get(model)
            settings = RolloutSettings(
                canary_percent=request.get("canary_percent", 0.0),
                shadow_percent=request.get("shadow_percent", 0.0),
                step=request.get("step", ""),
                generation=next(self._generations),
                lease_seconds=request.get("lease_seconds", 0.0),
            ).renewed()
            stable, canary = self.policy.versions(model)
            if stable is None:
                raise FailedPreconditionError(
                    f"Model {model!r} has no {STABLE!r} version label: a rollout needs the model config to "
                    f"label the serving version {STABLE!r} (and the candidate {CANARY!r}).", model=model)
            if (settings.canary_percent or settings.shadow_percent) and canary is None:
                raise FailedPreconditionError(
                    f"Model {model!r} has no {CANARY!r} version label: load the candidate and label it "
                    f"{CANARY!r} before sending it traffic.", model=model)
            # window first: a request routed under the new settings must find the new window
            self._install()
            self._windows[model] = Window()
            self.policy.set(model, settings)
            return self.get(model)

    def _state(self, model: str) -> dict[str, Any]:
        settings = self.policy.get(model)
        window = self._windows.get(model)
        stable, canary = self.policy.versions(model)
        loaded = self._loaded(model)
        return {
            "active": settings is not None,
            "stable": stable,
            "candidate": canary,
            "loaded": sorted(loaded) if loaded is not None else None,
            "canary_percent": settings.canary_percent if settings else 0.0,
            "shadow_percent": settings.shadow_percent if settings else 0.0,
            "step": settings.step if settings else "",
            "generation": settings.generation if settings else 0,
            "lease_seconds": settings.lease_seconds if settings else 0.0,
            "expired": settings.expired if settings else False,
            "window": window.snapshot() if window is not None and settings is not None else None,
        }

    def close(self) -> None:
        self.shadow.close()
