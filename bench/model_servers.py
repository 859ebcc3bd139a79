"""Starting the servers under benchmark: tfship-model-server (this checkout's or ``--baseline-rev``'s)
with the bench's batching parameters and thread flags, the FastAPI floor and the peers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import peers
import v2_load
from baseline import Baseline
from fastapi_floor import start_fastapi
from server_process import Server, free_port

# Batching for closed-loop clients on 2 cores: one batch runs per core at most, and a batch starts
# as soon as a slot is free with whatever rows queued meanwhile (batch_timeout_micros 0). With few
# requests in flight a timeout only idles the box, and one client pays the whole timeout on every
# call (README, "Server benchmark", has the measurement).
BATCHING = {
    "max_batch_size": 1024,
    "batch_timeout_micros": 0,
    "max_enqueued_batches": 1000,
    "num_batch_threads": 2,
}
# above the 16 concurrent clients: the defaults (4 x cores = 8) would cap requests in flight
SERVER_THREAD_FLAGS = ["--grpc_max_threads=64", "--rest_api_num_threads=64"]


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
        exe = [found] if found else [sys.executable, "-c", "from tfship.serving.main import main; main()"]
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
            if not batching and not suffix:  # V2 rides on the batching-off server (same process, same ports)
                wanted += list(v2_load.V2_TARGETS)
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
