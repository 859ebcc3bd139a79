"""The Open Inference Protocol (V2) columns of bench/server_bench.py, on tfship-model-server itself.

Targets (``V2_TARGETS``), all on the batching-off tfship server that serves ``grpc`` and ``rest``
(same process, same ports):

* ``v2-grpc``      ``inference.GRPCInferenceService/ModelInfer``, FP32 ``raw_input_contents``
  (what tritonclient and KServe's gRPC client send);
* ``v2-rest``      ``POST /v2/models/{m}/infer`` with a JSON tensor (``data`` flat), JSON answer;
* ``v2-rest-bin``  the same with the binary tensor data extension both ways
  (``Inference-Header-Content-Length``, ``binary_data_output``).

Requests are encoded once per cell with :mod:`tfship.wire.v2` (the codec the server and client
use); the checked call is decoded fully and compared with the in-process model by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

V2_TARGETS = ("v2-grpc", "v2-rest", "v2-rest-bin")
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class V2Request:
    """One cell's pre-encoded request, in the forms both load generators need."""

    kind: str  # "grpc" (payload = serialized ModelInferRequest) or "http" (payload = full HTTP/1.1 request)
    port: int
    payload: bytes
    method: str  # the gRPC method path ("" for http)
    url: str  # for h2load
    body: bytes  # for h2load: the POST body (gRPC: length-prefixed message)
    headers: list[str]
    reply_bytes: int | None  # gRPC: serialized reply + 5 (h2load counts successes by it)
    predictions: np.ndarray  # the checked call's output, fully decoded


def _only_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    (value,) = outputs.values()
    return value


def v2_request(target: str, server: Any, model: str, alias: str, x: np.ndarray) -> V2Request:
    """Make one fully decoded call of ``target`` (also the cell's warm-up) and the request to repeat."""
    import grpc
    import httpx

    from tfship.wire import v2

    request = v2.InferRequest(model, inputs={alias: x})
    if target == "v2-grpc":
        payload = v2.request_to_proto(request)
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as channel:
            raw: bytes = channel.unary_unary(GRPC_METHOD)(payload, timeout=600)
        predictions = _only_output(v2.response_from_proto(raw).outputs)
        return V2Request("grpc", server.grpc_port, payload, GRPC_METHOD,
                         f"http://127.0.0.1:{server.grpc_port}{GRPC_METHOD}",
                         b"\x00" + len(payload).to_bytes(4, "big") + payload,
                         ["content-type: application/grpc", "te: trailers"], len(raw) + 5, predictions)
    binary = target == "v2-rest-bin"
    if binary:
        request.parameters["binary_data_output"] = True
    body, header = v2.request_to_json(request, binary=binary)
    headers = {"content-type": "application/json"}
    if header is not None:
        headers = {"content-type": "application/octet-stream", v2.HEADER_LENGTH.lower(): str(header)}
    path = f"/v2/models/{model}/infer"
    response = httpx.post(f"http://127.0.0.1:{server.rest_port}{path}", content=body, headers=headers, timeout=600)
    if response.status_code != 200:
        raise RuntimeError(f"{target} {model}: HTTP {response.status_code}: {response.text[:500]}")
    answer = v2.response_from_json(response.content, response.headers.get(v2.HEADER_LENGTH))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    http = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.rest_port}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return V2Request("http", server.rest_port, http, "", f"http://127.0.0.1:{server.rest_port}{path}", body,
                     [f"{k}: {v}" for k, v in headers.items()], None, _only_output(answer.outputs))


def paired_checks(rounds: int, cells: list[Any], models: list[str], concurrencies: list[int],
                  servers: dict[str, Any], rate: Any, paired_rounds: Any) -> dict[str, list[tuple[float, float]]]:
    """Paired rounds behind the V2 targets (cells minutes apart in the table drift on this box):

    * ``v2_binary_{model}_c{conc}``: V2 REST binary vs JSON at batch 1024;
    * ``v2_grpc_worst``: V2 gRPC vs TF Serving gRPC at the cell where the table shows the lowest ratio.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    if "v2-rest" in servers and "v2-rest-bin" in servers:
        for model in models:
            for conc in concurrencies:
                print(f"paired rounds, {model} b1024 c{conc} V2 REST binary vs JSON ({rounds}):", flush=True)
                out[f"v2_binary_{model}_c{conc}"] = paired_rounds(
                    rounds, lambda m=model, c=conc: rate("v2-rest-bin", m, 1024, c),
                    lambda m=model, c=conc: rate("v2-rest", m, 1024, c))
    if "v2-grpc" in servers and "grpc" in servers:
        index = {(c.model, c.target, c.batch, c.concurrency): c.rows_per_s for c in cells}
        keys = [(m, b, c) for (m, t, b, c) in index if t == "v2-grpc" and (m, "grpc", b, c) in index]
        if keys:
            model, batch, conc = min(keys, key=lambda k: index[(k[0], "v2-grpc", k[1], k[2])]
                                     / max(index[(k[0], "grpc", k[1], k[2])], 1e-9))
            print(f"paired rounds, V2 gRPC vs gRPC at the table's worst cell {model} b{batch} c{conc} ({rounds}):",
                  flush=True)
            out["v2_grpc_worst"] = paired_rounds(rounds, lambda: rate("v2-grpc", model, batch, conc),
                                                 lambda: rate("grpc", model, batch, conc))
    return out
