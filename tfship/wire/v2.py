"""numpy <-> the Open Inference Protocol ("KServe V2"): JSON, binary extension, gRPC messages.

Written once for both sides: the V2 client encodes requests and decodes responses with it, the
server's V2 front ends decode requests and encode responses with it.

* Datatypes: ``BOOL``, ``UINT8``..``UINT64``, ``INT8``..``INT64``, ``FP16``, ``FP32``, ``FP64``,
  ``BF16`` (ml_dtypes) and ``BYTES`` (an object array of ``bytes``, like :mod:`tfship.wire.tensor`).
* Raw bytes (gRPC ``raw_input_contents``/``raw_output_contents`` and the REST binary tensor data
  extension): row-major little-endian values; a BYTES element is a 4-byte little-endian length
  followed by its bytes.
* JSON tensors: ``{"name", "shape", "datatype", "parameters", "data"}`` with ``data`` flat
  (row-major) or nested; BYTES elements are UTF-8 strings.
* The binary extension: a body is the JSON header followed by the tensors' bytes; the header's
  length travels in ``Inference-Header-Content-Length``, each binary tensor says its size in
  ``parameters.binary_data_size``, a requested output asks for binary with
  ``parameters.binary_data`` (or the request with ``parameters.binary_data_output``).

Anything malformed raises :class:`~tfship.errors.InvalidArgumentError` naming the tensor and the
fix: unknown datatype, data that does not fill the shape, binary sizes that do not add up, a
header length outside the body. :class:`InferRequest` and :class:`InferResponse` are the
transport-free form both front ends and both clients work with.

>>> req = InferRequest("m", inputs={"x": np.ones((2, 3), np.float32)})
>>> body, header = request_to_json(req, binary=True)
>>> request_from_json(body, header, "m").inputs["x"].shape
(2, 3)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

from tfship.errors import InvalidArgumentError, ServingError, UnimplementedError
from tfship.wire import dtypes
from tfship.wire.json import decode_value, dumps, loads
from tfship.wire.protos import open_inference_pb2 as _messages
from tfship.wire.tensor import MAX_RANK, as_ndarray, check_shape

__all__ = [
    "DATATYPES", "HEADER_LENGTH", "InferRequest", "InferResponse", "RequestedOutput",
    "datatype_of", "numpy_dtype", "datatype_for_tf",
    "to_raw", "from_raw", "request_to_json", "request_from_json", "response_to_json", "response_from_json",
    "request_to_proto", "request_from_proto", "response_to_proto", "response_from_proto",
    "parameters_to_proto", "parameters_from_proto",
]

#: The HTTP header that carries the JSON part's length when binary tensor data follows it.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: V2 datatype name -> numpy dtype (BYTES: object arrays of bytes).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "BYTES": np.dtype(object),
}
_BY_NUMPY = {dt: name for name, dt in DATATYPES.items() if name != "BYTES"}
# The TensorFlow dtype each V2 datatype converts from JSON like (tfship.wire.json's rules).
_TF_NAME = {
    "BOOL": "DT_BOOL", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16", "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64", "INT8": "DT_INT8", "INT16": "DT_INT16", "INT32": "DT_INT32",
    "INT64": "DT_INT64", "FP16": "DT_FLOAT", "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE", "BF16": "DT_FLOAT",
    "BYTES": "DT_STRING",
}
# InferTensorContents field per datatype; FP16 and BF16 travel only as raw bytes.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
_KNOWN = ", ".join(DATATYPES)


# --------------------------------------------------------------------------- datatypes


def numpy_dtype(datatype: str, *, tensor: str = "") -> np.dtype:
    """The numpy dtype of a V2 datatype name; INVALID_ARGUMENT for an unknown one."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        where = f" of tensor {tensor!r}" if tensor else ""
        raise InvalidArgumentError(
            f"Unknown datatype {datatype!r}{where}: use one of {_KNOWN}.") from None


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype an ndarray travels as (str/bytes/object arrays are BYTES)."""
    dtype = array.dtype
    if dtype.kind in "OSU":
        return "BYTES"
    name = _BY_NUMPY.get(dtype.newbyteorder("=") if dtype.byteorder == ">" else dtype)
    if name is None:
        raise InvalidArgumentError(
            f"numpy dtype {dtype} has no Open Inference Protocol datatype; cast the array to one of "
            "bool, (u)int8-64, float16/32/64, bfloat16 or str/bytes.")
    return name


def datatype_for_tf(tf_dtype: str) -> str:
    """The V2 datatype of a TensorFlow dtype name (``DT_FLOAT`` -> ``FP32``); UNIMPLEMENTED for
    types the protocol cannot carry (complex, resource, variant)."""
    dt = dtypes.by_name(tf_dtype)
    if dt.is_string:
        return "BYTES"
    if dt.numpy is None or dt.numpy.kind == "c":
        raise UnimplementedError(
            f"{dt.name} tensors have no Open Inference Protocol datatype; serve this signature over "
            "TF Serving's gRPC API instead.")
    return _BY_NUMPY[dt.numpy]


def _shape(value: Any, tensor: str) -> tuple[int, ...]:
    """A request's shape, checked: a list of ints (JSON may hold anything; a proto's are int64)."""
    if not isinstance(value, (list, tuple)) or not all(
            type(d) is int or (isinstance(d, int) and not isinstance(d, bool)) for d in value):
        raise InvalidArgumentError(
            f"Tensor {tensor!r}: shape must be a list of integers, got {str(value)[:80]}.")
    shape = tuple(value)
    if len(shape) > MAX_RANK:
        raise InvalidArgumentError(
            f"Tensor {tensor!r}: shape has {len(shape)} dimensions; at most {MAX_RANK} are supported.")
    if any(d < 0 for d in shape):
        raise InvalidArgumentError(
            f"Tensor {tensor!r}: shape {list(shape)} has a negative dimension; a request's shape is the "
            "actual size of each dimension (-1 appears only in model metadata).")
    check_shape(shape)
    return shape


def _count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _size_error(tensor: str, shape: tuple[int, ...], expected: int, got: int, what: str) -> ServingError:
    return InvalidArgumentError(
        f"Tensor {tensor!r}: shape {list(shape)} holds {expected} element(s) but {what} {got}; "
        "send one value per element (flat, row-major) or fix the shape.")


# --------------------------------------------------------------------------- raw bytes


def to_raw(array: np.ndarray) -> bytes:
    """The tensor's raw bytes: row-major little-endian; BYTES as length-prefixed elements."""
    if array.dtype.kind == "O":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            parts += [struct.pack("<I", len(data)), data]
        return b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def from_raw(data: bytes | memoryview, datatype: str, shape: Sequence[int], *, tensor: str = "") -> np.ndarray:
    """An ndarray from raw bytes; INVALID_ARGUMENT when the bytes do not fill ``shape`` exactly."""
    dtype = numpy_dtype(datatype, tensor=tensor)
    shape = _shape(shape if isinstance(shape, (list, tuple)) else list(shape), tensor)
    count = _count(shape)
    if datatype == "BYTES":
        return _bytes_elements(memoryview(data), count, tensor).reshape(shape)
    if len(data) != count * dtype.itemsize:
        raise InvalidArgumentError(
            f"Tensor {tensor!r}: {datatype} shape {list(shape)} needs {count * dtype.itemsize} bytes of raw "
            f"data but got {len(data)}; send the row-major little-endian values, nothing else.")
    return np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)


