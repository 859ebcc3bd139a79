"""Hot-swap benchmark: N concurrent clients send requests while versions are swapped.

For each target (tfship-model-server as a subprocess; the Docker image when an engine is
reachable) and each plan (latest-1 policy; label ``stable`` moved through config reloads), it
reports: requests and failures, whether every response came from the old or the new version,
publish-to-serving latency (p50, max) and request latency p50/p99 during swaps vs steady state.

    python bench/swap_bench.py                      # tfship-model-server only
    python bench/swap_bench.py --docker             # + the Docker stand-in image (needs an engine)
    python bench/swap_bench.py --json bench/results/swap.json
    python bench/swap_bench.py --fleet 3            # 3 replicas + nginx: LB and client-side traffic

Prints one table with figures and ratios side by side, and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FEATURES = 784
X = np.random.default_rng(0).random((1, FEATURES), dtype=np.float32)


def mlp(seed: int) -> Any:
    """An MNIST-shaped MLP (784 -> 128 -> 10): small, but real work per request."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(FEATURES,), name="image")
    hidden = keras.layers.Dense(128, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))


def label_config(models_dir: Path, base_path: str, version: int) -> Path:
    # Kept inside the model's base path: the Docker run mounts that dir, and TF Serving ignores
    # files there when it looks for versions.
    path = models_dir / "mlp" / "models.config"
    path.write_text(
        f'model_config_list {{ config {{ name: "mlp" base_path: "{base_path}" model_platform: "tensorflow" '
        f"model_version_policy {{ specific {{ versions: {version} }} }} "
        f"version_labels {{ key: 'stable' value: {version} }} }} }}\n"
    )
    return path


@contextlib.contextmanager
def local_server(models_dir: Path, plan: str) -> Iterator[str]:
    from tfship.deploy.launch import start_model_server

    if plan == "latest":
        server = start_model_server(models_dir / "mlp", "mlp")
    else:
        config = label_config(models_dir, str(models_dir / "mlp"), 1)
        server = start_model_server(model_config_file=str(config), wait_for=[("mlp", 1)],
                                    extra_args=["--allow_version_labels_for_unavailable_models"])
    with server:
        yield server.grpc_url


@contextlib.contextmanager
def docker_server(models_dir: Path, plan: str, image: str) -> Iterator[str]:
    from tfship.deploy.docker.run import start_container
    from tfship.deploy.launch import free_port

    extra: tuple[str, ...] = ()
    if plan == "labels":
        label_config(models_dir, "/models/mlp", 1)
        extra = ("--model_config_file=/models/mlp/models.config", "--allow_version_labels_for_unavailable_models")
    with start_container(image, models_dir=models_dir, grpc_port=free_port(), rest_port=free_port(),
                         extra_args=extra) as container:
        container.wait_until_available(timeout=300)
        yield container.grpc_url


@dataclass
class Run:
    """One run of swaps under traffic: the steady window, each swap's window and record."""

    steady: tuple[float, float]
    windows: list[tuple[float, float]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)


def run_swaps(traffics: list[Any], clients: int, steady_seconds: float, candidates: list[Any],
              swap_one: Callable[[Any], Any]) -> Run:
    """Warm the traffic up, measure a steady window, then swap every candidate in, timed."""
    for traffic in traffics:
        traffic.wait_for_requests(clients * 20)
    steady_start = time.monotonic()
    time.sleep(steady_seconds)  # measuring a steady-state window, not synchronising
    run = Run((steady_start, time.monotonic()))
    for model in candidates:
        start = time.monotonic()
        run.records.append(swap_one(model))
        run.windows.append((start, time.monotonic()))
    return run


def row(traffic: Any, run: Run, publish: list[float], **fields: Any) -> dict[str, Any]:
    """A table row: requests, failures, versions and latency steady vs during swaps."""
    summary = traffic.summary()
    steady = traffic.window(*run.steady)
    during = [s for start, end in run.windows for s in traffic.window(start, end)]

    def p(samples: list[Any], q: float) -> float:
        return float(np.percentile([s.latency for s in samples], q) * 1e3) if samples else float("nan")

    return {
        **fields, "swaps": len(run.records),
        # Raw callers (tfship's client with max_attempts=1): a failed call is one no retry hid.
        "requests": summary.requests, "failed": summary.failed_without_retries, "retries": summary.retries,
        "wrong_values": summary.wrong_values + summary.unchecked,
        "versions_ok": set(summary.versions) <= set(range(1, len(run.records) + 2)),
        "promoted": sum(r.outcome == "promoted" for r in run.records),
        "publish_to_serving_p50_s": float(np.median(publish)), "publish_to_serving_max_s": float(max(publish)),
        "swap_total_p50_s": float(np.median([end - start for start, end in run.windows])),
        "steady_p50_ms": p(steady, 50), "steady_p99_ms": p(steady, 99),
        "swap_p50_ms": p(during, 50), "swap_p99_ms": p(during, 99),
        "p99_ratio": p(during, 99) / p(steady, 99),
        "steady_rps": len(steady) / (run.steady[1] - run.steady[0]),
        "swap_rps": len(during) / sum(end - start for start, end in run.windows),
        "errors": summary.errors[:5],
    }


