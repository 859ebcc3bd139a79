"""Call a V2 server with clients nobody here wrote: tritonclient (http, grpc) and kserve's
InferenceRESTClient / InferenceGRPCClient. Prints what each one got, as JSON.

Run by the Python of the venv that holds them (tests/serving/v2/conftest.py builds it: their
protobuf pins clash with tfship's), once per client: ``python v2_clients.py triton-http`` (or
triton-grpc, kserve-rest, kserve-grpc). tritonclient and kserve cannot even be imported in one
process: both register the protocol's messages as package ``inference`` ("duplicate symbol").
Reads the plan from stdin:

    {"http": "127.0.0.1:P", "grpc": "127.0.0.1:Q", "model": "keras", "input": "features",
     "output": "probs", "x": [[...]], "strings_model": "strings", "strings": ["a", ...]}

and answers ``{case: result}``; a result is a value, or ``{"error": {"code", "message"}}``
where code is the HTTP status or the gRPC status name the client reported.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np


def _caught(fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the error is the result under test
        return {"error": _describe(exc)}


def _describe(exc: Exception) -> dict[str, Any]:
    if type(exc).__name__ == "InferenceServerException":  # tritonclient's
        return {"code": str(exc.status()), "message": str(exc.message())}  # type: ignore[attr-defined]
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.RpcError
        return {"code": code().name, "message": exc.details()}  # type: ignore[attr-defined]
    response = getattr(exc, "response", None)
    if response is not None:  # httpx.HTTPStatusError
        return {"code": str(response.status_code), "message": response.text}
    return {"code": type(exc).__name__, "message": str(exc)}


def _array(value: np.ndarray) -> Any:
    if value.dtype == object:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]
    return {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.reshape(-1).tolist()}


def triton(plan: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "http":
        import tritonclient.http as client_module

        client = client_module.InferenceServerClient(plan["http"])
    else:
        import tritonclient.grpc as client_module  # type: ignore[no-redef]

        client = client_module.InferenceServerClient(plan["grpc"])
    model, x = plan["model"], np.asarray(plan["x"], np.float32)

    def infer(binary: bool, model_name: str = model, data: np.ndarray = x, datatype: str = "FP32",
              name: str = plan["input"]) -> Any:
        inp = client_module.InferInput(name, list(data.shape), datatype)
        if kind == "http":
            inp.set_data_from_numpy(data, binary_data=binary)
            out = client_module.InferRequestedOutput(plan["output"], binary_data=binary)
        else:
            inp.set_data_from_numpy(data)
            out = client_module.InferRequestedOutput(plan["output"])
        return _array(client.infer(model_name, [inp], outputs=[out]).as_numpy(plan["output"]))

    def strings(binary: bool) -> Any:
        data = np.array([s.encode() for s in plan["strings"]], dtype=np.object_)
        inp = client_module.InferInput("text", [len(data)], "BYTES")
        if kind == "http":
            inp.set_data_from_numpy(data, binary_data=binary)
            outs = [client_module.InferRequestedOutput(n, binary_data=binary) for n in ("upper", "length")]
        else:
            inp.set_data_from_numpy(data)
            outs = [client_module.InferRequestedOutput(n) for n in ("upper", "length")]
        result = client.infer(plan["strings_model"], [inp], outputs=outs)
        return {"upper": _array(result.as_numpy("upper")), "length": _array(result.as_numpy("length"))}

    def metadata() -> Any:
        meta = client.get_model_metadata(model) if kind == "http" else client.get_model_metadata(model, as_json=True)
        return {k: meta.get(k) for k in ("name", "versions", "platform", "inputs", "outputs")}

    results = {
        "server_live": _caught(client.is_server_live),
        "server_ready": _caught(client.is_server_ready),
        "model_ready": _caught(lambda: client.is_model_ready(model)),
        "server_metadata": _caught(lambda: client.get_server_metadata()
                                   if kind == "http" else client.get_server_metadata(as_json=True)),
        "metadata": _caught(metadata),
        "infer_binary": _caught(lambda: infer(True)),
        "infer_json": _caught(lambda: infer(False)),
        "strings_binary": _caught(lambda: strings(True)),
        "strings_json": _caught(lambda: strings(False)),
        "unknown_model": _caught(lambda: infer(True, model_name="no_such_model")),
        "unknown_model_ready": _caught(lambda: client.is_model_ready("no_such_model")),
        "wrong_dtype": _caught(lambda: infer(True, data=x.astype(np.int32), datatype="INT32")),
        "wrong_shape": _caught(lambda: infer(True, data=np.ones((2, 7), np.float32))),
    }
    client.close()
    return results


async def kserve(plan: dict[str, Any], kind: str) -> dict[str, Any]:
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

    model, x = plan["model"], np.asarray(plan["x"], np.float32)
    base = f"http://{plan['http']}"
    if kind == "rest":
        client: Any = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=60))
    else:
        client = InferenceGRPCClient(plan["grpc"], retries=2, timeout=60)

    async def infer(binary: bool, model_name: str = model, data: np.ndarray = x, datatype: str = "FP32") -> Any:
        inp = InferInput(plan["input"], list(data.shape), datatype)
        inp.set_data_from_numpy(data, binary_data=binary)
        request = InferRequest(model_name=model_name, infer_inputs=[inp], request_id="conformance")
        if kind == "rest":
            response = await client.infer(base, request, model_name=model_name)
        else:
            response = await client.infer(request)
        output = next(o for o in response.outputs if o.name == plan["output"])
        return {"id": response.id, "model_name": response.model_name, "output": _array(output.as_numpy())}

    async def caught(coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:  # noqa: BLE001 - the error is the result under test
            return {"error": _describe(exc)}

    if kind == "rest":
        ready, live, model_ready = (client.is_server_ready(base), client.is_server_live(base),
                                    client.is_model_ready(base, model))
    else:
        ready, live, model_ready = client.is_server_ready(), client.is_server_live(), client.is_model_ready(model)
    results = {
        "server_live": await caught(live),
        "server_ready": await caught(ready),
        "model_ready": await caught(model_ready),
        "infer_binary": await caught(infer(True)),
        "infer_json": await caught(infer(False)),
        "unknown_model": await caught(infer(True, model_name="no_such_model")),
        "wrong_dtype": await caught(infer(True, data=x.astype(np.int32), datatype="INT32")),
        "wrong_shape": await caught(infer(True, data=np.ones((2, 7), np.float32))),
    }
    await client.close()
    return results


def main() -> None:
    plan = json.load(sys.stdin)
    family, kind = sys.argv[1].split("-")
    out = triton(plan, kind) if family == "triton" else asyncio.run(kserve(plan, kind))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
