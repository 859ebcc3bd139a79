"""Memory over many hot swaps: the model server's RSS after each of N swaps under traffic.

A long-lived server may see a swap every hour for months, so what one load/unload leaves behind
adds up. This starts tfship-model-server on an MLP (784 -> 128 -> 10), keeps ``--clients`` gRPC
clients predicting ``--rows`` rows per request, and publishes ``--swaps`` new versions one after
another (a copy of version 1 under the next number, published atomically; the server loads it,
warms it up and unloads the old one). After each swap settles (new version AVAILABLE, old one
END) it reads the server's RSS from ``/proc/PID/status``.

    python bench/swap_memory.py                          # 200 swaps, 4 clients, PNG + JSON
    python bench/swap_memory.py --swaps 40 --out /tmp/m  # a quick look
    python bench/swap_memory.py --env MALLOC_ARENA_MAX=2 --name arenas2   # an A/B variant
    python bench/swap_memory.py --plot bench/results/a.json bench/results/b.json --name both

Prints RSS every 10 swaps and the growth per swap over each half (a least-squares slope), and
writes ``NAME.json`` and ``NAME.png`` (matplotlib, when installed; else a text plot on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from swap_bench import FEATURES, mlp  # noqa: E402


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of ``pid`` in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def slope(values: list[float]) -> float:
    """Least-squares growth per step (MiB/swap)."""
    if len(values) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(values)), values, 1)[0])


def publish_copy(template: Path, model_dir: Path, version: int) -> None:
    """Publish ``template`` as version ``version``: copied beside, then one rename (atomic)."""
    staging = model_dir / f".tfship-tmp-bench-{version}"
    shutil.copytree(template, staging)
    os.rename(staging, model_dir / str(version))


def wait_swapped(client: Any, version: int, timeout: float = 120.0) -> None:
    """Until ``version`` is AVAILABLE and no other version is (the old one unloaded)."""
    from tfship.errors import DeadlineExceededError

    deadline = time.monotonic() + timeout
    while True:
        try:
            states = {v.version: v.state for v in client.status("mlp", timeout=10.0)}
        except DeadlineExceededError:  # a busy shared box: ask again within the bound
            states = {}
        if states.get(version) == "AVAILABLE" and all(
                s in ("END",) for v, s in states.items() if v != version):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"version {version} not swapped in after {timeout:g} s: {states}")
        time.sleep(0.05)  # polling the server's state; bounded above


def text_plot(rss: list[float], width: int = 60, height: int = 12) -> str:
    lo, hi = min(rss), max(rss)
    span = (hi - lo) or 1.0
    columns = [rss[int(i * (len(rss) - 1) / max(1, width - 1))] for i in range(width)]
    rows = []
    for level in range(height - 1, -1, -1):
        threshold = lo + span * level / (height - 1)
        rows.append(f"{threshold:8.1f} |" + "".join("#" if c >= threshold else " " for c in columns))
    rows.append(" " * 9 + "+" + "-" * width)
    rows.append(" " * 10 + f"swap 0 .. {len(rss) - 1}  (RSS MiB)")
    return "\n".join(rows)


def plot(runs: dict[str, list[float]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, rss in runs.items():
        ax.plot(range(len(rss)), rss, label=name, linewidth=1.2)
    ax.set_xlabel("swap")
    ax.set_ylabel("server RSS after the swap (MiB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(swaps: int, clients: int, rows: int, env: dict[str, str], extra_args: list[str]) -> dict[str, Any]:
    from tfship.client import connect
    from tfship.deploy.launch import start_model_server
    from tfship.deploy.traffic import Traffic
    from tfship.export import export_model

    x = np.random.default_rng(0).random((rows, FEATURES), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="tfship-swap-memory-") as tmp:
        base = Path(tmp) / "models"
        export_model(mlp(1), base, "mlp", version=1)
        model_dir = base / "mlp"
        template = Path(tmp) / "template"
        shutil.copytree(model_dir / "1", template)
        server = start_model_server(model_dir, "mlp", env=env,
                                    extra_args=["--file_system_poll_wait_seconds=1", *extra_args])
        rss: list[dict[str, float]] = []
        seconds: list[float] = []
        with server, connect(server.grpc_url) as client, \
                Traffic(server.grpc_url, "mlp", x, clients=clients, max_seconds=24 * 3600) as traffic:
            traffic.wait_for_requests(clients * 20)
            rss.append(proc_memory(server.process.pid))
            started = time.monotonic()
            for version in range(2, swaps + 2):
                t0 = time.monotonic()
                publish_copy(template, model_dir, version)
                wait_swapped(client, version)
                shutil.rmtree(model_dir / str(version - 1))
                seconds.append(time.monotonic() - t0)
                rss.append(proc_memory(server.process.pid))
                if (version - 1) % 10 == 0:
                    print(f"  swap {version - 1:4d}: RSS {rss[-1]['VmRSS']:7.1f} MiB "
                          f"(anon {rss[-1]['RssAnon']:.1f}), {len(traffic.samples)} requests",
                          file=sys.stderr, flush=True)
            elapsed = time.monotonic() - started
            summary = traffic.stop()
    vm = [r["VmRSS"] for r in rss]
    half = len(vm) // 2
    return {
        "swaps": swaps, "clients": clients, "rows": rows, "env": env, "extra_args": extra_args,
        "rss_mib": vm, "anon_mib": [r["RssAnon"] for r in rss],
        "first_half_mib_per_swap": slope(vm[:half + 1]), "second_half_mib_per_swap": slope(vm[half:]),
        "second_half_anon_mib_per_swap": slope([r["RssAnon"] for r in rss][half:]),
        "swap_seconds_p50": float(np.median(seconds)),
        "requests": summary.requests, "failed": summary.failed,
        "requests_per_s": summary.requests / elapsed, "errors": summary.errors[:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swaps", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rows", type=int, default=64, help="rows per Predict (64 rows = 200 KB, "
                        "above glibc's default 128 KB mmap threshold)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of the server (an A/B variant)")
    parser.add_argument("--server-arg", action="append", default=[], help="extra tfship-model-server flag")
    parser.add_argument("--name", default="swap_memory")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--plot", nargs="+", type=Path, metavar="JSON",
                        help="instead: plot these runs' JSON files together into --out/NAME.png")
    args = parser.parse_args()

    if args.plot:
        runs = {path.stem: json.loads(path.read_text()) for path in args.plot}
        labels = {f"{name} ({r['second_half_mib_per_swap']:+.3f} MiB/swap after swap {r['swaps'] // 2})": r["rss_mib"]
                  for name, r in runs.items()}
        png = args.out / f"{args.name}.png"
        args.out.mkdir(parents=True, exist_ok=True)
        if not plot(labels, png, "tfship-model-server RSS after each swap, MLP under 4 gRPC clients"):
            for label, rss in labels.items():
                print(label)
                print(text_plot(rss))
        else:
            print(f"wrote {png}")
        return 0

    env = dict(item.split("=", 1) for item in args.env)
    result = run(args.swaps, args.clients, args.rows, env, args.server_arg)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    vm = result["rss_mib"]
    print(f"{args.name}: {args.swaps} swaps, {args.clients} clients x {args.rows} rows, "
          f"{result['requests_per_s']:.0f} requests/s, {result['failed']} failed")
    print(f"  RSS {vm[0]:.1f} -> {vm[len(vm) // 2]:.1f} -> {vm[-1]:.1f} MiB; growth per swap: "
          f"first half {result['first_half_mib_per_swap']:.3f} MiB, second half "
          f"{result['second_half_mib_per_swap']:.3f} MiB (anon {result['second_half_anon_mib_per_swap']:.3f})")
    png = args.out / f"{args.name}.png"
    if plot({args.name: vm}, png, f"RSS over {args.swaps} swaps under traffic"):
        print(f"  wrote {png}")
    else:
        print(text_plot(vm))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
