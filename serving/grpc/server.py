"""The gRPC server: grpc.aio on the server's event loop, unlimited message sizes, both services.

No thread per call: the servicers are coroutines (service.py) and what blocks goes to the
ServingLoop's bounded executor. ``maximum_concurrent_rpcs`` stays unlimited, as in TF Serving;
``--grpc_max_threads`` sizes that executor (see main.py).
"""

from __future__ import annotations

from typing import Any

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from ..core.server_core import ServerCore
from ..data_plane import DataPlane
from ..event_loop import ServingLoop
from .allocator import keep_freed_heap
from .health import add_health_service
from .predict_request import read_predict_request, request_reader
from .service import ModelServicer, PredictionServicer

__all__ = [
    "build_grpc_server", "parse_channel_arguments", "prediction_service_handler", "model_service_handler",
    "MAX_MESSAGE_SIZE",
]

MAX_MESSAGE_SIZE = 2**31 - 1


def parse_channel_arguments(text: str) -> list[tuple[str, Any]]:
    """``k=v,k=v`` -> grpc options; int-looking values become ints (server.cc)."""
    options: list[tuple[str, Any]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        try:
            options.append((key.strip(), int(value)))
        except ValueError:
            options.append((key.strip(), value.strip()))
    return options


def build_grpc_server(
    core: ServerCore,
    serving_loop: ServingLoop,
    *,
    channel_arguments: str = "",
    tensor_content: bool = False,
    health_check: bool = False,
    data_plane: DataPlane | None = None,
    rollout_admin: bool = True,
) -> grpc.aio.Server:
    """A ``grpc.aio.Server`` with PredictionService and ModelService; add ports, then start it.

    Call on ``serving_loop``'s thread (grpc.aio binds the server to the running loop).
    """
    keep_freed_heap()  # large requests: ~3 ms less CPU per 3 MB message (see allocator.py)
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
        ("grpc.so_reuseport", 0),
    ]
    options += parse_channel_arguments(channel_arguments)
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=None)
    plane = data_plane if data_plane is not None else DataPlane(core, serving_loop)
    server.add_generic_rpc_handlers((
        prediction_service_handler(
            PredictionServicer(core, serving_loop, tensor_content=tensor_content, data_plane=plane)),
        model_service_handler(
            ModelServicer(core, serving_loop, tensor_content=tensor_content, data_plane=plane)),
    ))
    if rollout_admin:
        server.add_generic_rpc_handlers((rollout_handler(core),))
    if health_check:
        add_health_service(server)
    return server


def rollout_handler(core: ServerCore) -> grpc.GenericRpcHandler:
    """tfship's rollout admin (:mod:`serving.rollout.admin`): JSON bytes in and out, no proto."""
    from tfship.errors import ServingError

    from ..rollout.admin import GRPC_SERVICE, get_json, set_json
    from .status import abort

    def method(fn: Any) -> Any:
        async def call(request: bytes, context: Any) -> bytes:
            try:
                return fn(core.rollout, request)  # type: ignore[no-any-return]
            except ServingError as exc:
                await abort(context, exc)

        return grpc.unary_unary_rpc_method_handler(call)

    return grpc.method_handlers_generic_handler(
        GRPC_SERVICE, {"GetRollout": method(get_json), "SetRollout": method(set_json)})


def prediction_service_handler(servicer: PredictionServicer) -> grpc.GenericRpcHandler:
    """tensorflow.serving.PredictionService, as the generated ``add_..._to_server`` registers it,
    except that Predict's request deserializer keeps input tensors as zero-copy views
    (:mod:`.predict_request`) and that bytes no request parses from reach the servicer, which
    answers INVALID_ARGUMENT (grpcio's own answer to a failing deserializer is INTERNAL)."""
    methods: dict[str, tuple[Any, Any]] = {
        "Classify": (request_reader(classification_pb2.ClassificationRequest),
                     classification_pb2.ClassificationResponse),
        "Regress": (request_reader(regression_pb2.RegressionRequest), regression_pb2.RegressionResponse),
        "Predict": (read_predict_request, predict_pb2.PredictResponse),
        "MultiInference": (request_reader(inference_pb2.MultiInferenceRequest),
                           inference_pb2.MultiInferenceResponse),
        "GetModelMetadata": (request_reader(get_model_metadata_pb2.GetModelMetadataRequest),
                             get_model_metadata_pb2.GetModelMetadataResponse),
    }
    return _service_handler("tensorflow.serving.PredictionService", servicer, methods)


def model_service_handler(servicer: ModelServicer) -> grpc.GenericRpcHandler:
    """tensorflow.serving.ModelService, as the generated ``add_..._to_server`` registers it, except
    that bad request bytes reach the servicer (INVALID_ARGUMENT, not grpcio's INTERNAL)."""
    methods: dict[str, tuple[Any, Any]] = {
        "GetModelStatus": (request_reader(get_model_status_pb2.GetModelStatusRequest),
                           get_model_status_pb2.GetModelStatusResponse),
        "HandleReloadConfigRequest": (request_reader(model_management_pb2.ReloadConfigRequest),
                                      model_management_pb2.ReloadConfigResponse),
    }
    return _service_handler("tensorflow.serving.ModelService", servicer, methods)


def _service_handler(service: str, servicer: Any, methods: dict[str, tuple[Any, Any]]) -> grpc.GenericRpcHandler:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=deserialize,
            response_serializer=response.SerializeToString,
        )
        for name, (deserialize, response) in methods.items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)
