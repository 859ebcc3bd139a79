"""PredictionService and ModelService servicers (spec 5) on tensorflow-serving-api's messages.

Each RPC resolves the ModelSpec (spec 4), takes a reference on the version for the duration of
the call (so unloading drains it), runs the servable and maps ServingErrors 1:1 to gRPC codes.
Messages longer than 1024 chars are cut and suffixed ``...TRUNCATED`` like grpc_status_util.cc.

The methods are coroutines on the server's event loop (grpc.aio): requests and responses are
decoded and built on the loop; Predict awaits the servable (its batcher, or one hop to the model
executor); status and metadata never leave the loop; what blocks otherwise (Classify/Regress/
MultiInference runs, config reloads) runs on the loop's executor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfship.errors import Code, InvalidArgumentError, ServingError, UnknownError
from tfship.wire.tensor import to_tensor_proto

from ..core.method_check import check_method_name
from ..core.server_core import ServerCore, resolve_model_spec
from ..event_loop import ServingLoop
from .predict_request import MalformedRequest, predict_inputs
from .status import abort

__all__ = ["PredictionServicer", "ModelServicer", "model_status_response", "metadata_response"]

log = logging.getLogger("tfship.serving")

_DEFAULT_SIGNATURE = "serving_default"


def _fill_spec(out: Any, name: str, version: int, signature: str | None) -> None:
    out.name = name
    out.version.value = version
    if signature is not None:
        out.signature_name = signature or _DEFAULT_SIGNATURE


def _timeout(context: Any) -> float | None:
    remaining = context.time_remaining()
    # grpc reports a huge number when the client set no deadline
    return remaining if remaining is not None and remaining < 1e8 else None


def model_status_response(core: ServerCore, name: str, version: int | None) -> Any:
    """GetModelStatusResponse for ``name`` (all versions, highest first) or one version."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for st in core.manager.status(name, version):
        entry = response.model_version_status.add()
        entry.version = st.version
        entry.state = int(st.state)
        entry.status.SetInParent()  # upstream always fills status (OK + "" when healthy)
        if st.error is not None:
            entry.status.error_code = int(st.error.code)
            entry.status.error_message = st.error.message
    return response


