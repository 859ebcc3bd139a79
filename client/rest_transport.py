"""REST transport: TF Serving's ``/v1/models/...`` API over pooled httpx connections.

Requests use the columnar ``{"inputs": {...}}`` form (shapes travel exactly as given, no batch
dimension is invented). JSON is encoded and decoded by :mod:`tfship.wire.json` (orjson); output
dtypes come from the model's metadata (cached per model/version/label), since JSON numbers carry
none.

Every request body, response decoder and the HTTP-to-error mapping are module functions shared
with the asyncio client (:mod:`tfship.client.aio.rest_transport`); the classes do only I/O.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from tfship.client.base import Client, ModelRef
from tfship.client.config import ClientConfig
from tfship.client.endpoints import Endpoint, Target
from tfship.client.resilience import Faults, current_endpoint
from tfship.client.types import (
    ClassifyResult,
    ModelMetadata,
    SignatureInfo,
    TensorSpec,
    VersionStatus,
)

from tfship.errors import (
    Code,
    DeadlineExceededError,
    InvalidArgumentError,
    ServingError,
    UnavailableError,
    UnimplementedError,
    code_for_http_status,
    error_for_code,
)
from tfship.wire import dtypes
from tfship.wire.json import decode_value, dumps, encode_value, loads

__all__ = [
    "RestClient", "RestReplicas", "metadata_from_json", "status_from_json", "model_path", "http_client_options",
    "request_options", "read_response", "predict_body", "decode_predict",
    "examples_body", "decode_classify", "decode_regress", "reload_unimplemented",
]


def model_path(ref: ModelRef) -> str:
    """``/v1/models/NAME[/versions/N | /labels/L]``."""
    path = f"/v1/models/{quote(ref.name, safe='')}"
    if ref.version is not None:
        path += f"/versions/{int(ref.version)}"
    elif ref.label:
        path += f"/labels/{quote(ref.label, safe='')}"
    return path


def _tensor_spec(info: dict[str, Any]) -> TensorSpec:
    shape_json = info.get("tensor_shape") or {}
    shape = None if shape_json.get("unknown_rank") else tuple(
        int(d.get("size", 0)) for d in shape_json.get("dim", []))
    return TensorSpec(info.get("dtype", "DT_INVALID"), shape, info.get("name", ""))


def metadata_from_json(doc: dict[str, Any], name: str) -> ModelMetadata:
    """:class:`ModelMetadata` from TF Serving's REST metadata document."""
    spec = doc.get("model_spec", {})
    sigs = doc.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
    return ModelMetadata(
        spec.get("name", name), int(spec.get("version") or 0),
        {key: SignatureInfo(sig.get("method_name", ""),
                            {k: _tensor_spec(v) for k, v in sorted(sig.get("inputs", {}).items())},
                            {k: _tensor_spec(v) for k, v in sorted(sig.get("outputs", {}).items())})
         for key, sig in sorted(sigs.items())},
    )


def status_from_json(doc: dict[str, Any]) -> list[VersionStatus]:
    out = []
    for item in doc.get("model_version_status", []):
        status = item.get("status", {})
        code = status.get("error_code", "OK")
        code_num = Code[code] if isinstance(code, str) and code in Code.__members__ else int(code or 0)
        out.append(VersionStatus(int(item.get("version", 0)), item.get("state", "UNKNOWN"),
                                 int(code_num), status.get("error_message", "")))
    return out


def _ssl_context(config: ClientConfig) -> ssl.SSLContext | bool:
    tls = config.tls
    if tls is None:
        return True
    if not tls.verify:
        return False
    ctx = ssl.create_default_context(cafile=tls.root_certificates)
    if tls.client_cert:
        ctx.load_cert_chain(tls.client_cert, tls.client_key)
    return ctx


