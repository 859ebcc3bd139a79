"""PredictionService and ModelService servicers (TF Serving compat spec §5) on tensorflow-serving-api's messages.

A thin adapter over :class:`serving.data_plane.DataPlane`: each RPC decodes its request into the
plane's values (a ModelRef, numpy inputs, example bytes), awaits the plane, and encodes the answer;
the plane's ServingErrors become gRPC codes. Messages longer than 1024 chars are cut and suffixed
``...TRUNCATED`` like grpc_status_util.cc.

The methods are coroutines on the server's event loop (grpc.aio); the deadline is read here, on
the loop, because the context belongs to it. What blocks (model runs, config reloads) runs on the
loop's executor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfship.errors import Code, InvalidArgumentError, ServingError
from tfship.wire.tensor import to_tensor_proto

from ..core.server_core import ServerCore
from ..data_plane import DataPlane, InferenceTask, ModelRef
from ..data_plane.tf_serving import metadata_response, status_response
from ..event_loop import ServingLoop
from ..runtime.examples import serialized_examples
from .predict_request import MalformedRequest, predict_inputs
from .status import abort

__all__ = ["PredictionServicer", "ModelServicer"]

log = logging.getLogger("tfship.serving")

_ENTRYPOINT = "GRPC"


def _timeout(context: Any) -> float | None:
    remaining = context.time_remaining()
    # grpc reports a huge number when the client set no deadline
    return remaining if remaining is not None and remaining < 1e8 else None


def _fill_spec(out: Any, served: Any) -> None:
    out.name = served.model
    out.version.value = served.version
    out.signature_name = served.signature_name


class _Base:
    def __init__(
        self, core: ServerCore, serving_loop: ServingLoop, *, tensor_content: bool = False,
        data_plane: DataPlane | None = None,
    ) -> None:
        self.core = core
        self.loop = serving_loop
        self.plane = data_plane if data_plane is not None else DataPlane(core, serving_loop)
        self.metrics = core.metrics
        self.typed = not tensor_content
        self.inflight = self.metrics.in_flight(_ENTRYPOINT) if self.metrics is not None else None

    async def _serve(
        self, api: str, request: Any, context: Any, call: Callable[[ModelRef], Awaitable[Any]],
        ref_of: Callable[[Any], ModelRef] = lambda r: ModelRef.from_spec(r.model_spec, r.HasField("model_spec")),
    ) -> Any:
        """Decode the request's ModelSpec, await ``call(ref)`` (the plane), answer its errors."""
        if self.inflight is not None:
            self.inflight.inc()
        try:
            try:
                if isinstance(request, MalformedRequest):
                    raise request.error()
                ref = ref_of(request)
            except Exception as exc:  # noqa: BLE001 - the plane records and maps it
                await abort(context, self.plane.reject(api, ModelRef(""), exc, entrypoint=_ENTRYPOINT))
            try:
                return await call(ref)
            except ServingError as exc:
                await abort(context, exc)
        finally:
            if self.inflight is not None:
                self.inflight.dec()


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    async def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802
        timeout = _timeout(context)

        async def call(ref: ModelRef) -> Any:
            served = await self.plane.predict(
                ref, request.model_spec.signature_name, lambda _sigs: predict_inputs(request),
                list(request.output_filter), timeout, entrypoint=_ENTRYPOINT)
            response = predict_pb2.PredictResponse()
            for alias, value in served.value.items():
                to_tensor_proto(value, response.outputs[alias], typed=self.typed)
            _fill_spec(response.model_spec, served)
            return response

        return await self._serve("predict", request, context, call)

    async def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
        timeout = _timeout(context)

        async def call(ref: ModelRef) -> Any:
            served = await self.plane.classify(
                ref, request.model_spec.signature_name, lambda _sigs: serialized_examples(request.input),
                timeout, entrypoint=_ENTRYPOINT)
            response = classification_pb2.ClassificationResponse()
            fill_classification(response.result, served.value)
            _fill_spec(response.model_spec, served)
            return response

        return await self._serve("classify", request, context, call)

    async def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
        timeout = _timeout(context)

        async def call(ref: ModelRef) -> Any:
            served = await self.plane.regress(
                ref, request.model_spec.signature_name, lambda _sigs: serialized_examples(request.input),
                timeout, entrypoint=_ENTRYPOINT)
            response = regression_pb2.RegressionResponse()
            fill_regression(response.result, served.value)
            _fill_spec(response.model_spec, served)
            return response

        return await self._serve("regress", request, context, call)

    async def MultiInference(self, request: Any, context: Any) -> Any:  # noqa: N802
        timeout = _timeout(context)

        def first_ref(r: Any) -> ModelRef:
            # an empty task list is the plane's error; a first task without a ModelSpec is ours
            return ModelRef.from_spec(r.tasks[0].model_spec, r.tasks[0].HasField("model_spec")) if r.tasks \
                else ModelRef("")

        async def call(first: ModelRef) -> Any:
            tasks = [InferenceTask(ModelRef.from_spec(t.model_spec) if i else first,
                                   t.model_spec.signature_name, t.method_name)
                     for i, t in enumerate(request.tasks)]
            served = await self.plane.multi_inference(
                tasks, lambda _sigs: serialized_examples(request.input), timeout, entrypoint=_ENTRYPOINT)
            response = inference_pb2.MultiInferenceResponse()
            for task, result in zip(tasks, served.value, strict=True):
                out = response.results.add()
                out.model_spec.name = served.model
                out.model_spec.version.value = served.version
                out.model_spec.signature_name = task.signature_name
                if isinstance(result, np.ndarray):
                    fill_regression(out.regression_result, result)
                else:
                    fill_classification(out.classification_result, result)
            return response

        return await self._serve("multi_inference", request, context, call, first_ref)

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def call(ref: ModelRef) -> Any:
            return metadata_response(self.plane.model_metadata(
                ref, list(request.metadata_field), entrypoint=_ENTRYPOINT))

        return await self._serve("get_model_metadata", request, context, call)


