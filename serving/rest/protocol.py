"""TF Serving's REST protocol (TF Serving compat spec §6): routing, predict/classify/regress/status/metadata bodies.

A thin adapter over :class:`serving.data_plane.DataPlane`: :func:`handle` maps (method, path, body)
to (HTTP status, JSON bytes) - decode the body, await the plane, encode its answer - so the HTTP
server stays a thin layer. numpy <-> JSON values go through :mod:`tfship.wire.json`; this module
owns the protocol rules (row vs columnar, b64 outputs, tf.Example features, error wording).

There is one path, on the serving loop: a body above :data:`LOOP_BODY_BYTES` is parsed, decoded
and its answer encoded on the loop's executor (megabytes of JSON never stall the loop): a predict
in two hops, the parse (so JSON errors win over an unknown model, as upstream), then decode, run
and encode together (the data plane's ``decode_off_loop``; with batching, decode and encode
around the batcher). The model call is otherwise awaited exactly as gRPC's.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np

from tfship.errors import HTTP_STATUS, InvalidArgumentError, ServingError, UnknownError
from tfship.wire import dtypes
from tfship.wire import json as wjson

from ..data_plane import DataPlane, ModelRef
from ..data_plane.tf_serving import message_json, signature_def_map, status_response

__all__ = ["handle", "RestResponse", "PREDICT_RE", "GET_RE", "LOOP_BODY_BYTES"]

PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
GET_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_INT64_MAX = 2**63 - 1
_DEFAULT_SIGNATURE = "serving_default"
_ENTRYPOINT = "REST"

#: a body up to this size is decoded and answered on the event loop (~0.1 ms of JSON); larger
#: ones are parsed, decoded and encoded on the executor
LOOP_BODY_BYTES = 1 << 16
#: outputs of more bytes than this are encoded on the executor (JSON text is several times larger)
_LOOP_OUTPUT_BYTES = LOOP_BODY_BYTES // 4


@dataclass(frozen=True)
class RestResponse:
    status: int
    body: bytes


def error_body(exc: ServingError) -> bytes:
    return wjson.dumps({"error": exc.message})


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text) if len(text) <= 40 else _INT64_MAX + 1  # no int() of 5,000 digits
    if value > _INT64_MAX:
        raise InvalidArgumentError(f"Failed to convert version: {text} to numeric.")
    return value


async def handle(
    plane: DataPlane, method: str, path: str, body: bytes | bytearray, timeout: float | None
) -> RestResponse:
    """Serve one /v1 request on the serving loop; every failure becomes ``{"error": ...}`` with
    its HTTP status. Status and metadata are answered on the loop."""
    route = _Route(method, path)
    try:
        if method == "GET":
            return route.ok(_get(plane, route))
        if method != "POST":
            raise InvalidArgumentError(f"Malformed request: {method} {path}")
        route.parse_post()
        large = len(body) > LOOP_BODY_BYTES
        try:  # JSON errors win, even for unknown models
            doc, signature_name = (await plane.loop.run_blocking(_parse_body, route.api, body) if large
                                   else _parse_body(route.api, body))
        except Exception as exc:  # noqa: BLE001 - the plane records and maps it
            raise plane.reject(route.api, route.ref, exc, entrypoint=_ENTRYPOINT) from None
        if route.api == "predict":
            return route.ok(await _predict(plane, route, doc, signature_name, timeout, large))
        examples = lambda _sigs: _examples_from_json(doc)  # noqa: E731 - decoded once the model is held
        if route.api == "classify":
            served: Any = await plane.classify(route.ref, signature_name, examples, timeout,
                                               entrypoint=_ENTRYPOINT)
            encode: Any = _classify_body
        else:
            served = await plane.regress(route.ref, signature_name, examples, timeout, entrypoint=_ENTRYPOINT)
            encode = _regress_body
        if large or _nbytes(served.value) > _LOOP_OUTPUT_BYTES:
            return route.ok(await plane.loop.run_blocking(encode, served.value))
        return route.ok(encode(served.value))
    except Exception as exc:  # noqa: BLE001 - every failure is a response (see _Route.failed)
        return route.failed(exc)


async def _predict(
    plane: DataPlane, route: _Route, doc: dict[str, Any], signature_name: str, timeout: float | None,
    large: bool,
) -> bytes:
    plans: list[_PredictPlan] = []

    def decode(signature_defs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        plans.append(_predict_plan(signature_defs, signature_name, doc))
        return plans[0].inputs

    if large:  # decode, run and encode in one executor hop (unless the batcher runs it)
        served = await plane.predict(route.ref, signature_name, decode, (), timeout, entrypoint=_ENTRYPOINT,
                                     decode_off_loop=True, encode=lambda outputs: plans[0].response(outputs))
        return served.value
    served = await plane.predict(route.ref, signature_name, decode, (), timeout, entrypoint=_ENTRYPOINT)
    if _nbytes(served.value) > _LOOP_OUTPUT_BYTES:
        return await plane.loop.run_blocking(plans[0].response, served.value)
    return plans[0].response(served.value)


def _nbytes(value: Any) -> int:
    if isinstance(value, dict):
        return sum(v.nbytes for v in value.values())
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return sum(t.nbytes for t in (value.classes, value.scores) if t is not None)


def _classify_body(result: Any) -> bytes:
    return wjson.dumps({"results": _classify_rows(result)})


def _regress_body(values: np.ndarray) -> bytes:
    return wjson.dumps({"results": wjson.encode_value(values.reshape(-1))})


class _Route:
    """What a request names (model, version, label, API), for routing and errors."""

    def __init__(self, method: str, path: str) -> None:
        self.method, self.path = method, path
        self.model, self.api = "", ""
        self.version: int | None = None
        self.label: str | None = None

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.model, self.version, self.label)

    def parse_post(self) -> None:
        m = PREDICT_RE.fullmatch(self.path)
        if m is None:
            raise InvalidArgumentError(f"Malformed request: {self.method} {self.path}")
        self.model, self.version = unquote(m.group(1)), _version(m.group(2))
        self.label = unquote(m.group(3)) if m.group(3) is not None else None
        self.api = m.group(4).lower()

    def ok(self, payload: bytes) -> RestResponse:
        return RestResponse(200, payload)

    def failed(self, exc: Exception) -> RestResponse:
        if isinstance(exc, ServingError):
            return RestResponse(HTTP_STATUS[exc.code], error_body(exc))
        # a bug in encoding an answer (the plane answers ServingErrors only): logged with its
        # traceback, and the client gets a message, never the traceback
        logging.getLogger("tfship.serving").exception("REST %s %s failed", self.method, self.path)
        return RestResponse(500, error_body(UnknownError(f"{type(exc).__name__}: {exc}")))


# --------------------------------------------------------------------------- GET


def _get(plane: DataPlane, route: _Route) -> bytes:
    m = GET_RE.fullmatch(route.path)
    if m is None:
        raise InvalidArgumentError(f"Malformed request: {route.method} {route.path}")
    if m.group(1) is None:
        raise InvalidArgumentError("Missing model name in request.")
    route.model = unquote(m.group(1))
    route.version = _version(m.group(2))
    route.label = unquote(m.group(3)) if m.group(3) is not None else None
    if m.group(4):
        route.api = "get_model_metadata"
        return _metadata(plane, route.ref)
    route.api = "get_model_status"
    # status ignores a label, as upstream
    statuses = plane.model_status(ModelRef(route.model, route.version), entrypoint=_ENTRYPOINT)
    return wjson.dumps(message_json(status_response(statuses)))


def _metadata(plane: DataPlane, ref: ModelRef) -> bytes:
    from tensorflow_serving.apis import model_pb2

    metadata = plane.model_metadata(ref, entrypoint=_ENTRYPOINT)
    spec = model_pb2.ModelSpec(name=metadata.model)
    spec.version.value = metadata.version
    return wjson.dumps(
        {"model_spec": message_json(spec), "metadata": {"signature_def": message_json(signature_def_map(metadata))}}
    )


# --------------------------------------------------------------------------- POST


def _parse_body(api: str, body: bytes | bytearray) -> tuple[dict[str, Any], str]:
    """The JSON document and its signature_name."""
    # Predict bodies may carry megabytes of numbers: wire.json parses those arrays in C,
    # straight to ndarrays (same values and errors).
    doc = wjson.loads(body, numeric_arrays=api == "predict")
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _format_error(doc, "not formatted correctly. 'signature_name' key must be a string value.")
    return doc, signature_name


@dataclass
class _PredictPlan:
    """A predict body turned into inputs, and how to write its outputs (row or columnar)."""

    inputs: dict[str, np.ndarray]
    signature: Any
    rows: bool

    def response(self, outputs: dict[str, np.ndarray]) -> bytes:
        if self.rows:
            return wjson.dumps({"predictions": _row_outputs(outputs, self.signature)})
        return wjson.dumps({"outputs": _columnar_outputs(outputs, self.signature)})


def _predict_plan(signature_defs: Mapping[str, Any], signature_name: str, doc: dict[str, Any]) -> _PredictPlan:
    name = signature_name or _DEFAULT_SIGNATURE
    signature = signature_defs.get(name)
    if signature is None:
        raise InvalidArgumentError(f'Serving signature name: "{name}" not found in signature def')
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise _format_error(
            doc, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
        )
    if not has_instances and not has_inputs:
        raise InvalidArgumentError("Missing 'inputs' or 'instances' key")
    sig_inputs = signature.inputs
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, (list, np.ndarray)):
            raise _format_error(doc, "Excepting 'instances' to be an list/array")
        if len(instances) == 0:
            raise _format_error(doc, "No values in 'instances' array")
        return _PredictPlan(_row_inputs(instances, sig_inputs), signature, rows=True)
    return _PredictPlan(_columnar_inputs(doc["inputs"], sig_inputs, signature), signature, rows=False)


def _dtype_of(sig_inputs: Any, alias: str) -> dtypes.DType | None:
    info = sig_inputs.get(alias)
    if info is None:
        return None
    try:
        return dtypes.by_enum(info.dtype)
    except ServingError:  # a dtype without a JSON form: let the runtime reject the feed
        return None


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not wjson.is_b64_object(value)


def _json_text(value: Any) -> str:
    """A JSON value as upstream's error messages show it (compact; long values cut)."""
    try:
        text = wjson.dumps(value).decode()
    except TypeError:  # an ndarray of objects, or nested deeper than orjson writes (255 levels)
        try:
            text = repr(value)
        except RecursionError:
            text = f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= 200 else text[:197] + "..."


