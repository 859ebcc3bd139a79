"""One of 3 replicas hangs (SIGSTOP: the process stays, its sockets stay open, nothing answers).

Client-side balancing (sync and asyncio, gRPC and REST) and nginx must keep serving: no failed
call with a 3 s deadline, a bounded p99, most of the throughput, the replica back soon after it
resumes, and no more than 1.2x the attempts of a healthy run. Before and during are measured in
the same run (the box is shared), the replica always gets SIGCONT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_test_models import needs_tf
from tfship.client import ClientConfig, connect
from tfship.client.config import FaultPolicy
from tfship.deploy.local_fleet import LocalFleet, start_local_fleet

pytestmark = [needs_tf, pytest.mark.slow]
X = np.array([1.0, 2.0, 5.0], np.float32)
DEADLINE = 3.0
THREADS = 8
BEFORE_S, FREEZE_S = 4.0, 6.0
FROZEN = 1
MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


@pytest.fixture(scope="module")
def fleet(tf_serving_testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    base = tmp_path_factory.mktemp("hung-models")
    shutil.copytree(tf_serving_testdata / "saved_model_half_plus_two_cpu", base / "half")
    (base / "monitoring.txt").write_text(MONITORING)
    # nginx gives a replica 1 s to answer (the calls here take milliseconds; the deadline is 3 s).
    with start_local_fleet(base, ["half"], replicas=3, workdir=base / "run", upstream_timeout=1.0,
                           extra_args=[f"--monitoring_config_file={base / 'monitoring.txt'}"]) as running:
        yield running


@dataclass
class Load:
    """``THREADS`` callers of one shared client; every call's start, latency and error is kept."""

    name: str
    samples: list[tuple[float, float, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, start: float, error: str | None) -> None:
        with self.lock:
            self.samples.append((start, time.monotonic() - start, error))

    def window(self, start: float, end: float) -> list[tuple[float, float, str | None]]:
        with self.lock:
            return [s for s in self.samples if start <= s[0] < end]

    def count(self) -> int:
        with self.lock:
            return len(self.samples)


def check(y: Any) -> str | None:
    return None if np.allclose(y, X / 2 + 2) else f"wrong answer {y}"


def sync_load(client: Any, load: Load, stop: threading.Event) -> list[threading.Thread]:
    def run() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                error = check(client.predict("half", X, timeout=DEADLINE))
            except Exception as exc:  # noqa: BLE001 - every failure counts
                error = f"{type(exc).__name__}: {exc}"
            load.record(start, error)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    return threads


def async_load(url: str, config: ClientConfig, load: Load, stop: threading.Event,
               clients: list[Any]) -> threading.Thread:
    """``THREADS`` coroutines sharing one asyncio client, on an event loop of their own thread."""
    from tfship.client import aio

    async def main() -> None:
        async with aio.connect(url, config) as client:
            clients.append(client)

            async def run() -> None:
                while not stop.is_set():
                    start = time.monotonic()
                    try:
                        error = check(await client.predict("half", X, timeout=DEADLINE))
                    except Exception as exc:  # noqa: BLE001
                        error = f"{type(exc).__name__}: {exc}"
                    load.record(start, error)

            await asyncio.gather(*(run() for _ in range(THREADS)))

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    return thread


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held (polled, bounded)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout:g} s"
        time.sleep(0.02)  # polling a condition, bounded above
    return time.monotonic() - start


@contextlib.contextmanager
def frozen(fleet: LocalFleet, index: int) -> Iterator[None]:
    pid = fleet.replicas[index].server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass
class Verdict:
    name: str
    calls: int
    failed: list[str]
    rps_before: float
    rps_during: float
    p99_before_ms: float
    p99_during_ms: float

    @property
    def throughput_ratio(self) -> float:
        return self.rps_during / self.rps_before

    def __str__(self) -> str:
        return (f"{self.name}: {self.calls} calls, {len(self.failed)} failed; rps {self.rps_before:.0f} -> "
                f"{self.rps_during:.0f} ({self.throughput_ratio:.0%}); p99 {self.p99_before_ms:.1f} -> "
                f"{self.p99_during_ms:.1f} ms" + (f"; first errors: {self.failed[:3]}" if self.failed else ""))


