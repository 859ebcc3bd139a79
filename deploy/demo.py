"""``tfship demo``: the whole path, offline, in about a minute.

Train a small digits classifier (scikit-learn's bundled 8x8 digits: no download), export v1, serve
it with tfship-model-server, prove parity over gRPC and REST, batch-predict the test set through
the server (served accuracy == in-memory accuracy), train and export v2, wait for the server to
switch, verify again. Every check is recorded; any failure makes the result not ``ok``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoResult", "run_demo"]

MODEL = "digits"


@dataclass
class DemoResult:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def summary(self) -> str:
        width = max(len(name) for name, _, _ in self.checks) if self.checks else 0
        lines = [f"  {'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}" for name, ok, detail in self.checks]
        verdict = "all checks passed" if self.ok else "SOME CHECKS FAILED"
        return "\n".join(["Summary:", *lines, f"{verdict} in {self.seconds:.0f} s"])


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8) in [0, 1]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(images))
    test = order[:360]
    train = order[360:]
    return images[train], labels[train], images[test], labels[test]


def _build() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8), name="image"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ])


def run_demo(workdir: str | os.PathLike[str] | None = None,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run the demo in ``workdir`` (default: a temp dir, removed afterwards)."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="tfship-demo-") as tmp:
            return run_demo(tmp, echo)
    started = time.monotonic()
    result = DemoResult()

    def check(name: str, ok: bool, detail: str) -> bool:
        result.checks.append((name, bool(ok), detail))
        echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        return bool(ok)

    base = Path(workdir) / "models"
    echo("1/6 training a digits classifier (scikit-learn's bundled 8x8 digits, offline) ...")
    from tfship.client import check_parity, connect
    from tfship.deploy.launch import start_model_server
    from tfship.export import export_model

    x_train, y_train, x_test, y_test = _data()
    model = _build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    memory_acc = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test))
    echo(f"    in-memory test accuracy v1: {memory_acc:.4f}")

    echo("2/6 exporting version 1 ...")
    v1 = export_model(model, base, MODEL, samples=x_test[:32])
    check("export v1", v1.version == 1, f"{v1.path} ({v1.signature_summary})")

    echo("3/6 starting tfship-model-server (gRPC + REST on free loopback ports) ...")
    with start_model_server(base / MODEL, MODEL, timeout=180,
                            extra_args=["--file_system_poll_wait_seconds=1"]) as server, \
            connect(server.grpc_url) as grpc_client, connect(server.rest_url) as rest_client:
        echo(f"    serving at {server.grpc_url} and {server.rest_url}")
        clients = (grpc_client, rest_client)

        def verify(tag: str, version_dir: Path, keras_model: Any, expected_acc: float) -> None:
            for client in clients:
                report = check_parity(client, MODEL, version_dir)
                worst = max((o.max_abs for o in report.outputs), default=float("nan"))
                check(f"parity {tag} {client.transport}", report.ok,
                      f"served v{report.version}, {report.rows} samples, max abs diff {worst:.2g}")
            probs = grpc_client.predict_batches(MODEL, x_test, batch_size=64, concurrency=4)
            served_acc = float(np.mean(np.argmax(probs, axis=1) == y_test))
            check(f"accuracy {tag} grpc batch", served_acc == expected_acc,
                  f"served {served_acc:.4f} == in-memory {expected_acc:.4f} ({len(x_test)} test images)")
            rest_probs = rest_client.predict(MODEL, x_test)
            rest_acc = float(np.mean(np.argmax(rest_probs, axis=1) == y_test))
            check(f"accuracy {tag} rest", rest_acc == expected_acc,
                  f"served {rest_acc:.4f} == in-memory {expected_acc:.4f}")

        echo("4/6 verifying version 1 over gRPC and REST ...")
        verify("v1", v1.path, model, memory_acc)

        echo("5/6 training more and exporting version 2 while v1 keeps serving ...")
        model.fit(x_train, y_train, epochs=12, batch_size=64, verbose=0)
        memory_acc2 = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test))
        echo(f"    in-memory test accuracy v2: {memory_acc2:.4f}")
        v2 = export_model(model, base, MODEL, samples=x_test[:32])
        check("export v2", v2.version == 2, str(v2.path))

        echo("6/6 waiting for the server to switch to version 2 ...")
        switch_started = time.monotonic()
        grpc_client.wait_until_available(MODEL, 2, timeout=120)
        deadline = time.monotonic() + 60
        while grpc_client.metadata(MODEL).version != 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # bounded poll: the latest-version pointer moves after v2 is AVAILABLE
        latest = grpc_client.metadata(MODEL).version
        check("hot switch to v2", latest == 2,
              f"latest served version {latest} after {time.monotonic() - switch_started:.1f} s")
        verify("v2", v2.path, model, memory_acc2)
    result.seconds = time.monotonic() - started
    echo(result.summary())
    return result