def scenario(
    target: str, plan: str, swaps: int, clients: int, steady_seconds: float, image: str | None
) -> dict[str, Any]:
    from tfship.deploy.swap import SwapOptions, swap
    from tfship.deploy.traffic import Traffic
    from tfship.export import export_model

    with tempfile.TemporaryDirectory(prefix="tfship-swap-bench-") as tmp:
        models_dir = Path(tmp)
        os.chmod(models_dir, 0o755)
        first = mlp(1)
        export_model(first, models_dir, "mlp")
        candidates = [mlp(seed) for seed in range(2, swaps + 2)]  # trained models arrive ready
        expected = {v: np.asarray(m(X)) for v, m in enumerate([first, *candidates], start=1)}
        server = local_server(models_dir, plan) if target == "tfship-model-server" else (
            docker_server(models_dir, plan, image or ""))
        with server as url:
            config = models_dir / "mlp" / "models.config" if plan == "labels" else None
            options = SwapOptions(url=url, label="stable" if plan == "labels" else None, config_file=config,
                                  timeout=120)
            with Traffic(url, "mlp", X, clients=clients, label="stable" if plan == "labels" else None,
                         expected=expected, max_seconds=1800) as traffic:
                run = run_swaps([traffic], clients, steady_seconds, candidates,
                                lambda model: swap(models_dir, "mlp", model, options=options))
    publish = [r.publish_to_serving_s for r in run.records if r.publish_to_serving_s is not None]
    return row(traffic, run, publish, target=target, plan=plan, clients=clients)


def fleet_scenario(replicas: int, swaps: int, clients: int, steady_seconds: float) -> list[dict[str, Any]]:
    """Fleet swaps (latest-1) on ``replicas`` tfship-model-server replicas behind nginx.

    ``clients`` threads call through nginx and ``clients`` more balance client-side; one row per
    path. publish->serving is per swap the time until the *last* replica reported the version
    AVAILABLE (what the fleet waits for before checking parity on each replica).
    """
    from tfship.deploy.local_fleet import start_local_fleet
    from tfship.deploy.swap import SwapOptions, swap
    from tfship.deploy.traffic import Traffic
    from tfship.export import export_model

    with tempfile.TemporaryDirectory(prefix="tfship-fleet-bench-") as tmp:
        models_dir = Path(tmp) / "models"
        first = mlp(1)
        export_model(first, models_dir, "mlp")
        candidates = [mlp(seed) for seed in range(2, swaps + 2)]
        expected = {v: np.asarray(m(X)) for v, m in enumerate([first, *candidates], start=1)}
        with start_local_fleet(models_dir, ["mlp"], replicas=replicas, workdir=Path(tmp) / "run") as fleet:
            options = SwapOptions(url=fleet.grpc_target, timeout=120)
            paths = {"via nginx": fleet.lb_grpc_url, "client-side": fleet.grpc_target}
            with contextlib.ExitStack() as stack:
                traffic = {name: stack.enter_context(Traffic(url, "mlp", X, clients=clients, expected=expected,
                                                             max_seconds=1800))
                           for name, url in paths.items()}
                run = run_swaps(list(traffic.values()), clients, steady_seconds, candidates,
                                lambda model: swap(models_dir, "mlp", model, options=options))
    every = [max(r["available_s"] for r in rec.replicas or []) for rec in run.records]
    checked = sum(len(r.replicas or []) for r in run.records)
    return [row(t, run, every, target=f"fleet-{replicas} {name}", plan="latest", clients=clients,
                parity_checked_replicas=checked) for name, t in traffic.items()]


def standin_image() -> str | None:
    proc = subprocess.run([str(REPO / "scripts" / "build-standin-base")], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return proc.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swaps", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    parser.add_argument("--docker", action="store_true", help="also run against the Docker stand-in image")
    parser.add_argument("--plans", default="latest,labels")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "swap.json")
    parser.add_argument("--fleet", type=int, default=0, metavar="N",
                        help="instead: N replicas behind nginx, --clients through nginx and as many client-side")
    args = parser.parse_args()

    targets: list[tuple[str, str | None]] = [("tfship-model-server", None)]
    if args.docker:
        image = standin_image()
        if image is None:
            print("no Docker image: skipping the Docker target", file=sys.stderr)
        else:
            targets.append(("docker", image))
    rows = []
    if args.fleet:
        print(f"running a fleet of {args.fleet} replicas behind nginx ...", file=sys.stderr, flush=True)
        rows = fleet_scenario(args.fleet, args.swaps, args.clients, args.steady_seconds)
        targets = []
    for target, image in targets:
        for plan in args.plans.split(","):
            print(f"running {target} / {plan} ...", file=sys.stderr, flush=True)
            rows.append(scenario(target, plan, args.swaps, args.clients, args.steady_seconds, image))

    header = (f"{'target':<24} {'plan':<7} {'swaps':>5} {'requests':>8} {'failed':>6} {'wrong':>5} {'old/new':>7} "
              f"{'pub->serve p50':>14} {'max':>6} {'p99 steady':>10} {'p99 swap':>9} {'ratio':>6} "
              f"{'rps steady':>10} {'rps swap':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['target']:<24} {r['plan']:<7} {r['swaps']:>5} {r['requests']:>8} {r['failed']:>6} "
              f"{r['wrong_values']:>5} "
              f"{'yes' if r['versions_ok'] else 'NO':>7} {r['publish_to_serving_p50_s']:>12.2f} s "
              f"{r['publish_to_serving_max_s']:>5.2f}s {r['steady_p99_ms']:>8.1f}ms {r['swap_p99_ms']:>7.1f}ms "
              f"{r['p99_ratio']:>5.2f}x {r['steady_rps']:>10.0f} {r['swap_rps']:>9.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"\nwrote {args.json}")
    return 0 if all(r["failed"] == 0 and r["wrong_values"] == 0 and r["versions_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
