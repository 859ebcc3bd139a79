"""Names of the rollout admin protocol, shared by the server (serving.rollout.admin) and the
rollout tool (deploy.rollout): JSON objects as the messages, on gRPC and REST.

TF Serving has none of these: UNIMPLEMENTED (gRPC) or 404 (REST) means the target cannot shadow
or split traffic.
"""

from __future__ import annotations

__all__ = ["GRPC_SERVICE", "GET_METHOD", "SET_METHOD", "REST_PREFIX"]

GRPC_SERVICE = "tfship.serving.RolloutService"
GET_METHOD = f"/{GRPC_SERVICE}/GetRollout"
SET_METHOD = f"/{GRPC_SERVICE}/SetRollout"
REST_PREFIX = "/tfship/v1/rollout"
