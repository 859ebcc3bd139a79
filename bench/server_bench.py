#!/usr/bin/env python3
"""Benchmark tfship-model-server against its ceiling and its floor (issue 3, bench section).

For an MNIST-shaped MLP and a small CNN (Keras 3, exported with ``model.export``) it measures rows/s
and p50/p99 latency at batch 1, 32, 1024 and concurrency 1 and 16 for:

* ``in-process``  the exported ``serving_default`` signature called in this process (the ceiling);
* ``grpc``/``rest`` tfship-model-server with batching off, and ``grpc+b``/``rest+b`` with
  ``--enable_batching`` (the batching parameters are printed);
* ``fastapi``     a naive FastAPI + uvicorn server calling ``model.predict`` per request, the way
  tutorials do (the floor users start from);
* with ``--peers``: ``bentoml``/``bentoml+b`` (REST), ``mlserver``/``mlserver+b`` (V2 REST) and
  ``mlserver-grpc``/``mlserver-grpc+b`` (V2 gRPC), BentoML 1.4 and MLServer 1.7 serving the same
  SavedModels, configured as their docs recommend, batching off/on, each in its own venv (created
  on first use under ~/.cache/tfship-bench/venvs; see bench/peers.py). Opt-in: they add ~10 min;
* with ``--baseline-rev REV``: ``grpc@base`` ... ``rest+b@base``, the model server of git revision
  REV (a temporary worktree, bench/baseline.py) with the same flags, measured in the same run.

Every cell's first call is fully decoded and its predictions compared with the in-process model's
(same shape, allclose).

The ratio targets (issue 3 and issue 14) are printed PASS/MISS at the end; those comparing two
setups at one cell use ``--paired-rounds`` alternating rounds (gRPC vs in-process at cnn b1024,
batching on vs off and best tfship vs best @base at b1 c16 for each model) and judge the median
ratio. ``--idle-connections N`` (default 2,000; 0 skips it) measures the rest mlp b1 c16 cell's p99
with and without N idle keep-alive connections held open (bench/idle_connections.py), alternating.

Install everything it needs with ``pip install -e '.[bench]'``. Every server runs as a subprocess
on free 127.0.0.1 ports (the model server with ``--grpc_max_threads`` and
``--rest_api_num_threads`` above the client concurrency, so the server, not a thread cap, decides
how many requests run at once) and is stopped at the end.

Load generation (``--load-generator``; ``auto``, the default, picks h2load when it is on PATH).
Client and server share the same cores, so client CPU is taken from the server: both generators
encode each cell's request once, and each cell records the client's CPU (``client_cpu``, in
cores) beside the server's (``server_cpu``). Each cell first makes one fully decoded,
shape-checked call (also the warm-up of that batch size).

* ``h2load`` (nghttp2's C load generator, ``apt-get install nghttp2-client``): ~0.05 ms of CPU
  per call, against 0.2-0.35 ms for the Python one. gRPC is an HTTP/2 POST of one gRPC
  length-prefixed message (``00``, 4-byte big-endian length, serialized PredictRequest) with
  ``content-type: application/grpc`` and ``te: trailers``; REST is HTTP/1.1 keep-alive POSTs of
  the JSON body (``--h1``). h2load does not read the ``grpc-status`` trailer, so gRPC successes
  are counted from the reply DATA bytes: a success carries exactly the serialized PredictResponse
  + 5 bytes (length from the check call's raw reply), a gRPC error is trailers-only (no DATA), so
  successes = min(2xx, DATA bytes // that size); REST successes = 2xx. errors = requests -
  successes (non-2xx, gRPC errors, failed or timed-out requests). Per cell h2load makes one call
  per connection (a latency probe), a ~1 s warm-up, then the measured run: a request count
  (``-n``) sized from the warm-up's rate to last ``--seconds``, at least ``--min-calls``, a
  multiple of the concurrency. Not ``-D``: in ``-D`` mode h2load counts warm-up replies' DATA
  bytes in its total and drops the calls in flight at the end, so successes would not be exact.
  p50/p99 come from ``--log-file`` (per request: start, status, microseconds to the end of the
  reply), 2xx rows (for gRPC these include gRPC errors, if any); the duration is the log's span,
  first request sent to last reply received. ``client_cpu`` is h2load's CPU (getrusage of
  children) over the measured run's wall time.
* ``python``: ``--client-procs`` spawned client processes (default 2) each drive their share of
  the in-flight calls from one asyncio loop (grpc.aio with raw bytes; keep-alive sockets sending
  a pre-encoded HTTP/1.1 request). Success: gRPC OK / HTTP 200 with a body. Each cell runs for
  ``--seconds`` or at least ``--min-calls`` calls.

Each cell runs for about ``--seconds`` (default 3). Prints a table and writes JSON (``--out``,
default bench/results/server_bench.json; ``load_generator`` says which one ran).

    python bench/server_bench.py                      # full matrix, ~8-11 min on 2 cores
    python bench/server_bench.py --quick              # cnn only, batch 1 and 1024, ~3 min
    python bench/server_bench.py --peers --baseline-rev dda86f7   # + BentoML, MLServer, today's server
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import peers
from baseline import Baseline
from idle_connections import IdleConnections, raise_file_limit
from server_process import Server, free_port

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Batching for closed-loop clients on 2 cores: one batch runs per core at most, and a batch starts
# as soon as a slot is free with whatever rows queued meanwhile (batch_timeout_micros 0). With only
# 16 requests in flight a timeout only idles the box: called in-process from 16 threads (no
# transport), the CNN's one-row runs batch to 12,232 rows/s with 0 us vs 7,306 with 1000 us
# (unbatched: 6,974), and one client pays the whole timeout on every call.
BATCHING = {
    "max_batch_size": 1024,
    "batch_timeout_micros": 0,
    "max_enqueued_batches": 1000,
    "num_batch_threads": 2,
}
# above the 16 concurrent clients: the defaults (4 x cores = 8) would cap requests in flight
SERVER_THREAD_FLAGS = ["--grpc_max_threads=64", "--rest_api_num_threads=64"]


@dataclass
class Cell:
    model: str
    target: str
    batch: int
    concurrency: int
    calls: int
    errors: int
    seconds: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    client_cpu: float | None = None  # client processes' CPU time / wall time, in cores
    server_cpu: float | None = None  # the server process's CPU time / wall time, in cores


# --------------------------------------------------------------------------- models


def build_models(base: Path) -> dict[str, tuple[Path, Path, tuple[int, ...]]]:
    """Export the MLP and CNN; returns name -> (version dir, .keras file, input row shape)."""
    import keras

    keras.utils.set_random_seed(0)
    models = {
        "mlp": (
            keras.Sequential([
                keras.Input((784,)),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(10),
            ]),
            (784,),
        ),
        "cnn": (
            keras.Sequential([
                keras.Input((28, 28, 1)),
                keras.layers.Conv2D(16, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(10),
            ]),
            (28, 28, 1),
        ),
    }
    out = {}
    for name, (model, shape) in models.items():
        version_dir = base / "models" / name / "1"
        model.export(str(version_dir), format="tf_saved_model", verbose=False)
        keras_file = base / f"{name}.keras"
        model.save(keras_file)
        out[name] = (version_dir, keras_file, shape)
    return out


# --------------------------------------------------------------------------- processes


def start_model_server(base: Path, names: list[str], batching: bool, workdir: Path,
                       extra_flags: list[str], exe: list[str] | None = None, label: str = "") -> Server:
    """tfship-model-server on ``names`` (``exe``: another revision's, see ``--baseline-rev``)."""
    config = workdir / "models.config"
    entries = "".join(
        f'  config {{ name: "{n}" base_path: "{base / "models" / n}" model_platform: "tensorflow" }}\n'
        for n in names
    )
    config.write_text(f"model_config_list {{\n{entries}}}\n")
    grpc_port, rest_port = free_port(), free_port()
    if exe is None:
        found = shutil.which("tfship-model-server")
        exe = [found] if found else [sys.executable, "-m", "tfship.serving.main"]
    argv = list(exe)
    argv += [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_config_file={config}"]
    argv += SERVER_THREAD_FLAGS + extra_flags
    if batching:
        params = workdir / "batching.config"
        params.write_text("".join(f"{k} {{ value: {v} }}\n" for k, v in BATCHING.items()))
        argv += ["--enable_batching", f"--batching_parameters_file={params}"]
    log = workdir / f"model_server{label}{'_batching' if batching else ''}.log"
    return Server(argv, log, grpc_port, rest_port).ready(
        [f"http://127.0.0.1:{rest_port}/v1/models/{name}" for name in names], lambda body: b'"AVAILABLE"' in body)


FASTAPI_APP = textwrap.dedent(
    """
    # The tutorial way: load the Keras model, model.predict per request, .tolist() back.
    import os, sys
    import keras, numpy as np, uvicorn
    from fastapi import FastAPI, Request

    models = {}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        models[name] = keras.models.load_model(path)
    app = FastAPI()

    @app.get("/ready")
    def ready():
        return {"ok": True}

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request):
        body = await request.json()
        x = np.array(body["instances"], dtype="float32")
        return {"predictions": models[name].predict(x, verbose=0).tolist()}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


def start_fastapi(models: dict[str, tuple[Path, Path, tuple[int, ...]]], workdir: Path) -> Server | None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("fastapi/uvicorn not installed: skipping the FastAPI floor (pip install -e '.[bench]')")
        return None
    app = workdir / "fastapi_app.py"
    app.write_text(FASTAPI_APP)
    port = free_port()
    argv = [sys.executable, str(app), str(port)] + [f"{n}={k}" for n, (_, k, _) in models.items()]
    log = workdir / "fastapi.log"
    return Server(argv, log, None, port).ready([f"http://127.0.0.1:{port}/ready"])


# --------------------------------------------------------------------------- load generation


@dataclass
class Load:
    """One client process's share of a cell: pre-encoded requests, driven from one event loop."""

    kind: str  # "grpc" (payload = serialized PredictRequest) or "http" (payload = full request)
    port: int
    payload: bytes
    concurrency: int
    start_at: float  # time.monotonic() (system-wide on Linux) when all processes start
    seconds: float
    min_calls: int


@dataclass
class LoadResult:
    latencies: list[float]
    errors: int
    started: float
    ended: float
    cpu_seconds: float


def run_load(load: Load) -> LoadResult:
    """Client process entry point (spawned): run ``load`` and return its latencies and CPU time."""
    return asyncio.run(_run_load(load))


class _HttpCaller:
    """Calls over one keep-alive connection: send the pre-encoded request, read the reply."""

    def __init__(self, port: int, payload: bytes) -> None:
        self.port = port
        self.payload = payload
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def __call__(self) -> bool:
        try:
            if self.stream is None:
                self.stream = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = self.stream
            writer.write(self.payload)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.stream = None
            return False
        return head.startswith(b"HTTP/1.1 200") and len(body) > 2


async def _run_load(load: Load) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    channel = None
    callers: list[Callable[[], Awaitable[bool]]]
    if load.kind == "grpc":
        import grpc

        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{load.port}",
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        method = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")

        async def grpc_call() -> bool:
            try:
                return len(await method(load.payload, timeout=600)) > 0
            except grpc.aio.AioRpcError:
                return False

        callers = [grpc_call] * load.concurrency
    else:
        callers = [_HttpCaller(load.port, load.payload) for _ in range(load.concurrency)]
    await asyncio.sleep(max(0.0, load.start_at - time.monotonic()))
    cpu0 = time.process_time()
    started = time.monotonic()
    deadline = max(load.start_at, started) + load.seconds

    async def worker(call: Callable[[], Awaitable[bool]]) -> None:
        nonlocal errors
        while time.monotonic() < deadline or len(latencies) + errors < load.min_calls:
            t0 = time.perf_counter()
            ok = await call()
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
                if errors > 20 and not latencies:
                    return

    await asyncio.gather(*(worker(call) for call in callers))
    ended = time.monotonic()
    cpu = time.process_time() - cpu0
    if channel is not None:
        await channel.close()
    return LoadResult(latencies, errors, started, ended, cpu)


class ClientPool:
    """``procs`` spawned client processes (spawn: the parent has TensorFlow's threads running)."""

    def __init__(self, procs: int) -> None:
        self.procs = procs
        self._pool = concurrent.futures.ProcessPoolExecutor(
            procs, mp_context=multiprocessing.get_context("spawn")
        )
        list(self._pool.map(time.sleep, [0.0] * procs))  # start them now, not inside a cell

    def drive(self, kind: str, port: int, payload: bytes, concurrency: int, seconds: float,
              min_calls: int) -> tuple[list[float], int, float, float]:
        """Run one cell; returns (latencies, errors, elapsed seconds, client CPU in cores)."""
        procs = min(self.procs, concurrency)
        shares = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
        start_at = time.monotonic() + 0.5
        loads = [Load(kind, port, payload, share, start_at, seconds, max(1, min_calls // procs))
                 for share in shares]
        results = list(self._pool.map(run_load, loads))
        elapsed = max(r.ended for r in results) - min(r.started for r in results)
        latencies = [lat for r in results for lat in r.latencies]
        errors = sum(r.errors for r in results)
        cpu = sum(r.cpu_seconds for r in results) / elapsed
        return latencies, errors, elapsed, cpu

    def close(self) -> None:
        self._pool.shutdown()


def summarize(model: str, target: str, batch: int, concurrency: int,
              latencies: list[float], errors: int, elapsed: float, calls: int | None = None) -> Cell:
    """A cell from per-call latencies (s); ``calls`` = successful calls, default len(latencies)."""
    calls = len(latencies) if calls is None else calls
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return Cell(model, target, batch, concurrency, calls, errors, round(elapsed, 2),
                round(calls * batch / elapsed, 1),
                round(float(np.percentile(lat, 50)), 3), round(float(np.percentile(lat, 99)), 3))


def _threaded_calls(call: Callable[[], object], concurrency: int, seconds: float,
                    min_calls: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def worker() -> None:
        while time.perf_counter() < deadline or len(latencies) < min_calls:
            t0 = time.perf_counter()
            call()
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start


@functools.cache
def _serving_signature(version_dir: Path) -> tuple[Any, str]:
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    (alias,) = signature.structured_input_signature[1]
    return signature, alias


def in_process_cells(name: str, version_dir: Path, shape: tuple[int, ...], batches: list[int],
                     concurrencies: list[int], seconds: float, min_calls: int) -> list[Cell]:
    """The ceiling: the exported serving_default signature, called from threads in-process."""
    import tensorflow as tf

    signature, alias = _serving_signature(version_dir)
    cells = []
    for batch in batches:
        x = tf.constant(np.random.default_rng(0).random((batch, *shape), dtype=np.float32))
        for _ in range(3):
            signature(**{alias: x})
        def call(x: object = x) -> object:
            return signature(**{alias: x})

        for concurrency in concurrencies:
            latencies, elapsed = _threaded_calls(call, concurrency, seconds, min_calls)
            cells.append(summarize(name, "in-process", batch, concurrency, latencies, 0, elapsed))
            print_cell(cells[-1])
    return cells


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


def check_predictions(target: str, model: str, version_dir: Path, x: np.ndarray, served: np.ndarray) -> None:
    """The served predictions are the in-process model's: same shape, allclose (float32 JSON round trips
    and batched vs single-row kernels differ in the last bits only)."""
    import tensorflow as tf

    signature, alias = _serving_signature(version_dir)
    (expected,) = signature(**{alias: tf.constant(x)}).values()
    expected = expected.numpy()
    if served.shape != expected.shape:
        raise RuntimeError(f"{target} {model}: predictions of shape {served.shape}, in-process {expected.shape}")
    if not np.allclose(served, expected, rtol=1e-4, atol=1e-4):
        worst = float(np.max(np.abs(served - expected)))
        raise RuntimeError(f"{target} {model}: predictions differ from the in-process model's (max |diff| {worst})")


def serving_input_alias(version_dir: Path) -> str:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    (alias,) = saved.meta_graphs[0].signature_def["serving_default"].inputs
    return alias


def server_cells(pool: ClientPool, target: str, model: str, version_dir: Path, shape: tuple[int, ...],
                 server: Server, batches: list[int], concurrencies: list[int], seconds: float,
                 min_calls: int) -> list[Cell]:
    cells = []
    alias = serving_input_alias(version_dir)
    for batch in batches:
        x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
        check_predictions(target, model, version_dir, x, check_reply(target, server, model, alias, x)[1])
        if target.startswith("grpc"):
            kind, port, payload = "grpc", server.grpc_port, grpc_request(model, alias, x)
        else:
            kind, port = "http", server.rest_port
            payload = http_request(port, f"/v1/models/{model}:predict", x)
        assert port is not None
        for concurrency in concurrencies:
            server_cpu0, wall0 = server.cpu_seconds(), time.monotonic()
            latencies, errors, elapsed, cpu = pool.drive(kind, port, payload, concurrency,
                                                         seconds, min_calls)
            server_cpu = (server.cpu_seconds() - server_cpu0) / (time.monotonic() - wall0)
            cell = summarize(model, target, batch, concurrency, latencies, errors, elapsed)
            cell.client_cpu = round(cpu, 2)
            cell.server_cpu = round(server_cpu, 2)
            cells.append(cell)
            print_cell(cell)
    return cells


# --------------------------------------------------------------------------- h2load (C load generator)


H2LOAD_WARM_UP = 1.0  # seconds of calls per cell before the measured run (also its rate probe)
H2LOAD_TIMEOUT = 900.0  # a hung server fails the bench instead of hanging it
_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s),", re.M)
_REQUESTS = re.compile(r"^requests: (\d+) total, \d+ started, (\d+) done", re.M)
_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.M)
_DATA = re.compile(r"^traffic: .*\((\d+)\) data\s*$", re.M)
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def h2load_version(exe: str) -> str:
    """``h2load 1.52.0`` from ``h2load --version`` (which prints ``h2load nghttp2/1.52.0``)."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return "h2load " + out.split()[-1].rpartition("/")[2]


@dataclass
class H2Target:
    """What h2load sends in a cell (URL, POST body file, headers) and how it judges a reply."""

    url: str
    body: Path
    headers: list[str]
    http1: bool
    grpc_reply_bytes: int | None  # DATA bytes of one successful gRPC reply; None: 2xx = success


@dataclass
class H2Run:
    """One h2load run: its summary figures and, if a log was asked for, its per-request rows."""

    total: int  # requests it was told to make (-n)
    done: int
    status_2xx: int
    data_bytes: int  # response DATA / body bytes, all requests
    finished: float  # seconds, h2load's own "finished in" (connect to last reply)
    cpu: float  # h2load's user + system CPU seconds
    wall: float  # seconds around the subprocess
    log: np.ndarray  # (n, 3) int64: start us since epoch, status (-1: failed stream), us to reply end


def run_h2load(exe: str, target: H2Target, concurrency: int, requests: int, log: Path | None) -> H2Run:
    """``requests`` calls over ``concurrency`` connections, one call in flight on each (-m 1)."""
    argv = [exe, "-c", str(concurrency), "-m", "1", "-n", str(requests), "-d", str(target.body)]
    argv += ["--h1"] if target.http1 else []
    for header in target.headers:
        argv += ["-H", header]
    if log is not None:
        log.unlink(missing_ok=True)  # h2load appends to an existing log
        argv.append(f"--log-file={log}")
    argv.append(target.url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=H2LOAD_TIMEOUT)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout
    finished, requests_line = _FINISHED.search(out), _REQUESTS.search(out)
    status, data = _STATUS.search(out), _DATA.search(out)
    if proc.returncode != 0 or not (finished and requests_line and status and data):
        raise RuntimeError(f"h2load failed (exit {proc.returncode}): {' '.join(argv)}\n"
                           f"{out[-2000:]}{proc.stderr[-2000:]}")
    rows = [line.split("\t")[:3] for line in log.read_text().splitlines()] if log is not None else []
    return H2Run(
        total=int(requests_line[1]), done=int(requests_line[2]), status_2xx=int(status[1]),
        data_bytes=int(data[1]), finished=float(finished[1]) * _UNIT[finished[2]],
        cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall=wall,
        log=np.asarray(rows, dtype=np.int64).reshape(-1, 3),
    )


def h2load_cell(exe: str, target: H2Target, name: str, model: str, batch: int, concurrency: int,
                server: Server, seconds: float, min_calls: int, log: Path) -> Cell:
    """Probe, warm up, then measure one cell with a request count sized to last ``seconds``."""
    # one call per connection: how long a round of calls takes at this concurrency
    probe = run_h2load(exe, target, concurrency, concurrency, None)
    rounds = round(H2LOAD_WARM_UP / max(probe.finished, 1e-6))
    if rounds >= 2:
        warm = run_h2load(exe, target, concurrency, concurrency * rounds, None)
        rate = warm.done / max(warm.finished, 1e-6)
    else:  # slow cell (a round of calls takes over ~0.7 s): the probe was the warm-up
        rate = concurrency / max(probe.finished, 1e-6)
    # a multiple of the concurrency, so every connection makes the same number of calls
    requests = concurrency * max(1, math.ceil(max(min_calls, rate * seconds) / concurrency))
    server_cpu0 = server.cpu_seconds()
    run = run_h2load(exe, target, concurrency, requests, log)
    server_cpu = (server.cpu_seconds() - server_cpu0) / run.wall
    if target.grpc_reply_bytes is not None:
        successes = min(run.status_2xx, run.data_bytes // target.grpc_reply_bytes)
    else:
        successes = run.status_2xx
    starts, status, took = run.log.T
    ok = (status >= 200) & (status < 300)
    # the log's span: first request sent to last reply received (h2load's "finished in" also
    # counts connecting, and is printed to 10 ms)
    elapsed = (int((starts + took).max()) - int(starts.min())) / 1e6 if len(starts) else run.finished
    latencies = list(took[ok] / 1e6) if successes else []  # not the latency of errors alone
    cell = summarize(model, name, batch, concurrency, latencies, run.total - successes, elapsed,
                     calls=successes)
    cell.client_cpu = round(run.cpu / run.wall, 2)
    cell.server_cpu = round(server_cpu, 2)
    return cell


def h2load_server_cells(exe: str, target: str, model: str, version_dir: Path, shape: tuple[int, ...],
                        server: Server, batches: list[int], concurrencies: list[int], seconds: float,
                        min_calls: int, workdir: Path) -> list[Cell]:
    """Like ``server_cells``, with h2load as the client (the only one that drives the peers)."""
    cells = []
    body = workdir / "h2load-body"
    for batch in batches:
        x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
        spec = h2load_target(target, server, model, version_dir, x, body)
        for concurrency in concurrencies:
            cells.append(h2load_cell(exe, spec, target, model, batch, concurrency, server, seconds,
                                     min_calls, workdir / "h2load.log"))
            print_cell(cells[-1])
    return cells


def h2load_target(target: str, server: Server, model: str, version_dir: Path, x: np.ndarray,
                  body: Path) -> H2Target:
    """Check one call of ``target`` against the in-process model; write the body h2load repeats."""
    if target in peers.PEER_TARGETS:
        call = peers.peer_call(target, server, model, x)
        check_predictions(target, model, version_dir, x, call.predictions)
        body.write_bytes(call.body)
        return H2Target(call.url, body, call.headers, call.http1, call.grpc_reply_bytes)
    alias = serving_input_alias(version_dir)
    reply_bytes, predictions = check_reply(target, server, model, alias, x)
    check_predictions(target, model, version_dir, x, predictions)
    if target.startswith("grpc"):
        body.write_bytes(grpc_message(grpc_request(model, alias, x)))
        return H2Target(f"http://127.0.0.1:{server.grpc_port}/tensorflow.serving.PredictionService/Predict",
                        body, ["content-type: application/grpc", "te: trailers"], http1=False,
                        grpc_reply_bytes=reply_bytes + 5)  # + the message's 5-byte prefix
    body.write_bytes(json_body(x))
    return H2Target(f"http://127.0.0.1:{server.rest_port}/v1/models/{model}:predict", body,
                    ["content-type: application/json"], http1=True, grpc_reply_bytes=None)


# --------------------------------------------------------------------------- paired rounds


def paired_rounds(rounds: int, first: Callable[[], float], second: Callable[[], float]
                  ) -> list[tuple[float, float]]:
    """``rounds`` pairs of (first(), second()) rows/s, alternating which runs first.

    The two ratio targets compare cells measured minutes apart in the table, and this shared box
    drifts by tens of percent over minutes (the in-process ceiling at CNN batch 1024 read 37k,
    65k and 83k rows/s in three runs); measuring the two sides back to back, several times, and
    taking the median ratio keeps the drift out of the verdict.
    """
    pairs = []
    for i in range(rounds):
        if i % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        pairs.append((a, b))
    return pairs


# --------------------------------------------------------------------------- report


def print_cell(cell: Cell) -> None:
    print(f"  {cell.model:4} {cell.target:10} b{cell.batch:<5} c{cell.concurrency:<3} "
          f"{cell.rows_per_s:>11,.0f} rows/s  p50 {cell.p50_ms:8.2f} ms  p99 {cell.p99_ms:8.2f} ms"
          + (f"  client cpu {cell.client_cpu:.2f}" if cell.client_cpu is not None else "")
          + (f"  server cpu {cell.server_cpu:.2f}" if cell.server_cpu is not None else "")
          + (f"  errors {cell.errors}" if cell.errors else ""), flush=True)


def table(cells: list[Cell], targets: list[str]) -> str:
    """Markdown table: one row per model/batch/concurrency, rows/s (p50 ms) per target."""
    index = {(c.model, c.target, c.batch, c.concurrency): c for c in cells}
    keys = sorted({(c.model, c.batch, c.concurrency) for c in cells})
    lines = ["| model | batch | conc | " + " | ".join(targets) + " |",
             "|---|---:|---:|" + "---:|" * len(targets)]
    for model, batch, conc in keys:
        row = []
        for target in targets:
            cell = index.get((model, target, batch, conc))
            row.append("-" if cell is None else f"{cell.rows_per_s:,.0f} ({cell.p50_ms:.1f} ms)")
        lines.append(f"| {model} | {batch} | {conc} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _ratio_check(label: str, goal: float, pairs: list[tuple[float, float]], fallback: tuple[float, float] | None
                 ) -> tuple[str, bool, str] | None:
    """``label`` met when (numerator / denominator) >= goal: the median over the paired rounds
    when there are any (robust to the box's drift between cells), else the table's cells."""
    if pairs:
        ratios = sorted(a / b for a, b in pairs)
        median = float(np.median(ratios))
        rounds = ", ".join(f"{a:,.0f}/{b:,.0f}" for a, b in pairs)
        return (label, median >= goal, f"median {median:.2f}x over {len(pairs)} alternating rounds ({rounds})")
    if fallback and fallback[0] and fallback[1]:
        a, b = fallback
        return (label, a >= goal * b, f"{a:,.0f} vs {b:,.0f} rows/s ({a / b:.2f}x)")
    return None


TFSHIP_TARGETS = ("grpc", "grpc+b", "rest", "rest+b")
BASE_TARGETS = tuple(f"{t}@base" for t in TFSHIP_TARGETS)


def _worst_ratio(cells: list[Cell], numerators: tuple[str, ...], denominators: tuple[str, ...]
                 ) -> tuple[float, tuple[str, int, int], str, str] | None:
    """Over the cells (model, batch, concurrency) measured on both sides: the lowest ratio of the best
    ``numerators`` target to the best ``denominators`` target, with where it was and which targets."""
    best: dict[tuple[tuple[str, int, int], bool], Cell] = {}
    for c in cells:
        side = c.target in numerators
        if side or c.target in denominators:
            key = ((c.model, c.batch, c.concurrency), side)
            if key not in best or c.rows_per_s > best[key].rows_per_s:
                best[key] = c
    worst = None
    for (where, side), num in best.items():
        den = best.get((where, False))
        if side and den is not None and den.rows_per_s > 0:
            ratio = num.rows_per_s / den.rows_per_s
            if worst is None or ratio < worst[0]:
                worst = (ratio, where, num.target, den.target)
    return worst


def _every_cell_check(label: str, goal: float, cells: list[Cell], numerators: tuple[str, ...],
                      denominators: tuple[str, ...]) -> tuple[str, bool, str] | None:
    worst = _worst_ratio(cells, numerators, denominators)
    if worst is None:
        return None
    ratio, (model, batch, conc), num, den = worst
    return (label, ratio >= goal, f"worst {ratio:.2f}x ({model} b{batch} c{conc}: {num} vs {den})")


def checks(cells: list[Cell], paired: dict[str, list[tuple[float, float]]] | None = None,
           ) -> list[tuple[str, bool, str]]:
    """The issues' targets, evaluated on this run (``paired``: see :func:`paired_rounds`)."""
    paired = paired or {}
    index = {(c.model, c.target, c.batch, c.concurrency): c.rows_per_s for c in cells}
    models = sorted({c.model for c in cells})
    candidates: list[tuple[str, bool, str] | None] = [
        # one client: latency-bound (the 3.2 MB transfer cannot overlap the model run); 16
        # clients: throughput, both sides saturating the cores
        _ratio_check(f"cnn b1024 c{conc} gRPC >= 0.8x in-process ({what})", 0.8,
                     paired.get(f"ceiling_c{conc}", []),
                     (index.get(("cnn", "grpc", 1024, conc), 0), index.get(("cnn", "in-process", 1024, conc), 0)))
        for conc, what in ((1, "one request at a time"), (16, "throughput"))
    ]
    candidates.append(
        _ratio_check("cnn c16 b1 batching on >= 2x off (gRPC)", 2.0, paired.get("batching_cnn", []),
                     (index.get(("cnn", "grpc+b", 1, 16), 0), index.get(("cnn", "grpc", 1, 16), 0))))
    # issue 14
    candidates += [
        _every_cell_check("batching never loses: grpc+b >= 0.95x grpc, every cell", 0.95, cells, ("grpc+b",),
                          ("grpc",)),
        _every_cell_check("batching never loses: rest+b >= 0.95x rest, every cell", 0.95, cells, ("rest+b",),
                          ("rest",)),
    ]
    for model in models:
        candidates.append(_ratio_check(
            f"{model} c16 b1 batching on >= 1.5x off (gRPC)", 1.5, paired.get(f"batching_{model}", []),
            (index.get((model, "grpc+b", 1, 16), 0), index.get((model, "grpc", 1, 16), 0))))
    for model in models:
        new, base = best_target(cells, model, TFSHIP_TARGETS), best_target(cells, model, BASE_TARGETS)
        candidates.append(_ratio_check(
            f"{model} c16 b1 best tfship variant >= 1.5x best @base variant", 1.5, paired.get(f"base_{model}", []),
            (index.get((model, new, 1, 16), 0), index.get((model, base, 1, 16), 0)) if new and base else None))
    candidates += [
        _every_cell_check("gRPC >= 0.6x in-process, every cell", 0.6, cells, ("grpc",), ("in-process",)),
        _every_cell_check("--peers: best tfship variant >= 2x best peer, every cell", 2.0, cells, TFSHIP_TARGETS,
                          peers.PEER_TARGETS),
    ]
    idle = paired.get("idle_p99", [])
    if idle:
        ratios = sorted(with_idle / without for with_idle, without in idle)
        median = float(np.median(ratios))
        rounds = ", ".join(f"{a:.1f}/{b:.1f} ms" for a, b in idle)
        candidates.append(("rest mlp c16 b1 p99 with idle keep-alive connections <= 1.5x without", median <= 1.5,
                           f"median {median:.2f}x over {len(idle)} alternating rounds (with/without: {rounds})"))
    out = [check for check in candidates if check is not None]
    floor_cells = {(c.model, c.batch, c.concurrency): c.rows_per_s for c in cells if c.target == "fastapi"}
    worst_floor = None
    for c in cells:
        if c.target not in TFSHIP_TARGETS or (c.model, c.batch, c.concurrency) not in floor_cells:
            continue
        ratio = c.rows_per_s / max(floor_cells[(c.model, c.batch, c.concurrency)], 1e-9)
        if worst_floor is None or ratio < worst_floor[0]:
            worst_floor = (ratio, c)
    if worst_floor is not None:
        ratio, c = worst_floor
        out.append(("every server config >= 10x FastAPI+model.predict", ratio >= 10,
                    f"worst {ratio:.1f}x ({c.model} {c.target} b{c.batch} c{c.concurrency})"))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batches", default="1,32,1024")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--targets", default="in-process,grpc,grpc+b,rest,rest+b,fastapi",
                        help="also: " + ",".join(peers.PEER_TARGETS + BASE_TARGETS))
    parser.add_argument("--peers", action="store_true",
                        help="add BentoML and MLServer (" + ",".join(peers.PEER_TARGETS) + ") serving the same "
                             "SavedModels, each in its own venv under ~/.cache/tfship-bench/venvs (created on "
                             "first use: ~2 min and ~1.7 GB each)")
    parser.add_argument("--baseline-rev", metavar="REV",
                        help="also measure tfship-model-server at git revision REV (from a temporary worktree) "
                             "as " + ",".join(BASE_TARGETS))
    parser.add_argument("--idle-connections", type=int, default=2000, metavar="N",
                        help="p99 of the rest mlp b1 c16 cell with and without N idle keep-alive connections "
                             "(paired rounds; 0: skip)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each cell")
    parser.add_argument("--min-calls", type=int, default=3)
    parser.add_argument("--batching-param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a +b batching parameter, e.g. num_batch_threads=1")
    parser.add_argument("--load-generator", choices=("auto", "h2load", "python"), default="auto",
                        help="h2load (C, cheap per call) or the Python client processes; "
                             "auto: h2load if it is on PATH")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="Python generator: client processes sharing a cell's concurrent calls")
    parser.add_argument("--server-flag", action="append", default=[],
                        help="extra tfship-model-server flag, e.g. --server-flag=--grpc_max_threads=32")
    parser.add_argument("--paired-rounds", type=int, default=5,
                        help="alternating rounds behind the ratio targets' verdicts (0: use the table)")
    parser.add_argument("--quick", action="store_true", help="cnn, batch 1 and 1024, 2 s cells")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "server_bench.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.seconds = "cnn", "1,1024", 2.0
    for item in args.batching_param:
        key, _, value = item.partition("=")
        if key not in BATCHING:
            parser.error(f"--batching-param: unknown parameter {key!r}; one of {sorted(BATCHING)}")
        BATCHING[key] = int(value)
    targets = args.targets.split(",")
    targets += [t for t in (peers.PEER_TARGETS if args.peers else ()) if t not in targets]
    targets += [t for t in (BASE_TARGETS if args.baseline_rev else ()) if t not in targets]
    known = ("in-process", "fastapi") + TFSHIP_TARGETS + BASE_TARGETS + peers.PEER_TARGETS
    for target in targets:
        if target not in known:
            parser.error(f"--targets: unknown target {target!r}; one of {', '.join(known)}")
        if target in BASE_TARGETS and not args.baseline_rev:
            parser.error(f"--targets {target}: needs --baseline-rev REV (the revision to measure)")
    args.targets = targets
    h2load = shutil.which("h2load")
    if args.load_generator == "h2load" and h2load is None:
        parser.error("--load-generator h2load: h2load is not on PATH; apt-get install nghttp2-client")
    if args.load_generator == "auto" and h2load is None:
        print("h2load not found: using the Python load generator, which takes CPU from the server "
              "(apt-get install nghttp2-client for the C one)")
    args.h2load = None if args.load_generator == "python" else h2load
    if args.h2load is None and any(t in peers.PEER_TARGETS for t in targets):
        parser.error("the peers (--peers) are driven by h2load only: apt-get install nghttp2-client")
    return args


def start_servers(args: argparse.Namespace, workdir: Path, models: dict[str, tuple[Path, Path, tuple[int, ...]]],
                  baseline: Baseline | None, servers: list[Server]) -> list[tuple[str, Server]]:
    """Start every server the targets need (appending each to ``servers`` as it starts, so a failure
    later still stops it); returns (target, server) in measuring order."""
    plan: list[tuple[str, Server]] = []
    targets = args.targets
    for label, exe, suffix in (("", None, ""), (f" {baseline.commit if baseline else ''} (@base)",
                                                  baseline.model_server if baseline else None, "@base")):
        for batching in (False, True):
            wanted = [t + suffix for t in (("grpc+b", "rest+b") if batching else ("grpc", "rest"))]
            wanted = [t for t in wanted if t in targets]
            if wanted:
                print(f"starting tfship-model-server{label} (batching {'on' if batching else 'off'}) ...", flush=True)
                servers.append(start_model_server(workdir, list(models), batching, workdir, args.server_flag,
                                                  exe=exe, label=suffix.replace("@", "_")))
                plan += [(t, servers[-1]) for t in wanted]
    if "fastapi" in targets:
        print("starting FastAPI + model.predict (floor) ...", flush=True)
        floor = start_fastapi(models, workdir)
        if floor is not None:
            servers.append(floor)
            plan.append(("fastapi", floor))
    for peer in ("bentoml", "mlserver"):
        for batching in (False, True):
            wanted = [t for t in peers.PEER_TARGETS
                      if t in targets and peers.peer_of(t) == peer and t.endswith("+b") == batching]
            if wanted:
                print(f"starting {peer} {peers.PEER_VERSIONS[peer]} (batching {'on' if batching else 'off'}) ...",
                      flush=True)
                servers.append(peers.start_peer(peer, {n: m[0] for n, m in models.items()}, batching, workdir))
                plan += [(t, servers[-1]) for t in wanted]
    return plan


def best_target(cells: list[Cell], model: str, targets: tuple[str, ...]) -> str | None:
    """The target with the most rows/s at ``model`` b1 c16 (the many-small-clients cell)."""
    found = [c for c in cells if c.model == model and c.batch == 1 and c.concurrency == 16 and c.target in targets]
    return max(found, key=lambda c: c.rows_per_s).target if found else None


def idle_rounds(rounds: int, count: int, port: int, model: str, p99: Callable[[], float]) -> list[tuple[float, float]]:
    """``rounds`` pairs of (p99 with ``count`` idle keep-alive connections open, p99 without), alternating."""

    def with_idle() -> float:
        idle = IdleConnections(port, f"/v1/models/{model}", count)
        try:
            result = p99()
            still = idle.still_open()
        finally:
            idle.close()
        print(f"    {still} of {count} idle connections still open after the cell", flush=True)
        return result

    return paired_rounds(rounds, with_idle, p99)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    targets: list[str] = args.targets
    h2load: str | None = args.h2load
    load_generator = h2load_version(h2load) if h2load is not None else "python"
    print(f"load generator: {load_generator}", flush=True)
    if args.idle_connections:
        # before any server starts: they inherit it, and each idle connection is a file on both sides
        raise_file_limit(args.idle_connections)

    workdir = Path(tempfile.mkdtemp(prefix="tfship-server-bench-"))
    print(f"building models in {workdir} ...", flush=True)
    models = {n: m for n, m in build_models(workdir).items() if n in names}
    cells: list[Cell] = []
    servers: list[Server] = []
    pool: ClientPool | None = None
    baseline: Baseline | None = None
    paired: dict[str, list[tuple[float, float]]] = {}
    try:
        if args.baseline_rev:
            print(f"checking out {args.baseline_rev} for the @base targets ...", flush=True)
            baseline = Baseline(args.baseline_rev)
            print(f"  @base = {baseline.commit}", flush=True)
        if "in-process" in targets:
            print("in-process serving_default signature (ceiling):", flush=True)
            for name, (version_dir, _, shape) in models.items():
                cells += in_process_cells(name, version_dir, shape, batches, concurrencies,
                                          args.seconds, args.min_calls)
        plan = start_servers(args, workdir, models, baseline, servers)
        if h2load is None:
            pool = ClientPool(args.client_procs)

        def measure(target: str, server: Server, name: str, batches: list[int],
                    concurrencies: list[int]) -> list[Cell]:
            """Cells of one server and model, driven by whichever load generator this run uses."""
            version_dir, _, shape = models[name]
            if pool is not None:
                return server_cells(pool, target, name, version_dir, shape, server, batches, concurrencies,
                                    args.seconds, args.min_calls)
            assert h2load is not None
            return h2load_server_cells(h2load, target, name, version_dir, shape, server, batches,
                                       concurrencies, args.seconds, args.min_calls, workdir)

        for target, server in plan:
            print(f"{target}:", flush=True)
            for name in models:
                cells += measure(target, server, name, batches, concurrencies)
        servers_by_target = dict(plan)

        def server_cell(target: str, model: str, batch: int, concurrency: int) -> Cell:
            return measure(target, servers_by_target[target], model, [batch], [concurrency])[0]

        def server_rate(target: str, model: str, batch: int, concurrency: int) -> float:
            return server_cell(target, model, batch, concurrency).rows_per_s

        if args.paired_rounds and "cnn" in models and "in-process" in targets and "grpc" in servers_by_target:
            version_dir, _, shape = models["cnn"]

            def ceiling_rate(concurrency: int) -> float:
                return in_process_cells("cnn", version_dir, shape, [1024], [concurrency], args.seconds,
                                        args.min_calls)[0].rows_per_s

            for conc in concurrencies:
                print(f"paired rounds, gRPC vs in-process at cnn batch 1024, {conc} client(s) "
                      f"({args.paired_rounds}):")
                paired[f"ceiling_c{conc}"] = paired_rounds(
                    args.paired_rounds, functools.partial(server_rate, "grpc", "cnn", 1024, conc),
                    functools.partial(ceiling_rate, conc))
        for name in models if args.paired_rounds else ():
            if "grpc" in servers_by_target and "grpc+b" in servers_by_target:
                print(f"paired rounds, {name} batching on vs off at batch 1, 16 clients ({args.paired_rounds}):")
                paired[f"batching_{name}"] = paired_rounds(
                    args.paired_rounds, functools.partial(server_rate, "grpc+b", name, 1, 16),
                    functools.partial(server_rate, "grpc", name, 1, 16))
            new, base = best_target(cells, name, TFSHIP_TARGETS), best_target(cells, name, BASE_TARGETS)
            if new and base:
                print(f"paired rounds, {name} best tfship ({new}) vs best @base ({base}) at batch 1, 16 clients "
                      f"({args.paired_rounds}):")
                paired[f"base_{name}"] = paired_rounds(
                    args.paired_rounds, functools.partial(server_rate, new, name, 1, 16),
                    functools.partial(server_rate, base, name, 1, 16))
        if args.idle_connections and args.paired_rounds and "mlp" in models and "rest" in servers_by_target:
            print(f"paired rounds, rest mlp b1 c16 p99 with vs without {args.idle_connections} idle keep-alive "
                  f"connections ({args.paired_rounds}):")
            paired["idle_p99"] = idle_rounds(
                args.paired_rounds, args.idle_connections, servers_by_target["rest"].rest_port, "mlp",
                lambda: server_cell("rest", "mlp", 1, 16).p99_ms)
    finally:
        if pool is not None:
            pool.close()
        for server in servers:
            server.stop()
        if baseline is not None:
            baseline.close()

    print("\nrows/s (p50 latency); +b = --enable_batching", BATCHING)
    main_order = ("in-process",) + TFSHIP_TARGETS + BASE_TARGETS + ("fastapi",)
    print(table(cells, [t for t in main_order if t in targets]))
    if any(t in peers.PEER_TARGETS for t in targets):
        print("\npeers (same SavedModels, same load generator):")
        print(table(cells, [t for t in TFSHIP_TARGETS + peers.PEER_TARGETS if t in targets]))
    results = checks(cells, paired)
    for label, ok, detail in results:
        print(f"{'PASS' if ok else 'MISS'}  {label}: {detail}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "batching_parameters": BATCHING,
        "server_flags": SERVER_THREAD_FLAGS + args.server_flag,
        "load_generator": load_generator,
        "client_procs": args.client_procs if h2load is None else None,
        "seconds_per_cell": args.seconds,
        "baseline": baseline.commit if baseline else None,
        "peers": {peer: {"version": version, "mlserver_batching": peers.MLSERVER_BATCHING if peer == "mlserver"
                         else None} for peer, version in peers.PEER_VERSIONS.items()} if args.peers else None,
        "idle_connections": args.idle_connections,
        "cells": [asdict(c) for c in cells],
        "paired_rounds": paired,
        "targets": [{"target": label, "met": ok, "detail": detail} for label, ok, detail in results],
    }, indent=2))
    print(f"wrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