def http_client_options(config: ClientConfig) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client`` or ``httpx.AsyncClient``: pool, TLS, timeouts."""
    limits = httpx.Limits(max_connections=config.max_connections,
                          max_keepalive_connections=config.max_connections)
    return {"limits": limits, "verify": _ssl_context(config),
            "timeout": httpx.Timeout(config.timeout, connect=config.connect_timeout),
            "headers": {"Content-Type": "application/json"}}


def request_options(config: ClientConfig, endpoint: Endpoint, timeout: float | None,
                    body: Any = None) -> dict[str, Any]:
    """Keyword arguments for one ``request()`` to ``endpoint``: its deadline, JSON body, and the
    server's name when the endpoint is an address found under a DNS name."""
    kwargs: dict[str, Any] = {"timeout": httpx.Timeout(timeout, connect=config.connect_timeout)}
    if endpoint.server_name:  # an address from a DNS name: the server knows itself by the name
        kwargs["headers"] = {"Host": f"{endpoint.server_name}:{endpoint.port}"}
        if endpoint.secure:
            kwargs["extensions"] = {"sni_hostname": endpoint.server_name}
    if body is not None:
        kwargs["content"] = dumps(body)
    return kwargs


class RestReplicas:
    """Which server each REST attempt goes to, and what a failed one says about it (shared by
    the sync and asyncio clients; no I/O).

    Over several replicas (``http://a:8501,b:8501`` or ``dns+http:///NAME:8501``) the client's
    :class:`~tfship.client.resilience.Faults` picks the replica of each attempt (the driver sets
    it; calls outside the driver take the next in turn); one that refuses or drops a connection
    is ejected for a short cool-down and the call is retried elsewhere.
    """

    def __init__(self, target: Target, faults: Faults) -> None:
        self.target, self._faults = target, faults
        self._single = None if target.several else target.endpoints[0]

    def pick(self) -> tuple[Endpoint, str]:
        """The endpoint for this attempt and its base URL."""
        endpoint = current_endpoint() or self._single or self._faults.pick()
        assert endpoint is not None
        return endpoint, f"{'https' if endpoint.secure else 'http'}://{endpoint.netloc}"

    def answered(self, endpoint: Endpoint) -> None:
        if self._faults.pool is not None:
            self._faults.pool.mark_up(endpoint)

    def failed(self, endpoint: Endpoint, exc: Exception, ref: ModelRef, timeout: float | None) -> ServingError:
        """The :mod:`tfship.errors` class for an httpx request that raised ``exc`` (an
        ``httpx.TransportError``, ``OSError`` or ``RuntimeError`` for a closed client); a replica
        that refused or dropped the connection sits out a cool-down."""
        where = endpoint.url if self.target.several else self.target.url
        if isinstance(exc, httpx.TimeoutException):
            if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
                self._mark_down(endpoint)
                return UnavailableError(f"Timed out connecting to {where}: {exc}", model=ref.name)
            return DeadlineExceededError(f"No answer from {where} within {timeout} s: {exc}", model=ref.name)
        if isinstance(exc, (httpx.TransportError, OSError)):  # refused, reset, closed mid-response
            self._mark_down(endpoint)
            return UnavailableError(f"Cannot reach {where}: {type(exc).__name__}: {exc}", model=ref.name)
        # RuntimeError: "Cannot send a request, as the client has been closed."
        return UnavailableError(f"REST client for {self.target.url} is closed: {exc}")

    def _mark_down(self, endpoint: Endpoint) -> None:
        if self._faults.pool is not None:
            self._faults.pool.mark_down(endpoint)


def read_response(response: httpx.Response, ref: ModelRef) -> Any:
    """The JSON document of a 200 answer; any other status raises its :mod:`tfship.errors` class."""
    if response.status_code == 200:
        return loads(response.content, numeric_arrays=True)  # big predictions parse with numpy
    try:
        doc = loads(response.content)
        message = doc["error"] if isinstance(doc, dict) and "error" in doc else response.text
    except Exception:  # noqa: BLE001 - a non-JSON error page: keep its text
        message = response.text.strip() or response.reason_phrase
    raise error_for_code(code_for_http_status(response.status_code), str(message),
                         model=ref.name, version=ref.version, signature=ref.signature)