def verdict(load: Load, before: tuple[float, float], during: tuple[float, float]) -> Verdict:
    b, d = load.window(*before), load.window(*during)

    def p99(samples: list[tuple[float, float, str | None]]) -> float:
        return float(np.percentile([s[1] for s in samples], 99) * 1e3)

    return Verdict(load.name, load.count(), [s[2] for s in load.samples if s[2]][:5],
                   len(b) / (before[1] - before[0]), len(d) / (during[1] - during[0]), p99(b), p99(d))


def freeze_run(fleet: LocalFleet, loads: list[Load], back: Callable[[], bool]) -> tuple[list[Verdict], float]:
    """Warm up, measure a window before, freeze replica ``FROZEN`` for ``FREEZE_S``, resume it;
    the verdicts, and the seconds until ``back()`` held after the resume."""
    wait_until(lambda: all(load.count() >= 100 for load in loads), 60, "warm-up calls")
    start = time.monotonic()
    time.sleep(BEFORE_S)  # measuring a steady window, not synchronising
    before = (start, time.monotonic())
    with frozen(fleet, FROZEN):
        start = time.monotonic()
        time.sleep(FREEZE_S)  # the replica hangs for this long
        during = (start, time.monotonic())
    returned = wait_until(back, 10.0, "the resumed replica gets calls again")
    return [verdict(load, before, during) for load in loads], returned


def replica_back(client: Any, index: int) -> Callable[[], bool]:
    """True once ``client`` routes calls to replica ``index`` again and they succeed."""
    marks: dict[str, int] = {}

    def back() -> bool:
        health = client.fault_stats().replicas[index]
        if health.state != "healthy":
            marks.clear()
            return False
        marks.setdefault("attempts", health.attempts)
        return health.attempts >= marks["attempts"] + 5
    return back


def assert_acceptance(verdicts: list[Verdict], load_factors: dict[str, float], returned: float) -> None:
    report = "\n".join(str(v) for v in verdicts) + f"\nload factors {load_factors}; back after {returned:.2f} s"
    print(report)
    for v in verdicts:
        assert not v.failed, report
        # 250 ms; on a shared box whose healthy p99 is already far above the 12-15 ms of a quiet
        # one, the designed bound: one attempt timeout (4x the healthy p99) on the hung replica,
        # then one healthy attempt elsewhere. Without attempt timeouts it is the 3 s deadline.
        assert v.p99_during_ms <= max(250.0, (FaultPolicy().attempt_timeout_p99_factor + 1.5) * v.p99_before_ms), report
        assert v.throughput_ratio >= 0.5, report
    for factor in load_factors.values():
        assert factor <= 1.2, report


def test_sync_clients_ride_out_a_hung_replica(fleet: LocalFleet) -> None:
    """8 threads per transport share a gRPC and a REST client over the 3 replicas."""
    stop = threading.Event()
    with connect(fleet.grpc_target) as grpc_client, connect(fleet.rest_target) as rest_client:
        loads = [Load("sync grpc"), Load("sync rest")]
        threads = sync_load(grpc_client, loads[0], stop) + sync_load(rest_client, loads[1], stop)
        try:
            grpc_back, rest_back = replica_back(grpc_client, FROZEN), replica_back(rest_client, FROZEN)
            verdicts, returned = freeze_run(fleet, loads, lambda: grpc_back() and rest_back())
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        stats = {"grpc": grpc_client.fault_stats(), "rest": rest_client.fault_stats()}
    assert all(s.replicas[FROZEN].timeouts >= 1 and s.replicas[FROZEN].ejections >= 1 for s in stats.values())
    assert_acceptance(verdicts, {k: s.load_factor for k, s in stats.items()}, returned)


