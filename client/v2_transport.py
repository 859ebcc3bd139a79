"""The Open Inference Protocol (KServe V2) transports: ``v2+grpc://`` and ``v2+http://``.

The same :class:`~tfship.client.Client` API over Triton, KServe, MLServer or tfship-model-server's
V2 front ends. How TF Serving's notions map:

* ``version=N`` -> V2's ``model_version`` ``"N"``; ``label="stable"`` -> ``model_version``
  ``"stable"`` (tfship-model-server resolves a non-numeric version as a TF Serving label; other
  servers answer with their own error).
* ``signature="s"`` -> the request parameter ``signature_name`` (tfship-model-server's; other
  servers serve their model's one signature). V2 metadata describes one signature: it is reported
  as the signature asked for (``serving_default`` by default).
* ``output_filter`` -> the request's ``outputs``.
* ``status()`` -> the model's versions (metadata) and each one's readiness (ModelReady);
  ``wait_until_available`` works on top of it.
* ``classify``/``regress`` have no V2 equivalent: :class:`~tfship.errors.UnimplementedError`.

Requests travel as raw bytes (gRPC ``raw_input_contents``; REST the binary tensor data extension
unless ``ClientConfig.v2_binary_data`` is False). Requests and answers are built by
:mod:`tfship.wire.v2`, the same code the server uses; the classes here only do I/O, and the
module functions are shared with the asyncio client (:mod:`tfship.client.aio.v2_transport`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import numpy as np
from tfship.client.base import Client, ModelRef
from tfship.client.config import ClientConfig
from tfship.client.endpoints import Target
from tfship.client.grpc_transport import channel_setup, rpc_error
from tfship.client.rest_transport import RestReplicas, http_client_options, request_options
from tfship.client.types import ClassifyResult, ModelMetadata, SignatureInfo, TensorSpec, VersionStatus

from tfship.errors import (
    InvalidArgumentError,
    NotFoundError,
    ServingError,
    UnavailableError,
    UnimplementedError,
    code_for_http_status,
    error_for_code,
)
from tfship.wire import v2
from tfship.wire.json import loads
from tfship.wire.protos import open_inference_pb2 as pb

__all__ = [
    "V2GrpcClient", "V2RestClient", "V2_METHODS", "infer_request", "prediction", "metadata_from_v2",
    "model_path", "read_answer", "unsupported", "reload_unsupported", "version_string", "status_from_readiness",
]

SERVICE = "inference.GRPCInferenceService"
V2_METHODS = {name: f"/{SERVICE}/{name}" for name in (
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")}

# V2 datatype -> the TensorFlow dtype name a TensorSpec carries (the client's common currency).
_TF_DTYPE = {
    "BOOL": "DT_BOOL", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16", "UINT32": "DT_UINT32", "UINT64": "DT_UINT64",
    "INT8": "DT_INT8", "INT16": "DT_INT16", "INT32": "DT_INT32", "INT64": "DT_INT64", "FP16": "DT_HALF",
    "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE", "BF16": "DT_BFLOAT16", "BYTES": "DT_STRING",
}


def version_string(ref: ModelRef) -> str:
    """V2's model_version for a reference: the number, the label, or "" (the server's choice)."""
    if ref.version is not None:
        return str(int(ref.version))
    return ref.label or ""


def reload_unsupported(url: str) -> ServingError:
    """The Open Inference Protocol has no config reload (only TF Serving's gRPC ModelService has)."""
    return UnimplementedError(
        f"{url} is a V2 URL, and the Open Inference Protocol (V2) cannot reload the model config.",
        hint="Connect to the server's TF Serving gRPC port (grpc://HOST:8500) to reload its config.")


def unsupported(what: str, url: str) -> ServingError:
    return UnimplementedError(
        f"{what} has no Open Inference Protocol (V2) equivalent, and {url} is a V2 URL; call it over "
        "TF Serving's API (grpc:// or http://) or use predict().")


def infer_request(ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                  *, binary_outputs: bool = False) -> v2.InferRequest:
    """The V2 request for a predict call."""
    parameters: dict[str, Any] = {}
    if ref.signature:
        parameters["signature_name"] = ref.signature
    if binary_outputs:
        parameters["binary_data_output"] = True
    return v2.InferRequest(ref.name, version_string(ref), inputs=inputs,
                           outputs=[v2.RequestedOutput(n) for n in output_filter], parameters=parameters)


def prediction(response: v2.InferResponse) -> tuple[dict[str, np.ndarray], int | None]:
    """Outputs by name and the version that answered (None when the server's version is not a number)."""
    version = int(response.model_version) if response.model_version.isdigit() else None
    return response.outputs, version


def _spec(tensor: Any) -> TensorSpec:
    get = tensor.get if isinstance(tensor, dict) else (lambda key, default=None: getattr(tensor, key, default))
    datatype = str(get("datatype", ""))
    shape = get("shape", None)
    return TensorSpec(_TF_DTYPE.get(datatype, datatype), None if shape is None else tuple(int(d) for d in shape),
                      str(get("name", "")))


def metadata_from_v2(ref: ModelRef, name: str, versions: Sequence[str], inputs: Sequence[Any],
                     outputs: Sequence[Any]) -> ModelMetadata:
    """:class:`ModelMetadata` from V2 model metadata (REST JSON dicts or gRPC TensorMetadata).

    V2 describes one signature; it is filed under the signature the caller asked for.
    """
    numbers = sorted((int(v) for v in versions if str(v).isdigit()), reverse=True)
    version = ref.version if ref.version is not None else (numbers[0] if numbers else 0)
    sig = SignatureInfo("tensorflow/serving/predict", {_spec(t).tensor_name: _spec(t) for t in inputs},
                        {_spec(t).tensor_name: _spec(t) for t in outputs})
    return ModelMetadata(name or ref.name, version, {ref.signature or "serving_default": sig})


def status_from_readiness(readiness: list[tuple[str, bool]]) -> list[VersionStatus]:
    """VersionStatus per (version, ready) pair, newest first; non-numeric versions count as 0."""
    out = [VersionStatus(int(v) if v.isdigit() else 0, "AVAILABLE" if ready else "UNKNOWN")
           for v, ready in readiness]
    return sorted(out, key=lambda s: s.version, reverse=True)


def model_path(ref: ModelRef) -> str:
    """``/v2/models/NAME[/versions/V]`` (V is the number or the label)."""
    path = f"/v2/models/{quote(ref.name, safe='')}"
    version = version_string(ref)
    return f"{path}/versions/{quote(version, safe='')}" if version else path


def read_answer(response: httpx.Response, ref: ModelRef) -> Any:
    """The JSON document of a 200 answer; any other status raises its :mod:`tfship.errors` class
    with the server's V2 error text (``{"error": "..."}``)."""
    if response.status_code == 200:
        return loads(response.content)
    raise rest_error(response, ref)


def rest_error(response: httpx.Response, ref: ModelRef) -> ServingError:
    try:
        doc = loads(response.content)
        message = doc["error"] if isinstance(doc, dict) and "error" in doc else response.text
    except Exception:  # noqa: BLE001 - a non-JSON error page: keep its text
        message = response.text.strip() or response.reason_phrase
    return error_for_code(code_for_http_status(response.status_code), str(message),
                          model=ref.name, version=ref.version, signature=ref.signature)


def infer_body(ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
               binary: bool) -> tuple[bytes, dict[str, str]]:
    """The REST infer body and its headers (binary extension when ``binary``)."""
    body, header = v2.request_to_json(infer_request(ref, inputs, output_filter, binary_outputs=binary),
                                      binary=binary)
    if header is None:
        return body, {"Content-Type": "application/json"}
    return body, {"Content-Type": "application/octet-stream", v2.HEADER_LENGTH: str(header)}


def infer_answer(response: httpx.Response, ref: ModelRef) -> tuple[dict[str, np.ndarray], int | None]:
    if response.status_code != 200:
        raise rest_error(response, ref)
    return prediction(v2.response_from_json(response.content, response.headers.get(v2.HEADER_LENGTH)))


def ready_answer(response: httpx.Response, ref: ModelRef) -> bool:
    """A readiness GET: 200 ready; 404 (no such model) raises; any other answer is "not ready"."""
    if response.status_code == 200:
        return True
    if response.status_code == 404:
        raise rest_error(response, ref)
    return False


def grpc_metadata_request(ref: ModelRef) -> bytes:
    return pb.ModelMetadataRequest(name=ref.name, version=version_string(ref)).SerializeToString()  # type: ignore[no-any-return]


def grpc_metadata(raw: bytes, ref: ModelRef) -> ModelMetadata:
    msg = pb.ModelMetadataResponse.FromString(raw)
    return metadata_from_v2(ref, msg.name, list(msg.versions), list(msg.inputs), list(msg.outputs))


def grpc_ready_request(name: str, version: str) -> bytes:
    return pb.ModelReadyRequest(name=name, version=version).SerializeToString()  # type: ignore[no-any-return]


class _V2Client(Client):
    """What both V2 transports answer alike: the protocol has no Classify, Regress or reload."""

    def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                  timeout: float | None) -> ClassifyResult:
        raise unsupported("Classify", self.url)

    def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any, timeout: float | None) -> np.ndarray:
        raise unsupported("Regress", self.url)

    def _reload_config(self, config: str, timeout: float | None) -> None:
        raise reload_unsupported(self.url)


