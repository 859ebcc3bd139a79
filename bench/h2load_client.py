"""h2load (nghttp2's C load generator) as the bench's client: one cell is a probe, a warm-up and a
measured run sized to last ``--seconds``; successes and latencies are read from h2load's output
and per-request log (see bench/server_bench.py's docstring for how gRPC successes are counted).
"""

from __future__ import annotations

import math
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import peers
import v2_load
from payloads import check_reply, grpc_message, grpc_request, json_body
from saved_models import check_predictions, serving_input_alias
from server_process import Server
from tables import Cell, print_cell, summarize

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
    if target in v2_load.V2_TARGETS:
        v2 = v2_load.v2_request(target, server, model, alias, x)
        check_predictions(target, model, version_dir, x, v2.predictions)
        body.write_bytes(v2.body)
        return H2Target(v2.url, body, v2.headers, http1=v2.kind == "http", grpc_reply_bytes=v2.reply_bytes)
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