@pytest.mark.parametrize(("transport", "hedge"), [("grpc", True), ("rest", False)])
def test_an_asyncio_client_rides_out_a_hung_replica(fleet: LocalFleet, transport: str, hedge: bool) -> None:
    """An asyncio client (8 coroutines on one event loop): same acceptance; gRPC with hedging on
    (hedges within the budget), REST with the defaults (a cancelled REST hedge costs its
    connection). One transport at a time: two event loops in one process fight for the GIL."""
    stop = threading.Event()
    config = ClientConfig(faults=FaultPolicy(hedge=hedge))
    clients: list[Any] = []
    url = fleet.grpc_target if transport == "grpc" else fleet.rest_target
    loads = [Load(f"async {transport}" + (" (hedging)" if hedge else ""))]
    thread = async_load(url, config, loads[0], stop, clients)
    try:
        wait_until(lambda: len(clients) == 1, 30, "the asyncio client")
        verdicts, returned = freeze_run(fleet, loads, replica_back(clients[0], FROZEN))
        stats = clients[0].fault_stats()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert stats.hedges > 0 or not hedge
    assert_acceptance(verdicts, {transport: stats.load_factor}, returned)


def test_hedging_on_a_healthy_fleet_costs_at_most_1_2x_the_calls(fleet: LocalFleet) -> None:
    """Measured on the servers: Predicts the replicas received vs the calls the client made."""
    config = ClientConfig(faults=FaultPolicy(hedge=True))
    with connect(fleet.grpc_target, config) as client:
        for _ in range(50):  # learn the latency
            client.predict("half", X)
        first = _server_predicts(fleet)
        stop = threading.Event()
        load = Load("hedged grpc")
        threads = sync_load(client, load, stop)
        try:
            wait_until(lambda: load.count() >= 2000, 120, "2000 hedged calls")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        sent = _server_predicts(fleet) - first
        stats = client.fault_stats()
    calls = load.count()
    print(f"{calls} calls, {sent:.0f} Predicts received, {stats.hedges} hedges ({stats.hedge_wins} won), "
          f"client load factor {stats.load_factor:.3f}")
    assert not [s for s in load.samples if s[2]]
    assert stats.hedges > 0
    assert sent <= 1.2 * calls and stats.load_factor <= 1.2


def _server_predicts(fleet: LocalFleet) -> float:
    """Predict requests the replicas counted (their ``:tensorflow:serving:request_count``)."""
    import re

    import httpx

    total = 0.0
    for replica in fleet.replicas:
        page = httpx.get(f"{replica.rest_url}/monitoring/prometheus/metrics", timeout=10).text
        total += sum(float(v) for v in re.findall(
            r'^:tensorflow:serving:request_count\{[^}]*API="predict"[^}]*\} (\S+)$', page, re.MULTILINE))
    return total


def test_nginx_skips_a_hung_replica(fleet: LocalFleet) -> None:
    """Through the generated nginx config (1 s upstream timeout): no failed call with a 3 s deadline."""
    stop = threading.Event()
    with connect(fleet.lb_grpc_url) as grpc_client, connect(fleet.lb_rest_url) as rest_client:
        loads = [Load("nginx grpc"), Load("nginx rest")]
        threads = sync_load(grpc_client, loads[0], stop) + sync_load(rest_client, loads[1], stop)
        try:
            marks: dict[str, float] = {}

            def back() -> bool:
                count = _one_replica_predicts(fleet, FROZEN)
                marks.setdefault("resumed", count)
                return count >= marks["resumed"] + 20

            verdicts, returned = freeze_run(fleet, loads, back)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    report = "\n".join(str(v) for v in verdicts) + f"\nback after {returned:.2f} s"
    print(report)
    for v in verdicts:
        assert not v.failed, report


def _one_replica_predicts(fleet: LocalFleet, index: int) -> float:
    import re

    import httpx

    page = httpx.get(f"{fleet.replicas[index].rest_url}/monitoring/prometheus/metrics", timeout=2).text
    return sum(float(v) for v in re.findall(
        r'^:tensorflow:serving:request_count\{[^}]*API="predict"[^}]*\} (\S+)$', page, re.MULTILINE))