def _bytes_elements(view: memoryview, count: int, tensor: str) -> np.ndarray:
    out = np.empty(count, object)
    pos, end = 0, len(view)
    for i in range(count):
        if pos + 4 > end:
            raise InvalidArgumentError(
                f"Tensor {tensor!r}: BYTES raw data ends after {i} of {count} element(s); each element is "
                "a 4-byte little-endian length followed by that many bytes.")
        (size,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + size > end:
            raise InvalidArgumentError(
                f"Tensor {tensor!r}: BYTES element {i} claims {size} bytes but only {end - pos} remain.")
        out[i] = bytes(view[pos:pos + size])
        pos += size
    if pos != end:
        raise InvalidArgumentError(
            f"Tensor {tensor!r}: BYTES raw data has {end - pos} byte(s) after its {count} element(s); "
            "the shape and the data disagree.")
    return out


# --------------------------------------------------------------------------- JSON tensors


def _from_json_data(data: Any, datatype: str, shape: tuple[int, ...], tensor: str) -> np.ndarray:
    dtype = numpy_dtype(datatype, tensor=tensor)
    if isinstance(data, (str, bytes, dict, bool, int, float)) and not isinstance(data, list):
        data = [data]  # a lone scalar for a one-element tensor
    if not isinstance(data, (list, np.ndarray)):
        raise InvalidArgumentError(f"Tensor {tensor!r}: 'data' must be a list of values.")
    try:
        arr = decode_value(data, dtypes.by_name(_TF_NAME[datatype]))
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"Tensor {tensor!r} ({datatype}): {exc.message}") from None
    expected = _count(shape)
    if arr.size != expected:
        raise _size_error(tensor, shape, expected, arr.size, "'data' has")
    return arr.reshape(shape).astype(dtype, copy=False)


