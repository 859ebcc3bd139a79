"""What the load generators send to tfship-model-server, encoded once per cell (a serialized
PredictRequest, its gRPC message framing, the REST JSON body and request), and one fully decoded
call of each transport (the check and warm-up of a cell).
"""

from __future__ import annotations

import struct

import numpy as np
from server_process import Server


def grpc_request(name: str, alias: str, x: np.ndarray) -> bytes:
    """A serialized PredictRequest (tensor_content, as clients send it)."""
    from tensorflow_serving.apis import predict_pb2

    from tfship.wire.tensor import to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    to_tensor_proto(x, request.inputs[alias])
    return request.SerializeToString()


def grpc_message(payload: bytes) -> bytes:
    """``payload`` as one gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def json_body(x: np.ndarray) -> bytes:
    """The row-format JSON request body ``{"instances": x}``."""
    import orjson

    return orjson.dumps({"instances": x}, option=orjson.OPT_SERIALIZE_NUMPY)


def http_request(port: int, path: str, x: np.ndarray) -> bytes:
    """A complete HTTP/1.1 keep-alive POST with the row-format JSON body."""
    body = json_body(x)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def check_reply(target: str, server: Server, model: str, alias: str, x: np.ndarray) -> tuple[int, np.ndarray]:
    """One fully decoded call of tfship's server (also the warm-up): (reply bytes, predictions).

    The reply's length is in bytes as the server sent it (the serialized PredictResponse for
    gRPC, the JSON body for REST): h2load counts gRPC successes by it.
    """
    if target.startswith("grpc"):
        import grpc
        from tensorflow_serving.apis import predict_pb2

        from tfship.wire.tensor import to_ndarray

        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as channel:
            # no (de)serializers: the raw reply bytes, whose length is what the server sends
            predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            raw: bytes = predict(grpc_request(model, alias, x), timeout=600)
        reply = predict_pb2.PredictResponse.FromString(raw)
        (output,) = reply.outputs.values()
        predictions = to_ndarray(output)
    else:
        import httpx
        import orjson

        response = httpx.post(f"http://127.0.0.1:{server.rest_port}/v1/models/{model}:predict",
                              content=json_body(x), headers={"content-type": "application/json"},
                              timeout=600)
        response.raise_for_status()
        raw = response.content
        predictions = np.asarray(orjson.loads(raw)["predictions"], dtype=np.float32)
    return len(raw), predictions
