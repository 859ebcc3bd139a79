"""What shadowing costs the caller: stable answers' p50/p99 with shadow off, at 10 % and at 100 %.

One tfship-model-server serves an MNIST-shaped MLP with versions 1 (``stable``) and 2 (``canary``,
same weights). ``--clients`` threads send unpinned gRPC predicts without pause for the whole run;
the shadow rate is switched through the rollout admin in paired rounds (each round visits off, 10 %
and 100 % in a shuffled order, ``--seconds`` each), so the box's noise hits every mode alike. Each
mode's figure is the median over rounds of its p50/p99; ratios are per round against that round's
``off``, then the median. Also reported: shadow runs done and dropped (saturated) per mode.

    python bench/rollout_bench.py                    # 5 rounds x 3 modes x 4 s, 8 clients
    python bench/rollout_bench.py --rounds 9 --json bench/results/rollout.json

Target (issue 21): p50 at 10 % <= 1.1x off.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from swap_bench import FEATURES, mlp  # noqa: E402

MODES = {"off": 0.0, "shadow 10%": 10.0, "shadow 100%": 100.0}


def serve(models_dir: Path) -> Any:
    from tfship.deploy.launch import start_model_server
    from tfship.export import export_model

    x = np.random.default_rng(0).random((4, FEATURES), dtype=np.float32)
    export_model(mlp(1), models_dir, "mlp", version=1, samples=x)
    export_model(mlp(1), models_dir, "mlp", version=2, samples=x)
    config = models_dir / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "mlp" base_path: "{models_dir / "mlp"}" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 1 versions: 2 } } "
        "version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 } } }\n")
    return start_model_server(model_config_file=str(config), wait_for=[("mlp", 1), ("mlp", 2)],
                              extra_args=["--allow_version_labels_for_unavailable_models"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from tfship.deploy.rollout_admin import ReplicaAdmin
    from tfship.deploy.traffic import Traffic

    rows: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="tfship-rollout-bench-") as tmp, serve(Path(tmp)) as server:
        admin = ReplicaAdmin(server.grpc_url)
        x = np.random.default_rng(1).random((1, FEATURES), dtype=np.float32)
        rng = random.Random(0)
        with Traffic(server.grpc_url, "mlp", lambda r: {"image": x}, clients=args.clients,
                     max_seconds=args.rounds * len(MODES) * args.seconds * 3 + 120) as traffic:
            traffic.wait_for_requests(200)
            for _ in range(args.rounds):
                order = list(MODES)
                rng.shuffle(order)
                for mode in order:
                    admin.set("mlp", shadow_percent=MODES[mode], canary_percent=0.0, step=mode)
                    start = time.monotonic() + 0.5  # settle: the previous mode's shadow runs finish
                    time.sleep(args.seconds + 0.5)  # the measurement window itself
                    window = traffic.window(start, time.monotonic())
                    state = admin.get("mlp")["window"]
                    lat = np.array([s.latency for s in window if s.error is None and s.version == 1]) * 1e3
                    errors = sum(1 for s in window if s.error is not None or s.version != 1)
                    rows[mode].append({"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                       "rps": len(lat) / args.seconds, "errors": errors,
                                       "shadow_runs": state["shadow"]["candidate_runs"],
                                       "dropped": state["shadow"]["dropped_saturated"],
                                       "agreeing": state["shadow"]["agreeing"]})
        admin.close()
    off = rows["off"]
    table = []
    for mode, runs in rows.items():
        table.append({
            "mode": mode,
            "p50_ms": statistics.median(r["p50"] for r in runs),
            "p99_ms": statistics.median(r["p99"] for r in runs),
            "p50_ratio": statistics.median(r["p50"] / o["p50"] for r, o in zip(runs, off, strict=True)),
            "p99_ratio": statistics.median(r["p99"] / o["p99"] for r, o in zip(runs, off, strict=True)),
            "rps": statistics.median(r["rps"] for r in runs),
            "shadow_runs": sum(r["shadow_runs"] for r in runs),
            "dropped": sum(r["dropped"] for r in runs),
            "agreeing": sum(r["agreeing"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
        })
    print(f"rollout_bench: {args.rounds} paired rounds x {args.seconds:g} s, {args.clients} clients, gRPC, "
          "MLP 784-128-10")
    print(f"{'mode':<12} {'p50 ms':>8} {'p99 ms':>8} {'p50 x':>7} {'p99 x':>7} {'req/s':>8} {'shadow runs':>12} "
          f"{'dropped':>8} {'agree':>7} {'errors':>7}")
    for r in table:
        print(f"{r['mode']:<12} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['p50_ratio']:7.2f} {r['p99_ratio']:7.2f} "
              f"{r['rps']:8.0f} {r['shadow_runs']:12d} {r['dropped']:8d} {r['agreeing']:7d} {r['errors']:7d}")
    ten = next(r for r in table if r["mode"] == "shadow 10%")
    ok = ten["p50_ratio"] <= 1.1
    print(f"target p50 at 10% <= 1.1x off: {'MET' if ok else 'MISSED'} ({ten['p50_ratio']:.2f}x)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rounds": args.rounds, "seconds": args.seconds, "clients": args.clients,
                                         "table": table, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
