#!/usr/bin/env python3
"""What traffic capture costs tfship-model-server (issue 20): rows/s with capture off, at sampling
0.01 and at 1.0, on the MLP, in paired alternating rounds of one run.

One server serves the MLP under three names -- ``mlp`` (no logging_config), ``mlp_s001``
(sampling 0.01) and ``mlp_s1`` (sampling 1.0) -- so the three sides share process, threads and
caches, and a round measures a captured name right next to ``mlp``. The capture keeps a rolling
256 MiB per name (``retention=delete_oldest``): the writer never stops at a full budget, so the
cost of writing (and deleting) stays in every round. Targets: >= 0.97x of off at 0.01 and >=
0.85x at 1.0 (medians of the paired rounds), per cell (gRPC, batch 1 and 32, 16 clients).

    python bench/capture_bench.py                      # ~3 min on 2 cores
    python bench/server_bench.py --capture-rounds 5    # the same, after the server bench's matrix

Writes bench/results/capture_bench.json (``--out``).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from h2load_client import h2load_server_cells, h2load_version
from model_servers import SERVER_THREAD_FLAGS
from paired import paired_rounds
from python_load import ClientPool, server_cells
from saved_models import build_models
from server_process import Server, free_port
from verdicts import _ratio_check

#: name -> sampling rate (None: capture off)
SIDES = {"mlp": None, "mlp_s001": 0.01, "mlp_s1": 1.0}
GOALS = {"mlp_s001": 0.97, "mlp_s1": 0.85}
CELLS = ((1, 16), (32, 16))  # (batch, concurrency)
COLLECTOR = "tfrecord?retention=delete_oldest&max_total_bytes=256MiB"


def start_capture_server(version_dir: Path, workdir: Path, extra_flags: list[str]) -> Server:
    """tfship-model-server with the MLP under every name of :data:`SIDES`, captures under ``workdir``."""
    base = version_dir.parent
    entries = []
    for name, rate in SIDES.items():
        logging = ("" if rate is None else
                   f'logging_config {{ sampling_config {{ sampling_rate: {rate} }} log_collector_config {{ '
                   f'type: "{COLLECTOR}" filename_prefix: "{workdir / "capture"}/" }} }}')
        entries.append(f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {logging} }}')
    config = workdir / "capture_models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    grpc_port, rest_port = free_port(), free_port()
    found = shutil.which("tfship-model-server")
    argv = [found] if found else [sys.executable, "-m", "tfship.serving.main"]
    argv += [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_config_file={config}"]
    argv += SERVER_THREAD_FLAGS + extra_flags
    return Server(argv, workdir / "capture_server.log", grpc_port, rest_port).ready(
        [f"http://127.0.0.1:{rest_port}/v1/models/{name}" for name in SIDES], lambda body: b'"AVAILABLE"' in body)


def capture_rounds(rounds: int, rate: Callable[[str, int, int], float]) -> dict[str, list[tuple[float, float]]]:
    """Paired rounds per captured side and cell: ``(rows/s with capture, rows/s off)``."""
    paired = {}
    for batch, concurrency in CELLS:
        for name in GOALS:
            print(f"paired rounds, {name} vs mlp (capture off) at grpc b{batch} c{concurrency} ({rounds}):",
                  flush=True)
            paired[f"capture_{name}_b{batch}_c{concurrency}"] = paired_rounds(
                rounds, functools.partial(rate, name, batch, concurrency),
                functools.partial(rate, "mlp", batch, concurrency))
    return paired


def capture_checks(paired: dict[str, list[tuple[float, float]]]) -> list[tuple[str, bool, str]]:
    """PASS/MISS per cell: the median ratio of the paired rounds against the goal."""
    results = []
    for key, pairs in paired.items():
        if not key.startswith("capture_"):
            continue
        name, cell = key[len("capture_"):].rsplit("_b", 1)
        rate = SIDES[name]
        check = _ratio_check(
            f"capture at sampling {rate} costs <= {100 * (1 - GOALS[name]):.0f}% (mlp grpc b{cell.replace('_', ' ')})",
            GOALS[name], pairs, None)
        if check is not None:
            results.append(check)
    return results


def run(rounds: int, version_dir: Path, shape: tuple[int, ...], workdir: Path, h2load: str | None,
        client_procs: int, seconds: float, min_calls: int, extra_flags: list[str]) -> dict[str, Any]:
    """Start the capture server, run the paired rounds, stop it; the rounds and the verdicts."""
    server = start_capture_server(version_dir, workdir, extra_flags)
    pool = ClientPool(client_procs) if h2load is None else None
    try:
        def rate(name: str, batch: int, concurrency: int) -> float:
            if pool is not None:
                cells = server_cells(pool, "grpc", name, version_dir, shape, server, [batch],
                                                  [concurrency], seconds, min_calls)
            else:
                assert h2load is not None
                cells = h2load_server_cells(h2load, "grpc", name, version_dir, shape, server, [batch],
                                                         [concurrency], seconds, min_calls, workdir)
            return cells[0].rows_per_s

        paired = capture_rounds(rounds, rate)
    finally:
        if pool is not None:
            pool.close()
        server.stop()
    captured = sum(f.stat().st_size for f in (workdir / "capture").glob("*.tfrecord"))
    return {"paired_rounds": paired, "targets": capture_checks(paired), "capture_bytes_on_disk": captured}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--min-calls", type=int, default=3)
    parser.add_argument("--load-generator", choices=("auto", "h2load", "python"), default="auto")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "capture_bench.json")
    args = parser.parse_args(argv)
    h2load = None if args.load_generator == "python" else shutil.which("h2load")
    if args.load_generator == "h2load" and h2load is None:
        parser.error("h2load is not on PATH: apt-get install nghttp2-client")
    print(f"load generator: {h2load_version(h2load) if h2load else 'python'}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="tfship-capture-bench-"))
    try:
        version_dir, _, shape = build_models(workdir)["mlp"]
        result = run(args.rounds, version_dir, shape, workdir, h2load, args.client_procs, args.seconds,
                     args.min_calls, [])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for label, ok, detail in result["targets"]:
        print(f"{'PASS' if ok else 'MISS'}  {label}: {detail}")
    medians = {k: float(np.median([a / b for a, b in v])) for k, v in result["paired_rounds"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**result, "median_ratios": medians, "seconds_per_cell": args.seconds,
                                    "targets": [{"target": t, "met": ok, "detail": d}
                                                for t, ok, d in result["targets"]]}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