def metadata_response(handle: Any) -> Any:
    """GetModelMetadataResponse with every SignatureDef of the loaded MetaGraph (spec 5.4)."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _fill_spec(response.model_spec, handle.name, handle.version, None)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in handle.servable.signature_defs.items():
        sig_map.signature_def[key].CopyFrom(sig)
    response.metadata["signature_def"].Pack(sig_map)
    return response


def check_metadata_fields(fields: Any) -> None:
    if len(fields) == 0:
        raise InvalidArgumentError("GetModelMetadataRequest must specify at least one metadata_field")
    for f in fields:
        if f != "signature_def":
            raise InvalidArgumentError(f"Metadata field {f} is not supported")


class _Base:
    def __init__(self, core: ServerCore, serving_loop: ServingLoop, *, tensor_content: bool = False) -> None:
        self.method_name_check = core.options.enable_signature_method_name_check
        self.core = core
        self.loop = serving_loop
        self.metrics = core.metrics
        self.typed = not tensor_content
        self.inflight = self.metrics.in_flight("GRPC") if self.metrics is not None else None

    async def _call(
        self, api: str, request: Any, context: Any, fn: Callable[[Any], Awaitable[Any]]
    ) -> Any:
        """Acquire the version named by ``request.model_spec``, await ``fn(handle)``, map errors."""
        start = time.perf_counter()
        malformed = isinstance(request, MalformedRequest)
        model, version, status = "" if malformed else request.model_spec.name, None, "OK"
        if self.inflight is not None:
            self.inflight.inc()
        try:
            if malformed:
                raise request.error()
            with self.core.acquire_spec(request.model_spec, request.HasField("model_spec")) as h:
                version = h.version
                return await fn(h)
        except ServingError as exc:
            status = exc.code.name
            await abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - a server bug (client mistakes are ServingErrors,
            # raised by the decode layer; tests/serving/test_fuzz.py checks none lands here)
            log.exception("%s failed", api)
            status = "UNKNOWN"
            await abort(context, UnknownError(f"{type(exc).__name__}: {exc}"))
        finally:
            if self.metrics is not None:
                self.inflight.dec()  # type: ignore[union-attr]
                self.metrics.observe_request(
                    model, version, api, "GRPC", status, time.perf_counter() - start
                )


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    async def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def run(h: Any) -> Any:
            sig = request.model_spec.signature_name
            if self.method_name_check:
                check_method_name(h.servable, sig, "predict")
            inputs = predict_inputs(request)
            outputs = await h.servable.predict_async(
                sig, inputs, list(request.output_filter), _timeout(context), self.loop
            )
            response = predict_pb2.PredictResponse()
            for alias, value in outputs.items():
                to_tensor_proto(value, response.outputs[alias], typed=self.typed)
            _fill_spec(response.model_spec, request.model_spec.name, h.version, sig)
            return response

        return await self._call("predict", request, context, run)

    async def _examples_call(self, api: str, request: Any, context: Any) -> Any:
        """Classify / Regress: tf.Examples in, one result per example out (spec 5.2)."""
        from tfship.serving.runtime.examples import serialized_examples

        timeout = _timeout(context)  # read on the loop: the context belongs to it

        def run(h: Any) -> Any:
            sig = request.model_spec.signature_name
            if self.method_name_check:
                check_method_name(h.servable, sig, api)
            examples = serialized_examples(request.input)
            if api == "classify":
                response = classification_pb2.ClassificationResponse()
                fill_classification(response.result, h.servable.classify(sig, examples, timeout))
            else:
                response = regression_pb2.RegressionResponse()
                fill_regression(response.result, h.servable.regress(sig, examples, timeout))
            _fill_spec(response.model_spec, request.model_spec.name, h.version, sig)
            return response

        async def run_blocking(h: Any) -> Any:
            return await self.loop.run_blocking(run, h)

        return await self._call(api, request, context, run_blocking)

    async def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._examples_call("classify", request, context)

    async def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._examples_call("regress", request, context)

    async def MultiInference(self, request: Any, context: Any) -> Any:  # noqa: N802
        if isinstance(request, MalformedRequest):
            await abort(context, request.error())
        timeout = _timeout(context)
        try:
            return await self.loop.run_blocking(self._multi_inference, request, timeout)
        except ServingError as exc:
            await abort(context, exc)

    def _multi_inference(self, request: Any, timeout: float | None) -> Any:
        from tfship.serving.runtime.examples import serialized_examples

        start = time.perf_counter()
        status, version = "OK", None
        try:
            if not request.tasks:
                raise InvalidArgumentError("Tasks is empty.")
            first = request.tasks[0]
            name, _, _ = resolve_model_spec(first.model_spec, first.HasField("model_spec"))
            for task in request.tasks:
                if not task.model_spec.name:
                    raise InvalidArgumentError("Found ModelSpec with an empty model name.")
                if task.model_spec.name != name:
                    raise InvalidArgumentError("All ModelSpecs in a MultiInferenceRequest must "
                                               "access the same model name.")
            with self.core.acquire_spec(first.model_spec) as h:
                version = h.version
                examples = serialized_examples(request.input)
                tasks = [(t.model_spec.signature_name, t.method_name) for t in request.tasks]
                results = h.servable.multi_inference(tasks, examples, timeout)
                response = inference_pb2.MultiInferenceResponse()
                for task, result in zip(request.tasks, results, strict=True):
                    out = response.results.add()
                    out.model_spec.name = name
                    out.model_spec.version.value = h.version
                    out.model_spec.signature_name = task.model_spec.signature_name
                    if isinstance(result, _np_ndarray()):
                        fill_regression(out.regression_result, result)
                    else:
                        fill_classification(out.classification_result, result)
                return response
        except ServingError as exc:
            status = exc.code.name
            raise
        except Exception as exc:  # noqa: BLE001 - a server bug, as in _call
            log.exception("MultiInference failed")
            status = "UNKNOWN"
            raise UnknownError(f"{type(exc).__name__}: {exc}") from None
        finally:
            if self.metrics is not None and request.tasks:
                self.metrics.observe_request(request.tasks[0].model_spec.name, version,
                                             "multi_inference", "GRPC", status,
                                             time.perf_counter() - start)

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def run(h: Any) -> Any:
            check_metadata_fields(request.metadata_field)
            return metadata_response(h)

        return await self._call("get_model_metadata", request, context, run)


def _np_ndarray() -> type:
    import numpy as np

    return np.ndarray


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
        try:
            if isinstance(request, MalformedRequest):
                raise request.error()
            name, version, _ = resolve_model_spec(request.model_spec,
                                                  request.HasField("model_spec"))
            return model_status_response(self.core, name, version)
        except ServingError as exc:
            await abort(context, exc)

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