def _format_error(value: Any, message: str) -> ServingError:
    return InvalidArgumentError(f"JSON Value: {_json_text(value)} {message}")


def _row_inputs(instances: list[Any] | np.ndarray, sig_inputs: Any) -> dict[str, np.ndarray]:
    """Row format (json_tensor.cc FillTensorMapFromInstancesList): one element per batch row."""
    if isinstance(instances, np.ndarray):  # a regular numeric batch, already parsed by wire.json
        if len(sig_inputs) > 1:
            raise InvalidArgumentError(
                "instances is a plain list, but expecting list of objects as multiple input tensors "
                "required as per tensorinfo_map"
            )
        alias = next(iter(sig_inputs))
        return {alias: wjson.decode_value(instances, _dtype_of(sig_inputs, alias))}
    named = _is_named(instances[0])
    if not isinstance(instances[0], dict) and len(sig_inputs) > 1:
        raise InvalidArgumentError(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    if not named:
        for i, inst in enumerate(instances):
            if _is_named(inst):
                raise InvalidArgumentError(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        alias = next(iter(sig_inputs))
        _check_row_shapes(instances, alias, lambda i, msg: (
            f"Failed to process element: {i} of 'instances' list. Error: INVALID_ARGUMENT: {msg}"))
        return {alias: wjson.decode_value(instances, _dtype_of(sig_inputs, alias))}
    names = sorted(sig_inputs)
    for i, inst in enumerate(instances):
        if not _is_named(inst):
            raise InvalidArgumentError(f"Expecting object but got list at item {i} of input list")
        for key in inst:
            if key not in sig_inputs:
                raise InvalidArgumentError(
                    f"Failed to process element: {i} key: {key} of 'instances' list. Error: "
                    f"INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                )
        if set(inst) != set(names):
            raise InvalidArgumentError(
                f"Failed to process element: {i} of 'instances' list. JSON object: "
                f"{_json_text(inst)} must only have keys: {','.join(names)}"
            )
    out = {}
    for alias in names:
        rows = [inst[alias] for inst in instances]
        _check_row_shapes(rows, alias, lambda i, msg, a=alias: (
            f"Failed to process element: {i} key: {a} of 'instances' list. Error: "
            f"INVALID_ARGUMENT: {msg}"))
        out[alias] = wjson.decode_value(rows, _dtype_of(sig_inputs, alias))
    return out


def _check_row_shapes(rows: list[Any], alias: str, wrap: Any) -> None:
    """Every instance of one input must have the first instance's shape."""
    first = wjson.nested_shape(rows[0])
    first_size = int(np.prod(first)) if first else 1
    for i, row in enumerate(rows):
        shape = wjson.nested_shape(row)
        if shape != first:
            size = int(np.prod(shape)) if shape else 1
            msg = (f"Expecting tensor size: {first_size} but got: {size}" if size != first_size
                   else f"Expecting shape [{','.join(map(str, first))}] but got: "
                        f"[{','.join(map(str, shape))}]")
            raise InvalidArgumentError(wrap(i, msg))


def _columnar_inputs(value: Any, sig_inputs: Any, signature: Any) -> dict[str, np.ndarray]:
    """Columnar format (json_tensor.cc FillTensorMapFromInputsMap): every input by name; keys
    that are not signature inputs are ignored, like upstream."""
    if _is_named(value):
        for alias in sorted(sig_inputs):
            if alias not in value:
                raise InvalidArgumentError(f"Missing named input: {alias} in 'inputs' object.")
        return {alias: wjson.decode_value(value[alias], _dtype_of(sig_inputs, alias))
                for alias in sig_inputs}
    if len(sig_inputs) != 1:
        raise InvalidArgumentError(
            "inputs is a plain value/list, but expecting an object as multiple input tensors "
            "required as per tensorinfo_map"
        )
    alias = next(iter(sig_inputs))
    return {alias: wjson.decode_value(value, _dtype_of(sig_inputs, alias))}


def _wants_b64(alias: str, value: np.ndarray) -> bool:
    return alias.endswith("_bytes") and value.dtype == object


def _row_outputs(outputs: dict[str, np.ndarray], signature: Any) -> Any:
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise InvalidArgumentError(
                f"Tensor name: {alias} has no shape information "
            )
        if value.shape[0] < 1:
            raise InvalidArgumentError(
                f"Tensor name: {alias} has invalid batch size: {value.shape[0]}"
            )
    if len(outputs) == 1:
        ((alias, value),) = outputs.items()
        return wjson.encode_value(value, b64=_wants_b64(alias, value))
    sizes = {alias: v.shape[0] for alias, v in outputs.items()}
    batch = next(iter(sizes.values()))
    for alias, size in sizes.items():
        if size != batch:
            raise InvalidArgumentError(
                f"Tensor name: {alias} has inconsistent batch size: {size} expecting: {batch}"
            )
    aliases = sorted(outputs)
    encoded = {
        a: [wjson.encode_value(outputs[a][i], b64=_wants_b64(a, outputs[a])) for i in range(batch)]
        for a in aliases
    }
    return [{a: encoded[a][i] for a in aliases} for i in range(batch)]


def _columnar_outputs(outputs: dict[str, np.ndarray], signature: Any) -> Any:
    if len(outputs) == 1:
        ((alias, value),) = outputs.items()
        return wjson.encode_value(value, b64=_wants_b64(alias, value))
    return {a: wjson.encode_value(v, b64=_wants_b64(a, v)) for a, v in sorted(outputs.items())}


# --------------------------------------------------------------------------- tf.Example


def _examples_from_json(doc: dict[str, Any]) -> list[bytes]:
    """json_tensor.cc FillClassifyRegressRequestFromJson: optional context + examples."""
    context = b""
    if "context" in doc:
        context = _example_bytes(doc["context"])
    if "examples" not in doc:
        # upstream says "classify" for regress requests too
        raise _format_error(doc, "When method is classify, key 'examples' is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    return [context + _example_bytes(item) for item in examples]


_JSON_TYPE = {type(None): "Null", bool: "Bool", dict: "Object", list: "Array", str: "String",
              int: "Number", float: "Number"}


def _json_type(value: Any) -> str:
    if value is True:
        return "True"
    if value is False:
        return "False"
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _example_bytes(features: Any) -> bytes:
    from tensorflow.core.example import example_pb2

    if not isinstance(features, dict):
        raise InvalidArgumentError(f"Example must be JSON object but got JSON {_json_type(features)}")
    example = example_pb2.Example()
    fmap = example.features.feature
    for name, content in features.items():
        feature = fmap[name]
        kind = None
        for v in content if isinstance(content, list) else [content]:
            this = _feature_kind(name, v)
            if kind is not None and this != kind:
                raise InvalidArgumentError(
                    f"Unexpected element type in feature: {name} expecting type: {kind}"
                )
            kind = this
            if this == "float":
                feature.float_list.value.append(v)
            elif this == "int64":
                feature.int64_list.value.append(int(v))
            else:
                feature.bytes_list.value.append(_feature_bytes(v))
    return example.SerializeToString()


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _feature_kind(name: str, v: Any) -> str:
    if isinstance(v, bool):
        return "int64"
    if isinstance(v, int):
        if v > _INT64_MAX:
            raise InvalidArgumentError(f"Feature: {name} has uint64 element. Only int64 is supported.")
        return "int64"
    if isinstance(v, float):
        if np.isfinite(v) and abs(v) > _FLOAT32_MAX:
            raise InvalidArgumentError(
                f"Cannot convert JSON value: {_json_text(v)} to float without loss of precision."
            )
        return "float"
    if isinstance(v, str) or wjson.is_b64_object(v):
        return "bytes"
    raise InvalidArgumentError(
        f"Feature: {name} has element with unexpected JSON type: {_json_type(v)}"
    )


def _feature_bytes(v: Any) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8")
    try:
        return base64.b64decode(v["b64"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidArgumentError("Unable to base64 decode") from None


def _classify_rows(result: Any) -> list[list[list[Any]]]:
    classes, scores = result.classes, result.scores
    ref = scores if scores is not None else classes
    rows: list[list[list[Any]]] = []
    if ref is None:
        return rows
    for i in range(ref.shape[0]):
        row = []
        for j in range(ref.shape[1]):
            label = classes[i, j] if classes is not None else b""
            if isinstance(label, bytes):
                label = label.decode("utf-8", errors="replace")
            score = scores[i, j] if scores is not None else np.float32(0.0)
            row.append([label, score])
        rows.append(row)
    return rows

