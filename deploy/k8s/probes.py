"""Startup, readiness and liveness probes, and graceful termination timing.

Why the standard gRPC health service (Kubernetes' native ``grpc`` probe) is a correct readiness
signal for TF Serving, checked against upstream ``model_servers/server.cc`` and ``server_core.cc``:

* ``Server::BuildAndStart`` calls ``ServerCore::Create`` first, which loads the initial model
  config and blocks in ``WaitUntilModelsAvailable`` until the latest version of every configured
  model is AVAILABLE (or fails the start, and the process exits). Only then are the gRPC and REST
  ports bound. So while any model loads, the probe's connection is refused: not ready.
* With ``--enable_grpc_healthcheck_service`` gRPC's default health service answers SERVING for
  the overall server ``""`` (and for ``ModelService``/``PredictionService``) from the moment the
  port opens, i.e. exactly when every model is AVAILABLE. tfship-model-server follows the same
  order (serving/main.py). The probe asks for ``""``: the per-service names differ between TF
  Serving (``ModelService``) and fully-qualified spellings, the overall one does not.
* After start the status never changes while the process lives; later version changes keep a
  model available (TF Serving's AvailabilityPreservingPolicy loads the new version before
  unloading the old one), and a baked image never changes its models at all. When the server
  drains on SIGTERM the port stops accepting, so the probe fails again.

A REST ``/v1/models/NAME`` readiness probe, by contrast, answers 200 for any model the server
knows whatever its versions' states (one added later and still LOADING, one that failed to load and
reached END), the trap of tensorflow/serving#1754; and a TCP probe is "the port is open", which tells nothing more
than the gRPC one but is blind to a wedged server.

A pod that *hangs* (a frozen process, a stuck node, a long GC pause) keeps its port open, so it is
the probe's ``timeoutSeconds`` that notices: the health check gets no answer, and after
``failureThreshold`` such probes ``periodSeconds`` apart the pod leaves the Service's endpoints
(:func:`seconds_to_fail`: between 7 and 12 s for the readiness probe here, plus the time the
endpoint change takes to reach kube-proxy and client-side balancers). The liveness probe restarts
it only after about a minute (55-65 s): a pause that ends by itself should not cost a reload of
every model.

Termination: Kubernetes runs ``preStop`` (a sleep, so endpoint removal reaches every kube-proxy,
Service mesh and client-side balancer before the server stops accepting), then SIGTERM. The
container's command is the server binary itself (not the image's entrypoint script, which
runs it as a child of a shell that would swallow the signal), so SIGTERM reaches it:
tfship-model-server stops accepting and drains in-flight requests for up to ``DRAIN_SECONDS``.
``terminationGracePeriodSeconds`` covers the sleep, the drain and a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["ProbeTiming", "probes", "termination", "seconds_to_fail"]

#: how long tfship-model-server waits for in-flight requests after SIGTERM (serving/main.py)
SERVER_DRAIN_SECONDS = 30
#: seconds between startup probes while models load
STARTUP_PERIOD_SECONDS = 5


@dataclass(frozen=True)
class ProbeTiming:
    """Probe and termination timing, in seconds."""

    startup_seconds: int = 300        # longest model load the startup probe tolerates
    pre_stop_seconds: int = 10        # endpoint-propagation delay before SIGTERM
    drain_seconds: int = SERVER_DRAIN_SECONDS

    @property
    def grace_seconds(self) -> int:
        """terminationGracePeriodSeconds: preStop + drain + 5 s margin."""
        return self.pre_stop_seconds + self.drain_seconds + 5


def _grpc(port: int) -> dict[str, Any]:
    # No "service": the overall server "" (see module docstring).
    return {"grpc": {"port": port}}


def probes(grpc_port: int, timing: ProbeTiming) -> dict[str, dict[str, Any]]:
    """``startupProbe``, ``readinessProbe`` and ``livenessProbe`` for the server container."""
    return {
        # Liveness and readiness are held off until this succeeds once: a slow model load is not
        # a dead server. failureThreshold x period = the longest load allowed.
        "startupProbe": {
            **_grpc(grpc_port),
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, math.ceil(timing.startup_seconds / STARTUP_PERIOD_SECONDS)),
        },
        "readinessProbe": {
            **_grpc(grpc_port),
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "successThreshold": 1,
            "failureThreshold": 2,
        },
        # Generous: restarting a server reloads every model, which costs more than a slow answer.
        "livenessProbe": {
            **_grpc(grpc_port),
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }


def seconds_to_fail(probe: dict[str, Any]) -> tuple[int, int]:
    """Best and worst case seconds from the moment a server hangs until ``probe`` has failed
    ``failureThreshold`` times: the first failing probe may start at once or a period later,
    and each ends ``timeoutSeconds`` after it starts."""
    period, timeout = probe.get("periodSeconds", 10), probe.get("timeoutSeconds", 1)
    failures = probe.get("failureThreshold", 3)
    return (failures - 1) * period + timeout, failures * period + timeout


def termination(timing: ProbeTiming) -> dict[str, Any]:
    """``lifecycle`` of the server container (the grace period goes on the pod spec)."""
    # exec sleep rather than the newer native `sleep` action: it works on every supported
    # Kubernetes version and the TF Serving images ship coreutils.
    return {"preStop": {"exec": {"command": ["sleep", str(timing.pre_stop_seconds)]}}}
