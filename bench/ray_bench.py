#!/usr/bin/env python3
"""Batch prediction on one process vs on local Ray Data: the same 1M-row job, same fleet (issue 22).

A Keras MLP (16 features -> 32 relu -> 1 sigmoid, a typical tabular scorer) exported with tfship,
served by 2 tfship-model-server replicas; 1,000,000 rows of Parquet (16 float feature columns).
Both engines send ``--batch-size`` rows per request with the same total concurrency:
``tfship predict`` (one process, ``--concurrency A*I``) and ``--engine ray`` (``A`` actors x ``I``
in flight). Ray is started once before the jobs (as a long-lived cluster would be; its start-up
is measured and printed apart), then the two jobs run in alternating order for ``--rounds``
rounds; the verdict is the median of the per-round ratios (a noisy neighbour hits both sides).

Also printed: each actor's rows/s and where its busy time went (reading its block, scoring it,
committing its part), which is what decides how the job scales across nodes (README).

    python bench/ray_bench.py                      # ~4 min on 2 cores
    python bench/ray_bench.py --rows 200000 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TARGET = 0.8


def build_model(base: Path) -> None:
    import keras
    from tfship.export import export_model

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((16,), name="features"), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid", name="score")])
    export_model(model, base, "scorer", samples=np.random.default_rng(2).normal(size=(8, 16)).astype(np.float32))


def write_rows(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(3).normal(size=(rows, 16)).astype(np.float32)
    pq.write_table(pa.table({f"f{i}": x[:, i] for i in range(16)}), path, row_group_size=50_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--block-rows", type=int, default=50_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ray_bench.json"))
    args = parser.parse_args()

    import ray
    from tfship.client import connect
    from tfship.client.batch.job import run_batch_job
    from tfship.client.batch.ray_engine import run_ray_job
    from tfship.deploy.launch import start_model_server

    work = Path(tempfile.mkdtemp(prefix="tfship-ray-bench-"))
    servers: list[Any] = []
    try:
        build_model(work / "models")
        write_rows(work / "rows.parquet", args.rows)
        for _ in range(2):
            servers.append(start_model_server(work / "models" / "scorer", "scorer", timeout=180))
        fleet = ",".join(s.grpc_url for s in servers)
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20, logging_level="ERROR",
                 log_to_driver=False)
        ray_start = time.perf_counter() - started
        concurrency = args.actors * args.inflight

        def one_process(out: Path) -> float:
            with connect(fleet) as client:
                t = time.perf_counter()
                run_batch_job(client, "scorer", work / "rows.parquet", out, batch_size=args.batch_size,
                              concurrency=concurrency, version=1, progress=False)
                return args.rows / (time.perf_counter() - t)

        actors: list[dict[str, Any]] = []

        firsts: list[float] = []

        def on_ray(out: Path) -> float:
            t = time.perf_counter()
            finished: list[float] = []
            result = run_ray_job(fleet, "scorer", work / "rows.parquet", out, version=1, batch_size=args.batch_size,
                                 block_rows=args.block_rows, actors=args.actors, inflight=args.inflight,
                                 progress=False, on_block=lambda _: finished.append(time.perf_counter() - t))
            actors.append(result.actors)
            firsts.append(finished[0])
            return args.rows / (time.perf_counter() - t)

        rounds: list[dict[str, float]] = []
        for r in range(args.rounds):
            order = [("one_process", one_process), ("ray", on_ray)]
            if r % 2:
                order.reverse()
            cell: dict[str, float] = {}
            for name, run in order:
                out = work / f"{name}-{r}{'.parquet' if name == 'one_process' else ''}"
                cell[name] = run(out)
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink()
            cell["ratio"] = cell["ray"] / cell["one_process"]
            rounds.append(cell)
            print(f"round {r + 1}: one process {cell['one_process']:,.0f} rows/s, ray {cell['ray']:,.0f} rows/s, "
                  f"ratio {cell['ratio']:.2f}", flush=True)
        ratio = statistics.median(c["ratio"] for c in rounds)
        print(f"\n{args.rows:,} rows, batch {args.batch_size}, concurrency {concurrency} "
              f"({args.actors} actors x {args.inflight}), 2 replicas; Ray start-up {ray_start:.1f} s (not in rows/s)")
        print(f"{'':12}{'rows/s (median)':>18}")
        print(f"{'one process':12}{statistics.median(c['one_process'] for c in rounds):>18,.0f}")
        print(f"{'ray':12}{statistics.median(c['ray'] for c in rounds):>18,.0f}")
        verdict = "PASS" if ratio >= TARGET else "MISS"
        print(f"ray / one process: {ratio:.2f} (target >= {TARGET}) {verdict}\n")
        print("per actor (last Ray run): blocks, rows/s while busy, busy time split read / score / commit; "
              "timeline in s after the job reached Ray: process start, ready, first block, last block end")
        for pid, f in sorted(actors[-1].items()):
            busy = f["seconds"] or 1e-9
            split = " / ".join(f"{f[k] / busy:.0%}" for k in ("read_s", "score_s", "commit_s"))
            marks = ", ".join(f"{f[k]:.1f}" for k in ("process_at", "ready_at", "first_block_at", "last_block_end_at"))
            print(f"  pid {pid}: {f['blocks']:.0f} blocks, {f['rows'] / busy:,.0f} rows/s, "
                  f"read / score / commit {split}; timeline {marks}")
        steady = [args.rows / (max(f["last_block_end_at"] for f in a.values()) -
                               min(f["first_block_at"] for f in a.values())) for a in actors]
        start_up = [min(f["first_block_at"] for f in a.values()) for a in actors]
        steady_ratio = statistics.median(s / c["one_process"] for s, c in zip(steady, rounds, strict=True))
        print(f"Ray job start-up (until the first block starts, median): {statistics.median(start_up):.1f} s; "
              f"from then on {statistics.median(steady):,.0f} rows/s = {steady_ratio:.2f} x one process")
        ray.shutdown()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": args.rows, "rounds": rounds, "ratio": ratio,
                                              "ray_start_s": ray_start, "actors": actors[-1],
                                              "start_up_s": start_up, "steady_rows_per_s": steady,
                                              "steady_ratio": steady_ratio, "first_result_s": firsts,
                                              "verdict": verdict, "args": vars(args)}, indent=1))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