def _to_json_data(array: np.ndarray, name: str) -> Any:
    flat = array.reshape(-1)
    if array.dtype.kind == "O":
        try:
            return [x.decode("utf-8") if isinstance(x, bytes) else x for x in flat]
        except UnicodeDecodeError:
            return None  # not text: the caller sends this tensor as binary data
    if array.dtype in (DATATYPES["FP16"], DATATYPES["BF16"]):
        flat = flat.astype(np.float32)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        raise UnimplementedError(
            f"Tensor {name!r} holds NaN or Infinity, which JSON cannot carry; ask for it as binary data "
            "(parameters.binary_data_output) or use gRPC.")
    return flat


def _tensor_json(name: str, array: np.ndarray, binary: bool, chunks: list[bytes],
                 parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype_of(array)}
    params = dict(parameters or {})
    data = None if binary else _to_json_data(array, name)
    if data is None:
        raw = to_raw(array)
        chunks.append(raw)
        params["binary_data_size"] = len(raw)
    else:
        doc["data"] = data
    if params:
        doc["parameters"] = params
    return doc


def _body(doc: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, int | None]:
    head = dumps(doc)
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


def _split(body: bytes | bytearray | memoryview, header_length: Any) -> tuple[Any, memoryview]:
    view = memoryview(body)
    if header_length is None or header_length == "":
        return loads(bytes(view), numeric_arrays=True), view[len(view):]
    try:
        size = int(header_length)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{HEADER_LENGTH} must be a whole number of bytes, got {str(header_length)[:40]!r}.") from None
    if not 0 < size <= len(view):
        raise InvalidArgumentError(
            f"{HEADER_LENGTH} is {size} but the body has {len(view)} bytes: it must be the length of the "
            "JSON part that starts the body.")
    return loads(bytes(view[:size]), numeric_arrays=True), view[size:]


def _tensor_from_json(doc: Any, binary: memoryview, pos: int, where: str) -> tuple[str, np.ndarray, int]:
    if not isinstance(doc, dict):
        raise InvalidArgumentError(f"Each entry of '{where}' must be an object with name, shape, datatype.")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"An entry of '{where}' has no 'name'.")
    for key in ("shape", "datatype"):
        if key not in doc:
            raise InvalidArgumentError(f"Tensor {name!r} has no {key!r}.")
    datatype = doc["datatype"]
    numpy_dtype(datatype, tensor=name)
    shape = _shape(doc["shape"], name)
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidArgumentError(f"Tensor {name!r}: 'parameters' must be an object.")
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in doc:
            raise InvalidArgumentError(
                f"Tensor {name!r} has neither 'data' nor parameters.binary_data_size.")
        return name, _from_json_data(doc["data"], datatype, shape, name), pos
    if "data" in doc:
        raise InvalidArgumentError(f"Tensor {name!r} has both 'data' and parameters.binary_data_size; send one.")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgumentError(f"Tensor {name!r}: binary_data_size must be a non-negative integer.")
    if pos + size > len(binary):
        raise InvalidArgumentError(
            f"Tensor {name!r}: binary_data_size {size} reaches past the {len(binary) - pos} byte(s) of binary "
            f"data left; is {HEADER_LENGTH} right?")
    return name, from_raw(binary[pos:pos + size], datatype, shape, tensor=name), pos + size


def _json_parameters(doc: dict[str, Any]) -> dict[str, Any]:
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidArgumentError("'parameters' must be an object.")
    return params


@dataclass
class RequestedOutput:
    """An output a request asks for; ``binary`` is the binary_data parameter (None: not given)."""

    name: str
    binary: bool | None = None


@dataclass
class InferRequest:
    """One V2 inference request, whatever the transport.

    ``outputs`` empty means every output. ``parameters`` holds the request parameters
    (``signature_name`` selects a TF signature on tfship's server).
    """

    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def binary_output(self, name: str) -> bool:
        """Whether output ``name`` should come back as binary data (REST)."""
        for out in self.outputs:
            if out.name == name and out.binary is not None:
                return out.binary
        return bool(self.parameters.get("binary_data_output", False))


@dataclass
class InferResponse:
    """One V2 inference response: outputs by name, in order."""

    model_name: str
    model_version: str = ""
    id: str = ""
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


