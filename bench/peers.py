"""The servers users would pick instead of tfship (issue 14): BentoML and MLServer on the same SavedModel.

Each peer runs in its own virtualenv, not the bench's Python: both pin protobuf/grpcio/fastapi
releases that conflict with ours (MLServer 1.7 needs protobuf < 7 and fastapi < 0.116), so
``--system-site-packages`` would break one side or the other. A venv is created on first use under
``~/.cache/tfship-bench/venvs/<peer>-<version>-<hash>`` (``TFSHIP_BENCH_VENVS`` moves it) with the
peer and the same TensorFlow release as the bench (``tensorflow-cpu``), and rebuilt when its
requirements change (the hash covers them and the Python version). First creation: 107 s and
1.6 GB (BentoML), 75 s and 1.8 GB (MLServer) on the dev box (TensorFlow is most of it).

Targets (``PEER_TARGETS``): ``bentoml``/``bentoml+b`` (REST, adaptive batching off/on),
``mlserver``/``mlserver+b`` (V2 REST) and ``mlserver-grpc``/``mlserver-grpc+b`` (V2 gRPC
``ModelInfer``, FP32 ``raw_input_contents``), one server per peer and batching setting.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from server_process import Server, free_port

PEER_APPS = Path(__file__).parent / "peer_apps"
PEER_TARGETS = ("bentoml", "bentoml+b", "mlserver", "mlserver+b", "mlserver-grpc", "mlserver-grpc+b")
PEER_VERSIONS = {"bentoml": "1.4.40", "mlserver": "1.7.1"}
VENV_TIMEOUT = 1800.0  # a first install downloads ~600 MB
# MLServer: the front process (REST + gRPC + adaptive batching, asyncio) needs about one of the two
# cores under load; one inference worker process (its default) takes the other. A second worker
# would only make two TensorFlow runs (each multi-threaded) fight the front end for 2 cores.
MLSERVER_PARALLEL_WORKERS = 1
# MLServer's batcher counts requests (not rows) and waits up to max_batch_time for max_batch_size of
# them: 16 = the c16 cells' client count, so a full batch leaves as soon as every client has sent
# (generous to MLServer: a real deployment cannot know its client count); 2 ms bounds the wait
# when fewer are in flight.
MLSERVER_BATCHING = {"max_batch_size": 16, "max_batch_time": 0.002}


@dataclass
class PeerCall:
    """One cell's request for h2load and what the server answered to the checked call."""

    url: str
    body: bytes
    headers: list[str]
    http1: bool
    grpc_reply_bytes: int | None  # serialized reply + 5 (gRPC message prefix); None for REST
    predictions: np.ndarray  # fully decoded outputs of the checked call


def peer_of(target: str) -> str:
    return target.split("-")[0].removesuffix("+b")


# --------------------------------------------------------------------------- venvs


# MLServer 1.7.1's inference workers call asyncio.get_event_loop() before setting a loop, which
# uvloop >= 0.22 turns into "RuntimeError: There is no current event loop" (workers restart forever)
PEER_EXTRA_REQUIREMENTS = {"bentoml": [], "mlserver": ["uvloop<0.22"]}


def requirements(peer: str) -> list[str]:
    """The peer pinned, plus the bench's TensorFlow release (CPU wheel), so both load the model alike."""
    return [f"{peer}=={PEER_VERSIONS[peer]}", f"tensorflow-cpu=={importlib.metadata.version('tensorflow')}",
            *PEER_EXTRA_REQUIREMENTS[peer]]


def venv_root() -> Path:
    return Path(os.environ.get("TFSHIP_BENCH_VENVS", "~/.cache/tfship-bench/venvs")).expanduser()


def peer_venv(peer: str) -> Path:
    """The peer's venv, created (or rebuilt, if its requirements changed) on first use."""
    reqs = "\n".join(requirements(peer)) + "\n"
    key = hashlib.sha256(f"{sys.version}\n{reqs}".encode()).hexdigest()[:10]
    venv = venv_root() / f"{peer}-{PEER_VERSIONS[peer]}-{key}"
    stamp = venv / "tfship-bench-requirements.txt"
    if stamp.is_file() and stamp.read_text() == reqs:
        return venv
    for stale in venv_root().glob(f"{peer}-*"):  # older requirements: not used again
        shutil.rmtree(stale, ignore_errors=True)
    print(f"creating the {peer} venv in {venv} (first use; ~2-3 min) ...", flush=True)
    started = time.monotonic()
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    log = venv_root() / f"{venv.name}-install.log"
    with log.open("wb") as out:  # pip's output only matters when it fails
        done = subprocess.run(pip + requirements(peer), stdout=out, stderr=subprocess.STDOUT, timeout=VENV_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"creating the {peer} venv failed (pip exit {done.returncode}):\n"
                           f"{log.read_text()[-3000:]}")
    stamp.write_text(reqs)  # last: a half-built venv is rebuilt next time
    print(f"  {peer} venv ready in {time.monotonic() - started:.0f} s", flush=True)
    return venv