class V2GrpcClient(_V2Client):
    """Client over the V2 gRPC service (``v2+grpc://host:port``, ``v2+grpcs://`` for TLS)."""

    transport = "v2-grpc"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        address, options, creds = channel_setup(target, config)
        self._channel = (grpc.secure_channel(address, creds, options=options) if creds is not None
                         else grpc.insecure_channel(address, options=options))
        self._rpc = {name: self._channel.unary_unary(path) for name, path in V2_METHODS.items()}

    def _invoke(self, method: str, request: bytes, timeout: float | None, ref: ModelRef) -> bytes:
        try:
            return self._rpc[method](request, timeout=timeout)  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            raise rpc_error(exc, ref) from None
        except ValueError as exc:  # "Cannot invoke RPC on closed channel!"
            raise UnavailableError(f"gRPC channel to {self.url} is unusable: {exc}") from None

    def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                 timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        request = v2.request_to_proto(infer_request(ref, inputs, output_filter))
        return prediction(v2.response_from_proto(self._invoke("ModelInfer", request, timeout, ref)))

    def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        return grpc_metadata(self._invoke("ModelMetadata", grpc_metadata_request(ref), timeout, ref), ref)

    def _ready(self, name: str, version: str, timeout: float | None, ref: ModelRef) -> bool:
        raw = self._invoke("ModelReady", grpc_ready_request(name, version), timeout, ref)
        return bool(pb.ModelReadyResponse.FromString(raw).ready)

    def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        if ref.version is not None:
            return status_from_readiness([(str(ref.version), self._ready(ref.name, str(ref.version), timeout, ref))])
        versions = list(pb.ModelMetadataResponse.FromString(
            self._invoke("ModelMetadata", grpc_metadata_request(ref), timeout, ref)).versions) or [""]
        return status_from_readiness([(v, self._ready(ref.name, v, timeout, ref)) for v in versions])

    def server_ready(self, timeout: float | None = None) -> bool:
        """V2 ServerReady: the server is up and every model it serves is ready."""
        raw = self._invoke("ServerReady", pb.ServerReadyRequest().SerializeToString(), timeout, ModelRef("-"))
        return bool(pb.ServerReadyResponse.FromString(raw).ready)

    def close(self) -> None:
        self._close_replicas()
        self._channel.close()