def request_to_json(request: InferRequest, *, binary: bool = True) -> tuple[bytes, int | None]:
    """The REST body and, when binary data follows the JSON, its header length."""
    chunks: list[bytes] = []
    doc: dict[str, Any] = {}
    if request.id:
        doc["id"] = request.id
    if request.parameters:
        doc["parameters"] = dict(request.parameters)
    doc["inputs"] = [_tensor_json(n, as_ndarray(a), binary, chunks) for n, a in request.inputs.items()]
    if request.outputs:
        doc["outputs"] = [{"name": o.name, **({"parameters": {"binary_data": o.binary}} if o.binary is not None
                                              else {})} for o in request.outputs]
    return _body(doc, chunks)


def request_from_json(body: bytes | bytearray | memoryview, header_length: Any, model_name: str,
                      model_version: str = "") -> InferRequest:
    """Parse a REST infer body (JSON, or JSON + binary data when ``header_length`` is given)."""
    doc, binary = _split(body, header_length)
    if not isinstance(doc, dict):
        raise InvalidArgumentError("An infer request body is a JSON object with an 'inputs' list.")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgumentError("An infer request needs a non-empty 'inputs' list.")
    inputs: dict[str, np.ndarray] = {}
    pos = 0
    for item in raw_inputs:
        name, array, pos = _tensor_from_json(item, binary, pos, "inputs")
        if name in inputs:
            raise InvalidArgumentError(f"Input {name!r} is given twice.")
        inputs[name] = array
    if pos != len(binary):
        raise InvalidArgumentError(
            f"The body has {len(binary) - pos} byte(s) of binary data that no input's binary_data_size "
            "claims; check the sizes and the header length.")
    outputs = []
    for item in doc.get("outputs") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgumentError("Each entry of 'outputs' must be an object with a 'name'.")
        flag = (item.get("parameters") or {}).get("binary_data")
        outputs.append(RequestedOutput(item["name"], None if flag is None else bool(flag)))
    request_id = doc.get("id", "")
    return InferRequest(model_name, model_version, str(request_id) if request_id is not None else "",
                        inputs, outputs, _json_parameters(doc))


def response_to_json(response: InferResponse, binary_for: Any = None) -> tuple[bytes, int | None]:
    """The REST answer body (and header length when binary data follows); ``binary_for(name)``
    says which outputs go as binary data. BYTES outputs that are not UTF-8 always do."""
    chunks: list[bytes] = []
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = dict(response.parameters)
    doc["outputs"] = [_tensor_json(n, a, bool(binary_for and binary_for(n)), chunks)
                      for n, a in response.outputs.items()]
    return _body(doc, chunks)


def response_from_json(body: bytes | bytearray | memoryview, header_length: Any = None) -> InferResponse:
    """Parse a REST infer answer (JSON, or JSON + binary data)."""
    doc, binary = _split(body, header_length)
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
        raise InvalidArgumentError("An infer answer is a JSON object with an 'outputs' list.")
    outputs: dict[str, np.ndarray] = {}
    pos = 0
    for item in doc["outputs"]:
        name, array, pos = _tensor_from_json(item, binary, pos, "outputs")
        outputs[name] = array
    return InferResponse(str(doc.get("model_name", "")), str(doc.get("model_version", "")),
                         str(doc.get("id", "") or ""), _writable(outputs), _json_parameters(doc))


# --------------------------------------------------------------------------- gRPC messages


def _pb() -> Any:
    return _messages


def parameters_to_proto(params: Mapping[str, Any], target: Any) -> None:
    """Fill a ``map<string, InferParameter>`` from plain values (bool, int, float, str)."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            if value >= 2**63:
                slot.uint64_param = value
            else:
                slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        elif isinstance(value, str):
            slot.string_param = value
        else:
            raise InvalidArgumentError(
                f"Parameter {key!r} must be a bool, int, float or str, got {type(value).__name__}.")


def parameters_from_proto(params: Any) -> dict[str, Any]:
    """Plain values from a ``map<string, InferParameter>``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def _from_contents(tensor: Any) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    dtype = numpy_dtype(datatype, tensor=name)
    shape = _shape(list(tensor.shape), name)
    expected = _count(shape)
    field_name = _CONTENTS_FIELD.get(datatype)
    if field_name is None:
        raise InvalidArgumentError(
            f"Tensor {name!r}: {datatype} has no typed contents field; send it in raw_input_contents.")
    values = getattr(tensor.contents, field_name)
    if len(values) != expected:
        raise _size_error(name, shape, expected, len(values), f"contents.{field_name} has")
    if datatype == "BYTES":
        arr = np.empty(expected, object)
        arr[:] = list(values)
        return arr.reshape(shape)
    if dtype.kind in "iu" and dtype.itemsize < 4 and len(values):
        wide = np.asarray(values, np.int64)
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidArgumentError(f"Tensor {name!r}: values out of range for {datatype}.")
        return wide.astype(dtype).reshape(shape)
    return np.asarray(values, dtype).reshape(shape)


