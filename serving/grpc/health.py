"""``grpc.health.v1.Health`` (``--enable_grpc_healthcheck_service``) without an extra dependency.

The two messages are tiny (``HealthCheckRequest{string service = 1}``,
``HealthCheckResponse{ServingStatus status = 1}``), so they are encoded by hand; the service is
registered through grpc's generic handler API. The overall server ("") and the two services
report SERVING under the short names upstream registers (server.cc:
``SetServingStatus("ModelService", true)``, ``SetServingStatus("PredictionService", true)``);
any other name, the fully-qualified ``tensorflow.serving.*`` ones included, is NOT_FOUND, as from
gRPC's default health service. The server binds its port only once every model is AVAILABLE, so
SERVING means "all models loaded" (see deploy/k8s/probes.py).
"""

from __future__ import annotations

from typing import Any

import grpc

__all__ = ["add_health_service", "SERVICES"]

SERVING, SERVICE_UNKNOWN = 1, 3
SERVICES = ("", "ModelService", "PredictionService")


def _service_name(request: bytes) -> str:
    # field 1, wire type 2 (tag 0x0a), varint length, utf-8 bytes; other fields are skipped
    pos, name = 0, ""
    while pos < len(request):
        tag = request[pos]
        pos += 1
        length, shift = 0, 0
        while True:
            b = request[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if tag == 0x0A:
            name = request[pos:pos + length].decode("utf-8", errors="replace")
        pos += length if tag & 0x07 == 2 else 0
    return name


async def _check(request: bytes, context: Any) -> bytes:
    try:
        name = _service_name(request)
    except IndexError:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed HealthCheckRequest")
    if name not in SERVICES:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {name}")
    return bytes([0x08, SERVING])


def add_health_service(server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(_check)},
    )
    server.add_generic_rpc_handlers((handler,))