class V2RestClient(_V2Client):
    """Client over the V2 REST API (``v2+http://host:port``, ``v2+https://``)."""

    transport = "v2-rest"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        self._http = httpx.Client(**http_client_options(config))
        self._replicas = RestReplicas(target, self._faults)

    def _send(self, method: str, path: str, ref: ModelRef, timeout: float | None, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
        endpoint, base = self._replicas.pick()
        options = request_options(self.config, endpoint, timeout)
        if body is not None:
            options["content"] = body
            options["headers"] = {**options.get("headers", {}), **(headers or {})}
        try:
            response = self._http.request(method, base + path, **options)
        except (httpx.TransportError, OSError, RuntimeError) as exc:
            raise self._replicas.failed(endpoint, exc, ref, timeout) from None
        self._replicas.answered(endpoint)
        return response

    def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                 timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        body, headers = infer_body(ref, inputs, output_filter, self.config.v2_binary_data)
        return infer_answer(self._send("POST", model_path(ref) + "/infer", ref, timeout, body, headers), ref)

    def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        doc = read_answer(self._send("GET", model_path(ref), ref, timeout), ref)
        if not isinstance(doc, dict):
            raise InvalidArgumentError(f"Unexpected V2 model metadata from {self.url}.")
        return metadata_from_v2(ref, doc.get("name", ""), doc.get("versions") or [], doc.get("inputs") or [],
                                doc.get("outputs") or [])

    def _ready(self, ref: ModelRef, timeout: float | None) -> bool:
        return ready_answer(self._send("GET", model_path(ref) + "/ready", ref, timeout), ref)

    def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        if ref.version is not None:
            return status_from_readiness([(str(ref.version), self._ready(ref, timeout))])
        doc = read_answer(self._send("GET", model_path(ref), ref, timeout), ref)
        versions = ([str(v) for v in (doc.get("versions") or [])] if isinstance(doc, dict) else []) or [""]
        return status_from_readiness([(v, self._ready(ModelRef(ref.name, int(v)) if v.isdigit() else ref, timeout))
                                      for v in versions])

    def server_ready(self, timeout: float | None = None) -> bool:
        """``GET /v2/health/ready``: the server is up and every model it serves is ready."""
        try:
            return self._send("GET", "/v2/health/ready", ModelRef("-"), timeout).status_code == 200
        except NotFoundError:
            return False

    def close(self) -> None:
        self._close_replicas()
        self._http.close()