def _fill_contents(array: np.ndarray, contents: Any, name: str) -> None:
    datatype = datatype_of(array)
    field_name = _CONTENTS_FIELD.get(datatype)
    if field_name is None:
        raise InvalidArgumentError(f"Tensor {name!r}: {datatype} travels only as raw contents.")
    flat = array.reshape(-1)
    getattr(contents, field_name).extend(list(flat) if datatype == "BYTES" else flat.tolist())


def _tensors_from_proto(tensors: Any, raw: Sequence[bytes], what: str) -> dict[str, np.ndarray]:
    if raw and len(raw) != len(tensors):
        raise InvalidArgumentError(
            f"raw_{what}_contents has {len(raw)} entries for {len(tensors)} {what}s; give one per {what}, "
            "in order, or use typed contents for all of them.")
    out: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(tensors):
        if not tensor.name:
            raise InvalidArgumentError(f"An {what} tensor has no name.")
        if tensor.name in out:
            raise InvalidArgumentError(f"{what.capitalize()} {tensor.name!r} is given twice.")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgumentError(
                    f"Tensor {tensor.name!r} has typed contents while raw_{what}_contents is used; use one way.")
            out[tensor.name] = from_raw(raw[i], tensor.datatype, list(tensor.shape), tensor=tensor.name)
        else:
            out[tensor.name] = _from_contents(tensor)
    return out


def request_to_proto(request: InferRequest, *, raw: bool = True) -> bytes:
    """A serialized ``ModelInferRequest`` (raw_input_contents unless ``raw=False``)."""
    pb = _pb()
    message = pb.ModelInferRequest(model_name=request.model_name, model_version=request.model_version,
                                   id=request.id)
    parameters_to_proto(request.parameters, message.parameters)
    for name, value in request.inputs.items():
        array = as_ndarray(value)
        tensor = message.inputs.add(name=name, datatype=datatype_of(array), shape=list(array.shape))
        if raw or datatype_of(array) in ("FP16", "BF16"):
            message.raw_input_contents.append(to_raw(array))
        else:
            _fill_contents(array, tensor.contents, name)
    for out in request.outputs:
        message.outputs.add(name=out.name)
    if message.raw_input_contents and len(message.raw_input_contents) != len(message.inputs):
        raise InvalidArgumentError("Mixing raw and typed inputs: send FP16/BF16 with raw=True.")
    return message.SerializeToString()  # type: ignore[no-any-return]


def request_from_proto(data: bytes) -> InferRequest:
    """Parse a serialized ``ModelInferRequest``."""
    pb = _pb()
    try:
        message = pb.ModelInferRequest.FromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise InvalidArgumentError("The ModelInferRequest could not be parsed.") from None
    inputs = _tensors_from_proto(message.inputs, message.raw_input_contents, "input")
    outputs = [RequestedOutput(o.name) for o in message.outputs]
    return InferRequest(message.model_name, message.model_version, message.id, inputs, outputs,
                        parameters_from_proto(message.parameters))


def response_to_proto(response: InferResponse) -> bytes:
    """A serialized ``ModelInferResponse`` with raw_output_contents (what tritonclient reads)."""
    pb = _pb()
    message = pb.ModelInferResponse(model_name=response.model_name, model_version=response.model_version,
                                    id=response.id)
    parameters_to_proto(response.parameters, message.parameters)
    for name, array in response.outputs.items():
        message.outputs.add(name=name, datatype=datatype_of(array), shape=list(array.shape))
        message.raw_output_contents.append(to_raw(array))
    return message.SerializeToString()  # type: ignore[no-any-return]


def response_from_proto(data: bytes) -> InferResponse:
    """Parse a serialized ``ModelInferResponse`` (raw or typed contents)."""
    pb = _pb()
    message = pb.ModelInferResponse.FromString(data)
    outputs = _tensors_from_proto(message.outputs, message.raw_output_contents, "output")
    return InferResponse(message.model_name, message.model_version, message.id, _writable(outputs),
                         parameters_from_proto(message.parameters))


def _writable(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Answers are handed to applications, which may write to them; views of the body are not.
    return {k: v if v.flags.writeable else v.copy() for k, v in arrays.items()}
