#!/usr/bin/env python3
"""Client-side speed: wire codecs vs the usual baselines, batch throughput, cold start (issue 4).

1. Encode + decode MB/s of float32 payloads (1 KB, 100 KB, 10 MB), side by side in one run:
   * gRPC request  ``tfship`` :func:`tfship.wire.tensor.encode_tensor` (tensor_content) vs
     ``tf.make_tensor_proto(x).SerializeToString()``;
   * gRPC response (TF Serving answers with packed ``float_val``) ``tfship``
     :func:`decode_tensor` vs ``tf.make_ndarray(TensorProto.FromString(b))``, and the reference
     ``np.frombuffer(tensor_content).copy()``: the target is decoding ``float_val`` within 2x of it;
   * REST  ``tfship.wire.json`` (orjson) vs ``json.dumps({"inputs": x.tolist()})`` /
     ``np.array(json.loads(b)["outputs"], np.float32)``.
2. ``predict_batches`` rows/s over gRPC and REST against tfship-model-server, vs the in-process
   ``serving_default`` signature call on the same rows (matrix_half_plus_two, x [-1, 3, 3]).
3. Cold start: a fresh interpreter doing ``import tfship.client`` + ``connect`` + one REST predict
   (time inside the process, and wall time including interpreter start-up).
4. Concurrent single-row callers (issue 13): 16 and 64 callers (threads on the sync client,
   coroutines on the asyncio client), each calling predict with one row in a loop, plain calls
   vs ``client.batcher`` (max_batch_size 64, max_delay_ms 2), against tfship-model-server with
   server batching off and on (bench/model_servers.py's batching parameters), over gRPC (``--callers-transport``).
   A Keras MLP 784-256-128-10. Each cell runs ``--caller-seconds`` after a warm-up; plain and
   batcher cells run back to back in alternating order for ``--caller-rounds`` rounds: rows/s is
   the median over rounds, p50/p99 come from every call of the cell, and the batcher/plain ratio
   is the median of the per-round ratios (so a noisy neighbour hits both sides of a ratio).

Prints a table and writes JSON (``--out``, default bench/results/client_bench.json).

    python bench/client_bench.py            # ~1-2 min on 2 cores
    python bench/client_bench.py --quick    # codecs only (no server, no TensorFlow needed)
    python bench/client_bench.py --only callers          # section 4 only, ~3 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZES = {"1 KB": 1 << 10, "100 KB": 100 << 10, "10 MB": 10 << 20}
TESTDATA = ROOT.parent / "shared" / "testdata" / "tf-serving"


def best_time(fn: Callable[[], Any], min_total: float = 0.3, min_runs: int = 3) -> float:
    """Best wall time of ``fn`` over repeated runs (at least ``min_runs``, ~``min_total`` s)."""
    best = float("inf")
    runs, started = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - started < min_total:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        runs += 1
    return best


def codec_rows(with_tf: bool) -> list[dict[str, Any]]:
    return [_codec_row(label, nbytes, with_tf) for label, nbytes in SIZES.items()]


def _codec_row(label: str, nbytes: int, with_tf: bool) -> dict[str, Any]:
    from tfship.wire import dtypes
    from tfship.wire.json import decode_value, dumps, encode_value, loads
    from tfship.wire.tensor import decode_tensor, encode_tensor

    f32 = dtypes.by_name("DT_FLOAT")
    x = np.random.default_rng(0).normal(size=nbytes // 4).astype(np.float32).reshape(-1, 256)
    mb = x.nbytes / 1e6
    content = encode_tensor(x)
    typed = encode_tensor(x, typed=True)
    raw = x.tobytes()
    rest_req = dumps({"inputs": encode_value(x)})
    std_req = json.dumps({"inputs": x.tolist()}).encode()
    r: dict[str, Any] = {"size": label, "bytes": x.nbytes}
    r["tfship grpc encode MB/s"] = mb / best_time(lambda: encode_tensor(x))
    r["tfship float_val decode MB/s"] = mb / best_time(lambda: decode_tensor(typed))
    r["np.frombuffer+copy MB/s"] = mb / best_time(lambda: np.frombuffer(raw, np.float32).copy())
    r["tfship tensor_content decode MB/s"] = mb / best_time(lambda: decode_tensor(content))
    r["tfship rest encode+decode MB/s"] = mb / (
        best_time(lambda: dumps({"inputs": encode_value(x)}))
        + best_time(lambda: decode_value(loads(rest_req)["inputs"], f32)))
    r["json/tolist encode+decode MB/s"] = mb / (
        best_time(lambda: json.dumps({"inputs": x.tolist()}).encode(), min_runs=2)
        + best_time(lambda: np.array(json.loads(std_req)["inputs"], np.float32), min_runs=2))
    if with_tf:
        import tensorflow as tf
        from tensorflow.core.framework.tensor_pb2 import TensorProto

        r["tf.make_tensor_proto encode MB/s"] = mb / best_time(
            lambda: tf.make_tensor_proto(x).SerializeToString(), min_runs=2)
        r["tf.make_ndarray float_val decode MB/s"] = mb / best_time(
            lambda: tf.make_ndarray(TensorProto.FromString(typed)), min_runs=2)
    r["float_val decode vs frombuffer+copy"] = (
        r["np.frombuffer+copy MB/s"] / r["tfship float_val decode MB/s"])
    r["rest speed-up vs json/tolist"] = (
        r["tfship rest encode+decode MB/s"] / r["json/tolist encode+decode MB/s"])
    return r


def served_rows(rows: int) -> dict[str, Any]:
    import tensorflow as tf
    from tfship.client import connect
    from tfship.deploy.launch import start_model_server

    model_dir = TESTDATA / "matrix_half_plus_two"
    x = np.random.default_rng(0).normal(size=(rows, 3, 3)).astype(np.float32)
    out: dict[str, Any] = {"rows": rows, "model": "matrix_half_plus_two"}
    loaded = tf.saved_model.load(str(model_dir / "1"))
    fn = loaded.signatures["serving_default"]
    seconds = best_time(lambda: fn(x=tf.constant(x)), min_total=0.5)
    out["in-process signature rows/s"] = rows / seconds
    with start_model_server(model_dir, "matrix", timeout=180) as server:
        for name, url in (("grpc", server.grpc_url), ("rest", server.rest_url)):
            with connect(url) as client:
                client.predict_batches("matrix", x[:256], batch_size=128)  # warm connections + metadata
                for batch, conc in ((1024, 1), (1024, 4)):
                    s = best_time(lambda c=client, b=batch, n=conc: c.predict_batches(
                        "matrix", x, batch_size=b, concurrency=n), min_total=1.0, min_runs=2)
                    out[f"{name} predict_batches b{batch} c{conc} rows/s"] = rows / s
        code = (
            "import time; t = time.perf_counter()\n"
            "import numpy as np\n"
            "from tfship.client import connect\n"
            f"with connect({server.rest_url!r}) as c:\n"
            "    c.predict('matrix', {'x': np.zeros((1, 3, 3), np.float32)})\n"
            "print(time.perf_counter() - t)\n"
        )
        inner, wall = [], []
        for _ in range(5):
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            wall.append(time.perf_counter() - t)
            inner.append(float(done.stdout.strip()))
        out["cold start import+REST predict s (in process)"] = min(inner)
        out["cold start incl. interpreter s (wall)"] = min(wall)
    return out


# --------------------------------------------------------------------------- concurrent single-row callers

CALLER_COUNTS = (16, 64)
BATCHER = {"max_batch_size": 64, "max_delay_ms": 2.0}


def _mlp(base: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.export(str(base / "mlp" / "1"), format="tf_saved_model", verbose=False)
    return base / "mlp"


def _percentiles_ms(latencies: list[float]) -> tuple[float, float]:
    lat = np.asarray(latencies) * 1000
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def _sync_cell(url: str, batched: bool, callers: int, seconds: float, x: np.ndarray) -> tuple[int, float, list[float]]:
    """``callers`` threads, each predicting its own row in a loop for ``seconds``."""
    import threading

    from tfship.client import connect

    with connect(url) as client:
        client.predict("mlp", x[:1])  # connection and metadata
        batcher = client.batcher("mlp", **BATCHER) if batched else None
        call = batcher.predict if batcher is not None else (lambda row: client.predict("mlp", row))
        start = threading.Barrier(callers + 1)
        stop_at = [0.0]
        lat: list[list[float]] = [[] for _ in range(callers)]

        def loop(i: int) -> None:
            row = x[i:i + 1]
            call(row)  # warm
            start.wait()
            while (t := time.perf_counter()) < stop_at[0]:
                call(row)
                lat[i].append(time.perf_counter() - t)

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        stop_at[0] = time.perf_counter() + 1e9
        start.wait()
        began = time.perf_counter()
        stop_at[0] = began + seconds
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        if batcher is not None:
            batcher.close()
    flat = [v for per in lat for v in per]
    return len(flat), elapsed, flat


def _async_cell(url: str, batched: bool, callers: int, seconds: float, x: np.ndarray) -> tuple[int, float, list[float]]:
    """``callers`` coroutines on one event loop, each predicting its own row in a loop for ``seconds``."""
    import asyncio

    from tfship.client import aio

    async def main() -> tuple[int, float, list[float]]:
        async with aio.connect(url) as client:
            await client.predict("mlp", x[:1])
            batcher = client.batcher("mlp", **BATCHER) if batched else None
            call = batcher.predict if batcher is not None else (lambda row: client.predict("mlp", row))
            lat: list[float] = []
            go = asyncio.Event()
            stop_at = [0.0]

            async def loop(i: int) -> None:
                row = x[i:i + 1]
                await call(row)  # warm
                await go.wait()
                while (t := time.perf_counter()) < stop_at[0]:
                    await call(row)
                    lat.append(time.perf_counter() - t)

            tasks = [asyncio.ensure_future(loop(i)) for i in range(callers)]
            await asyncio.sleep(0.2)  # let every caller make its warm-up call
            began = time.perf_counter()
            stop_at[0] = began + seconds
            go.set()
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - began
            if batcher is not None:
                await batcher.close()
            return len(lat), elapsed, lat

    return asyncio.run(main())


def caller_rows(seconds: float, rounds: int, transport: str) -> list[dict[str, Any]]:
    """Plain vs batcher, sync vs asyncio, 16 and 64 callers, server batching off and on."""
    import tempfile

    from model_servers import BATCHING, SERVER_THREAD_FLAGS
    from tfship.deploy.launch import start_model_server

    x = np.random.default_rng(0).normal(size=(max(CALLER_COUNTS), 784)).astype(np.float32)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="client-bench-") as tmp:
        base = _mlp(Path(tmp))
        params = Path(tmp) / "batching.config"
        params.write_text("".join(f"{k} {{ value: {v} }}\n" for k, v in BATCHING.items()))
        for server_batching in (False, True):
            flags = list(SERVER_THREAD_FLAGS)
            if server_batching:
                flags += ["--enable_batching", f"--batching_parameters_file={params}"]
            print(f"tfship-model-server, batching {'on' if server_batching else 'off'} ...", flush=True)
            with start_model_server(base, "mlp", timeout=180, extra_args=flags) as server:
                url = server.grpc_url if transport == "grpc" else server.rest_url
                for api, cell in (("sync", _sync_cell), ("async", _async_cell)):
                    for callers in CALLER_COUNTS:
                        runs: dict[bool, list[tuple[int, float, list[float]]]] = {False: [], True: []}
                        for r in range(rounds):
                            order = (False, True) if r % 2 == 0 else (True, False)
                            for batched in order:
                                runs[batched].append(cell(url, batched, callers, seconds, x))
                        row: dict[str, Any] = {"server_batching": server_batching, "api": api,
                                               "callers": callers, "transport": transport}
                        for batched, name in ((False, "plain"), (True, "batcher")):
                            rates = [calls / elapsed for calls, elapsed, _ in runs[batched]]
                            p50, p99 = _percentiles_ms([v for *_, lat in runs[batched] for v in lat])
                            row[f"{name} rows/s"] = float(np.median(rates))
                            row[f"{name} p50 ms"], row[f"{name} p99 ms"] = p50, p99
                        row["batcher/plain rows/s"] = float(np.median(
                            [(b[0] / b[1]) / (p[0] / p[1]) for p, b in zip(runs[False], runs[True], strict=True)]))
                        print(_caller_line(row), flush=True)
                        out.append(row)
    return out


def _caller_line(row: dict[str, Any]) -> str:
    return (f"server batching {'on ' if row['server_batching'] else 'off'} {row['api']:<5} "
            f"{row['callers']:>3} callers | plain {row['plain rows/s']:>8,.0f} rows/s "
            f"p50 {row['plain p50 ms']:6.2f} p99 {row['plain p99 ms']:7.2f} ms | batcher "
            f"{row['batcher rows/s']:>8,.0f} rows/s p50 {row['batcher p50 ms']:6.2f} "
            f"p99 {row['batcher p99 ms']:7.2f} ms | x{row['batcher/plain rows/s']:.2f}")


def print_table(codecs: list[dict[str, Any]], served: dict[str, Any] | None) -> None:
    keys = [k for k in codecs[0] if k not in ("size", "bytes")] if codecs else []
    width = max((len(k) for k in keys), default=0)
    if codecs:
        print(f"{'float32 payload':<{width}}  " + "  ".join(f"{r['size']:>10}" for r in codecs))
    for k in keys:
        cells = [r.get(k) for r in codecs]
        fmt = "{:>10.2f}" if "vs" in k or "speed-up" in k else "{:>10,.0f}"
        print(f"{k:<{width}}  " + "  ".join(fmt.format(c) if c is not None else f"{'-':>10}" for c in cells))
    if served:
        print()
        for k, v in served.items():
            print(f"{k:<50} {v:,.3f}" if isinstance(v, float) else f"{k:<50} {v}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="codecs only, no server")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--only", choices=["codecs", "served", "callers"], action="append",
                        help="run only these sections (repeatable; default: all)")
    parser.add_argument("--caller-seconds", type=float, default=2.0, help="seconds per caller cell and round")
    parser.add_argument("--caller-rounds", type=int, default=3, help="alternating plain/batcher rounds per cell")
    parser.add_argument("--callers-transport", choices=["grpc", "rest"], default="grpc")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "client_bench.json"))
    args = parser.parse_args()
    try:
        import tensorflow  # noqa: F401

        with_tf = True
    except ImportError:
        with_tf = False
    sections = set(args.only or ["codecs", "served", "callers"])
    if args.quick:
        sections = {"codecs"}
    codecs = codec_rows(with_tf) if "codecs" in sections else []
    served = served_rows(args.rows) if "served" in sections and with_tf else None
    callers = (caller_rows(args.caller_seconds, args.caller_rounds, args.callers_transport)
               if "callers" in sections and with_tf else None)
    if codecs or served:
        print_table(codecs, served)
    if callers:
        print("\nconcurrent single-row callers (rows/s = median of rounds; p50/p99 over all calls; ratio = "
              "median of per-round batcher/plain):")
        for row in callers:
            print(_caller_line(row))
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform(), "load_average": os.getloadavg()},
              "codecs": codecs, "served": served, "callers": callers}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