def fill_classification(result: Any, classification: Any) -> None:
    """ClassificationResult from a runtime ``Classification`` ([batch, n] classes and/or scores)."""
    classes, scores = classification.classes, classification.scores
    ref = scores if scores is not None else classes
    if ref is None:
        return
    batch, n = ref.shape[0], ref.shape[1]
    score_rows = scores.tolist() if scores is not None else None
    for i in range(batch):
        c = result.classifications.add()
        for j in range(n):
            cls = c.classes.add()
            if classes is not None:
                cls.label = classes[i, j]
            if score_rows is not None:
                cls.score = score_rows[i][j]


def fill_regression(result: Any, values: Any) -> None:
    for value in values.reshape(-1).tolist():
        result.regressions.add().value = value


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    async def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def call(ref: ModelRef) -> Any:
            return status_response(self.plane.model_status(ref, entrypoint=_ENTRYPOINT))

        return await self._serve("get_model_status", request, context, call)

    async def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:  # noqa: N802
        if isinstance(request, MalformedRequest):
            await abort(context, request.error())
        try:
            return await self.loop.run_blocking(self.reload_response, request)
        except ServingError as exc:
            await abort(context, exc)

    def reload_response(self, request: Any) -> Any:
        """Apply ``request.config`` (blocking: loads and unloads); the ReloadConfigResponse."""
        response = model_management_pb2.ReloadConfigResponse()
        # metric_names: the increase of each named int64 metric during the call (upstream reads
        # the first point of each; unknown names read 0)
        names = list(request.metric_names)
        before = [self._int64_metric(n) for n in names]
        which = request.config.WhichOneof("config")
        if which != "model_config_list":
            raise InvalidArgumentError(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        self.core.reload_config(request.config)
        for name, old in zip(names, before, strict=True):
            metric = response.metric.add()
            metric.name = name
            metric.int64_value_increase = self._int64_metric(name) - old
        response.status.error_code = int(Code.OK)
        return response

    def _int64_metric(self, name: str) -> int:
        return self.metrics.int64_value(name) if self.metrics is not None else 0
