"""A client over 3 real replicas: per-call balancing, a SIGKILLed replica costs no call, a restart rejoins."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from client_test_models import needs_tf
from tfship.client import connect
from tfship.deploy.local_fleet import LocalFleet, start_local_fleet

from tfship.errors import InvalidArgumentError

pytestmark = [needs_tf, pytest.mark.slow]
X = np.array([1.0, 2.0, 5.0], np.float32)
MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


@pytest.fixture(scope="module")
def fleet(tf_serving_testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    base = tmp_path_factory.mktemp("fleet-models")
    shutil.copytree(tf_serving_testdata / "saved_model_half_plus_two_cpu", base / "half")
    (base / "monitoring.txt").write_text(MONITORING)
    with start_local_fleet(base, ["half"], replicas=3, load_balancer=False, workdir=base / "run",
                           extra_args=[f"--monitoring_config_file={base / 'monitoring.txt'}"]) as running:
        yield running


def answered(fleet: LocalFleet, index: int, status: str = "OK") -> float:
    """Predict calls replica ``index`` answered with ``status`` (its own Prometheus counter)."""
    page = httpx.get(f"{fleet.replicas[index].rest_url}/monitoring/prometheus/metrics", timeout=10).text
    pattern = rf'^:tensorflow:serving:request_count\{{[^}}]*API="predict"[^}}]*status="{status}"\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, page, re.MULTILINE))


class Callers:
    """``threads`` threads, each with its own fleet client, predicting until stopped; every failure is kept."""

    def __init__(self, urls: list[str], threads: int) -> None:
        self.calls = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(urls[i % len(urls)],), daemon=True)
                         for i in range(threads)]

    def _run(self, url: str) -> None:
        with connect(url) as client:
            while not self._stop.is_set():
                try:
                    y = client.predict("half", X)
                    ok = np.allclose(y, X / 2 + 2)
                    error = None if ok else f"wrong answer {y}"
                except Exception as exc:  # noqa: BLE001 - any failure counts
                    error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.calls += 1
                    if error:
                        self.failures.append(error)

    def wait_for(self, more: int, timeout: float = 60.0) -> None:
        target = self.calls + more
        deadline = time.monotonic() + timeout
        while self.calls < target:
            assert time.monotonic() < deadline, f"only {self.calls} of {target} calls in {timeout:g} s"
            self._stop.wait(0.02)

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def wait_until(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.1)  # polling a remote counter; bounded above


def test_sigkill_one_of_three_replicas_costs_no_call_and_a_restart_rejoins(fleet: LocalFleet) -> None:
    with Callers([fleet.grpc_target, fleet.rest_target], threads=8) as callers:
        callers.wait_for(300)
        # Per-call balancing: every replica answered some of the calls (not one pinned connection).
        counts = [answered(fleet, i) for i in range(3)]
        assert all(c > 0 for c in counts), counts

        fleet.kill_replica(1)
        callers.wait_for(600)
        assert callers.failures == []

        fleet.start_replica(1)  # same ports, fresh process: its counter starts at 0
        wait_until(lambda: answered(fleet, 1) >= 20, "the restarted replica to answer calls again")
        callers.wait_for(100)
    assert callers.failures == [], callers.failures[:5]
    assert callers.calls > 1000


def test_invalid_input_is_never_retried_on_another_replica(fleet: LocalFleet) -> None:
    for replica in fleet.replicas:
        fleet.start_replica(replica.index)  # no-op for running ones

    def rejected() -> float:
        return sum(answered(fleet, i, "INVALID_ARGUMENT") for i in range(3))

    before = rejected()
    for url in (fleet.grpc_target, fleet.rest_target):
        with connect(url) as client, pytest.raises(InvalidArgumentError):
            client.predict("half", {"x": np.array([[["not", "a", "float"]]])})
    assert rejected() - before == 2  # one attempt per transport, on one replica
