"""bench/server_bench.py's command line: the options, their defaults and checks (``--quick``,
``--batching-param`` into :data:`model_servers.BATCHING`, known targets, the load generator)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import peers
import v2_load
from model_servers import BATCHING
from verdicts import BASE_TARGETS, TFSHIP_TARGETS

DESCRIPTION = "Benchmark tfship-model-server against its ceiling and its floor (issue 3, bench section)."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batches", default="1,32,1024")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--targets", default="in-process,grpc,grpc+b,rest,rest+b,v2-grpc,v2-rest,v2-rest-bin,fastapi",
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
    parser.add_argument("--paired-cells", type=int, default=0, metavar="ROUNDS",
                        help="after the table, measure every cell ROUNDS more times, all tfship targets of the "
                             "cell back to back in alternating order, and judge 'no cell below 0.95x @base' and "
                             "'batching never loses' on the median per-round ratios (0: from the table)")
    parser.add_argument("--quick", action="store_true", help="cnn, batch 1 and 1024, 2 s cells")
    parser.add_argument("--capture-rounds", type=int, default=0, metavar="N",
                        help="also measure traffic capture's cost, N paired rounds (bench/capture_bench.py)")
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
    known = ("in-process", "fastapi") + TFSHIP_TARGETS + v2_load.V2_TARGETS + BASE_TARGETS + peers.PEER_TARGETS
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
