"""Encode a V2 ModelInferRequest / decode a ModelInferResponse with MLServer's own protobuf module.

Run with the MLServer venv's Python (bench/peers.py): the bench's Python has a protobuf release that
MLServer's generated ``dataplane_pb2`` does not support, and h2load only needs the bytes.

    python v2_grpc.py encode IN.npy MODEL INPUT_NAME OUT.bin    # raw_input_contents, FP32
    python v2_grpc.py decode IN.bin OUT.npy                     # the first output as an ndarray
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np


def _dataplane():
    # the generated module alone: importing the mlserver package would start its whole stack
    spec = importlib.util.find_spec("mlserver")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "grpc" / "dataplane_pb2.py"
    module_spec = importlib.util.spec_from_file_location("dataplane_pb2", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def encode(array_file: str, model: str, input_name: str, out: str) -> None:
    pb = _dataplane()
    x = np.load(array_file).astype(np.float32)
    request = pb.ModelInferRequest(model_name=model, id="bench")
    tensor = request.inputs.add(name=input_name, datatype="FP32", shape=list(x.shape))
    del tensor
    request.raw_input_contents.append(x.tobytes())
    Path(out).write_bytes(request.SerializeToString())


_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def decode(reply_file: str, out: str) -> None:
    pb = _dataplane()
    reply = pb.ModelInferResponse.FromString(Path(reply_file).read_bytes())
    output = reply.outputs[0]
    dtype = _DTYPES[output.datatype]
    if reply.raw_output_contents:
        y = np.frombuffer(reply.raw_output_contents[0], dtype=dtype)
    else:
        field = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents",
                 "INT32": "int_contents"}[output.datatype]
        y = np.asarray(getattr(output.contents, field), dtype=dtype)
    np.save(out, y.reshape(list(output.shape)))


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {"encode": encode, "decode": decode}[command](*rest)
