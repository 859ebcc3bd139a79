"""TF Serving's REST protocol (spec 6): routing, predict/classify/regress/status/metadata bodies.

Transport-free: :func:`handle` maps (method, path, body) to (HTTP status, JSON bytes), so the HTTP
server stays a thin layer. numpy <-> JSON values go through :mod:`tfship.wire.json`; this module
owns the protocol rules (row vs columnar, b64 outputs, tf.Example features, error wording).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np

from tfship.errors import HTTP_STATUS, InvalidArgumentError, ServingError, UnknownError
from tfship.wire import dtypes
from tfship.wire import json as wjson

from ..core.server_core import ServerCore
from ..event_loop import ServingLoop

__all__ = ["handle", "handle_async", "RestResponse", "PREDICT_RE", "GET_RE"]

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


@dataclass(frozen=True)
class RestResponse:
    status: int
    body: bytes
    model: str = ""
    version: int | None = None
    api: str = ""
    code: str = "OK"


def error_body(exc: ServingError) -> bytes:
    return wjson.dumps({"error": exc.message})


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text) if len(text) <= 40 else _INT64_MAX + 1  # no int() of 5,000 digits
    if value > _INT64_MAX:
        raise InvalidArgumentError(f"Failed to convert version: {text} to numeric.")
    return value


def handle(
    core: ServerCore, method: str, path: str, body: bytes | bytearray, timeout: float | None
) -> RestResponse:
    """Serve one /v1 request; every failure becomes ``{"error": ...}`` with its HTTP status."""
    route = _Route(method, path)
    try:
        if method == "POST":
            route.parse_post()
            return route.ok(_process(core, route, body, timeout))
        if method == "GET":
            return route.ok(_get(core, route))
        raise InvalidArgumentError(f"Malformed request: {method} {path}")
    except Exception as exc:  # noqa: BLE001 - every failure is a response (see _Route.failed)
        return route.failed(exc)


#: a predict body up to this size is decoded and answered on the event loop (~0.1 ms of JSON);
#: larger ones go to the executor whole, so megabytes of JSON never stall the loop
LOOP_BODY_BYTES = 1 << 16


async def handle_async(
    core: ServerCore, method: str, path: str, body: bytes | bytearray, timeout: float | None,
    serving_loop: ServingLoop,
) -> RestResponse:
    """:func:`handle` on the server's event loop, with the same responses.

    Status and metadata are answered on the loop; a small predict is decoded and encoded on the
    loop and awaits its run (the batcher, or one hop to the executor); everything else runs on
    ``serving_loop.executor``.
    """
    if method == "GET":
        return handle(core, method, path, body, timeout)
    route = _Route(method, path)
    if method != "POST" or len(body) > LOOP_BODY_BYTES:
        return await serving_loop.run_blocking(handle, core, method, path, body, timeout)
    try:
        route.parse_post()
        if route.api != "predict":
            return await serving_loop.run_blocking(handle, core, method, path, body, timeout)
        doc, signature_name = _parse_body(route.api, body)
        with core.acquire(route.model, route.version, route.label) as h:
            _check_method(core, h.servable, signature_name, route.api)
            plan = _predict_plan(h.servable, signature_name, doc)
            outputs = await h.servable.predict_async(
                signature_name, plan.inputs, (), timeout, serving_loop
            )
        return route.ok(plan.response(outputs))
    except Exception as exc:  # noqa: BLE001 - every failure is a response (see _Route.failed)
        return route.failed(exc)


class _Route:
    """What a request names (model, version, label, API), for routing, errors and metrics."""

    def __init__(self, method: str, path: str) -> None:
        self.method, self.path = method, path
        self.model, self.api = "", ""
        self.version: int | None = None
        self.label: str | None = None

    def parse_post(self) -> None:
        m = PREDICT_RE.fullmatch(self.path)
        if m is None:
            raise InvalidArgumentError(f"Malformed request: {self.method} {self.path}")
        self.model, self.version = unquote(m.group(1)), _version(m.group(2))
        self.label = unquote(m.group(3)) if m.group(3) is not None else None
        self.api = m.group(4).lower()

    def ok(self, payload: bytes) -> RestResponse:
        return RestResponse(200, payload, self.model, self.version, self.api)

    def failed(self, exc: Exception) -> RestResponse:
        if isinstance(exc, ServingError):
            return RestResponse(HTTP_STATUS[exc.code], error_body(exc), self.model, self.version,
                                self.api, exc.code.name)
        # a server bug (client mistakes are ServingErrors, raised by the decode layer;
        # tests/serving/test_fuzz.py checks none lands here): logged with its traceback, and
        # the client gets a message, never the traceback
        import logging

        logging.getLogger("tfship.serving").exception("REST %s %s failed", self.method, self.path)
        err = UnknownError(f"{type(exc).__name__}: {exc}")
        return RestResponse(500, error_body(err), self.model, self.version, self.api, "UNKNOWN")


def _get(core: ServerCore, route: _Route) -> bytes:
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
        return _metadata(core, route.model, route.version, route.label)
    route.api = "get_model_status"
    return _status(core, route.model, route.version)


# --------------------------------------------------------------------------- GET


def _to_json_dict(message: Any) -> Any:
    from google.protobuf import json_format

    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _status(core: ServerCore, model: str, version: int | None) -> bytes:
    from ..grpc.service import model_status_response

    return wjson.dumps(_to_json_dict(model_status_response(core, model, version)))


def _metadata(core: ServerCore, model: str, version: int | None, label: str | None) -> bytes:
    from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

    with core.acquire(model, version, label) as h:
        spec = model_pb2.ModelSpec(name=model)
        spec.version.value = h.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in h.servable.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
    return wjson.dumps(
        {"model_spec": _to_json_dict(spec), "metadata": {"signature_def": _to_json_dict(sig_map)}}
    )


# --------------------------------------------------------------------------- POST


def _parse_body(api: str, body: bytes | bytearray) -> tuple[dict[str, Any], str]:
    """The JSON document and its signature_name. JSON errors win, even for unknown models."""
    # Predict bodies may carry megabytes of numbers: wire.json parses those arrays in C,
    # straight to ndarrays (same values and errors).
    doc = wjson.loads(body, numeric_arrays=api == "predict")
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _format_error(doc, "not formatted correctly. 'signature_name' key must be a string value.")
    return doc, signature_name


def _check_method(core: ServerCore, servable: Any, signature_name: str, api: str) -> None:
    if core.options.enable_signature_method_name_check:
        from ..core.method_check import check_method_name

        check_method_name(servable, signature_name, api)


def _process(core: ServerCore, route: _Route, body: bytes | bytearray, timeout: float | None) -> bytes:
    doc, signature_name = _parse_body(route.api, body)
    with core.acquire(route.model, route.version, route.label) as h:
        _check_method(core, h.servable, signature_name, route.api)
        if route.api == "predict":
            plan = _predict_plan(h.servable, signature_name, doc)
            return plan.response(h.servable.predict(signature_name, plan.inputs, (), timeout))
        examples = _examples_from_json(doc)
        if route.api == "classify":
            result = h.servable.classify(signature_name, examples, timeout)
            return wjson.dumps({"results": _classify_rows(result)})
        values = h.servable.regress(signature_name, examples, timeout)
        return wjson.dumps({"results": wjson.encode_value(values.reshape(-1))})


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


def _predict_plan(servable: Any, signature_name: str, doc: dict[str, Any]) -> _PredictPlan:
    name = signature_name or _DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(name)
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

