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

Prints a table and writes JSON (``--out``, default bench/results/client_bench.json).

    python bench/client_bench.py            # ~1-2 min on 2 cores
    python bench/client_bench.py --quick    # codecs only (no server, no TensorFlow needed)
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


def print_table(codecs: list[dict[str, Any]], served: dict[str, Any] | None) -> None:
    keys = [k for k in codecs[0] if k not in ("size", "bytes")]
    width = max(len(k) for k in keys)
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
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "client_bench.json"))
    args = parser.parse_args()
    try:
        import tensorflow  # noqa: F401

        with_tf = True
    except ImportError:
        with_tf = False
    codecs = codec_rows(with_tf)
    served = None if args.quick or not with_tf else served_rows(args.rows)
    print_table(codecs, served)
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()},
              "codecs": codecs, "served": served}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