def predict_body(ref: ModelRef, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": {k: encode_value(v) for k, v in inputs.items()}}
    if ref.signature:
        body["signature_name"] = ref.signature
    return body


def decode_predict(doc: Any, sig: SignatureInfo | None, output_filter: Sequence[str],
                   url: str) -> dict[str, np.ndarray]:
    """Outputs by name from a predict answer; ``sig`` (if known) names a bare output and gives dtypes."""
    if not isinstance(doc, dict) or "outputs" not in doc:
        raise InvalidArgumentError(f"Unexpected REST predict answer from {url}: no 'outputs'.")
    out_specs = sig.outputs if sig is not None else {}
    raw = doc["outputs"]
    if not (isinstance(raw, dict) and not (len(raw) == 1 and "b64" in raw)):
        # One output: the bare tensor. Name it after the signature's only output.
        name = next(iter(out_specs)) if len(out_specs) == 1 else "output"
        raw = {name: raw}
    outputs = {}
    for name, value in raw.items():
        if output_filter and name not in output_filter:
            continue
        spec = out_specs.get(name)
        outputs[name] = decode_value(value, dtypes.by_name(spec.dtype) if spec else None)
    return outputs


def examples_body(ref: ModelRef, examples: Sequence[Any], context: Any) -> dict[str, Any]:
    from tfship.client.examples import example_json

    if not examples:
        raise InvalidArgumentError("No examples given: classify/regress need at least one example.")
    body: dict[str, Any] = {"examples": [example_json(e) for e in examples]}
    if context is not None:
        body["context"] = example_json(context)
    if ref.signature:
        body["signature_name"] = ref.signature
    return body


def decode_classify(doc: Any) -> ClassifyResult:
    rows = doc.get("results", [])
    labels = [[str(pair[0]) for pair in row] for row in rows]
    scores = [[float(pair[1]) for pair in row] for row in rows]
    return ClassifyResult(np.array(labels, dtype=object).reshape(len(rows), -1),
                          np.array(scores, dtype=np.float32).reshape(len(rows), -1))


def decode_regress(doc: Any) -> np.ndarray:
    return np.asarray(doc.get("results", []), dtype=np.float32)


def reload_unimplemented(url: str) -> ServingError:
    """TF Serving's REST API has no config reload (only ModelService over gRPC has)."""
    return UnimplementedError(f"{url} is a REST endpoint, and TF Serving's REST API cannot reload the model config.",
                              hint="Connect to the server's gRPC port (grpc://HOST:8500) to reload its config.")


class RestClient(Client):
    """Client over TF Serving's REST API (``http://host:port`` or ``https://``); over several
    replicas each call goes to the next one in turn (see :class:`RestReplicas`)."""

    transport = "rest"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        self._http = httpx.Client(**http_client_options(config))
        self._replicas = RestReplicas(target, self._faults)

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, ref: ModelRef, timeout: float | None,
                 body: Any = None) -> Any:
        endpoint, base = self._replicas.pick()
        try:
            response = self._http.request(method, base + path,
                                          **request_options(self.config, endpoint, timeout, body))
        except (httpx.TransportError, OSError, RuntimeError) as exc:
            raise self._replicas.failed(endpoint, exc, ref, timeout) from None
        self._replicas.answered(endpoint)
        return read_response(response, ref)

    def _signature(self, ref: ModelRef) -> SignatureInfo | None:
        try:
            return self._cached_metadata(ref).signature(ref.signature)
        except InvalidArgumentError:
            return None

    # ------------------------------------------------------------------ calls

    def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                 timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        doc = self._request("POST", model_path(ref) + ":predict", ref, timeout, predict_body(ref, inputs))
        # TF Serving's REST answers carry no model_spec: no version.
        return decode_predict(doc, self._signature(ref), output_filter, self.url), None

    def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                  timeout: float | None) -> ClassifyResult:
        return decode_classify(self._request("POST", model_path(ref) + ":classify", ref, timeout,
                                             examples_body(ref, examples, context)))

    def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                 timeout: float | None) -> np.ndarray:
        return decode_regress(self._request("POST", model_path(ref) + ":regress", ref, timeout,
                                            examples_body(ref, examples, context)))

    def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        return metadata_from_json(self._request("GET", model_path(ref) + "/metadata", ref, timeout), ref.name)

    def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        return status_from_json(self._request("GET", model_path(ref), ref, timeout))

    def _reload_config(self, config: str, timeout: float | None) -> None:
        raise reload_unimplemented(self.url)

    def close(self) -> None:
        self._close_replicas()
        self._http.close()