def _env(venv: Path, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "PYTHONPATH": str(PEER_APPS),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "BENTOML_HOME": str(workdir / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
    })
    return env


# --------------------------------------------------------------------------- servers


def start_bentoml(models: dict[str, Path], batching: bool, workdir: Path) -> Server:
    """``bentoml serve`` of peer_apps/bentoml_service.py (one API per model: POST /mlp, /cnn)."""
    venv = peer_venv("bentoml")
    port = free_port()
    env = _env(venv, workdir)
    env["TFSHIP_BENCH_MODELS"] = json.dumps({name: str(path) for name, path in models.items()})
    env["TFSHIP_BENCH_BATCHING"] = "1" if batching else "0"
    argv = [str(venv / "bin" / "bentoml"), "serve", "bentoml_service:TfshipBench", "--host", "127.0.0.1",
            "--port", str(port), "--working-dir", str(PEER_APPS)]
    log = workdir / f"bentoml{'_batching' if batching else ''}.log"
    return Server(argv, log, None, port, env=env, cwd=workdir).ready([f"http://127.0.0.1:{port}/readyz"])


def start_mlserver(models: dict[str, Path], batching: bool, workdir: Path) -> Server:
    """``mlserver start`` of a model repository: one folder per model with its model-settings.json."""
    venv = peer_venv("mlserver")
    root = workdir / f"mlserver{'_batching' if batching else ''}"
    root.mkdir()
    grpc_port, rest_port = free_port(), free_port()
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": rest_port, "grpc_port": grpc_port, "metrics_port": free_port(),
        "parallel_workers": MLSERVER_PARALLEL_WORKERS,
        "debug": False,  # MLServer's switch for per-request access logs
    }))
    for name, version_dir in models.items():
        (root / name).mkdir()
        (root / name / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_runtime.SavedModelRuntime",
            "parameters": {"uri": str(version_dir)},
            **(MLSERVER_BATCHING if batching else {}),
        }))
    log = workdir / f"{root.name}.log"
    server = Server([str(venv / "bin" / "mlserver"), "start", str(root)], log, grpc_port, rest_port,
                    env=_env(venv, workdir), cwd=root)
    return server.ready([f"http://127.0.0.1:{rest_port}/v2/models/{name}/ready" for name in models])


def start_peer(peer: str, models: dict[str, Path], batching: bool, workdir: Path) -> Server:
    return (start_bentoml if peer == "bentoml" else start_mlserver)(models, batching, workdir)


# --------------------------------------------------------------------------- wire formats


def peer_call(target: str, server: Server, model: str, x: np.ndarray) -> PeerCall:
    """One fully decoded call of ``target`` (also the warm-up), and the request h2load repeats."""
    import httpx
    import orjson

    if target.startswith("mlserver-grpc"):
        return _mlserver_grpc_call(server, model, x)
    if target.startswith("bentoml"):
        url = f"http://127.0.0.1:{server.rest_port}/{model}"
        body = orjson.dumps({"instances": x}, option=orjson.OPT_SERIALIZE_NUMPY)
    else:
        url = f"http://127.0.0.1:{server.rest_port}/v2/models/{model}/infer"
        body = orjson.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                         "data": x.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY)
    response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=600)
    if response.status_code != 200:
        raise RuntimeError(f"{target} {model}: HTTP {response.status_code}: {response.text[:500]}")
    reply = orjson.loads(response.content)
    if target.startswith("bentoml"):
        predictions = np.asarray(reply, dtype=np.float32)
    else:
        (output,) = reply["outputs"]
        predictions = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    return PeerCall(url, body, ["content-type: application/json"], True, None, predictions)


def _mlserver_grpc_call(server: Server, model: str, x: np.ndarray) -> PeerCall:
    import grpc

    with tempfile.TemporaryDirectory(prefix="tfship-bench-v2-") as tmp:
        v2 = [str(peer_venv("mlserver") / "bin" / "python"), str(PEER_APPS / "v2_grpc.py")]
        np.save(f"{tmp}/x.npy", x)
        subprocess.run(v2 + ["encode", f"{tmp}/x.npy", model, "input", f"{tmp}/request.bin"], check=True)
        request = Path(f"{tmp}/request.bin").read_bytes()
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            raw: bytes = infer(request, timeout=600)
        Path(f"{tmp}/reply.bin").write_bytes(raw)
        subprocess.run(v2 + ["decode", f"{tmp}/reply.bin", f"{tmp}/y.npy"], check=True)
        predictions = np.load(f"{tmp}/y.npy")
    return PeerCall(f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer",
                    b"\x00" + len(request).to_bytes(4, "big") + request,
                    ["content-type: application/grpc", "te: trailers"], False, len(raw) + 5, predictions)
