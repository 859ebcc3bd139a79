#!/usr/bin/env python3
"""Benchmark tfship-model-server against its ceiling and its floor (issue 3, bench section).

For an MNIST-shaped MLP and a small CNN (Keras 3, exported with ``model.export``) it measures rows/s
and p50/p99 latency at batch 1, 32, 1024 and concurrency 1 and 16 for:

* ``in-process``  the exported ``serving_default`` signature called in this process (the ceiling);
* ``grpc``/``rest`` tfship-model-server with batching off, and ``grpc+b``/``rest+b`` with
  ``--enable_batching`` (the batching parameters are printed);
* ``fastapi``     a naive FastAPI + uvicorn server calling ``model.predict`` per request, the way
  tutorials do (the floor users start from);
* ``v2-grpc``, ``v2-rest``, ``v2-rest-bin``: the same batching-off server over the Open Inference
  Protocol (V2 gRPC ModelInfer with raw contents, V2 REST with JSON tensors, V2 REST with the binary
  tensor data extension; bench/v2_load.py, which also runs the paired rounds behind their targets);
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

This file runs the matrix; one module per job beside it: saved_models.py (the models, reference
predictions, the in-process ceiling), model_servers.py (starting every server; batching and thread
flags), fastapi_floor.py (the floor; its app is peer_apps/fastapi_floor.py), payloads.py (requests
encoded once per cell), python_load.py and h2load_client.py (the two load generators), paired.py
(alternating rounds), verdicts.py (PASS/MISS), tables.py (cells and their tables) and
server_bench_args.py (this command line).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import peers
import v2_load
from baseline import Baseline
from h2load_client import h2load_server_cells, h2load_version
from idle_connections import raise_file_limit
from model_servers import BATCHING, SERVER_THREAD_FLAGS, start_servers
from paired import CELL_PAIRS, cell_rounds, idle_rounds, paired_rounds
from python_load import ClientPool, server_cells
from saved_models import build_models, in_process_cells
from server_bench_args import parse_args
from server_process import Server
from tables import Cell, table
from verdicts import BASE_TARGETS, TFSHIP_TARGETS, best_target, checks, paired_cell_ratios

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    paired_cells: dict[str, dict[str, list[float]]] = {}
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
        if args.paired_rounds:
            paired.update(v2_load.paired_checks(args.paired_rounds, cells, list(models), concurrencies,
                                                servers_by_target, server_rate, paired_rounds))
        if args.idle_connections and args.paired_rounds and "mlp" in models and "rest" in servers_by_target:
            print(f"paired rounds, rest mlp b1 c16 p99 with vs without {args.idle_connections} idle keep-alive "
                  f"connections ({args.paired_rounds}):")
            paired["idle_p99"] = idle_rounds(
                args.paired_rounds, args.idle_connections, servers_by_target["rest"].rest_port, "mlp",
                lambda: server_cell("rest", "mlp", 1, 16).p99_ms)
        if args.capture_rounds and "mlp" in models:
            import capture_bench

            version_dir, _, shape = models["mlp"]
            capture = capture_bench.run(args.capture_rounds, version_dir, shape, workdir, h2load, args.client_procs,
                                        args.seconds, args.min_calls, args.server_flag)
            paired.update(capture["paired_rounds"])
        if args.paired_cells:
            wanted = [t for t in TFSHIP_TARGETS + BASE_TARGETS if t in servers_by_target]
            for name in models:
                for batch in batches:
                    for conc in concurrencies:
                        print(f"paired cells, {name} b{batch} c{conc} ({args.paired_cells} rounds of "
                              f"{', '.join(wanted)}):", flush=True)
                        paired_cells[f"{name} b{batch} c{conc}"] = cell_rounds(
                            args.paired_cells, wanted,
                            lambda target, n=name, b=batch, c=conc: server_rate(target, n, b, c))
    finally:
        if pool is not None:
            pool.close()
        for server in servers:
            server.stop()
        if baseline is not None:
            baseline.close()

    print("\nrows/s (p50 latency); +b = --enable_batching", BATCHING)
    main_order = ("in-process",) + TFSHIP_TARGETS + v2_load.V2_TARGETS + BASE_TARGETS + ("fastapi",)
    print(table(cells, [t for t in main_order if t in targets]))
    if any(t in peers.PEER_TARGETS for t in targets):
        print("\npeers (same SavedModels, same load generator):")
        print(table(cells, [t for t in TFSHIP_TARGETS + peers.PEER_TARGETS if t in targets]))
    import capture_bench

    if paired_cells:
        pairs = [(a, b) for a, b in CELL_PAIRS if any(a in r and b in r for r in paired_cells.values())]
        ratios = {pair: paired_cell_ratios(paired_cells, *pair) for pair in pairs}
        print(f"\npaired cells: median ratio over {args.paired_cells} alternating rounds")
        print("| cell | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
        print("|---|" + "---:|" * len(pairs))
        for where in paired_cells:
            print(f"| {where} | " + " | ".join(f"{ratios[p][where]:.2f}x" if where in ratios[p] else ""
                                               for p in pairs) + " |")
    results = checks(cells, paired, paired_cells) + capture_bench.capture_checks(paired)
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
        "paired_cells": paired_cells,
        "targets": [{"target": label, "met": ok, "detail": detail} for label, ok, detail in results],
    }, indent=2))
    print(f"wrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
