"""What the client's fault handling costs on a healthy fleet: calls/s and p99 with
``FaultPolicy()`` (a channel per replica, attempts steered, timed and counted; optionally hedged)
against ``FaultPolicy(enabled=False)`` (one gRPC channel with grpcio's round_robin policy; REST
plain rotation), paired and alternated in one run on 3 local replicas.

    python bench/fault_overhead.py                 # 8 threads, 3 rounds of 3 s per mode
    python bench/fault_overhead.py --rounds 5 --seconds 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
X = np.array([1.0, 2.0, 5.0], np.float32)


def measure(url: str, config: object, threads: int, seconds: float) -> tuple[float, float, float]:
    """(calls/s, p99 ms, attempts per call) of ``threads`` threads sharing one client."""
    from tfship.client import connect

    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    with connect(url, config) as client:  # type: ignore[arg-type]
        for _ in range(50):
            client.predict("half", X)

        def run() -> None:
            mine = []
            while not stop.is_set():
                start = time.monotonic()
                client.predict("half", X, timeout=5)
                mine.append(time.monotonic() - start)
            with lock:
                latencies.extend(mine)

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for w in workers:
            w.start()
        time.sleep(seconds)  # the measuring window
        stop.set()
        for w in workers:
            w.join()
        factor = client.fault_stats().load_factor
    return len(latencies) / seconds, float(np.percentile(latencies, 99) * 1e3), factor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "tests"))
    from tf_serving_models import generate
    from tfship.client import ClientConfig
    from tfship.client.config import FaultPolicy
    from tfship.deploy.local_fleet import start_local_fleet

    modes = {"faults on": ClientConfig(), "faults + hedging": ClientConfig(faults=FaultPolicy(hedge=True)),
             "faults off (round_robin)": ClientConfig(faults=FaultPolicy(enabled=False))}
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tfship-fault-bench-") as tmp:
        base = Path(tmp) / "models"
        shutil.copytree(generate(Path(tmp) / "testdata") / "saved_model_half_plus_two_cpu", base / "half")
        with start_local_fleet(base, ["half"], replicas=3, load_balancer=False, workdir=Path(tmp) / "run") as fleet:
            for _ in range(args.rounds):
                for transport, url in (("grpc", fleet.grpc_target), ("rest", fleet.rest_target)):
                    for mode, config in modes.items():
                        results.setdefault((transport, mode), []).append(
                            measure(url, config, args.threads, args.seconds))
    print(f"{'transport':<9} {'mode':<24} {'calls/s (median)':>16} {'p99 ms (median)':>15} {'attempts/call':>13}")
    for (transport, mode), runs in results.items():
        print(f"{transport:<9} {mode:<24} {statistics.median(r[0] for r in runs):>16.0f} "
              f"{statistics.median(r[1] for r in runs):>15.1f} {max(r[2] for r in runs):>13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
