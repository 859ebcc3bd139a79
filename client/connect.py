"""``connect(url)``: the one entry point that picks the transport from the URL scheme."""

from __future__ import annotations

from collections.abc import Sequence

from tfship.client.base import Client
from tfship.client.config import ClientConfig
from tfship.client.endpoints import parse_target

__all__ = ["connect"]


def connect(url: str | Sequence[str], config: ClientConfig | None = None) -> Client:
    """A client for ``grpc://host:port``, ``grpcs://host:port``, ``http://host:port`` or ``https://``.

    Several replicas of one model server: ``grpc://a:8500,b:8500,c:8500`` (or a list of URLs), or
    a DNS name with one address per replica, ``dns:///models-headless.ns.svc:8500`` (a Kubernetes
    headless Service; ``dns+http:///NAME:8501`` for REST). Calls are then balanced per call
    (gRPC's ``round_robin`` policy, not one pinned HTTP/2 connection), a call that finds a replica
    gone is retried on another one within the :class:`RetryPolicy` and the call's deadline, and
    :meth:`Client.replicas` gives one client per replica.

    ``v2+grpc://``, ``v2+http://`` (and ``v2+`` before any form above) speak the Open Inference
    Protocol (KServe V2) instead, to Triton, KServe, MLServer or tfship-model-server's V2 front
    ends, with the same API (see :mod:`tfship.client.v2_transport` for how versions, labels and
    signatures map).

    Use it as a context manager so channels and connection pools are closed::

        with connect("grpc://127.0.0.1:8500") as client:
            y = client.predict("half_plus_two", np.array([1.0, 2.0], np.float32))
    """
    config = config or ClientConfig()
    target = parse_target(url)
    if target.protocol == "v2":
        from tfship.client.v2_transport import V2GrpcClient, V2RestClient

        return V2GrpcClient(target, config) if target.is_grpc else V2RestClient(target, config)
    if target.is_grpc:
        from tfship.client.grpc_transport import GrpcClient

        return GrpcClient(target, config)
    from tfship.client.rest_transport import RestClient

    return RestClient(target, config)
